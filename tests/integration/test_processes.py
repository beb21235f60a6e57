"""Background processes (start_process & co.) and exposed ports, through the MCP session."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from corral.config import Settings
from corral.server import build_server
from tests.helpers import call_error, call_ok


async def read_until(client: Client, process: str, *, needle: str | None = None, limit: float = 60) -> dict[str, Any]:
    """Poll process_output (each call waits for news) until `needle` shows up, or until the process
    has ended and everything is read. Returns the last reply with `text` = all output collected."""
    text = ""
    with anyio.fail_after(limit):
        while True:
            reply = await call_ok(client, "process_output", process=process, wait=5)
            text += reply["output"]
            if (needle is not None and needle in text) or (
                needle is None and not reply["running"] and reply["more_bytes"] == 0
            ):
                return {**reply, "text": text}


def http() -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False, timeout=30)  # loopback only, never a proxy


async def test_output_is_incremental_and_nothing_is_lost(client: Client, sandbox: str) -> None:
    started = await call_ok(
        client,
        "start_process",
        sandbox=sandbox,
        command="for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done; echo oops >&2; exit 3",
    )
    assert started["id"].startswith("p-") and len(started["id"]) == 8 and started["running"] is True
    done = await read_until(client, started["id"])
    assert done["text"] == "line 1\nline 2\nline 3\nline 4\nline 5\noops\n"
    assert done["exit_code"] == 3 and done["running"] is False

    # since= re-reads from any cursor; max_bytes caps a reply and more_bytes says what is left.
    head = await call_ok(client, "process_output", process=started["id"], since=0, max_bytes=4)
    assert head["output"] == "line" and head["next_cursor"] == 4 and head["more_bytes"] == len(done["text"]) - 4
    rest = await call_ok(client, "process_output", process=started["id"])  # continues after the last reply
    assert rest["output"] == done["text"][4:] and rest["more_bytes"] == 0
    empty = await call_ok(client, "process_output", process=started["id"])
    assert empty["output"] == "" and empty["next_cursor"] == len(done["text"])


async def test_input_eof_and_signals(client: Client, sandbox: str) -> None:
    echo = await call_ok(
        client, "start_process", sandbox=sandbox, command='while read l; do echo "got:$l"; done; echo bye'
    )
    sent = await call_ok(client, "send_input", process=echo["id"], text="hello\n")
    assert sent["bytes_written"] == 6
    await read_until(client, echo["id"], needle="got:hello\n")
    await call_ok(client, "send_input", process=echo["id"], eof=True)
    done = await read_until(client, echo["id"])
    assert done["text"].endswith("bye\n") and done["exit_code"] == 0
    assert "not running" in await call_error(client, "send_input", process=echo["id"], text="late\n")

    sleeper = await call_ok(client, "start_process", sandbox=sandbox, command="sleep 300", cwd="/tmp")
    listed = await call_ok(client, "list_processes", sandbox=sandbox)
    mine = {p["id"]: p for p in listed["processes"]}
    assert mine[sleeper["id"]]["running"] is True and mine[sleeper["id"]]["cwd"] == "/tmp"
    assert mine[echo["id"]]["running"] is False and mine[echo["id"]]["exit_code"] == 0
    stopped = await call_ok(client, "signal_process", process=sleeper["id"], signal="TERM")
    assert stopped["running"] is False and stopped["exit_code"] == -15
    assert "not running" in await call_error(client, "signal_process", process=sleeper["id"], signal="KILL")


async def test_bad_process_requests_are_explained(client: Client, sandbox: str) -> None:
    assert "expected p-xxxxxx" in await call_error(client, "process_output", process="12345")
    assert "no process with id" in await call_error(client, "process_output", process="p-000000")
    assert "command is empty" in await call_error(client, "start_process", sandbox=sandbox, command="  ")
    started = await call_ok(client, "start_process", sandbox=sandbox, command="true")
    assert "wait must be between" in await call_error(client, "process_output", process=started["id"], wait=99)
    assert "nothing to send" in await call_error(client, "send_input", process=started["id"])
    assert (await client.call_tool("signal_process", {"process": started["id"], "signal": "BOOM"})).is_error


async def test_expose_port_of_a_sandbox_without_network(client: Client, sandbox: str) -> None:
    assert (await call_ok(client, "get_sandbox", sandbox=sandbox))["network"] == "none"
    payload = os.urandom(200_000)
    await call_ok(client, "write_file", sandbox=sandbox, path="site/blob.bin",
                  content=base64.b64encode(payload).decode(), encoding="base64")
    server = await call_ok(client, "start_process", sandbox=sandbox, cwd="site",
                           command="exec python3 -u -m http.server 8123 --bind 127.0.0.1")
    await read_until(client, server["id"], needle="Serving HTTP")
    exposed = await call_ok(client, "expose_port", sandbox=sandbox, port=8123)
    assert exposed["url"].startswith("http://127.0.0.1:") and exposed["active"] is True
    assert (await call_ok(client, "expose_port", sandbox=sandbox, port=8123))["url"] == exposed["url"]
    async with http() as web:
        with anyio.fail_after(60):
            got = await web.get(exposed["url"] + "blob.bin")
        assert got.status_code == 200 and got.content == payload
        # Several connections at once, each through its own relay.
        async with anyio.create_task_group() as tg:
            statuses: list[int] = []

            async def fetch() -> None:
                statuses.append((await web.get(exposed["url"] + "blob.bin")).status_code)

            for _ in range(4):
                tg.start_soon(fetch)
        assert statuses == [200] * 4
    await read_until(client, server["id"], needle='"GET /blob.bin HTTP/1.1" 200')

    ports = (await call_ok(client, "list_ports", sandbox=sandbox))["ports"]
    assert [(p["port"], p["url"]) for p in ports] == [(8123, exposed["url"])]
    closed = await call_ok(client, "close_port", sandbox=sandbox, port=8123)
    assert closed["active"] is False
    async with http() as web:
        with pytest.raises(httpx.ConnectError):
            await web.get(exposed["url"])
    assert "is not exposed" in await call_error(client, "close_port", sandbox=sandbox, port=8123)
    assert "between 1 and 65535" in await call_error(client, "expose_port", sandbox=sandbox, port=70000)
    await call_ok(client, "signal_process", process=server["id"])


UPPER_SERVER = r"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 9125))
s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    data = b""
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    c.sendall(b"%d:" % len(data) + data.upper())
    c.close()
"""


async def test_exposed_port_carries_raw_tcp_with_half_close(client: Client, sandbox: str) -> None:
    """The end of the host client's request reaches the sandbox's server as EOF, and the answer
    still comes back: a server that reads until EOF before replying works."""
    await call_ok(client, "write_file", sandbox=sandbox, path="upper.py", content=UPPER_SERVER)
    server = await call_ok(client, "start_process", sandbox=sandbox, command="exec python3 upper.py")
    await read_until(client, server["id"], needle="ready")
    exposed = await call_ok(client, "expose_port", sandbox=sandbox, port=9125)
    with anyio.fail_after(60):
        stream = await anyio.connect_tcp("127.0.0.1", exposed["host_port"])
        async with stream:
            await stream.send(b"hello " * 100_000)
            await stream.send_eof()
            answer = b""
            try:
                while True:
                    answer += await stream.receive()
            except anyio.EndOfStream:
                pass
    assert answer == b"600000:" + b"HELLO " * 100_000
    await call_ok(client, "close_port", sandbox=sandbox, port=9125)
    await call_ok(client, "signal_process", process=server["id"], signal="KILL")


async def test_processes_and_ports_survive_a_server_restart(home: Path) -> None:
    settings = Settings(home=home)
    with anyio.fail_after(240):
        async with Client(build_server(settings), raise_exceptions=False) as first:
            sandbox = (await call_ok(first, "create_sandbox"))["id"]
            await call_ok(first, "write_file", sandbox=sandbox, path="index.html", content="first")
            server = await call_ok(first, "start_process", sandbox=sandbox,
                                   command="exec python3 -u -m http.server 8124 --bind 127.0.0.1")
            await read_until(first, server["id"], needle="Serving HTTP")
            url = (await call_ok(first, "expose_port", sandbox=sandbox, port=8124))["url"]
            async with http() as web:
                assert (await web.get(url)).text == "first"
            await read_until(first, server["id"], needle="GET / ")
        async with http() as web:  # the first server is gone, and its listener with it
            with pytest.raises(httpx.ConnectError):
                await web.get(url)

        async with Client(build_server(settings), raise_exceptions=False) as second:
            listed = (await call_ok(second, "list_processes", sandbox=sandbox))["processes"]
            assert [(p["id"], p["running"]) for p in listed] == [(server["id"], True)]
            ports = (await call_ok(second, "list_ports"))["ports"]
            assert len(ports) == 1 and ports[0]["active"] is True and ports[0]["port"] == 8124
            await call_ok(second, "write_file", sandbox=sandbox, path="index.html", content="second")
            async with http() as web:
                assert (await web.get(ports[0]["url"])).text == "second"
            # The read cursor survived too: only the new request's log line comes back.
            later = await read_until(second, server["id"], needle="GET / ")
            assert later["text"].count("GET / ") == 1 and "Serving HTTP" not in later["text"]

            await call_ok(second, "delete_sandbox", sandbox=sandbox)
            assert (await call_ok(second, "list_ports"))["ports"] == []
            assert "no process with id" in await call_error(second, "process_output", process=server["id"])
            async with http() as web:
                with pytest.raises(httpx.ConnectError):
                    await web.get(ports[0]["url"])
