"""Running commands and code in a sandbox through its agent."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from corral.config import WORKDIR, ExecPolicy
from corral.errors import InvalidRequest
from corral.sandbox_backend.store.contexts import ContextTable
from corral.service.access import SandboxAccess
from corral.service.models import CodeError, CodeResult, ExecResult
from corral.service.replies import IMAGE_BUDGET, RESULT_BUDGET, cut, fit
from corral.service.validation import check_env, check_path, check_size, check_timeout

Language = Literal["python", "javascript", "typescript", "bash"]
LANGUAGES: tuple[str, ...] = ("python", "javascript", "typescript", "bash")
OnOutput = Callable[[str, str], Awaitable[None]]  # (stream name, new text)

# Headroom over the in-sandbox timeout before the host gives up on the agent itself.
HOST_GRACE = 15.0


def _events(on_output: OnOutput | None) -> Callable[[dict[str, Any]], Awaitable[None]] | None:
    if on_output is None:
        return None

    async def handle(event: dict[str, Any]) -> None:
        if event.get("event") == "output" and isinstance(event.get("data"), str):
            await on_output(str(event.get("stream", "stdout")), event["data"])

    return handle


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise InvalidRequest(f"unsupported language {language!r}; use one of: {', '.join(LANGUAGES)}")
    return language


def check_context(context: str) -> str:
    if not context or len(context) > 64 or not all(c.isalnum() or c in "_-." for c in context):
        raise InvalidRequest(
            f"invalid context name {context!r}: use 1-64 letters, digits, '_', '-', '.' (default 'default')"
        )
    return context


def _cap(text: Any, limit: int) -> str | None:
    """Head + tail of an over-long string with a marker, so no reply is ever unbounded."""
    return None if text is None else cut(str(text), limit)


IMAGE_FORMATS = {"png": ("image/png", b"\x89PNG\r\n\x1a\n"), "jpeg": ("image/jpeg", b"\xff\xd8\xff")}
TEXT_FORMATS = ("text", "html", "markdown", "svg", "latex")
MAX_RESULTS = 16
MAX_IMAGES = 16


def _shallow(value: Any, limit: int = 32) -> bool:
    """Whether JSON from the sandbox nests at most `limit` deep (deeper breaks serializers)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def _decode_image(item: Any, kind: str, limit: int) -> bytes | None:
    if not isinstance(item, str) or len(item) > limit * 4 // 3 + 4:
        return None
    try:
        data = base64.b64decode(item, validate=True)
    except ValueError:
        return None
    return data if data.startswith(IMAGE_FORMATS[kind][1]) else None


Results = list[dict[str, Any]]
Images = list[tuple[bytes, str]]  # (data, mime type)


def shape_outputs(raw: Any, text_limit: int, image_limit: int) -> tuple[Results, Images, int]:
    """The agent's rich outputs as (results, images, how many were left out).

    Images become image content (a result names its image by index); the main result's plain
    text is `value`, so a main result with nothing else is not repeated. All the results' text
    together stays within 4 x text_limit.
    """
    results: list[dict[str, Any]] = []
    images: list[tuple[bytes, str]] = []
    budget = min(4 * text_limit, RESULT_BUDGET // 2)
    image_budget = IMAGE_BUDGET * 3 // 4  # decoded bytes: base64 of them stays within IMAGE_BUDGET
    left_out = 0
    for output in raw if isinstance(raw, list) else []:
        if not isinstance(output, dict):
            continue
        result: dict[str, Any] = {"main": True} if output.get("main") is True else {}
        for key in TEXT_FORMATS:
            if isinstance(output.get(key), str) and not (key == "text" and result):
                result[key] = _cap(output[key], text_limit)
        for key in ("json", "chart"):
            if output.get(key) is not None and _shallow(output[key]):
                result[key] = output[key]
        for kind, (mime, _magic) in IMAGE_FORMATS.items():
            data = _decode_image(output.get(kind), kind, image_limit)
            if data is not None and len(images) < MAX_IMAGES and len(data) <= image_budget:
                image_budget -= len(data)
                result["image"] = len(images)
                images.append((data, mime))
                break
        if set(result) <= {"main"}:
            continue
        size = len(json.dumps(result, default=str))
        if size > budget and "image" in result:  # keep the image, say what was left out
            kept: dict[str, Any] = {key: result[key] for key in ("main", "image") if key in result}
            kept["omitted"] = sorted(set(result) - set(kept))
            result, size = kept, len(json.dumps(kept))
        if len(results) >= MAX_RESULTS or size > budget:
            left_out += 1
            if "image" in result:
                image_budget += len(images.pop()[0])
            continue
        budget -= size
        results.append(result)
    return results, images, left_out


def _error_size(result: CodeResult) -> int:
    return len(result.error.model_dump_json()) if result.error else 0


def _results_size(result: CodeResult) -> int:
    return len(json.dumps(result.results, default=str)) if result.results else 0


class Execution:
    """Commands and interpreter code, through the sandbox's agent."""

    def __init__(self, sandboxes: SandboxAccess, contexts: ContextTable, policy: ExecPolicy) -> None:
        self._sandboxes = sandboxes
        self._contexts = contexts
        self._policy = policy

    async def forget_sandbox(self, sandbox_id: str) -> None:
        await self._contexts.forget(sandbox_id)

    async def copy_sandbox(self, source_id: str, fork_id: str) -> None:
        """A fork carries its source's interpreter contexts (when it got its memory)."""
        await self._contexts.copy(source_id, fork_id)

    async def run_command(
        self,
        ref: str,
        command: str,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        on_output: OnOutput | None = None,
    ) -> ExecResult:
        policy = self._policy
        if not command.strip():
            raise InvalidRequest("command is empty; give a shell command such as 'ls -la'")
        check_size("command", len(command.encode()), policy.max_code_bytes)
        limit = check_timeout(timeout, policy.default_timeout, policy.max_timeout)
        params = {
            "shell": command,
            "cwd": check_path(cwd or WORKDIR),
            "env": check_env(env),
            "timeout": limit,
            "max_output": policy.output_limit,
        }
        started = time.perf_counter()
        events = _events(on_output)
        res = await self._sandboxes.request(ref, "exec", params, timeout=limit + HOST_GRACE, on_event=events)
        cap = policy.output_limit + 200  # head + tail + the agent's marker
        result = ExecResult(
            exit_code=res["exit_code"],
            stdout=cut(res["stdout"], cap),
            stderr=cut(res["stderr"], cap),
            stdout_dropped_bytes=res["stdout_dropped"],
            stderr_dropped_bytes=res["stderr_dropped"],
            timed_out=res["timed_out"],
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        fit(result, ("stdout", "stderr"))
        return result

    async def run_code(
        self,
        ref: str,
        code: str,
        *,
        language: str = "python",
        context: str = "default",
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        on_output: OnOutput | None = None,
    ) -> tuple[CodeResult, list[tuple[bytes, str]]]:
        policy = self._policy
        check_language(language)
        check_context(context)
        check_size("code", len(code.encode()), policy.max_code_bytes)
        limit = check_timeout(timeout, policy.default_timeout, policy.max_timeout)
        params = {
            "language": language,
            "context": context,
            "code": code,
            "env": check_env(env),
            "timeout": limit,
            "max_output": policy.output_limit,
        }
        started = time.perf_counter()
        res = await self._sandboxes.request(
            ref, "code_run", params, timeout=limit + HOST_GRACE, on_event=_events(on_output)
        )
        results, images, left_out = shape_outputs(res.get("outputs"), policy.output_limit, policy.max_file_bytes)
        notice = await self._context_continuity(ref, language, context)
        if left_out:
            dropped = f"{left_out} rich output(s) were left out to keep the result small."
            notice = f"{notice} {dropped}" if notice else dropped
        error = res["error"]
        cap = policy.output_limit + 200
        result = CodeResult(
            stdout=cut(res["stdout"], cap),
            stderr=cut(res["stderr"], cap),
            stdout_dropped_bytes=res["stdout_dropped"],
            stderr_dropped_bytes=res["stderr_dropped"],
            value=_cap(res["value"], policy.output_limit),
            error=CodeError(
                ename=cut(error["ename"], 200),
                evalue=cut(error["evalue"], policy.output_limit // 4),
                traceback=cut(error["traceback"], policy.output_limit),
            )
            if error is not None
            else None,
            results=results,
            images=len(images),
            timed_out=res["timed_out"],
            interrupted=res["interrupted"],
            state_lost=res["state_lost"] or notice is not None,
            notice=notice,
            language=language,
            context=context,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        if result.error is not None:
            fit(result.error, ("evalue", "traceback"), budget=RESULT_BUDGET // 3)
        fit(result, ("stdout", "stderr", "value"), budget=RESULT_BUDGET - _error_size(result) - _results_size(result))
        return result, images

    async def _context_continuity(self, ref: str, language: str, context: str) -> str | None:
        """Say plainly when a context's earlier state is gone because its sandbox restarted."""
        rec = await self._sandboxes.resolve(ref)
        started = self._sandboxes.agent_started(rec.id)
        if started is None:
            return None
        before = await self._contexts.swap_agent(rec.id, language, context, started)
        if before is None or before == started:
            return None
        return (
            f"The sandbox restarted since context {context!r} ({language}) last ran: its variables, imports "
            "and definitions from earlier calls are gone. Files in the sandbox are kept."
        )

    async def list_contexts(self, ref: str) -> list[dict[str, Any]]:
        res = await self._sandboxes.request(ref, "context_list", {}, timeout=30)
        contexts = res.get("contexts", [])
        now = time.time()
        listed = []
        for c in contexts if isinstance(contexts, list) else []:
            if not isinstance(c, dict):
                continue
            created, last_used, memory = c.get("created"), c.get("last_used"), c.get("memory")
            listed.append({
                "language": c.get("language"),
                "context": c.get("context"),
                "busy": bool(c.get("busy")),
                "runs": c.get("runs", 0),
                "age_s": round(max(0.0, now - created), 1) if isinstance(created, int | float) else None,
                "idle_s": round(max(0.0, now - last_used), 1) if isinstance(last_used, int | float) else None,
                "memory_mb": round(memory / 2**20, 1) if isinstance(memory, int | float) else None,
            })
        return listed

    async def restart_context(self, ref: str, language: str, context: str) -> None:
        params = {"language": check_language(language), "context": check_context(context)}
        await self._sandboxes.request(ref, "context_restart", params, timeout=30)

    async def interrupt_context(self, ref: str, language: str, context: str) -> None:
        params = {"language": check_language(language), "context": check_context(context)}
        await self._sandboxes.request(ref, "context_interrupt", params, timeout=30)

    async def delete_context(self, ref: str, language: str, context: str) -> None:
        params = {"language": check_language(language), "context": check_context(context)}
        await self._sandboxes.request(ref, "context_close", params, timeout=30)
        rec = await self._sandboxes.resolve(ref)
        await self._contexts.forget(rec.id, language, context)
