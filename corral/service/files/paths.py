"""Sandbox paths: checked, normalised, and kept away from what must not be touched.

Paths are sandbox paths: the sandbox is a gVisor container with nothing from the host mounted, so a
path or a symlink in it cannot reach the host.
"""

from __future__ import annotations

import posixpath

from corral.config import WORKDIR
from corral.errors import InvalidRequest
from corral.service.validation import check_path

# Paths that delete_path/move_path never touch: the root, the home, and the agent's own state
# (its runtime dir, its data dir with the background process spools, its installed code).
AGENT_DIR = "/tmp/.corral"
AGENT_DATA_DIR = f"{WORKDIR}/.corral"
AGENT_CODE_DIR = "/opt/corral"
AGENT_STATE = (AGENT_DIR, AGENT_DATA_DIR, AGENT_CODE_DIR)
PROTECTED = frozenset({"/", WORKDIR, "/tmp", *AGENT_STATE})


def sandbox_path(path: str, what: str = "path") -> str:
    """check_path, then normalise (`a/../b`, `//x`, trailing slashes) to one absolute path."""
    if not isinstance(path, str):
        raise InvalidRequest(f"{what} must be a string path")
    full = check_path(path)
    norm = posixpath.normpath(full)
    return "/" + norm.lstrip("/")


def is_agent_state(path: str) -> bool:
    return any(path == d or path.startswith(d + "/") for d in AGENT_STATE)


def check_not_agent_state(path: str, verb: str) -> None:
    if is_agent_state(path):
        raise InvalidRequest(
            f"refusing to {verb} {path}: it holds Corral's agent state ({', '.join(AGENT_STATE)}). "
            "Use another path inside /workspace."
        )


def check_not_protected(path: str, verb: str) -> None:
    if path in PROTECTED or is_agent_state(path):
        raise InvalidRequest(
            f"refusing to {verb} {path}: it is the sandbox root, /workspace itself, /tmp or Corral's agent "
            "state. Name a file or directory inside /workspace instead."
        )
