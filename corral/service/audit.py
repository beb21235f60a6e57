"""The audit trail: one record per tool call, which must never turn a good call into a failure.

Each record says who (tenant), what (tool and a short summary of the arguments), on which sandbox
(its id, as resolved), how it ended and how long it took. The summary is built from an allowlist of
argument names: file contents, input text, environment values and credentials are never recorded
(only their size or keys), and what is recorded has credentials in URLs, `key=value` secrets and
well-known token formats masked. Records older than `Settings.audit_days` are pruned.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from corral.sandbox_backend.store.audit import AuditTable
from corral.sandbox_backend.store.records import AuditEntry

log = logging.getLogger(__name__)

MAX_DETAIL = 500
MAX_SUMMARY = 500
MAX_VALUE = 200
PRUNE_EVERY = 3600.0

# Recorded as given (first line, masked, shortened); every other argument is left out.
SHOWN = (
    "name", "image", "memory_mb", "cpus", "command", "code", "language", "context", "cwd", "path", "source",
    "destination", "host_path", "repo", "url", "remote", "branch", "start_point", "base", "rev", "paths", "depth",
    "pattern", "glob", "type", "process", "signal", "port", "since", "wait", "timeout", "recursive", "overwrite",
    "append", "encoding", "create", "force", "staged", "replace_all", "start_line", "end_line", "max_count",
    "message", "eof",
)
KEYS_ONLY = ("env", "labels")  # names are useful; values may be secrets
SIZE_ONLY = ("content", "text", "new_text", "old_text")  # file contents and input: only their size

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")
_SECRET_WORD = r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)"
_VALUE = r"(\"[^\"]*\"|'[^']*'|\S+)"
# key=value and key: value (PASSWORD=x, api_key: x, auth=x), and command-line flags (--password x).
_KEY_VALUE = re.compile(rf"(?i)\b([\w.-]*{_SECRET_WORD}[\w.-]*|auth(?:orization)?)(\s*[=:]\s*){_VALUE}")
_FLAG_VALUE = re.compile(rf"(?i)(\s--?[\w-]*{_SECRET_WORD}[\w-]*)(\s+){_VALUE}")
_AUTH_HEADER = re.compile(r"(?i)\b(authorization|proxy-authorization)(\s*:\s*)([^\"'\n]+)")
_KNOWN_TOKENS = re.compile(
    r"\b(crl_|ghp_|gho_|ghu_|ghs_|github_pat_|glpat-|xox[abpr]-|sk-|AKIA)[A-Za-z0-9_\-]{6,}"
)


def redact(text: str) -> str:
    """Mask credentials a command line or URL may carry."""
    text = _URL_USERINFO.sub(r"\1***@", text)
    text = _AUTH_HEADER.sub(r"\1\2***", text)
    text = _KEY_VALUE.sub(r"\1\2***", text)
    text = _FLAG_VALUE.sub(r"\1\2***", text)
    return _KNOWN_TOKENS.sub(r"\1***", text)


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        text = " ".join(str(v) for v in value)
    else:
        text = str(value)
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    if len(lines) > 1:
        first += f" …(+{len(lines) - 1} lines)"
    first = redact(first)
    return first if len(first) <= MAX_VALUE else first[: MAX_VALUE - 1] + "…"


def summarize(arguments: Mapping[str, Any]) -> str | None:
    """A short, secret-free account of what a tool call asked for."""
    parts: list[str] = []
    for key, value in arguments.items():
        if value is None or key == "sandbox":
            continue
        if key in SHOWN:
            parts.append(f"{key}={_shown(value)}")
        elif key in KEYS_ONLY and isinstance(value, Mapping):
            parts.append(f"{key}=[{','.join(sorted(str(k) for k in value))[:MAX_VALUE]}]")
        elif key in SIZE_ONLY and isinstance(value, str):
            parts.append(f"{key}=<{len(value)} chars>")
    text = " ".join(parts)
    return (text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…") or None


@dataclass(frozen=True)
class CallRecord:
    tool: str
    tenant: str | None
    sandbox: str | None
    outcome: str
    detail: str | None
    duration_ms: float
    summary: str | None = None


class Auditor:
    def __init__(self, table: AuditTable, keep_days: float = 30.0) -> None:
        self._table = table
        self._keep = keep_days * 86400
        self._last_prune = 0.0

    async def record(self, call: CallRecord) -> None:
        now = time.time()
        detail = redact(call.detail or "")[:MAX_DETAIL] or None
        entry = AuditEntry(
            now, call.tool, call.sandbox, call.outcome, detail, call.duration_ms, call.tenant, call.summary
        )
        try:
            await self._table.record(entry)
            if now - self._last_prune > PRUNE_EVERY:
                await self.prune(now)
        except Exception:
            log.exception("could not write the audit record for %s", call.tool)

    async def prune(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        self._last_prune = now
        return await self._table.prune(now - self._keep)

    async def entries(
        self,
        *,
        tenant: str | None = None,
        sandbox: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        return await self._table.entries(tenant=tenant, sandbox=sandbox, since=since, limit=limit)
