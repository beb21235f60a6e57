"""AgentChannel against a scripted fake agent on an in-memory stream: the host must survive
whatever the agent sends."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from corral.sandbox_backend.agent_channel import (
    BINARY,
    MAX_FRAME,
    AgentChannel,
    AgentChannelError,
    AgentError,
    AgentProtocolError,
    ChannelClosed,
    RequestTimeout,
)

from .helpers import MemoryByteStream, memory_stream_pair

pytestmark = pytest.mark.anyio


class FakeAgent:
    """The agent's end of the stream, driven by the test."""

    def __init__(self, stream: MemoryByteStream) -> None:
        self.stream = stream
        self._buffer = b""

    async def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += await self.stream.receive()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    async def receive(self) -> dict[str, Any]:
        with anyio.fail_after(5):
            (length,) = struct.unpack(">I", await self._read(4))
            frame = json.loads(await self._read(length))
        assert isinstance(frame, dict)
        return frame

    async def send(self, frame: object) -> None:
        body = json.dumps(frame).encode()
        await self.stream.send(struct.pack(">I", len(body)) + body)

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)


def binary_frame(obj: dict[str, Any], payload: bytes) -> bytes:
    body = json.dumps(obj).encode()
    return struct.pack(">II", (4 + len(body) + len(payload)) | BINARY, len(body)) + body + payload


@pytest.fixture
async def pair() -> AsyncIterator[tuple[AgentChannel, FakeAgent]]:
    host_end, agent_end = memory_stream_pair()
    async with agent_end, AgentChannel(host_end) as channel:
        yield channel, FakeAgent(agent_end)


async def test_result_fields_and_events_in_order(pair: tuple[AgentChannel, FakeAgent]) -> None:
    channel, fake = pair
    seen: list[dict[str, Any]] = []

    async def on_event(event: dict[str, Any]) -> None:
        seen.append(event)

    async with anyio.create_task_group() as tg:
        result: dict[str, Any] = {}

        async def call() -> None:
            result.update(await channel.request("exec", {"shell": "x"}, on_event=on_event))

        tg.start_soon(call)
        request = await fake.receive()
        assert request == {"id": request["id"], "op": "exec", "shell": "x"}
        for n in range(3):
            await fake.send({"id": request["id"], "event": "output", "stream": "stdout", "data": str(n)})
        await fake.send({"id": 999, "event": "result"})  # unknown id: ignored
        await fake.send({"id": request["id"], "event": "result", "exit_code": 0})
    assert result == {"exit_code": 0}
    assert [e["data"] for e in seen] == ["0", "1", "2"]
    assert seen[0] == {"event": "output", "stream": "stdout", "data": "0"}


async def test_error_reply_raises_agent_error(pair: tuple[AgentChannel, FakeAgent]) -> None:
    channel, fake = pair
    async with anyio.create_task_group() as tg:
        tg.start_soon(_reply_error, fake)
        with pytest.raises(AgentError) as excinfo:
            await channel.request("read_file", {"path": "/x"})
    assert excinfo.value.type == "not_found" and excinfo.value.message == "/x: gone"
    assert not channel.closed


async def _reply_error(fake: FakeAgent) -> None:
    request = await fake.receive()
    error = {"type": "not_found", "message": "/x: gone"}
    await fake.send({"id": request["id"], "event": "error", "error": error})


@pytest.mark.parametrize(
    "garbage",
    [
        struct.pack(">I", 4) + b"nope",
        struct.pack(">I", 2) + b"[]",
        struct.pack(">I", 17 * 1024 * 1024),
        struct.pack(">I", 2) + b"\xff\xff",
        struct.pack(">I", 13) + b'{"event":"x"}',  # no id
        struct.pack(">I", 24) + b'{"id":1,"event":"error"}',  # error without an error object
        # binary frames: JSON length beyond the frame, no room for it, a JSON 'bytes' field, over the cap
        struct.pack(">II", BINARY | 8, 100) + b"abcd",
        struct.pack(">I", BINARY | 2) + b"ab",
        binary_frame({"id": 1, "event": "result", "bytes": "x"}, b"raw"),
        struct.pack(">I", BINARY | (MAX_FRAME + 1)),
    ],
)
async def test_garbage_fails_pending_and_later_requests(
    pair: tuple[AgentChannel, FakeAgent], garbage: bytes
) -> None:
    channel, fake = pair
    async with anyio.create_task_group() as tg:

        async def pending_request() -> None:
            with pytest.raises(AgentProtocolError):
                await channel.request("hello")

        tg.start_soon(pending_request)
        await fake.receive()
        await fake.send_raw(garbage)
    assert channel.closed and isinstance(channel.failure, AgentProtocolError)
    with pytest.raises(AgentProtocolError):
        await channel.request("hello")


async def test_bytes_travel_raw_in_binary_frames_both_ways(pair: tuple[AgentChannel, FakeAgent]) -> None:
    channel, fake = pair
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    async with anyio.create_task_group() as tg:
        result: dict[str, Any] = {}

        async def call() -> None:
            result.update(await channel.request("write_file", {"path": "/x", "bytes": data}))

        tg.start_soon(call)
        with anyio.fail_after(5):
            (length,) = struct.unpack(">I", await fake._read(4))
            assert length & BINARY
            body = await fake._read(length & ~BINARY)
        (json_size,) = struct.unpack(">I", body[:4])
        request = json.loads(body[4 : 4 + json_size])
        assert request == {"id": request["id"], "op": "write_file", "path": "/x"} and body[4 + json_size :] == data
        await fake.send_raw(binary_frame({"id": request["id"], "event": "result", "size": len(data)}, data[::-1]))
    assert result == {"size": len(data), "bytes": data[::-1]}


async def test_a_request_over_the_frame_cap_is_refused_locally(pair: tuple[AgentChannel, FakeAgent]) -> None:
    channel, _ = pair
    with pytest.raises(AgentError) as excinfo:
        await channel.request("write_file", {"path": "/x", "bytes": b"\0" * (MAX_FRAME + 1)})
    assert excinfo.value.type == "too_large" and not channel.closed


async def test_end_of_stream_is_channel_closed(pair: tuple[AgentChannel, FakeAgent]) -> None:
    channel, fake = pair
    async with anyio.create_task_group() as tg:

        async def pending_request() -> None:
            with pytest.raises(ChannelClosed):
                await channel.request("hello")

        tg.start_soon(pending_request)
        await fake.receive()
        await fake.stream.send_eof()
    with anyio.fail_after(5):
        await channel.wait_closed()
    with pytest.raises(ChannelClosed):
        await channel.request("hello")


async def test_a_container_engine_message_is_not_read_as_a_frame(pair: tuple[AgentChannel, FakeAgent]) -> None:
    """Docker writes its own errors into the exec's stdout ("OCI runtime exec failed: ..."); read
    as a frame header, "OCI " is a 1.3 GB frame. It is the engine saying the agent is gone."""
    channel, fake = pair
    async with anyio.create_task_group() as tg:

        async def pending_request() -> None:
            with pytest.raises(ChannelClosed, match=r"container engine ended .*OCI runtime exec failed: no such"):
                await channel.request("hello")

        tg.start_soon(pending_request)
        await fake.receive()
        await fake.send_raw(b"OCI runtime exec failed: no such file or directory: unknown\r\n")
    assert isinstance(channel.failure, ChannelClosed)


async def test_timeout_raises_and_cancels_on_the_agent(pair: tuple[AgentChannel, FakeAgent]) -> None:
    channel, fake = pair
    async with anyio.create_task_group() as tg:

        async def slow_request() -> None:
            with pytest.raises(RequestTimeout) as excinfo:
                await channel.request("exec", {"shell": "sleep 9"}, timeout=0.2)
            assert isinstance(excinfo.value, TimeoutError)

        tg.start_soon(slow_request)
        request = await fake.receive()
        cancel = await fake.receive()
    assert cancel == {"id": cancel["id"], "op": "cancel", "target": request["id"]}
    assert not channel.closed


async def test_caller_cancellation_sends_cancel(pair: tuple[AgentChannel, FakeAgent]) -> None:
    channel, fake = pair
    with anyio.move_on_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(channel.request, "exec", {"shell": "sleep 9"})
            request = await fake.receive()
            tg.cancel_scope.cancel()
    cancel = await fake.receive()
    assert cancel["op"] == "cancel" and cancel["target"] == request["id"]
    # A late reply to the cancelled request is dropped; the channel keeps working.
    await fake.send({"id": request["id"], "event": "error", "error": {"type": "cancelled", "message": ""}})
    async with anyio.create_task_group() as tg:
        tg.start_soon(_reply_hello, fake)
        assert await channel.request("hello") == {"version": "v"}


async def _reply_hello(fake: FakeAgent) -> None:
    request = await fake.receive()
    await fake.send({"id": request["id"], "event": "result", "version": "v"})


async def test_close_fails_pending_requests(pair: tuple[AgentChannel, FakeAgent]) -> None:
    channel, fake = pair
    async with anyio.create_task_group() as tg:

        async def pending_request() -> None:
            with pytest.raises(ChannelClosed):
                await channel.request("hello")

        tg.start_soon(pending_request)
        await fake.receive()
        await channel.aclose()
    assert channel.closed
    await channel.aclose()  # idempotent


async def test_local_misuse(pair: tuple[AgentChannel, FakeAgent]) -> None:
    channel, _ = pair
    with pytest.raises(ValueError):
        await channel.request("hello", {"id": 5})
    with pytest.raises(AgentError) as too_large:
        await channel.request("write_file", {"data_b64": "x" * (17 * 1024 * 1024)})
    assert too_large.value.type == "too_large"
    assert not channel.closed


def test_exceptions_share_one_root() -> None:
    for exc in (AgentError, AgentProtocolError, ChannelClosed, RequestTimeout):
        assert issubclass(exc, AgentChannelError)
