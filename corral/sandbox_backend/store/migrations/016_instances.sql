-- The servers running on this data dir (several may: every Claude Code window starts one).
-- A server is live while its process runs (same host: pid and its start time) or, seen from
-- another host, while its heartbeat is fresh. Nothing a live server uses is ever reaped.
CREATE TABLE instances (
    id            TEXT PRIMARY KEY,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    pid_start     INTEGER,
    started_at    REAL NOT NULL,
    heartbeat_at  REAL NOT NULL
);
