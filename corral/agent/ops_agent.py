"""hello and shutdown: ops about the agent itself."""

from __future__ import annotations

import os
import sys

from .bundle import agent_version
from .params import Params
from .rpc import Request, op
from .state import Agent

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any

PROTOCOL = 1


@op("hello")
def op_hello(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    return {
        "version": agent_version(),
        "protocol": PROTOCOL,
        "pid": os.getpid(),
        "connection": req.conn.label,
        "uid": os.getuid(),
        "python": ".".join(str(part) for part in sys.version_info[:3]),
        "cwd": os.getcwd(),
        "agent_dir": agent.dir,
        "mode": agent.mode,
        "started": agent.started,
    }


@op("shutdown")
def op_shutdown(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    req.after = agent.shutdown
    return {}
