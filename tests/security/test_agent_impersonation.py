"""Finding 11: sandbox code could run in place of the agent (a `python3` first on PATH) and forge
replies that broke the client's session (15 MiB of stdout over a 1 MiB event limit) or crashed a
tool (a `size` that is not an integer)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
from mcp import Client

from corral.config import Settings
from corral.server import build_server
from tests.helpers import call_error, call_ok
from tests.security.host import eventually, http_ok

PLANTED = "#!/bin/sh\ntouch /workspace/pwned\nexec /usr/bin/python3 \"$@\"\n"

# Kills the real daemon and answers on its socket. It cannot be prevented (same user as the agent);
# the host must survive it. It leaves when asked to read a file named "quit".
FORGER = r'''
import glob, json, os, signal, socket, struct, threading, time
d = "/tmp/.corral"
version = open(sorted(glob.glob("/opt/corral/agent/v-*/corral_agent/VERSION")
                      + glob.glob(d + "/v-*/corral_agent/VERSION"), key=os.path.getmtime)[-1]).read().strip()
os.kill(int(open(d + "/agent.pid").read()), signal.SIGKILL)
time.sleep(0.3)
os.unlink(d + "/agent.sock")
server = socket.socket(socket.AF_UNIX)
server.bind(d + "/agent.sock")
server.listen(16)

def send(conn, obj):
    data = json.dumps(obj).encode()
    conn.sendall(struct.pack(">I", len(data)) + data)

def serve(conn):
    buf = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return
        buf += chunk
        while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
            size = struct.unpack(">I", buf[:4])[0]
            req, buf = json.loads(buf[4:4 + size]), buf[4 + size:]
            rid, op = req.get("id"), req.get("op")
            if op == "hello":
                send(conn, {"id": rid, "event": "result", "version": version, "started": 1.0, "pid": 2})
            elif op == "exec":
                send(conn, {"id": rid, "event": "result", "exit_code": 0, "stdout": "\x01" * (2 << 20),
                            "stderr": "A" * (2 << 20), "stdout_dropped": 0, "stderr_dropped": 0,
                            "timed_out": False, "duration": 0.1})
            elif op in ("read_file", "read_lines", "stat") and req.get("path", "").endswith("quit"):
                os._exit(0)
            elif op in ("read_file", "read_lines", "stat"):
                send(conn, {"id": rid, "event": "result", "data_b64": "aGk=", "size": "twelve", "exists": True,
                            "type": "file", "truncated": False, "mtime": 1.0, "mode": 420})
            else:
                send(conn, {"id": rid, "event": "error", "error": {"type": "internal", "message": "forged"}})

while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
'''


def result_size(result: object) -> int:
    return len(json.dumps(result.model_dump(mode="json", by_alias=True)))  # type: ignore[attr-defined]


async def test_a_python3_planted_on_path_never_runs_as_the_agent(home: Path) -> None:
    with anyio.fail_after(180):
        settings = Settings(home=home)
        async with Client(build_server(settings), raise_exceptions=False) as first:
            box = (await call_ok(first, "create_sandbox"))["id"]
            await call_ok(first, "write_file", sandbox=box, path=".local/bin/python3", content=PLANTED)
            await call_ok(first, "run_command", sandbox=box, command="chmod +x .local/bin/python3")
            assert (await call_ok(first, "run_command", sandbox=box, command="command -v python3"))[
                "stdout"
            ] == "/workspace/.local/bin/python3\n"
        # A new server connects afresh: its relay and a port's tcp-relay start now.
        async with Client(build_server(settings), raise_exceptions=False) as second:
            await call_ok(second, "start_process", sandbox=box, command="/usr/bin/python3 -m http.server 8001")
            port = await call_ok(second, "expose_port", sandbox=box, port=8001)
            await eventually(lambda: http_ok(port["url"]), 30, "the sandbox's web server")
            check = await call_ok(second, "run_command", sandbox=box, command="ls /workspace/pwned 2>&1 || true")
            assert "No such file" in check["stdout"], check
            await call_ok(second, "delete_sandbox", sandbox=box)


async def test_a_forged_agent_cannot_flood_the_session_or_crash_a_tool(home: Path, tmp_path: Path) -> None:
    with anyio.fail_after(180):
        settings = Settings(home=home, host_dirs=(tmp_path,))
        async with Client(build_server(settings), raise_exceptions=False) as client:
            box = (await call_ok(client, "create_sandbox"))["id"]
            other = (await call_ok(client, "create_sandbox"))["id"]
            await call_ok(client, "write_file", sandbox=box, path="forger.py", content=FORGER)
            await call_ok(client, "start_process", sandbox=box, command="/usr/bin/python3 forger.py")
            with anyio.fail_after(60):
                while True:  # until the forger answers in the agent's place
                    result = await client.call_tool("run_command", {"sandbox": box, "command": "echo real"})
                    if not result.is_error and result.structured_content["stdout"] != "real\n":
                        break
                    await anyio.sleep(0.2)
            # Its 2 MiB of control characters and 2 MiB of text came back cut to the output limit,
            # and the whole result stays far under the 1 MiB a streamed MCP event may carry.
            assert result_size(result) < 1_000_000, result_size(result)
            assert len(result.structured_content["stdout"]) < 70_000
            for tool, args in (
                ("read_file", {"path": "x.txt"}),
                ("download", {"path": "x.txt", "host_path": "x.txt"}),
            ):
                message = await call_error(client, tool, sandbox=box, **args)
                assert "malformed reply" in message and "unexpectedly" not in message, message
            assert not (tmp_path / "x.txt").exists()
            # The server and the other sandboxes are fine; once the forger is gone, so is this one.
            assert (await call_ok(client, "run_command", sandbox=other, command="echo ok"))["stdout"] == "ok\n"
            await client.call_tool("read_file", {"sandbox": box, "path": "quit"})
            with anyio.fail_after(60):
                while True:
                    result = await client.call_tool("run_command", {"sandbox": box, "command": "echo real"})
                    if not result.is_error and result.structured_content["stdout"] == "real\n":
                        break
                    await anyio.sleep(0.2)
            await call_ok(client, "delete_sandbox", sandbox=box)
            await call_ok(client, "delete_sandbox", sandbox=other)
