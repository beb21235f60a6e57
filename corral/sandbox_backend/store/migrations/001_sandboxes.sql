CREATE TABLE sandboxes (
    id            TEXT PRIMARY KEY,
    name          TEXT UNIQUE,
    container_id  TEXT,
    image         TEXT NOT NULL,
    runtime       TEXT NOT NULL,
    network       TEXT NOT NULL DEFAULT 'none',
    memory_bytes  INTEGER NOT NULL,
    cpus          REAL NOT NULL,
    pids_limit    INTEGER NOT NULL,
    labels        TEXT NOT NULL DEFAULT '{}',
    status        TEXT NOT NULL,
    created_at    REAL NOT NULL,
    last_used_at  REAL NOT NULL
);

