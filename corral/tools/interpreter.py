"""interpreter: persistent Python, JavaScript and bash contexts, like notebook cells."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from corral.service.models import CodeResult
from corral.tools._base import SandboxRef, ToolSpec, progress, services
from corral.tools._content import with_images
from corral.tools.core import Timeout

ContextName = Annotated[str, Field(description="Interpreter context: separate namespaces in one sandbox.")]
LanguageArg = Annotated[Literal["python", "javascript", "bash"], Field(description="Interpreter language.")]


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
    result, images = await services(ctx).execution.run_code(
        sandbox,
        code,
        language=language,
        context=context,
        timeout=timeout,
        on_output=progress(ctx),
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


async def list_contexts(ctx: Context, sandbox: SandboxRef) -> ContextList:
    """List the live interpreter contexts of a sandbox (language, name, busy, number of runs)."""
    raw = await services(ctx).execution.list_contexts(sandbox)
    return ContextList(contexts=[ContextInfo.model_validate(c) for c in raw])


async def restart_context(
    ctx: Context, sandbox: SandboxRef, language: LanguageArg = "python", context: ContextName = "default"
) -> ContextAction:
    """Reset an interpreter context: all its variables and imports are discarded."""
    await services(ctx).execution.restart_context(sandbox, language, context)
    return ContextAction(language=language, context=context, done="restarted")


async def interrupt_context(
    ctx: Context, sandbox: SandboxRef, language: LanguageArg = "python", context: ContextName = "default"
) -> ContextAction:
    """Interrupt code running in a context (like Ctrl-C); its state is kept."""
    await services(ctx).execution.interrupt_context(sandbox, language, context)
    return ContextAction(language=language, context=context, done="interrupted")


TOOLS: list[ToolSpec] = [
    ToolSpec(run_code, "Run code", destructive=True, executes=True),
    ToolSpec(list_contexts, "List interpreter contexts", read_only=True, idempotent=True),
    ToolSpec(restart_context, "Restart interpreter context", destructive=True, idempotent=True),
    ToolSpec(interrupt_context, "Interrupt interpreter context", idempotent=True),
]
