"""signal: send a signal to any process of the sandbox user (not the agent itself)."""

from __future__ import annotations

import os

from .errors import Failure, bad_request
from .params import Params
from .rpc import Request, op
from .state import Agent

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any


@op("signal", "pid", "signal")
def op_signal(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    pid = p.integer("pid", lo=2, hi=(1 << 31) - 1)
    sig = p.signal_number("signal")
    if pid == os.getpid():
        raise bad_request("refusing to signal the agent itself")
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        raise Failure("not_found", f"no process {pid}") from None
    except PermissionError:
        raise Failure("permission", f"not allowed to signal process {pid}") from None
    return {}
