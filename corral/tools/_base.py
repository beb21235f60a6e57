"""What every tool shares: reaching the service, auditing the call, turning errors into ToolError."""

from __future__ import annotations

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
from corral.service import Services, notes
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
        app = services(ctx)
        sandbox = kwargs.get("sandbox")
        started = time.perf_counter()
        outcome, detail = "ok", None
        try:
            with notes.collecting() as collected:
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
            raise ToolError(
                f"{name} failed unexpectedly ({type(exc).__name__}); the server log has details"
            ) from exc
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            await app.audit.record(name, sandbox if isinstance(sandbox, str) else None, outcome, detail, elapsed)

    return wrapper
