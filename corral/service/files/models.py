"""What the file tools return (they double as the tools' output schemas)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class FileEntry(BaseModel):
    path: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    mtime: float
    mode: str | None = Field(default=None, description="Permission bits in octal, e.g. '0644'.")
    owner: str | None = None
    link_target: str | None = None


class FileInfo(BaseModel):
    path: str
    exists: bool
    type: Literal["file", "dir", "symlink", "other"] | None = None
    size: int | None = None
    mode: str | None = Field(default=None, description="Permission bits in octal, e.g. '0644'.")
    owner: str | None = None
    group: str | None = None
    uid: int | None = None
    gid: int | None = None
    mtime: float | None = None
    link_target: str | None = Field(default=None, description="Where a symlink points (size, mode: of its target).")
    mime_type: str | None = None
    sha256: str | None = None


class FileListing(BaseModel):
    path: str
    entries: list[FileEntry]
    truncated: bool = Field(description="True if max_entries cut the listing.")


class FileRead(BaseModel):
    path: str
    size: int = Field(description="Size of the whole file in bytes.")
    encoding: Literal["text", "base64", "image", "binary"] = Field(
        description="text: lines (numbered unless raw); base64: the asked byte range; image: sent as image "
        "content; binary: not shown, only described (mime_type, sha256)."
    )
    content: str = ""
    start_line: int | None = None
    end_line: int | None = None
    total_lines: int | None = None
    truncated: bool = Field(default=False, description="The range asked for (to the end by default) was cut short.")
    byte_offset: int | None = None
    mime_type: str | None = None
    sha256: str | None = None


class FileWritten(BaseModel):
    path: str
    size: int


class FileEdited(BaseModel):
    path: str
    replacements: int = Field(description="How many places were changed.")
    size: int = Field(description="File size in bytes after the edit.")
    first_line: int | None = Field(None, description="Line number where the (first) change starts.")
    snippet: str | None = Field(
        None, description="The changed region with a few lines of context, as 'NUMBER|text' lines."
    )


class PathDeleted(BaseModel):
    path: str
    type: str = Field(description="What was deleted: file, dir, symlink or other (none if it was missing).")
    deleted: bool = True


class PathMoved(BaseModel):
    source: str
    destination: str
    type: str
    replaced: bool = Field(False, description="True if an existing destination was overwritten.")


class DirMade(BaseModel):
    path: str
    created: bool = Field(description="False if the directory already existed.")


class SearchMatch(BaseModel):
    path: str
    line: int
    text: str = Field(description="The matching line (long lines are cut).")


class SearchResult(BaseModel):
    matches: list[SearchMatch]
    files_searched: int
    truncated: bool = Field(description="True if max_results (or the time/size budget) cut the search.")
    skipped_binary: int = Field(0, description="Files skipped because they look binary.")
    skipped_large: int = Field(0, description="Files skipped because they are over 16 MiB.")


class FoundEntry(BaseModel):
    path: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int


class FindResult(BaseModel):
    entries: list[FoundEntry]
    truncated: bool = Field(description="True if max_results (or the time budget) cut the listing.")


class Transfer(BaseModel):
    direction: Literal["upload", "download"]
    host_path: str
    sandbox_path: str
    files: int = Field(description="Files copied.")
    bytes: int = Field(description="Bytes copied.")
    skipped: list[str] = Field(
        default_factory=list, description="Entries not copied (symlinks, special files), with the reason."
    )
