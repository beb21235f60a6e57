-- Tenants (issue 12): every sandbox belongs to a tenant, and sandbox names are unique per tenant
-- (a global UNIQUE would tell one tenant which names another uses). SQLite cannot drop the UNIQUE
-- of `name` without rebuilding the table, and a rebuild would have to name every column, those of
-- other migrations included; so the old column is renamed and emptied (its UNIQUE then holds only
-- NULLs, which never collide) and `name` is a new column, unique per (tenant, name).
ALTER TABLE sandboxes ADD COLUMN tenant TEXT NOT NULL DEFAULT 'local';
ALTER TABLE sandboxes RENAME COLUMN name TO name_unscoped_030;
ALTER TABLE sandboxes ADD COLUMN name TEXT;
UPDATE sandboxes SET name = name_unscoped_030, name_unscoped_030 = NULL;
CREATE UNIQUE INDEX sandboxes_tenant_name ON sandboxes (tenant, name);
CREATE INDEX sandboxes_tenant ON sandboxes (tenant, created_at);

-- Who made each call and a short, secret-free summary of what was asked.
ALTER TABLE audit ADD COLUMN tenant TEXT;
ALTER TABLE audit ADD COLUMN summary TEXT;
CREATE INDEX audit_tenant ON audit (tenant, ts);
CREATE INDEX audit_sandbox ON audit (sandbox, ts);

-- Bearer tokens of HTTP tenants: only a SHA-256 of each token is kept (tokens are 256 random
-- bits, so a fast hash is enough); NULL quotas fall back to CORRAL_TENANT_QUOTA.
CREATE TABLE tokens (
    name            TEXT PRIMARY KEY,
    hash            TEXT NOT NULL UNIQUE,
    created_at      REAL NOT NULL,
    last_used_at    REAL,
    max_sandboxes   INTEGER,
    max_memory_mb   INTEGER,
    max_disk_mb     INTEGER,
    max_executions  INTEGER
);
