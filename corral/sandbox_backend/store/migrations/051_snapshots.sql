-- Snapshots (issue 10): a sandbox's file system saved as a local image, to create sandboxes from.
-- Rows are keyed by name; `image` is the image's tag, `sandbox_id` the sandbox it was taken of.
CREATE TABLE snapshots (
    name        TEXT PRIMARY KEY,
    image       TEXT NOT NULL,
    image_id    TEXT NOT NULL,
    sandbox_id  TEXT NOT NULL,
    base_image  TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL
);
