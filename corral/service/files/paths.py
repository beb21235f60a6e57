"""Sandbox paths: checked, normalised, and kept away from what must not be touched.

Paths are sandbox paths: the sandbox is a gVisor container with nothing from the host mounted, so a
path or a symlink in it cannot reach the host.
"""

from __future__ import annotations

import posixpath

from corral.config import WORKDIR
from corral.errors import InvalidRequest
from corral.service.validation import check_path

# Paths that delete_path/move_path never touch: the root, the home, and the agent's own state.
AGENT_DIR = "/tmp/.corral"
PROTECTED = frozenset({"/", WORKDIR, "/tmp", AGENT_DIR})


def sandbox_path(path: str, what: str = "path") -> str:
    """check_path, then normalise (`a/../b`, `//x`, trailing slashes) to one absolute path."""
    if not isinstance(path, str):
        raise InvalidRequest(f"{what} must be a string path")
    full = check_path(path)
    norm = posixpath.normpath(full)
    return "/" + norm.lstrip("/")


def check_not_protected(path: str, verb: str) -> None:
    if path in PROTECTED or path == AGENT_DIR or path.startswith(AGENT_DIR + "/"):
        raise InvalidRequest(
            f"refusing to {verb} {path}: it is the sandbox root, /workspace itself, /tmp or Corral's agent "
            "state. Name a file or directory inside /workspace instead."
        )
