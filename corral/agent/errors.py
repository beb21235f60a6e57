"""Error replies: Failure carries a protocol error type; OS errors map through ONE errno table."""

from __future__ import annotations

import errno

# Protocol error types (docs/agent-protocol.md, "Requests and replies").
KINDS = frozenset(
    {
        "bad_request",
        "not_found",
        "is_a_directory",
        "not_a_directory",
        "permission",
        "exists",
        "too_large",
        "timeout",
        "unknown_context",
        "busy",
        "not_running",
        "cancelled",
        "io_error",
        "internal",
    }
)


class Failure(Exception):
    """An error reply: `kind` is the protocol error type; `field` names the request parameter it
    is about when that tells the host something (e.g. "cwd" vs "argv" for a `not_found`)."""

    def __init__(self, kind: str, message: str, field: str | None = None) -> None:
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message
        self.field = field


def bad_request(message: str) -> Failure:
    return Failure("bad_request", message)


ERRNO_KINDS = {
    errno.ENOENT: "not_found",
    errno.EISDIR: "is_a_directory",
    errno.ENOTDIR: "not_a_directory",
    errno.EACCES: "permission",
    errno.EPERM: "permission",
    errno.EROFS: "permission",
    errno.EEXIST: "exists",
    errno.ENOTEMPTY: "exists",
    errno.ENAMETOOLONG: "bad_request",
}


def errno_kind(code: int | None) -> str:
    """The protocol error type for an errno; anything unlisted is an `io_error`."""
    return ERRNO_KINDS.get(code or 0, "io_error")


def os_failure(exc: OSError, what: object = None) -> Failure:
    subject = what if what is not None else exc.filename
    reason = exc.strerror or str(exc)
    return Failure(errno_kind(exc.errno), f"{subject}: {reason}" if subject is not None else reason)
