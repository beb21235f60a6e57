"""Host side of the agent protocol (docs/agent-protocol.md): requests over one byte stream.

Usage, with a task group the caller owns (the reader runs in it until the channel closes)::

    channel = AgentChannel(stream)
    await channel.start(task_group)
    info = await channel.request("hello")
    ...
    await channel.aclose()

or as an async context manager, which runs the reader in its own task group::

    async with AgentChannel(stream) as channel:
        await channel.request("exec", {"shell": "ls", "timeout": 10}, on_event=print_progress)

Everything the agent sends is untrusted: frames are size-capped and validated; anything malformed
fails the whole channel with AgentProtocolError (every pending request gets it) and closes it.
Bytes travel raw in binary frames: a `bytes` value in a request's params is sent that way, and a
binary reply's raw bytes arrive as the result's `bytes` field.
Cancelling a task awaiting `request` tells the agent to cancel that request.
"""

from __future__ import annotations

import inspect
import json
import logging
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import anyio
from anyio.abc import ByteStream, TaskGroup

__all__ = [
    "MAX_FRAME",
    "AgentChannel",
    "AgentChannelError",
    "AgentError",
    "AgentProtocolError",
    "ChannelClosed",
    "EventHandler",
    "RequestTimeout",
]

log = logging.getLogger(__name__)

MAX_FRAME = 16 * 1024 * 1024
BINARY = 0x80000000  # flag in the length of a binary frame (docs/agent-protocol.md, "Framing")
BYTES_FIELD = "bytes"
MAX_ERROR_MESSAGE = 64 * 1024
MAX_QUEUED_EVENTS = 1024  # per request; beyond this, progress events are dropped
SEND_TIMEOUT = 60.0  # a frame the agent does not take within this means the stream is dead
CANCEL_SEND_TIMEOUT = 5.0
_HEADER = struct.Struct(">I")

EventHandler = Callable[[dict[str, Any]], Awaitable[None] | None]


class AgentChannelError(Exception):
    """Root of every error this module raises."""


class AgentError(AgentChannelError):
    """The agent answered the request with an error (`type` is the protocol's error type)."""

    def __init__(self, type: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{type}: {message}")
        self.type = type
        self.message = message
        self.field = field  # the request parameter the error is about, when the agent says


class AgentProtocolError(AgentChannelError):
    """The agent sent something that is not valid protocol; the channel is closed."""


class ChannelClosed(AgentChannelError):
    """The channel is closed (by us, by the agent, or after a protocol error)."""


class RequestTimeout(AgentChannelError, TimeoutError):
    """No reply within the `timeout` given to `request`; the agent was asked to cancel it."""


@dataclass
class _Pending:
    """Frames routed to one waiting request. The reader never blocks on a slow consumer."""

    events: list[dict[str, Any]] = field(default_factory=list)
    outcome: dict[str, Any] | AgentChannelError | None = None
    dropped_events: int = 0
    wakeup: anyio.Event = field(default_factory=anyio.Event)

    def notify(self) -> None:
        self.wakeup.set()

    async def wait(self) -> None:
        await self.wakeup.wait()
        self.wakeup = anyio.Event()


class AgentChannel:
    def __init__(self, stream: ByteStream, *, max_frame: int = MAX_FRAME) -> None:
        self._stream = stream
        self._max_frame = max_frame
        self._buffer = bytearray()
        self._pending: dict[int, _Pending] = {}
        self._next_id = 1
        self._send_lock = anyio.Lock()
        self._failure: AgentChannelError | None = None
        self._closed_event = anyio.Event()
        self._reader_scope: anyio.CancelScope | None = None
        self._own_task_group: TaskGroup | None = None

    # ---------------------------------------------------------------------------- lifecycle

    async def start(self, task_group: TaskGroup) -> None:
        """Start the background reader in `task_group`; it ends when the channel closes."""
        if self._reader_scope is not None:
            raise RuntimeError("channel already started")
        self._reader_scope = anyio.CancelScope()
        task_group.start_soon(self._read_loop, self._reader_scope, name="agent-channel-reader")

    async def __aenter__(self) -> Self:
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._own_task_group = task_group
        await self.start(task_group)
        return self

    async def __aexit__(self, *exc_info: object) -> Literal[False]:
        await self.aclose()
        task_group, self._own_task_group = self._own_task_group, None
        if task_group is not None:
            await task_group.__aexit__(None, None, None)
        return False

    @property
    def closed(self) -> bool:
        return self._failure is not None

    @property
    def failure(self) -> AgentChannelError | None:
        """Why the channel closed (ChannelClosed or AgentProtocolError), or None while open."""
        return self._failure

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    async def aclose(self) -> None:
        """Close the stream; pending and later requests raise ChannelClosed. Idempotent."""
        await self._fail(ChannelClosed("channel closed"))

    # ---------------------------------------------------------------------------- requests

    async def request(
        self,
        op: str,
        params: Mapping[str, Any] | None = None,
        *,
        on_event: EventHandler | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send `op` with `params` and return the result's fields.

        `on_event` gets each progress frame (e.g. {"event": "output", "stream": ..., "data": ...})
        in this task, in order. Raises AgentError for an error reply, RequestTimeout after
        `timeout` seconds, ChannelClosed / AgentProtocolError when the channel fails.
        """
        frame = {"id": 0, "op": op, **(params or {})}
        if frame["id"] != 0 or frame["op"] != op:
            raise ValueError("params must not contain 'id' or 'op'")
        self._raise_if_closed()
        rid = self._allocate_id()
        frame["id"] = rid
        pending = _Pending()
        self._pending[rid] = pending
        sent = False
        try:
            with anyio.move_on_after(timeout) as scope:
                await self._send(frame)
                sent = True
                return await self._await_outcome(pending, on_event)
            if sent:
                await self._send_cancel(rid)
            raise RequestTimeout(f"no reply to {op} within {timeout} s; the request was cancelled")
        except anyio.get_cancelled_exc_class():
            if sent and not scope.cancel_called:
                await self._send_cancel(rid)
            raise
        finally:
            self._pending.pop(rid, None)

    def _allocate_id(self) -> int:
        rid = self._next_id
        self._next_id += 1
        return rid

    def _raise_if_closed(self) -> None:
        if self._failure is not None:
            raise type(self._failure)(str(self._failure))

    async def _await_outcome(self, pending: _Pending, on_event: EventHandler | None) -> dict[str, Any]:
        while True:
            while pending.events:
                event = pending.events.pop(0)
                if on_event is not None:
                    outcome = on_event(event)
                    if inspect.isawaitable(outcome):
                        await outcome
            result = pending.outcome
            if isinstance(result, AgentError):
                raise result  # made for this request alone
            if isinstance(result, AgentChannelError):
                raise type(result)(str(result)) from result  # shared by all pending requests
            if result is not None:
                return result
            await pending.wait()

    async def _send(self, frame: dict[str, Any]) -> None:
        data = _encode_frame(frame)
        size = len(data) - 4
        if size > self._max_frame:
            message = f"request of {size} bytes exceeds the {self._max_frame} byte frame limit"
            raise AgentError("too_large", message)
        async with self._send_lock:
            self._raise_if_closed()
            # A frame cut short by cancellation would desynchronise the stream for good, so the
            # write is shielded; a write that stalls this long means the peer is gone.
            with anyio.CancelScope(shield=True), anyio.move_on_after(SEND_TIMEOUT) as scope:
                try:
                    await self._stream.send(data)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                    await self._fail(ChannelClosed(f"agent stream closed while sending: {exc}"))
            if scope.cancelled_caught:
                await self._fail(ChannelClosed("agent stopped accepting data"))
        self._raise_if_closed()

    async def _send_cancel(self, target: int) -> None:
        if self._failure is not None:
            return
        frame = {"id": self._allocate_id(), "op": "cancel", "target": target}
        with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_SEND_TIMEOUT):
            try:
                await self._send(frame)
            except AgentChannelError:
                pass

    # ---------------------------------------------------------------------------- reading

    async def _read_loop(self, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                try:
                    while True:
                        self._route(await self._read_frame())
                except AgentChannelError as exc:
                    await self._fail(exc)
                except anyio.EndOfStream:
                    await self._fail(ChannelClosed("the agent closed the stream"))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                    await self._fail(ChannelClosed(f"agent stream failed: {exc}"))
                except Exception as exc:
                    # The reader runs in the server's task group: nothing may escape it and take
                    # the server down with one sandbox's channel.
                    log.exception("agent channel reader failed")
                    await self._fail(ChannelClosed(f"agent channel reader failed: {exc!r}"))
        finally:
            # Also when the caller's task group is cancelled: nobody reads replies any more.
            await self._fail(ChannelClosed("channel reader stopped"))

    async def _read_exactly(self, size: int) -> bytes:
        exact = getattr(self._stream, "receive_exactly", None)
        if exact is not None and not self._buffer:
            # A stream that buffers itself (the docker exec stream) hands over a whole frame at once.
            data = await exact(size)
            assert isinstance(data, bytes)
            return data
        while len(self._buffer) < size:
            self._buffer += await self._stream.receive(max(65536, size - len(self._buffer)))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def _read_frame(self) -> dict[str, Any]:
        header = await self._read_exactly(4)
        (length,) = _HEADER.unpack(header)
        binary = bool(length & BINARY)
        length &= ~BINARY
        if length > self._max_frame:
            message = _engine_message(header + bytes(self._buffer))
            if message is not None:
                # Not the agent: the stream's transport wrote its own error (Docker writes e.g.
                # "OCI runtime exec failed: ..." into the exec's stdout), so the agent is gone.
                raise ChannelClosed(f"the container engine ended the agent's stream: {message}")
            raise AgentProtocolError(f"agent sent a frame of {length} bytes (limit {self._max_frame})")
        body = await self._read_exactly(length)
        return _decode_binary(body) if binary else _parse_object(body)

    def _route(self, frame: dict[str, Any]) -> None:
        rid = frame.get("id")
        kind = frame.get("event")
        if type(rid) is not int or not isinstance(kind, str):
            raise AgentProtocolError(f"agent sent a frame without a valid id/event: {_preview(frame)}")
        pending = self._pending.get(rid)
        if kind == "result":
            result = {k: v for k, v in frame.items() if k not in ("id", "event")}
            self._settle(pending, result)
        elif kind == "error":
            self._settle(pending, _parse_error(frame))
        elif pending is not None:
            if len(pending.events) >= MAX_QUEUED_EVENTS:
                pending.dropped_events += 1
                return
            pending.events.append({k: v for k, v in frame.items() if k != "id"})
            pending.notify()
        # Frames for unknown ids belong to requests that were cancelled or timed out: dropped.

    @staticmethod
    def _settle(pending: _Pending | None, outcome: dict[str, Any] | AgentChannelError) -> None:
        if pending is not None and pending.outcome is None:
            pending.outcome = outcome
            pending.notify()

    async def _fail(self, error: AgentChannelError) -> None:
        """Close the channel for good: settle every pending request with `error`."""
        if self._failure is not None:
            return
        self._failure = error
        if isinstance(error, AgentProtocolError):
            log.warning("agent channel failed: %s", error)
        for pending in self._pending.values():
            self._settle(pending, error)
        if self._reader_scope is not None:
            self._reader_scope.cancel()
        self._closed_event.set()
        with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_SEND_TIMEOUT):
            try:
                await self._stream.aclose()
            except Exception as exc:  # closing a broken stream may fail in transport-specific ways
                log.debug("closing the agent stream failed: %r", exc)


def _encode_frame(frame: dict[str, Any]) -> bytes:
    """Header + JSON; binary (raw bytes after the JSON) when the `bytes` field holds bytes."""
    payload = frame.get(BYTES_FIELD)
    if isinstance(payload, bytes | bytearray | memoryview):
        body = json.dumps({k: v for k, v in frame.items() if k != BYTES_FIELD}, separators=(",", ":")).encode()
        header = _HEADER.pack((4 + len(body) + len(payload)) | BINARY) + _HEADER.pack(len(body))
        return b"".join((header, body, payload))
    body = json.dumps(frame, separators=(",", ":")).encode()
    return _HEADER.pack(len(body)) + body


def _parse_object(body: bytes) -> dict[str, Any]:
    try:
        frame = json.loads(body)
    except ValueError as exc:  # includes invalid UTF-8
        raise AgentProtocolError(f"agent sent a frame that is not JSON: {exc}") from exc
    if not isinstance(frame, dict):
        raise AgentProtocolError("agent sent a frame that is not a JSON object")
    return frame


def _decode_binary(body: bytes) -> dict[str, Any]:
    """A binary frame's JSON object with its raw bytes as the `bytes` field."""
    if len(body) < 4:
        raise AgentProtocolError("agent sent a binary frame without a JSON length")
    (size,) = _HEADER.unpack_from(body)
    if size > len(body) - 4:
        raise AgentProtocolError(f"agent sent a binary frame whose JSON length ({size}) exceeds the frame")
    frame = _parse_object(body[4 : 4 + size])
    if BYTES_FIELD in frame:
        raise AgentProtocolError(f"agent sent a binary frame whose JSON has a '{BYTES_FIELD}' field")
    frame[BYTES_FIELD] = body[4 + size :]
    return frame


def _parse_error(frame: dict[str, Any]) -> AgentError:
    error = frame.get("error")
    if not isinstance(error, dict):
        raise AgentProtocolError(f"agent sent an error frame without an error object: {_preview(frame)}")
    kind, message = error.get("type"), error.get("message")
    if not isinstance(kind, str) or not isinstance(message, str) or not kind or len(kind) > 64:
        raise AgentProtocolError(f"agent sent a malformed error: {_preview(frame)}")
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[:MAX_ERROR_MESSAGE] + "..."
    field = error.get("field")
    return AgentError(kind, message, field if isinstance(field, str) and len(field) <= 64 else None)


def _engine_message(data: bytes) -> str | None:
    """The text, if `data` reads as a line of text rather than a frame header (whose first byte,
    for any frame within the limit, is 0 or 1)."""
    text = data[:500].decode("utf-8", "replace")
    line = text.split("\n", 1)[0].strip()
    if len(line) >= 4 and all(c.isprintable() for c in line):
        return line[:300]
    return None


def _preview(frame: object) -> str:
    text = repr(frame)
    return text if len(text) <= 200 else text[:200] + "..."
