-- Short-lived helper containers (e.g. the git helper, which has network): recorded while they
-- exist, so a server that died mid-operation leaves nothing running that a restart cannot find.
CREATE TABLE helpers (
    container_id  TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    sandbox_id    TEXT,
    instance_id   TEXT NOT NULL,
    volume        TEXT,
    created_at    REAL NOT NULL
);
