"""What the git tools take and return (they double as the tools' schemas)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from corral.service.git.constants import DEFAULT_TOKEN_USER


class GitCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str | None = Field(
        default=None, description=f"User name; default '{DEFAULT_TOKEN_USER}', which suits an access token."
    )
    password: SecretStr = Field(description="Password or access token.")

    @field_validator("password", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        # A rejected value would be echoed in the validation error: take anything as text instead.
        return value if isinstance(value, str | SecretStr) else str(value)


class GitCloneResult(BaseModel):
    path: str = Field(description="The repository's directory in the sandbox.")
    url: str = Field(description="The remote 'origin' (credentials are never stored in it).")
    branch: str | None = Field(description="Checked-out branch (null for an empty repository).")
    head: str | None = Field(description="Commit id of HEAD.")
    commits: int = Field(description="Commits reachable from HEAD (limited by depth if given).")
    shallow: bool
    via: Literal["helper"] = Field(
        default="helper", description="Fetched by a short-lived networked helper, never by sandbox code."
    )


class GitFileChange(BaseModel):
    path: str
    change: Literal["modified", "added", "deleted", "renamed", "copied", "type-changed", "untracked", "conflicted"]
    staged: bool = Field(description="True: in the index (will be committed); false: only in the working tree.")
    orig_path: str | None = Field(default=None, description="Former path of a renamed or copied file.")


class GitStatus(BaseModel):
    repo: str
    branch: str | None = Field(description="Current branch; null when HEAD is detached.")
    head: str | None = Field(description="Commit id of HEAD; null before the first commit.")
    upstream: str | None = None
    ahead: int = 0
    behind: int = 0
    clean: bool = Field(description="No staged, unstaged, untracked or conflicted files.")
    files: list[GitFileChange]
    truncated: bool = False


class GitDiff(BaseModel):
    repo: str
    diff: str = Field(description="Unified diff; empty if nothing differs.")
    truncated: bool = Field(default=False, description="True if the middle of a long diff was cut.")


class GitCommitInfo(BaseModel):
    sha: str
    author: str
    email: str
    date: str = Field(description="Author date, ISO 8601.")
    subject: str


class GitLog(BaseModel):
    repo: str
    commits: list[GitCommitInfo]


class GitCheckoutResult(BaseModel):
    repo: str
    branch: str
    created: bool
    head: str | None


class GitBranch(BaseModel):
    name: str
    remote: bool = Field(description="A remote-tracking branch, e.g. origin/main.")
    current: bool
    head: str = Field(description="Short commit id.")
    upstream: str | None = None
    subject: str = ""


class GitBranches(BaseModel):
    repo: str
    current: str | None = Field(description="The checked-out branch (null: detached HEAD).")
    branches: list[GitBranch]
    truncated: bool = False
    action: str
    branch: str | None = Field(description="The branch created or deleted.")


class GitCommitResult(BaseModel):
    repo: str
    sha: str
    branch: str | None
    summary: str = Field(description="git's change summary, e.g. '2 files changed, 5 insertions(+)'.")


class GitPushResult(BaseModel):
    repo: str
    remote: str
    url: str
    branch: str
    head: str
    result: Literal["pushed", "created", "forced", "up-to-date"]
    via: Literal["helper"] = "helper"


class GitPullResult(BaseModel):
    repo: str
    remote: str
    branch: str = Field(description="The local branch that was updated.")
    remote_branch: str
    before: str | None
    after: str | None
    result: Literal["up-to-date", "fast-forward", "merged", "conflict"]
    conflicts: list[str] = Field(default_factory=list, description="Files with merge conflicts.")
    message: str | None = None
    via: Literal["helper"] = "helper"
