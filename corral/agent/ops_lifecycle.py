"""prepare_checkpoint and usage: ops that serve the sandbox's lifecycle (pause with memory, metrics).

gVisor can checkpoint a sandbox but cannot restore a process that holds a file descriptor from
outside it ("host FD", shown as `host:[N]` in /proc/PID/fd): the stdio of every `docker exec`
(the relays) is one. Closing the host's end does not end a relay (no EOF reaches it inside
gVisor), so the daemon ends them itself. Before it answers it kills every such process but the
relays (one of them carries the answer; SO_PEERCRED cannot tell which under gVisor); after, it
closes every connection, which ends the relays, and kills whatever still holds a host FD. The
container's own stdio, which PID 1 and its children share, is restored by the engine and is left
alone.
"""

from __future__ import annotations

import os
import signal
import time

from .bundle import PACKAGE
from .errors import bad_request
from .params import Params
from .rpc import Request, op
from .state import Agent

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any

WORKSPACE = "/workspace"
RELAYS_EXIT_WAIT = 2.0


def host_fds(pid: int) -> set[str] | None:
    """The host FDs (`host:[N]`) process `pid` holds; None if we may not look (not ours, gone)."""
    directory = f"/proc/{pid}/fd"
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    found = set()
    for name in names:
        try:
            target = os.readlink(f"{directory}/{name}")
        except OSError:
            continue
        if target.startswith("host:["):
            found.add(target)
    return found


def pids() -> list[int]:
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())


def is_relay(pid: int) -> bool:
    """Whether `pid` runs this agent in relay mode (the host's channel to the daemon)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    package = PACKAGE.encode()
    return any(argv[i] == package and argv[i + 1] == b"relay" for i in range(len(argv) - 1))


def end_host_fd_holders(keep: set[int], *, spare_relays: bool = False) -> list[int]:
    """SIGKILL every process (but `keep`, and relays if asked) holding a host FD PID 1 does not
    also hold."""
    shared = host_fds(1) or set()
    killed = []
    for pid in pids():
        if pid in keep or pid == 1 or (spare_relays and is_relay(pid)):
            continue
        held = host_fds(pid)
        if held and held - shared:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
    return killed


@op("prepare_checkpoint")
def op_prepare_checkpoint(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    if agent.mode != "daemon":
        raise bad_request("only the daemon can prepare a checkpoint (this agent serves one stdio stream)")
    killed = end_host_fd_holders({os.getpid()}, spare_relays=True)

    def after_reply() -> None:
        # Every connection closes: each relay (this one's too) sees its socket end and exits; the
        # host takes the checkpoint once its own relay's exec has ended.
        agent.close_connections()
        deadline = time.monotonic() + RELAYS_EXIT_WAIT
        while time.monotonic() < deadline and any(is_relay(pid) for pid in pids()):
            time.sleep(0.02)
        end_host_fd_holders({os.getpid()})

    req.after = after_reply
    return {"killed": len(killed)}


@op("usage")
def op_usage(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    result: dict[str, Any] = {"processes": len(pids()), "disk_total": None, "disk_used": None}
    try:
        st = os.statvfs(WORKSPACE)
    except OSError:
        return result
    result["disk_total"] = st.f_blocks * st.f_frsize
    result["disk_used"] = (st.f_blocks - st.f_bfree) * st.f_frsize
    return result
