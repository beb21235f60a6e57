"""The agent's replies, validated field by field before anything uses them.

The agent runs as the sandbox's user, so sandbox code can kill it and answer in its place: every
reply is hostile input. `check_reply(op, reply)` validates it against the op's model (types are
strict: "12" is not an int, true is not a count), cuts over-long text, and refuses what cannot be
cut (an over-long base64 payload, a negative size). What passes is a plain dict the features read
as before, with every field present and of its declared type.

`fit(model, budget)` keeps a whole tool result under a JSON size, whatever the text holds: a client
reading Streamable HTTP refuses an event over 1 MiB and drops the session, and JSON escaping can
make text six times longer (control characters become \\u00XX), then longer again in the text copy
of the result.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from corral.errors import AgentFailure

MIB = 1024 * 1024
MAX_TEXT = MIB + 4096  # the agent keeps at most 1 MiB of a stream (max_output), plus its marker
MAX_B64 = 8 * MIB * 4 // 3 + 4  # 8 MiB, the largest read the host asks for
RESULT_BUDGET = 256 * 1024  # JSON bytes of one structured tool result (its text copy doubles it)
IMAGE_BUDGET = 384 * 1024  # base64 bytes of the images one result may carry


def cut(text: str, limit: int) -> str:
    """Head and tail of `text` with a marker in between, at most about `limit` characters."""
    if len(text) <= limit:
        return text
    half = max(limit // 2, 1)
    return f"{text[:half]}\n…[{len(text) - 2 * half} characters dropped]…\n{text[-half:]}"


def _capped(limit: int) -> AfterValidator:
    return AfterValidator(lambda text: cut(text, limit))


Text = Annotated[str, _capped(MAX_TEXT)]
Short = Annotated[str, _capped(4096)]
Path = Annotated[str, Field(max_length=16384)]
Count = Annotated[int, Field(ge=0)]
Kind = Literal["file", "dir", "symlink", "other"]


class Reply(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)


class Hello(Reply):
    version: Short
    started: float | None = None
    pid: int | None = None
    uid: int | None = None


class ExecReply(Reply):
    exit_code: int | None
    stdout: Text = ""
    stderr: Text = ""
    stdout_dropped: Count = 0
    stderr_dropped: Count = 0
    timed_out: bool = False
    duration: float | None = None


class CodeErrorReply(Reply):
    ename: Short = "Error"
    evalue: Text = ""
    traceback: Text = ""


class CodeRunReply(Reply):
    stdout: Text = ""
    stderr: Text = ""
    stdout_dropped: Count = 0
    stderr_dropped: Count = 0
    value: Text | None = None
    # Rich outputs (text, html, svg, json, chart, png/jpeg as base64...): shaped and bounded per
    # format by execution.shape_outputs, which reads only the keys it knows.
    outputs: Annotated[list[dict[str, Any]], Field(max_length=64)] = []
    error: CodeErrorReply | None = None
    timed_out: bool = False
    interrupted: bool = False
    restarted: bool = False
    state_lost: bool = False
    duration: float | None = None


class ReadReply(Reply):
    # base64 (`data_b64`), or raw `bytes` from a binary frame (docs/agent-protocol.md).
    data_b64: Annotated[str, Field(max_length=MAX_B64)] | None = None
    bytes_: bytes | None = Field(None, alias="bytes", max_length=8 * MIB)
    binary: bool = False
    size: Count
    truncated: bool = False


class ReadLinesReply(Reply):
    bytes_: bytes = Field(b"", alias="bytes", max_length=8 * MIB)
    binary: bool = False
    size: Count = 0
    first_line: int | None = None
    last_line: int | None = None
    total_lines: Count | None = None
    truncated: bool = False
    line_cut: bool = False


class WriteReply(Reply):
    size: Count


class Entry(Reply):
    path: Path
    type: Kind
    size: Count
    mtime: float
    mode: Annotated[int, Field(ge=0, le=0o7777)] | None = None
    owner: Short | None = None
    link_target: Path | None = None


class ListReply(Reply):
    entries: Annotated[list[Entry], Field(max_length=100_001)]
    truncated: bool = False


class StatReply(Reply):
    exists: bool
    type: Kind | None = None
    size: Count | None = None
    mtime: float | None = None
    mode: Annotated[int, Field(ge=0, le=0o7777)] | None = None
    uid: int | None = None
    gid: int | None = None
    owner: Short | None = None
    group: Short | None = None
    link_target: Path | None = None
    target_type: Kind | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    bytes_: bytes | None = Field(None, alias="bytes", max_length=65536)


class FsTypeReply(Reply):
    type: Kind


class FsMoveReply(FsTypeReply):
    replaced: bool = False


class FsMkdirReply(Reply):
    created: bool


class ContextItem(Reply):
    language: Short
    context: Short
    pid: int | None = None
    created: float | None = None
    last_used: float | None = None
    memory: Count | None = None
    runs: Count = 0
    busy: bool = False
    alive: bool = True


class ContextListReply(Reply):
    contexts: Annotated[list[ContextItem], Field(max_length=1000)]


class ContextRestartReply(Reply):
    pid: int | None = None


class ContextInterruptReply(Reply):
    interrupted: bool


class ProcStartReply(Reply):
    proc_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    pid: int | None = None


class ProcOutputReply(Reply):
    data: Text = ""
    next: Count
    size: Count | None = None
    eof: bool = False
    running: bool = False
    exit_code: int | None = None
    ended: float | None = None


class ProcInputReply(Reply):
    written: Count = 0


class ProcItem(Reply):
    proc_id: Short
    pid: int | None = None
    running: bool = False
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None


class ProcListReply(Reply):
    procs: Annotated[list[ProcItem], Field(max_length=10_000)]


class Anything(Reply):
    """Ops whose result carries nothing the host reads (signal, proc_signal, context_close, ...)."""


class Found(Reply):
    found: bool = False


class PrepareCheckpointReply(Reply):
    killed: Count = 0


class UsageReply(Reply):
    processes: Count = 0
    disk_total: Count | None = None
    disk_used: Count | None = None


REPLIES: dict[str, type[Reply]] = {
    "hello": Hello,
    "exec": ExecReply,
    "code_run": CodeRunReply,
    "read_file": ReadReply,
    "read_lines": ReadLinesReply,
    "write_file": WriteReply,
    "list_files": ListReply,
    "stat": StatReply,
    "fs_delete": FsTypeReply,
    "fs_move": FsMoveReply,
    "fs_mkdir": FsMkdirReply,
    "context_list": ContextListReply,
    "context_restart": ContextRestartReply,
    "context_interrupt": ContextInterruptReply,
    "proc_start": ProcStartReply,
    "proc_output": ProcOutputReply,
    "proc_input": ProcInputReply,
    "proc_list": ProcListReply,
    "cancel": Found,
    "prepare_checkpoint": PrepareCheckpointReply,
    "usage": UsageReply,
}
# fs_find and fs_search are validated by their own result models (service/files/models.py);
# the rest answer with nothing the host reads.
PASSTHROUGH = frozenset({"fs_find", "fs_search"})


def check_reply(op: str, reply: dict[str, Any]) -> dict[str, Any]:
    """`reply` validated against `op`'s model, as a dict; AgentFailure (kind bad_reply) if it is
    not what the protocol promises."""
    if op in PASSTHROUGH:
        return reply
    model = REPLIES.get(op, Anything)
    try:
        return model.model_validate(reply).model_dump(by_alias=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "reply"
        raise AgentFailure(
            f"the sandbox's agent sent a malformed reply to {op} ({where}: {first.get('msg', 'invalid')}); "
            "code in the sandbox may have replaced the agent. The outcome of this call is unknown.",
            kind="bad_reply",
        ) from None


def fit(model: BaseModel, fields: tuple[str, ...], budget: int = RESULT_BUDGET) -> None:
    """Cut the text `fields` of `model` (head and tail kept) until its JSON is within `budget`
    bytes; the budget left after the other fields is shared, short texts keep what they have."""
    for _ in range(8):
        size = len(model.model_dump_json())
        if size <= budget:
            return
        texts = {name: getattr(model, name) for name in fields if isinstance(getattr(model, name, None), str)}
        if not texts:
            return
        sizes = {name: len(json.dumps(text, ensure_ascii=False)) for name, text in texts.items()}
        room = max(budget - (size - sum(sizes.values())), 256 * len(texts))
        share = room // len(texts)
        big = [name for name in texts if sizes[name] > share]
        share += sum(share - sizes[name] for name in texts if name not in big) // max(len(big), 1)
        for name in big:
            keep = int(len(texts[name]) * share / sizes[name] * 0.9)
            setattr(model, name, cut(texts[name], max(keep, 64)))
