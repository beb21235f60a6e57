"""Starting and killing child processes (exec, background processes, drivers, fs-scan)."""

from __future__ import annotations

import os
import signal
import subprocess

from .errors import Failure, os_failure

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any


def default_shell() -> str:
    return "/bin/bash" if os.access("/bin/bash", os.X_OK) else "/bin/sh"


def check_cwd(cwd: str | None) -> None:
    if cwd is None:
        return
    if not os.path.exists(cwd):
        raise Failure("not_found", f"working directory does not exist: {cwd}", field="cwd")
    if not os.path.isdir(cwd):
        raise Failure("not_a_directory", f"working directory is not a directory: {cwd}", field="cwd")


def merged_env(overrides: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    if overrides:
        env.update(overrides)
    return env


def spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(argv, **kwargs)
    except FileNotFoundError:
        raise Failure("not_found", f"executable not found: {argv[0]}", field="argv") from None
    except PermissionError:
        raise Failure("permission", f"cannot execute {argv[0]}: permission denied", field="argv") from None
    except OSError as exc:
        raise os_failure(exc, argv[0]) from None


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass
