"""Finding 4: a sandbox could fill the host's disk (`move_path /dev/zero`, `dd`)."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import docker
from mcp import Client

from corral.config import Settings
from tests.helpers import call_error, call_ok
from tests.security.host import labelled, loop_devices_of

MIB = 1024 * 1024


def image_of(settings: Settings, volume: str) -> Path:
    return settings.home / "disks" / f"{volume}.img"


async def test_dd_past_the_disk_limit_fails_with_enospc_and_the_host_disk_is_spared(
    client: Client, settings: Settings, sandbox: str
) -> None:
    with anyio.fail_after(240):
        info = await call_ok(client, "create_sandbox", disk_mb=64)
        box = info["id"]
        assert info["disk_mb"] == 64
        volume = labelled(settings.home, "volumes", sandbox=box, role="workspace")[0].name
        image = image_of(settings, volume)
        # Every place the sandbox user can write is bounded: its disk, and memory-backed /tmp & co.
        script = (
            "for target in /workspace/fill /tmp/fill /var/tmp/fill /dev/shm/fill; do "
            "dd if=/dev/zero of=$target bs=1M count=400 2>&1 | grep -o 'No space left on device' | head -1; "
            "rm -f $target; done; "
            "for target in /fill /usr/fill /etc/fill /opt/corral/fill /run/lock/fill /var/lib/fill; do "
            "touch $target 2>/dev/null && echo WROTE $target; done; "
            "for target in /etc/hosts /etc/hostname /etc/resolv.conf; do "
            "(echo x >> $target) 2>/dev/null && echo WROTE $target; done; "
            # PID 1's stdout is the container's log: a file on the host unless nothing keeps it.
            "head -c 50000000 /dev/zero > /proc/1/fd/1; true"
        )
        out = await call_ok(client, "run_command", sandbox=box, command=script, timeout=120)
        assert out["stdout"].split("\n").count("No space left on device") == 4, out
        assert "WROTE" not in out["stdout"]
        docker_client = docker.from_env()
        try:
            log_path = docker_client.containers.get(f"corral-{box}").attrs["LogPath"]
        finally:
            docker_client.close()
        assert not log_path or os.stat(log_path).st_size < MIB
        # The host holds at most the image's size for it, however much the sandbox tried to write.
        assert image.stat().st_blocks * 512 <= 64 * MIB

        # Devices and FIFOs are refused as sources and targets, never copied.
        message = await call_error(client, "move_path", sandbox=box, source="/dev/zero", destination="zz")
        assert "not a regular file" in message
        assert "not a regular file" in await call_error(client, "read_file", sandbox=box, path="/dev/zero")
        await call_ok(client, "run_command", sandbox=box, command="mkfifo /workspace/pipe")
        assert "not a regular file" in await call_error(client, "write_file", sandbox=box, path="pipe", content="x")
        message = await call_error(client, "move_path", sandbox=box, source="pipe", destination="/tmp/pipe")
        assert "not a regular file" in message
        assert "disk_mb must be between 64 and" in await call_error(client, "create_sandbox", disk_mb=10**9)

        # A host reboot detaches loop devices: the sandbox comes back with its files all the same.
        await call_ok(client, "write_file", sandbox=box, path="kept.txt", content="kept")
        docker_client = docker.from_env()
        try:
            docker_client.containers.get(f"corral-{box}").stop(timeout=1)
        finally:
            docker_client.close()
        for device in loop_devices_of(image):
            await anyio.run_process(["losetup", "--detach", device])
        assert (await call_ok(client, "read_file", sandbox=box, path="kept.txt", raw=True))["content"] == "kept"

        # Deleting the sandbox removes its volume, its image and its loop device.
        await call_ok(client, "delete_sandbox", sandbox=box)
        assert labelled(settings.home, "volumes", sandbox=box) == []
        assert not image.exists() and loop_devices_of(image) == []
        # The other sandboxes did not notice.
        assert (await call_ok(client, "run_command", sandbox=sandbox, command="echo ok"))["stdout"] == "ok\n"
