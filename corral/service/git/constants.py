"""Git constants shared by the feature's modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from corral.config import GIB, MIB

OnProgress = Callable[[float, float | None, str], Awaitable[None]]  # (progress, total, message)
Listener = Callable[[bytes], Coroutine[Any, Any, None]]  # gets stderr as it comes

STAGING = "/tmp/.corral/git"  # in the sandbox: transfers in flight
HELPER_WORK = "/tmp/corral-git"  # in the helper
HELPER_REPO = "repo.git"  # the helper's bare repository, under HELPER_WORK
HELPER_BUNDLE = f"{HELPER_WORK}/in/sandbox.bundle"  # what the sandbox sent, written by the host
CHUNK = 4 * MIB  # per agent frame (base64 of it stays well under the 16 MiB frame limit)
MAX_TRANSFER = 1 * GIB
MAX_STATUS_FILES = 1000
MAX_SHALLOW = 100_000  # commit ids in a shallow list
DEFAULT_AUTHOR = ("Corral Sandbox", "sandbox@corral.invalid")
DEFAULT_TOKEN_USER = "x-access-token"

# Programs Corral runs in a sandbox or helper, by absolute path, with a PATH of root-owned
# directories: /workspace/.local/bin (first on the image's PATH) belongs to sandbox code.
GIT = "/usr/bin/git"
SH = "/bin/sh"
TAR = "/bin/tar"
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

# Every git process Corral starts: never prompt, never page, never open an editor.
GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "",
    "SSH_ASKPASS": "",
    "GIT_PAGER": "cat",
    "GIT_EDITOR": "true",
    "PATH": SAFE_PATH,
}
# The helper ignores system and user config and speaks only http(s).
HELPER_ENV = {
    **GIT_ENV,
    "HOME": HELPER_WORK,
    "LANG": "C.UTF-8",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ALLOW_PROTOCOL": "http:https",
}
# Command-line config of every git in the helper (it outranks any repository config): no hooks, no
# credential helpers, no proxy (network steps then name the egress proxy, helper.py), no redirects
# (credentials stay with the host a call named), only the protocols the step needs.
HELPER_CONFIG = (
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("credential.helper", ""),
    ("http.followRedirects", "false"),
    ("http.proxy", ""),
    ("submodule.recurse", "false"),
    ("protocol.allow", "never"),
)
NETWORK_PROTOCOLS = (("protocol.http.allow", "always"), ("protocol.https.allow", "always"))
BUNDLE_PROTOCOLS = (("protocol.file.allow", "always"),)  # reading the bundle the host wrote
