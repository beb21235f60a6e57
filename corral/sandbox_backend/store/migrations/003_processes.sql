-- Background processes (start_process) and exposed ports (expose_port). No foreign keys:
-- rows are removed explicitly when their sandbox is deleted.
CREATE TABLE processes (
    id          TEXT PRIMARY KEY,
    sandbox_id  TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    pid         INTEGER,
    command     TEXT NOT NULL,
    cwd         TEXT,
    started_at  REAL NOT NULL,
    cursor      INTEGER NOT NULL DEFAULT 0,
    running     INTEGER NOT NULL DEFAULT 1,
    exit_code   INTEGER,
    ended_at    REAL
);
CREATE INDEX processes_sandbox ON processes (sandbox_id, started_at);
CREATE TABLE ports (
    sandbox_id  TEXT NOT NULL,
    port        INTEGER NOT NULL,
    host        TEXT NOT NULL,
    host_port   INTEGER NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (sandbox_id, port)
);

