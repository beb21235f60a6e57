-- Lifecycle (issue 10): environment, lifetimes, memory checkpoints, forks, the warm pool.
-- env: variables every command, interpreter and process in the sandbox sees (JSON object).
ALTER TABLE sandboxes ADD COLUMN env TEXT NOT NULL DEFAULT '{}';
-- Lifetimes, in seconds / epoch seconds; NULL = never. expires_at = created_at + delete_after.
ALTER TABLE sandboxes ADD COLUMN idle_stop_after REAL;
ALTER TABLE sandboxes ADD COLUMN delete_after REAL;
ALTER TABLE sandboxes ADD COLUMN expires_at REAL;
-- Deleted when the client connection `session` (server instance + connection) ends.
ALTER TABLE sandboxes ADD COLUMN ephemeral INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sandboxes ADD COLUMN session TEXT;
-- The memory checkpoint the next start restores (NULL: none, a start boots afresh).
ALTER TABLE sandboxes ADD COLUMN checkpoint TEXT;
ALTER TABLE sandboxes ADD COLUMN stopped_at REAL;
ALTER TABLE sandboxes ADD COLUMN forked_from TEXT;

-- Started, agent-ready sandboxes of one spec, waiting to be handed out by create_sandbox. A row
-- is claimed by deleting it (one statement), so no member is ever handed to two callers, also
-- when several servers share this data dir. `sandbox_id` is the id it gets once handed over.
CREATE TABLE pool (
    sandbox_id    TEXT PRIMARY KEY,
    container_id  TEXT,
    spec          TEXT NOT NULL,
    instance_id   TEXT NOT NULL,
    ready         INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL
);
