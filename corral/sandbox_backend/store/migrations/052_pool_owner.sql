-- The server process that made a pool member (host, pid and the pid's start time): a member whose
-- server is gone is removed by the next server's pool, whoever it is.
ALTER TABLE pool ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE pool ADD COLUMN pid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pool ADD COLUMN pid_start INTEGER;
