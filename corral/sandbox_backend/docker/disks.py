"""Disk limits for Docker volumes: an ext4 image file on a loop device, mounted by Docker's local
volume driver (`type=ext4`, `device=...`).

overlay2's `--storage-opt size` needs xfs with project quotas, which most hosts (this one too) lack;
an image of a fixed size works on any file system and under runsc: writing past it fails with
ENOSPC inside the container, and the host's disk holds at most the image's size. The image is
sparse, so the host pays only for what the sandbox really wrote. Docker's local driver cannot
attach a loop device itself (`o=loop` needs mount(8)), so Corral does, as root.

Files in the engine's disk directory (the data dir's `disks/`, mode 0700), per volume:
  <name>.img   the image
  <name>.dev   a symlink to the loop device the image is attached to now. It is the volume's
               `device` option, so after a reboot (another /dev/loopN) the image is attached again
               and the link moved, with no new volume. The device behind the link is checked
               before every container start: a link never points at another volume's image.
  <name>.lock  flock held while attaching or detaching, so two servers never attach one image twice
               (two loop devices on one ext4 image would corrupt it).
Everything here blocks (subprocesses, flock): callers run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from corral.errors import BackendError

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
TOOLS = ("losetup", "mkfs.ext4", "debugfs")
MIN_BYTES = 16 * 1024 * 1024


class LoopDisks:
    """The disk images of one data dir and the loop devices they are attached to."""

    def __init__(self, directory: Path, *, engine_is_local: bool = True) -> None:
        self.directory = directory
        self._engine_is_local = engine_is_local

    def problem(self) -> str | None:
        """Why disk limits cannot be enforced here, or None when they can."""
        if not self._engine_is_local:
            return "the Docker engine is not on this machine (DOCKER_HOST), so Corral cannot give it a disk image"
        if os.geteuid() != 0:
            return "Corral is not running as root, which attaching a loop device needs"
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        if missing:
            return f"{', '.join(missing)} missing (apt-get install util-linux e2fsprogs)"
        if not os.path.exists("/dev/loop-control"):
            return "this kernel offers no loop devices (/dev/loop-control is missing; modprobe loop)"
        return None

    # -- paths ------------------------------------------------------------------------------

    def _path(self, name: str, suffix: str) -> Path:
        if not NAME_RE.match(name):
            raise BackendError(f"invalid volume name {name!r}")
        return self.directory / f"{name}{suffix}"

    def image(self, name: str) -> Path:
        return self._path(name, ".img")

    def device_link(self, name: str) -> Path:
        return self._path(name, ".dev")

    def names(self) -> list[str]:
        """Every volume that has an image here."""
        try:
            return sorted(p.stem for p in self.directory.glob("*.img") if NAME_RE.match(p.stem))
        except OSError:
            return []

    def created(self, name: str) -> float | None:
        try:
            return self.image(name).stat().st_mtime
        except OSError:
            return None

    def size(self, name: str) -> int | None:
        try:
            return self.image(name).stat().st_size
        except OSError:
            return None

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._path(name, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- lifecycle ----------------------------------------------------------------------------

    def create(self, name: str, size_bytes: int, uid: int, gid: int) -> Path:
        """Make an empty ext4 image of `size_bytes` whose root belongs to uid:gid, attach it, and
        return the device link to give Docker."""
        problem = self.problem()
        if problem:
            raise BackendError(problem)
        if size_bytes < MIN_BYTES:
            raise BackendError(f"a disk of {size_bytes} bytes is too small (at least {MIN_BYTES})")
        image = self.image(name)
        with self._locked(name):
            self._detach_all(image)  # a leftover of a create that crashed half-way
            temp = image.with_name(f".{name}.{secrets.token_hex(4)}.tmp")
            try:
                with open(temp, "wb") as f:
                    f.truncate(size_bytes)  # sparse: the host pays only for what is written
                # -m 0: no blocks reserved for root (nobody is root in a sandbox); lazy init keeps
                # the image sparse; the journal keeps it consistent across a host crash.
                _run(
                    "mkfs.ext4",
                    "-q",
                    "-F",
                    "-m",
                    "0",
                    "-L",
                    "corral",
                    "-E",
                    f"root_owner={uid}:{gid},lazy_itable_init=1,lazy_journal_init=1",
                    str(temp),
                )
                # An empty root lets Docker copy the image's own files at the mount point (a home
                # directory's dotfiles) into the volume, as it does for any new volume.
                _run("debugfs", "-w", "-R", "rmdir lost+found", str(temp))
                os.replace(temp, image)
            finally:
                temp.unlink(missing_ok=True)
            return self._attach(name, image)

    def copy(self, name: str, source: str) -> Path:
        """Make the image of `name` a sparse copy of `source`'s (which no running container may have
        mounted: its file system is then clean on disk), attach it, and return its device link."""
        problem = self.problem()
        if problem:
            raise BackendError(problem)
        original, image = self.image(source), self.image(name)
        with self._locked(name):
            self._detach_all(image)
            temp = image.with_name(f".{name}.{secrets.token_hex(4)}.tmp")
            try:
                with self._locked(source):
                    if not original.exists():
                        raise BackendError(f"the disk image of volume {source} is missing; nothing to copy")
                    _run("cp", "--sparse=always", str(original), str(temp))
                os.replace(temp, image)
            finally:
                temp.unlink(missing_ok=True)
            return self._attach(name, image)

    def attach(self, name: str) -> Path:
        """Make sure the image is attached and its link points at its loop device (idempotent)."""
        image = self.image(name)
        with self._locked(name):
            if not image.exists():
                raise BackendError(f"the disk image of volume {name} is missing ({image}); the volume's files are lost")
            return self._attach(name, image)

    def _attach(self, name: str, image: Path) -> Path:
        devices = _devices_of(image)
        device = devices[0] if devices else _run("losetup", "--find", "--show", str(image)).strip()
        if _backing_file(device) != str(image):
            raise BackendError(f"loop device {device} does not hold {image}")
        link = self.device_link(name)
        temp = link.with_name(f".{link.name}.{secrets.token_hex(4)}")
        os.symlink(device, temp)
        os.replace(temp, link)
        return link

    def remove(self, name: str) -> None:
        """Detach the image and delete it; nothing left is not an error."""
        image = self.image(name)
        with self._locked(name):
            self._detach_all(image)
            self.device_link(name).unlink(missing_ok=True)
            image.unlink(missing_ok=True)
        self._path(name, ".lock").unlink(missing_ok=True)

    def _detach_all(self, image: Path) -> None:
        for device in _devices_of(image):
            try:
                _run("losetup", "--detach", device)
            except BackendError as exc:
                log.warning("could not detach %s from %s: %s", device, image, exc)
                raise


def _devices_of(image: Path) -> list[str]:
    if shutil.which("losetup") is None:
        return []
    out = _run("losetup", "--noheadings", "--output", "NAME", "--associated", str(image))
    return [line.strip() for line in out.splitlines() if line.strip()]


def _backing_file(device: str) -> str | None:
    try:
        return Path(f"/sys/block/{Path(device).name}/loop/backing_file").read_text().strip()
    except OSError:
        return None


def _run(*argv: str) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"{argv[0]} failed: {exc}") from exc
    if proc.returncode != 0:
        raise BackendError(f"{' '.join(argv[:3])} failed: {(proc.stderr or proc.stdout).strip()[:500]}")
    return proc.stdout
