"""Servers the git attacks aim at, all on this machine: a recorder that keeps every request it gets
(to prove where credentials and hooks' traffic went) and can answer with a redirect, bound to the
gateway of a Docker network a fixture creates (and removes)."""

from __future__ import annotations

import http.server
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import pytest

from corral.config import LABEL_NAMESPACE


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))
        self.server.requests.append(Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.server.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to + self.path)
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = _handle


class Recorder(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, redirect_to: str = "") -> None:
        super().__init__((host, 0), _RecordingHandler)
        self.requests: list[Recorded] = []
        self.redirect_to = redirect_to

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


@dataclass
class Recorders:
    """Start recorders on addresses of this machine; all are stopped when the fixture ends."""

    started: list[Recorder] = field(default_factory=list)

    def start(self, host: str, redirect_to: str = "") -> Recorder:
        server = Recorder(host, redirect_to)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.started.append(server)
        return server


@pytest.fixture
def recorders() -> Iterator[Recorders]:
    made = Recorders()
    yield made
    for server in made.started:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def second_gateway() -> Iterator[str]:
    """The gateway address of a second Docker network of the test's own: a private host of this
    machine that a server can be told *not* to allow."""
    client = docker.from_env()
    network = client.networks.create(
        f"corral-test-sec-{secrets.token_hex(4)}", driver="bridge", labels={f"{LABEL_NAMESPACE}.test": "security"}
    )
    try:
        network.reload()
        yield str(network.attrs["IPAM"]["Config"][0]["Gateway"])
    finally:
        network.remove()
        client.close()
