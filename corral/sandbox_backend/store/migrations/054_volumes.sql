-- Named volumes (issue 10): data shared between sandboxes and kept past a sandbox's life. Names
-- are unique per tenant; `volume` is the engine's (global) name of it, sized like /workspace.
CREATE TABLE volumes (
    tenant      TEXT NOT NULL DEFAULT 'local',
    name        TEXT NOT NULL,
    volume      TEXT NOT NULL UNIQUE,
    size_bytes  INTEGER,
    created_at  REAL NOT NULL,
    created_by  TEXT,
    PRIMARY KEY (tenant, name)
);
-- Where a sandbox mounts named volumes: {mount path: volume name} (JSON).
ALTER TABLE sandboxes ADD COLUMN mounts TEXT NOT NULL DEFAULT '{}';
