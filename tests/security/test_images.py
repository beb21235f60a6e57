"""Issue 8, finding 5: the model must not make dockerd contact any host or pull any image.

The attack: create_sandbox(image="127.0.0.1:<port>/evil/img") made dockerd talk to that port. A
listener on 127.0.0.1 (this machine only) counts every connection dockerd makes to it. Images come
from the operator's allowlist (CORRAL_IMAGES); pulls happen only for CORRAL_IMAGE_PULL patterns,
and then a failed pull says Docker's own reason.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from corral.config import Settings
from corral.server import build_server
from tests.helpers import call_error, call_ok
from tests.integration.cleanup import reap_containers

WAIT = 120


class Listener:
    """A TCP listener on 127.0.0.1 that answers any HTTP request with 404 and counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    made = Listener()
    yield made
    made.close()


async def fails(client: Client, tool: str, **args: Any) -> str:
    with anyio.fail_after(WAIT):
        return await call_error(client, tool, **args)


async def test_image_from_an_arbitrary_registry_never_reaches_dockerd(
    client: Client, sandbox: str, listener: Listener
) -> None:
    before = len((await call_ok(client, "list_sandboxes"))["sandboxes"])
    for image in (f"127.0.0.1:{listener.port}/evil/img", f"localhost:{listener.port}/evil/img:latest"):
        message = await fails(client, "create_sandbox", image=image)
        assert listener.connections == 0, "dockerd was made to contact a host the model chose"
        assert "CORRAL_IMAGES" in message and image in message, message
    assert len((await call_ok(client, "list_sandboxes"))["sandboxes"]) == before
    # The server answers the next call normally; other sandboxes are unaffected.
    assert (await call_ok(client, "run_command", sandbox=sandbox, command="echo ok"))["stdout"] == "ok\n"


async def test_pulls_happen_only_where_the_operator_allowed_them_and_say_why_they_failed(
    tmp_path: Path, listener: Listener
) -> None:
    registry = f"127.0.0.1:{listener.port}"
    settings = Settings(
        home=tmp_path,
        images=(f"{registry}/allowed/*", f"{registry}/nopull/img"),
        image_pull=(f"{registry}/allowed/*",),
    )
    try:
        async with Client(build_server(settings), raise_exceptions=False) as own:
            # Allowed but not pullable, and not present: refused without contacting anything.
            message = await fails(own, "create_sandbox", image=f"{registry}/nopull/img")
            assert "CORRAL_IMAGE_PULL" in message and "not present" in message, message
            message = await fails(own, "create_sandbox", image=f"{registry}/other/img")
            assert "CORRAL_IMAGES" in message, message
            assert listener.connections == 0
            # Allowed and pullable: dockerd tries, and the error carries its own reason.
            message = await fails(own, "create_sandbox", image=f"{registry}/allowed/img:1")
            assert listener.connections > 0
            assert "pull it first" not in message and "Docker" in message and registry in message, message
            # The default image is still allowed.
            made = await call_ok(own, "create_sandbox")
            await call_ok(own, "delete_sandbox", sandbox=made["id"])
    finally:
        reap_containers(tmp_path)
