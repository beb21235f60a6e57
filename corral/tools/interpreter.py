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
LanguageArg = Literal["python", "javascript", "bash"]


async def run_code(
    ctx: Context,
    sandbox: SandboxRef,
    code: str,
    language: LanguageArg = "python",
    context: ContextName = "default",
    timeout: Timeout = None,
) -> CodeResult:
    """Run code like a notebook cell: variables and imports persist per (language, context); a final
    expression's value is returned, matplotlib figures as images. A timeout interrupts it."""
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
    """List a sandbox's interpreter contexts."""
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


TOOLS: list[ToolSpec] = [
    ToolSpec(run_code, "Run code", destructive=True),
    ToolSpec(list_contexts, "List interpreter contexts", read_only=True, idempotent=True),
    ToolSpec(restart_context, "Restart interpreter context", destructive=True, idempotent=True),
    ToolSpec(interrupt_context, "Interrupt interpreter context", idempotent=True),
]
