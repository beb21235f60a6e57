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

