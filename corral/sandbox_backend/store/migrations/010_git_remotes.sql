-- Where git credentials may go, per sandbox repository and remote: the origin (scheme://host:port)
-- a tool call named (git_clone's URL, or git_push/git_pull's `host`). Kept here, never in the
-- sandbox, whose git config is the sandbox's to rewrite. Rows go when their sandbox is deleted.
CREATE TABLE git_remotes (
    sandbox_id  TEXT NOT NULL,
    repo        TEXT NOT NULL,
    remote      TEXT NOT NULL,
    origin      TEXT NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (sandbox_id, repo, remote)
);
