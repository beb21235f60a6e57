"""The escapes the red team tried and gVisor + Corral's container spec already stop, kept stopped:
host files, the Docker socket, mount, raw sockets, /proc/sys, ptrace, the host's and the
neighbours' network. Network probes aim only at addresses this test made (a Docker network's
gateway, its own server, the other sandbox)."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
from pathlib import Path

import anyio
import docker
from mcp import Client

from corral.config import LABEL_NAMESPACE
from tests.helpers import call_ok
from tests.security.host import eventually

PROBE = r'''
import ctypes, errno, os, socket, sys
def check(name, fn):
    try:
        fn()
        print(name, "ESCAPED")
    except Exception as exc:
        print(name, "held", type(exc).__name__)
def host_file():
    open(sys.argv[1]).read()
def docker_socket():
    for path in ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock"):
        s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(path)
def mount():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) != 0:
        raise OSError(ctypes.get_errno(), "mount")
def raw_socket():
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
def proc_sys():
    with open("/proc/sys/kernel/hostname", "w") as f:
        f.write("pwned")
def ptrace_host():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(16, int(sys.argv[2]), None, None) != 0:  # PTRACE_ATTACH to the test's own pid
        raise OSError(ctypes.get_errno(), "ptrace")
def host_network():
    socket.create_connection((sys.argv[3], int(sys.argv[4])), timeout=3)
def neighbour():
    socket.create_connection(("127.0.0.1", int(sys.argv[5])), timeout=3)
def write_image():
    open("/usr/bin/pwned", "w")
for name, fn in list(globals().items()):
    if callable(fn) and name not in ("check",) and fn.__module__ == "__main__":
        check(name, fn)
print("kernel", os.uname().release)
'''


async def test_known_escapes_stay_closed(client: Client, sandbox: str, tmp_path: Path) -> None:
    marker = tmp_path / f"host-secret-{secrets.token_hex(4)}"
    marker.write_text("host secret")
    docker_client = docker.from_env()
    network = docker_client.networks.create(
        f"corral-test-escape-{secrets.token_hex(4)}", driver="bridge", labels={f"{LABEL_NAMESPACE}.test": "escape"}
    )
    listener = socket.socket()
    try:
        network.reload()
        gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
        listener.bind((gateway, 0))
        listener.listen()
        accepted: list[object] = []

        def accept() -> None:
            with contextlib.suppress(OSError):  # the listener is closed at the end of the test
                accepted.append(listener.accept())

        threading.Thread(target=accept, daemon=True).start()
        with anyio.fail_after(180):
            neighbour = (await call_ok(client, "create_sandbox"))["id"]
            await call_ok(client, "start_process", sandbox=neighbour, command="python3 -m http.server 8123")
            await call_ok(client, "write_file", sandbox=sandbox, path="probe.py", content=PROBE)
            args = f"{marker} {os.getpid()} {gateway} {listener.getsockname()[1]} 8123"
            out = await call_ok(client, "run_command", sandbox=sandbox, command=f"python3 probe.py {args}")
            lines = dict(line.split(" ", 1) for line in out["stdout"].splitlines())
            assert lines.pop("kernel") == "4.4.0"  # gVisor's kernel, not the host's
            assert set(lines) == {
                "host_file", "docker_socket", "mount", "raw_socket", "proc_sys", "ptrace_host", "host_network",
                "neighbour", "write_image",
            }, out
            assert all(v.startswith("held") for v in lines.values()), lines
            assert accepted == []
            # The neighbour's server is up and fine; only this sandbox could not reach it.
            check = "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:8123').status)\""

            async def neighbour_serves() -> bool:
                out = await call_ok(client, "run_command", sandbox=neighbour, command=check + " || true")
                return bool(out["stdout"] == "200\n")

            await eventually(neighbour_serves, 30, "the neighbour's server")
            await call_ok(client, "delete_sandbox", sandbox=neighbour)
    finally:
        listener.close()
        network.remove()
        docker_client.close()
