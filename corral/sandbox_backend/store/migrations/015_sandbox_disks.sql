-- Each sandbox's disk: its size limit (NULL = none, the operator turned limits off), the volume
-- that holds /workspace, and which server instance created it (a record still `creating` whose
-- creator is gone is a create that crashed half-way, rolled back at the next start).
ALTER TABLE sandboxes ADD COLUMN disk_bytes INTEGER;
ALTER TABLE sandboxes ADD COLUMN volume TEXT;
ALTER TABLE sandboxes ADD COLUMN created_by TEXT;
