"""Stand-ins for the internet, all on this machine: servers bound to the gateway of a Docker
network the fixture creates (and removes), named through CORRAL_EGRESS_HOSTS.

- `web`: plain HTTP; `/redirect` answers 302 to the forbidden recorder; `/simple/...` and
  `/files/...` are a PEP 503 index holding one wheel; every request's headers are kept.
- `tls`: the same behind TLS, with a certificate for tls.test and secret-tls.test from a test CA
  (trustme).
- recorders: TCP and UDP listeners that keep every connection or datagram they get, to prove that
  nothing arrived.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import secrets
import socket
import ssl
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import trustme

from corral.config import LABEL_NAMESPACE

PROBE = "corral_probe"
PROBE_VERSION = "1.0"


def probe_wheel() -> tuple[str, bytes]:
    """A minimal pure-Python wheel whose module says who it is."""
    name = f"{PROBE}-{PROBE_VERSION}-py3-none-any.whl"
    dist = f"{PROBE}-{PROBE_VERSION}.dist-info"
    files = {
        f"{PROBE}/__init__.py": b"WHO = 'installed from the test index'\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: corral-probe\nVersion: {PROBE_VERSION}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: corral-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return name, buf.getvalue()


class Handler(http.server.BaseHTTPRequestHandler):
    server: WebServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        wheel_name, wheel = self.server.wheel
        if self.path.startswith("/redirect"):
            self._send(302, b"", {"Location": self.server.redirect_to})
        elif self.path.rstrip("/") == "/simple/corral-probe":
            digest = hashlib.sha256(wheel).hexdigest()
            link = f'<a href="/files/{wheel_name}#sha256={digest}">{wheel_name}</a>'
            self._send(200, f"<html><body>{link}</body></html>".encode(), {"Content-Type": "text/html"})
        elif self.path == f"/files/{wheel_name}":
            self._send(200, wheel, {"Content-Type": "application/octet-stream"})
        elif self.path.startswith("/simple"):
            self._send(404, b"not here")
        elif self.path.startswith("/mib"):
            self._send(200, self.server.mib)
        else:
            self._send(200, f"hello from {self.server.label}\n".encode())


class WebServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, label: str, context: ssl.SSLContext | None = None) -> None:
        super().__init__((host, 0), Handler)
        self.label = label
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.redirect_to = ""
        self.wheel = probe_wheel()
        self.mib = secrets.token_bytes(1 << 20)
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class Recorder:
    """TCP and UDP listeners on one address that keep every peer that reached them."""

    def __init__(self, host: str, port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.tcp = socket.socket(family, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((host, port))
        self.tcp.listen(64)
        self.port = int(self.tcp.getsockname()[1])
        self.udp = socket.socket(family, socket.SOCK_DGRAM)
        self.udp.bind((host, self.port))
        self.host = host
        self.hits: list[str] = []
        self._stop = False
        for target in (self._accept, self._receive):
            threading.Thread(target=target, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, peer = self.tcp.accept()
            except OSError:
                return
            self.hits.append(f"tcp from {peer}")
            conn.close()

    def _receive(self) -> None:
        while not self._stop:
            try:
                _, peer = self.udp.recvfrom(2048)
            except OSError:
                return
            self.hits.append(f"udp from {peer}")

    @property
    def authority(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def close(self) -> None:
        self._stop = True
        for sock in (self.tcp, self.udp):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


@dataclass
class Lab:
    allowed_gateway: str  # an address of this host the tests' server allows (CORRAL_EGRESS_ALLOW_PRIVATE)
    forbidden_gateway: str  # an address of this host nobody allowed
    web: WebServer
    tls: WebServer
    ca_pem: Path
    forbidden: Recorder
    loopback: Recorder
    made: list[Any] = field(default_factory=list)

    def recorder(self, host: str) -> Recorder:
        rec = Recorder(host)
        self.made.append(rec)
        return rec


def _network(client: docker.DockerClient, role: str) -> tuple[Any, str]:
    network = client.networks.create(
        f"corral-test-{role}-{secrets.token_hex(4)}", driver="bridge", labels={f"{LABEL_NAMESPACE}.test": role}
    )
    network.reload()
    return network, str(network.attrs["IPAM"]["Config"][0]["Gateway"])


def open_lab(tmp: Path) -> Iterator[Lab]:
    client = docker.from_env()
    networks = []
    servers: list[Any] = []
    lab: Lab | None = None
    try:
        allowed_net, allowed = _network(client, "egress-ok")
        networks.append(allowed_net)
        forbidden_net, forbidden = _network(client, "egress-no")
        networks.append(forbidden_net)
        ca = trustme.CA()
        cert = ca.issue_cert("tls.test", "secret-tls.test")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        ca_pem = tmp / "test-ca.pem"
        ca.cert_pem.write_to_path(str(ca_pem))
        web, tls = WebServer(allowed, "web"), WebServer(allowed, "tls", context)
        lab = Lab(allowed, forbidden, web, tls, ca_pem, Recorder(forbidden), Recorder("127.0.0.1"))
        servers += [web, tls, lab.forbidden, lab.loopback]
        web.redirect_to = f"http://{lab.forbidden.authority}/stolen"
        tls.redirect_to = web.redirect_to
        for server in (web, tls):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        yield lab
    finally:
        servers += lab.made if lab else []
        for server in servers:
            if isinstance(server, WebServer):
                server.shutdown()
                server.server_close()
            else:
                server.close()
        for network in networks:
            network.remove()
        client.close()
