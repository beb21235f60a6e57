"""Tools that run commands and code."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from corral.service import execution
from corral.service.models import CodeResult, ExecResult
from corral.tools._base import SandboxRef, audited, service_of
from corral.tools._content import with_images

Timeout = Annotated[
    float | None,
    Field(description="Seconds before the run is stopped (default 60; the server sets a maximum)."),
]
ContextName = Annotated[str, Field(description="Interpreter context: separate namespaces in one sandbox.")]
LanguageArg = Annotated[Literal["python", "javascript", "bash"], Field(description="Interpreter language.")]


def _progress(ctx: Context) -> execution.OnOutput:
    sent = 0

    async def report(stream: str, text: str) -> None:
        nonlocal sent
        sent += len(text)
        await ctx.report_progress(sent, None, f"[{stream}] {text[-2000:]}")

    return report


@audited
async def run_command(
    ctx: Context,
    sandbox: SandboxRef,
    command: Annotated[str, Field(description="Shell command line, run with bash -c.")],
    cwd: Annotated[str | None, Field(description="Working directory (default /workspace).")] = None,
    env: Annotated[dict[str, str] | None, Field(description="Extra environment variables.")] = None,
    timeout: Timeout = None,
) -> ExecResult:
    """Run a shell command in the sandbox and return exit code, stdout and stderr separately.

    Each call is a fresh shell (use run_code with language='bash' to keep shell state). Output is
    capped at 64 KiB per stream, keeping head and tail. On timeout the command is killed and the
    sandbox stays usable. No network access unless the sandbox was created with it.
    """
    return await execution.run_command(
        service_of(ctx), sandbox, command, cwd=cwd, env=env, timeout=timeout, on_output=_progress(ctx)
    )


@audited
async def run_code(
    ctx: Context,
    sandbox: SandboxRef,
    code: Annotated[str, Field(description="Source code to run.")],
    language: LanguageArg = "python",
    context: ContextName = "default",
    timeout: Timeout = None,
) -> CodeResult:
    """Run code in a persistent interpreter, like a notebook cell.

    Variables, imports and functions persist between calls in the same (language, context).
    The value of a final expression is returned as `value`; matplotlib figures come back as
    PNG images. On timeout the code is interrupted and the context usually keeps its state
    (`state_lost` says if it did not).
    """
    result, images = await execution.run_code(
        service_of(ctx),
        sandbox,
        code,
        language=language,
        context=context,
        timeout=timeout,
        on_output=_progress(ctx),
    )
    if not images:
        return result
    return with_images(result, [(png, "image/png") for png in images])  # type: ignore[return-value]


class ContextInfo(BaseModel):
    language: str
    context: str
    busy: bool = False
    runs: int = 0
    created: float | None = None


class ContextList(BaseModel):
    contexts: list[ContextInfo]


class ContextAction(BaseModel):
    language: str
    context: str
    done: str


@audited
async def list_contexts(ctx: Context, sandbox: SandboxRef) -> ContextList:
    """List the live interpreter contexts of a sandbox (language, name, busy, number of runs)."""
    raw = await execution.list_contexts(service_of(ctx), sandbox)
    return ContextList(contexts=[ContextInfo.model_validate(c) for c in raw])


@audited
async def restart_context(
    ctx: Context, sandbox: SandboxRef, language: LanguageArg = "python", context: ContextName = "default"
) -> ContextAction:
    """Reset an interpreter context: all its variables and imports are discarded."""
    await execution.restart_context(service_of(ctx), sandbox, language, context)
    return ContextAction(language=language, context=context, done="restarted")


@audited
async def interrupt_context(
    ctx: Context, sandbox: SandboxRef, language: LanguageArg = "python", context: ContextName = "default"
) -> ContextAction:
    """Interrupt code running in a context (like Ctrl-C); its state is kept."""
    await execution.interrupt_context(service_of(ctx), sandbox, language, context)
    return ContextAction(language=language, context=context, done="interrupted")


__all__ = ["CallToolResult"]
