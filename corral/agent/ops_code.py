"""code_run and context_list/interrupt/restart/close: interpreter contexts (contexts.py)."""

from __future__ import annotations

from .capture import DEFAULT_OUTPUT, MAX_OUTPUT
from .contexts import LANGUAGES, Context
from .errors import Failure
from .params import DEFAULT_TIMEOUT, MAX_TIMEOUT, Params
from .rpc import Request, op
from .state import Agent

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any

MAX_CODE = 4 * 1024 * 1024


@op("code_run", "language", "context", "code", "env", "timeout", "max_output", "stream")
def op_code_run(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    language = p.choice("language", LANGUAGES)
    name = p.name("context")
    code = p.string("code", max_len=MAX_CODE, allow_empty=True)
    env = p.environment("env")
    timeout = p.number("timeout", DEFAULT_TIMEOUT, lo=0, hi=MAX_TIMEOUT, lo_exclusive=True)
    max_output = p.integer("max_output", DEFAULT_OUTPUT, lo=0, hi=MAX_OUTPUT)
    stream = p.boolean("stream", True)
    context = agent.contexts.get(language, name, create=True)
    try:
        return context.run(req, code, env, timeout, max_output, stream)
    except Failure:
        if context.runs == 0:
            agent.contexts.remove(context)  # never came up: don't list a dead context
        raise


def existing_context(agent: Agent, p: Params) -> Context:
    return agent.contexts.get(p.choice("language", LANGUAGES), p.name("context"), create=False)


@op("context_list")
def op_context_list(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    return {"contexts": [context.info() for context in agent.contexts.all()]}


@op("context_interrupt", "language", "context")
def op_context_interrupt(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    return {"interrupted": existing_context(agent, p).interrupt()}


@op("context_restart", "language", "context")
def op_context_restart(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    context = existing_context(agent, p)
    context.stop_driver()  # a run in progress ends with ContextRestarted and frees the lock
    if not context.run_lock.acquire(timeout=10.0):
        raise Failure("busy", f"{context.label} did not become idle after being killed")
    try:
        driver = context.start_driver()
        return {"pid": driver.pid}
    finally:
        context.run_lock.release()


@op("context_close", "language", "context")
def op_context_close(agent: Agent, req: Request, p: Params) -> dict[str, Any]:
    context = existing_context(agent, p)
    agent.contexts.remove(context)
    context.stop_driver()
    return {}
