"""What every tool shares: reaching the service, auditing the call, turning errors into ToolError."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from corral.errors import CorralError
from corral.service import Services, notes, tenancy
from corral.service.audit import CallRecord, summarize
from corral.service.tenancy import Caller
from corral.tools._notes import annotate

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


# What the server lifespan yields to every tool call: the service API.
AppContext = Services


@dataclass(frozen=True)
class ToolSpec:
    fn: Callable[..., Awaitable[Any]]
    title: str
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    open_world: bool = False  # reaches beyond the sandbox (e.g. a git remote)
    # Other spellings accepted for an argument ({alias: parameter}), e.g. the names other agents'
    # tools taught models. Only the parameter is in the schema; an alias is a known argument.
    aliases: Mapping[str, str] = field(default_factory=dict)
    executes: bool = False  # runs code or a long job: counts toward the tenant's concurrent executions

    @property
    def annotations(self) -> ToolAnnotations:
        # Left out where the MCP default says it (readOnly false, idempotent false; destructive
        # means nothing for a read-only tool); the title is the tool's own. Sandboxes have no
        # network by default: most tools' effects stay inside them.
        return ToolAnnotations(
            read_only_hint=True if self.read_only else None,
            destructive_hint=None if self.read_only else self.destructive,
            idempotent_hint=True if self.idempotent else None,
            open_world_hint=None if self.open_world else False,
        )


# Every tool takes it; what it is is said once, in the server's instructions.
SandboxRef = str


def services(ctx: Context) -> Services:
    app = ctx.request_context.lifespan_context
    assert isinstance(app, Services)
    return app


def progress(ctx: Context) -> Callable[[str, str], Awaitable[None]]:
    """Report a run's output as MCP progress notifications: (stream, new text)."""
    sent = 0

    async def report(stream: str, text: str) -> None:
        nonlocal sent
        sent += len(text)
        await ctx.report_progress(sent, None, f"[{stream}] {text[-2000:]}")

    return report


def caller_of(ctx: Context, app: Services) -> Caller:
    """The tenant a call acts for. stdio and in-process clients are the local tenant; an HTTP
    request carries the identity the server's authentication established (corral/server/auth.py)
    and nothing else: a request without one is refused rather than given a default."""
    request = ctx.request_context.request
    if request is None:
        return app.tenants.caller(tenancy.LOCAL)
    scope = getattr(request, "scope", None)
    user = scope.get("user") if isinstance(scope, dict) else None
    who = getattr(getattr(user, "access_token", None), "caller", None)
    if isinstance(who, Caller):
        return who
    raise ToolError("this request carries no authenticated tenant; send Authorization: Bearer <token>")


def audited(fn: Callable[P, Awaitable[R]], *, executes: bool = False) -> Callable[P, Awaitable[R]]:
    """Act for the caller's tenant, record the call in the audit log, and give the model a
    ToolError it can act on. `executes`: the call counts toward the tenant's concurrent executions.

    Corral's own errors carry messages written for the model; anything else is a bug, logged with
    its traceback and reported without internals.
    """
    name = fn.__name__
    ctx_param = next(p for p, a in inspect.signature(fn).parameters.items() if a.annotation in (Context, "Context"))

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx: Context = kwargs[ctx_param]  # type: ignore[assignment]
        app = services(ctx)
        who = caller_of(ctx, app)
        note = tenancy.CallNote()
        started = time.perf_counter()
        outcome, detail = "ok", None
        try:
            with tenancy.acting_as(who), tenancy.noting(note), notes.collecting() as collected:
                with app.tenants.slots.hold(who) if executes else contextlib.nullcontext():
                    result = await fn(*args, **kwargs)
            return annotate(result, collected)  # type: ignore[no-any-return]
        except CorralError as exc:
            outcome, detail = "error", f"{type(exc).__name__}: {exc}"
            raise ToolError(str(exc)) from exc
        except ToolError as exc:
            outcome, detail = "error", str(exc)
            raise
        except Exception as exc:
            outcome, detail = "crash", f"{type(exc).__name__}: {exc}"
            log.exception("tool %s failed unexpectedly", name)
            raise ToolError(f"{name} failed unexpectedly ({type(exc).__name__}); the server log has details") from exc
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            arguments = {k: v for k, v in kwargs.items() if k != ctx_param}
            await app.audit.record(
                CallRecord(name, who.tenant, note.sandbox_id, outcome, detail, elapsed, summarize(arguments))
            )

    return wrapper
