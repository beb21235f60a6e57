"""Git constants shared by the feature's modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from corral.config import GIB, MIB

OnProgress = Callable[[float, float | None, str], Awaitable[None]]  # (progress, total, message)
Listener = Callable[[bytes], Coroutine[Any, Any, None]]  # gets stderr as it comes

STAGING = "/tmp/.corral/git"  # in the sandbox: transfers in flight
HELPER_WORK = "/tmp/corral-git"  # in the helper
CHUNK = 4 * MIB  # per agent frame (base64 of it stays well under the 16 MiB frame limit)
MAX_TRANSFER = 1 * GIB
MAX_STATUS_FILES = 1000
DEFAULT_AUTHOR = ("Corral Sandbox", "sandbox@corral.invalid")
DEFAULT_TOKEN_USER = "x-access-token"

# Every git process Corral starts: never prompt, never page, never open an editor.
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": "", "GIT_PAGER": "cat", "GIT_EDITOR": "true"}
# The helper ignores system and user config and speaks only http(s).
HELPER_ENV = {
    **GIT_ENV,
    "HOME": HELPER_WORK,
    "LANG": "C.UTF-8",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ALLOW_PROTOCOL": "http:https",
}
