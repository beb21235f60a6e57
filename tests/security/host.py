"""What the security tests look at from the host: containers, volumes, loop devices, and `corral
serve` processes they can kill -9 at a moment of their choosing."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import docker
import httpx

from corral.config import LABEL_NAMESPACE, Settings
from corral.service.containers import home_label
from tests.helpers import corral_cmd, corral_env

OWNER = f"{LABEL_NAMESPACE}.owner"
T = TypeVar("T")


@dataclass(frozen=True)
class Thing:
    id: str  # container id, or volume name
    name: str
    labels: dict[str, str]


def labelled(home: Path, kind: str = "containers", **labels: str) -> list[Thing]:
    """Containers (or volumes) of this data dir carrying `labels` (dev.corral.<key>=value)."""
    filters = [f"{OWNER}={home_label(Settings(home=home))}"]
    filters += [f"{LABEL_NAMESPACE}.{key.replace('_', '-')}={value}" for key, value in labels.items()]
    client = docker.from_env()
    try:
        if kind == "volumes":
            found = client.api.volumes(filters={"label": filters}).get("Volumes") or []
            return [Thing(v["Name"], v["Name"], v.get("Labels") or {}) for v in found]
        listed = client.api.containers(all=True, filters={"label": filters})
        return [Thing(c["Id"], c["Names"][0].lstrip("/"), c.get("Labels") or {}) for c in listed]
    finally:
        client.close()


def loop_devices_of(image: Path) -> list[str]:
    out = subprocess.run(
        ["losetup", "--noheadings", "--output", "NAME", "--associated", str(image)],
        capture_output=True, text=True, check=False,
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def wait_until(condition: Any, deadline: float, what: str, every: float = 0.05) -> Any:
    """Poll `condition` until it returns something truthy; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {deadline:g} s waiting for {what}")


async def eventually(probe: Callable[[], Awaitable[T]], deadline: float, what: str, every: float = 0.2) -> T:
    """Await `probe` until it returns something truthy; fail after `deadline` seconds."""
    try:
        with anyio.fail_after(deadline):
            while True:
                value = await probe()
                if value:
                    return value
                await anyio.sleep(every)
    except TimeoutError:
        raise AssertionError(f"timed out after {deadline:g} s waiting for {what}") from None


async def http_ok(url: str) -> bool:
    async with httpx.AsyncClient(timeout=5) as http:
        try:
            return (await http.get(url)).status_code == 200
        except httpx.HTTPError:
            return False


class RawServer:
    """A `corral serve` (stdio) process driven with raw JSON-RPC, so a test can SIGKILL it in the
    middle of a call."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log = home / f"server-{os.getpid()}-{time.monotonic_ns()}.log"
        self._stderr = open(self.log, "wb")  # closed in kill()
        self.proc = subprocess.Popen(
            corral_cmd("serve", *args),
            env={**corral_env(home), **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._id = 0
        self.send("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                 "clientInfo": {"name": "raw", "version": "0"}})
        self.wait(self._id, 120)
        self._write({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self._lines.put(json.loads(line))

    def _write(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def send(self, method: str, params: dict[str, Any]) -> int:
        self._id += 1
        self._write({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        return self._id

    def call(self, tool: str, **arguments: Any) -> int:
        return self.send("tools/call", {"name": tool, "arguments": arguments})

    def wait(self, request_id: int, deadline: float) -> dict[str, Any]:
        end = time.monotonic() + deadline
        while True:
            try:
                message = self._lines.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no reply to request {request_id} within {deadline} s") from None
            if message.get("id") == request_id:
                return message

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the server."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._stderr.close()
