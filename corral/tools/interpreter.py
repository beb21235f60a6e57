"""interpreter: persistent Python, JavaScript and bash contexts, like notebook cells."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from corral.service.models import CodeResult
from corral.tools._base import SandboxRef, ToolSpec, progress, services
from corral.tools._content import with_images
from corral.tools.core import Timeout

ContextName = Annotated[str, Field(description="Separate namespaces in one sandbox.")]
LanguageArg = Literal["python", "javascript", "typescript", "bash"]


async def run_code(
    ctx: Context,
    sandbox: SandboxRef,
    code: str,
    language: LanguageArg = "python",
    context: ContextName = "default",
    env: Annotated[dict[str, str] | None, Field(description="Environment variables for this run only.")] = None,
    timeout: Timeout = None,
) -> CodeResult:
    """Run code like a notebook cell; state persists per (language, context). Returns the final
    value, output and rich `results` (HTML, figures with chart data). Python takes `!cmd`, `%pip`,
    `%cd`, `%env`, `%time`; JS/TS take ES imports."""
    result, images = await services(ctx).execution.run_code(
        sandbox,
        code,
        language=language,
        context=context,
        env=env,
        timeout=timeout,
        on_output=progress(ctx),
    )
    if not images:
        return result
    return with_images(result, images)  # type: ignore[return-value]


class ContextInfo(BaseModel):
    language: str
    context: str
    busy: bool = False
    runs: int = 0
    age_s: float | None = None
    idle_s: float | None = Field(None, description="Seconds since its last run.")
    memory_mb: float | None = Field(None, description="Resident memory of its interpreter.")


class ContextList(BaseModel):
    contexts: list[ContextInfo]


class ContextAction(BaseModel):
    language: str
    context: str
    done: str


async def list_contexts(ctx: Context, sandbox: SandboxRef) -> ContextList:
    """List a sandbox's interpreter contexts (language, age, last use, memory)."""
    raw = await services(ctx).execution.list_contexts(sandbox)
    return ContextList(contexts=[ContextInfo.model_validate(c) for c in raw])


async def restart_context(
    ctx: Context, sandbox: SandboxRef, language: LanguageArg = "python", context: ContextName = "default"
) -> ContextAction:
    """Reset an interpreter context, discarding its variables and imports."""
    await services(ctx).execution.restart_context(sandbox, language, context)
    return ContextAction(language=language, context=context, done="restarted")


async def interrupt_context(
    ctx: Context, sandbox: SandboxRef, language: LanguageArg = "python", context: ContextName = "default"
) -> ContextAction:
    """Interrupt a context's running code (Ctrl-C); its state is kept."""
    await services(ctx).execution.interrupt_context(sandbox, language, context)
    return ContextAction(language=language, context=context, done="interrupted")


async def delete_context(
    ctx: Context, sandbox: SandboxRef, language: LanguageArg = "python", context: ContextName = "default"
) -> ContextAction:
    """Delete an interpreter context: stop its interpreter and free its memory."""
    await services(ctx).execution.delete_context(sandbox, language, context)
    return ContextAction(language=language, context=context, done="deleted")


TOOLS: list[ToolSpec] = [
    ToolSpec(run_code, "Run code", destructive=True, executes=True),
    ToolSpec(list_contexts, "List interpreter contexts", read_only=True, idempotent=True),
    ToolSpec(restart_context, "Restart interpreter context", destructive=True, idempotent=True),
    ToolSpec(interrupt_context, "Interrupt interpreter context", idempotent=True),
    ToolSpec(delete_context, "Delete interpreter context", destructive=True),
]
