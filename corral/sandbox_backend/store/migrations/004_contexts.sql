-- Which agent daemon (by its start time) each interpreter context last ran in: a context
-- seen before under another daemon lost its state when the sandbox restarted.
CREATE TABLE contexts (
    sandbox_id    TEXT NOT NULL,
    language      TEXT NOT NULL,
    name          TEXT NOT NULL,
    agent_started REAL NOT NULL,
    PRIMARY KEY (sandbox_id, language, name)
);

