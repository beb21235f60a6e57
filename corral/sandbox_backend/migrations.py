"""Named, ordered schema migrations. Append only: never edit one that has shipped."""

from __future__ import annotations

MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_sandboxes",
        """
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
        """,
    ),
    (
        "002_audit",
        """
        CREATE TABLE audit (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            ts          REAL NOT NULL,
            tool        TEXT NOT NULL,
            sandbox     TEXT,
            outcome     TEXT NOT NULL,
            detail      TEXT,
            duration_ms REAL NOT NULL
        );
        CREATE INDEX audit_ts ON audit (ts);
        """,
    ),
    (
        # Background processes (start_process) and exposed ports (expose_port). No foreign keys:
        # rows are removed explicitly when their sandbox is deleted.
        "003_processes",
        """
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
        """,
    ),
    (
        # Which agent daemon (by its start time) each interpreter context last ran in: a context
        # seen before under another daemon lost its state when the sandbox restarted.
        "004_contexts",
        """
        CREATE TABLE contexts (
            sandbox_id    TEXT NOT NULL,
            language      TEXT NOT NULL,
            name          TEXT NOT NULL,
            agent_started REAL NOT NULL,
            PRIMARY KEY (sandbox_id, language, name)
        );
        """,
    ),
]
