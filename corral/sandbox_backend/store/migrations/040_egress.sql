-- Network policy of sandboxes with network (issue 9): the mode (also shown in sandboxes.network),
-- the allow list the agent asked for, and how many connections the egress proxy allowed and
-- denied. The proxy of any server on this data dir reads a sandbox's row to decide for it.
-- Rows go when their sandbox is deleted.
CREATE TABLE egress (
    sandbox_id  TEXT PRIMARY KEY,
    mode        TEXT NOT NULL,
    allow       TEXT NOT NULL DEFAULT '[]',
    allowed     INTEGER NOT NULL DEFAULT 0,
    denied      INTEGER NOT NULL DEFAULT 0
);
