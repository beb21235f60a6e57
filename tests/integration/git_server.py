"""A real git server for tests: `git http-backend` behind a small threaded HTTP server with basic
auth, bound to the gateway address of a Docker bridge network the fixture creates (and removes), so
the only traffic is to an address of this machine."""

from __future__ import annotations

import base64
import http.server
import os
import secrets
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from corral.config import LABEL_NAMESPACE

USER = "alice"


class GitHTTPHandler(http.server.BaseHTTPRequestHandler):
    """Smart HTTP via `git http-backend` (CGI). Private repos need basic auth for everything, every
    repo for pushes; REMOTE_USER is set on authenticated requests, which enables receive-pack."""

    server: GitHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        self.server.requests.append(format % args)

    def _handle(self) -> None:
        path, _, query = self.path.partition("?")
        repo = path.lstrip("/").split("/", 1)[0]
        pushing = "git-receive-pack" in path or "service=git-receive-pack" in query
        remote_user = ""
        if repo in self.server.private or pushing:
            expected = "Basic " + base64.b64encode(f"{USER}:{self.server.password}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self.server.denied += 1
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            remote_user = USER
        body = self._body()
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.server.root),
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": remote_user,
            "REMOTE_ADDR": self.client_address[0],
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode(errors="replace").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return bytes(data)
            data += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_POST = _handle


class GitHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], root: Path, password: str, private: set[str]) -> None:
        super().__init__(address, GitHTTPHandler)
        self.root, self.password, self.private = root, password, private
        self.requests: list[str] = []
        self.denied = 0


@dataclass
class GitServer:
    base: str
    root: Path
    password: str
    http: GitHTTPServer
    work: Path
    network: str
    extra: dict[str, str] = field(default_factory=dict)

    def url(self, repo: str) -> str:
        return f"{self.base}/{repo}"

    def creds(self, password: str | None = None) -> dict[str, str]:
        return {"username": USER, "password": password or self.password}

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return host_git(*args, cwd=cwd or self.root)

    def log(self, repo: str, ref: str = "main", fmt: str = "%s") -> list[str]:
        return self.git("--git-dir", str(self.root / repo), "log", f"--format={fmt}", ref).splitlines()

    def commit_on_server(self, repo: str, filename: str, content: str, message: str, branch: str = "main") -> None:
        """A commit made by someone else, straight into the bare repository."""
        work = self.work / f"{repo}-{secrets.token_hex(3)}"
        host_git("clone", "-q", "--branch", branch, str(self.root / repo), str(work), cwd=self.work)
        (work / filename).write_text(content)
        host_git("add", "-A", cwd=work)
        host_git("commit", "-q", "-m", message, cwd=work)
        host_git("push", "-q", "origin", branch, cwd=work)


def host_git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Server Side",
        "GIT_AUTHOR_EMAIL": "server@example.test",
        "GIT_COMMITTER_NAME": "Server Side",
        "GIT_COMMITTER_EMAIL": "server@example.test",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def make_repo(root: Path, work: Path, name: str, commits: int) -> None:
    """A bare repo: `commits` commits on main, plus a branch `dev` with one more."""
    bare = root / name
    host_git("init", "-q", "--bare", "--initial-branch=main", str(bare), cwd=root)
    src = work / f"src-{name}"
    host_git("init", "-q", "--initial-branch=main", str(src), cwd=work)
    for i in range(1, commits + 1):
        (src / "README.md").write_text(f"# {name}\n\nrevision {i}\n")
        host_git("add", "-A", cwd=src)
        host_git("commit", "-q", "-m", f"{name} commit {i}", cwd=src)
    host_git("checkout", "-q", "-b", "dev", cwd=src)
    (src / "dev.txt").write_text("only on dev\n")
    host_git("add", "-A", cwd=src)
    host_git("commit", "-q", "-m", "dev work", cwd=src)
    host_git("push", "-q", str(bare), "main", "dev", cwd=src)


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    client = docker.from_env()
    network = client.networks.create(
        f"corral-test-git-{secrets.token_hex(4)}", driver="bridge", labels={f"{LABEL_NAMESPACE}.test": "git"}
    )
    http_server: GitHTTPServer | None = None
    try:
        network.reload()
        gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
        root = tmp_path_factory.mktemp("git-server")
        work = tmp_path_factory.mktemp("git-work")
        make_repo(root, work, "public.git", commits=5)
        make_repo(root, work, "private.git", commits=3)
        password = f"pw-{secrets.token_hex(12)}"
        http_server = GitHTTPServer((gateway, 0), root, password, {"private.git"})
        threading.Thread(target=http_server.serve_forever, daemon=True).start()
        port = http_server.server_address[1]
        yield GitServer(f"http://{gateway}:{port}", root, password, http_server, work, network.name)
    finally:
        if http_server is not None:
            http_server.shutdown()
            http_server.server_close()
        network.remove()
        client.close()
