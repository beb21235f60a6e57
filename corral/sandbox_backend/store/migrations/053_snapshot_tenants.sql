-- Snapshots belong to a tenant (issue 12 met issue 10): names are unique per tenant, so one tenant
-- never learns which names another uses. `volume` holds the copy of the sandbox's /workspace that
-- `docker commit` leaves out (`disk_bytes` its size). The table is rebuilt: its primary key was the name alone.
CREATE TABLE snapshots_053 (
    tenant      TEXT NOT NULL DEFAULT 'local',
    name        TEXT NOT NULL,
    image       TEXT NOT NULL,
    image_id    TEXT NOT NULL,
    sandbox_id  TEXT NOT NULL,
    base_image  TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL,
    volume      TEXT,
    disk_bytes  INTEGER,
    PRIMARY KEY (tenant, name)
);
INSERT INTO snapshots_053 (tenant, name, image, image_id, sandbox_id, base_image, size_bytes, created_at)
    SELECT 'local', name, image, image_id, sandbox_id, base_image, size_bytes, created_at FROM snapshots;
DROP TABLE snapshots;
ALTER TABLE snapshots_053 RENAME TO snapshots;
