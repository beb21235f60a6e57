"""What every tool shares: reaching the service, auditing the call, turning errors into ToolError."""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, ParamSpec, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from corral.config import Settings
from corral.errors import CorralError
from corral.service import SandboxService

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class AppContext:
    """What the server lifespan yields to every tool call."""

    service: SandboxService
    settings: Settings


SandboxRef = Annotated[
    str, Field(description="Sandbox id (sb-xxxxxxxx) or name, as returned by create_sandbox.")
]


def service_of(ctx: Context) -> SandboxService:
    app = ctx.request_context.lifespan_context
    assert isinstance(app, AppContext)
    return app.service


def audited(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Record every call in the audit log and give the model a ToolError it can act on.

    Corral's own errors carry messages written for the model; anything else is a bug, logged with
    its traceback and reported without internals.
    """
    name = fn.__name__
    ctx_param = next(
        p for p, a in inspect.signature(fn).parameters.items() if a.annotation in (Context, "Context")
    )

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx: Context = kwargs[ctx_param]  # type: ignore[assignment]
        service = service_of(ctx)
        sandbox = kwargs.get("sandbox")
        started = time.perf_counter()
        outcome, detail = "ok", None
        try:
            return await fn(*args, **kwargs)
        except CorralError as exc:
            outcome, detail = "error", f"{type(exc).__name__}: {exc}"
            raise ToolError(str(exc)) from exc
        except ToolError as exc:
            outcome, detail = "error", str(exc)
            raise
        except Exception as exc:
            outcome, detail = "crash", f"{type(exc).__name__}: {exc}"
            log.exception("tool %s failed unexpectedly", name)
            raise ToolError(
                f"{name} failed unexpectedly ({type(exc).__name__}); the server log has details"
            ) from exc
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            await service.audit(name, sandbox if isinstance(sandbox, str) else None, outcome, detail, elapsed)

    return wrapper
