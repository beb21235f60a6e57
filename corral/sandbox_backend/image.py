"""The default sandbox image, built offline from Debian packages: debootstrap, then `docker import`.

No registry is needed: only a Debian mirror. The image has python3 (+pip, venv, matplotlib, PIL),
nodejs, git, curl, procps and ca-certificates, and a non-root user `sandbox` (uid 1000) whose home
and working directory is /workspace.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from corral.config import DEFAULT_IMAGE, LABEL_NAMESPACE
from corral.errors import BackendError

PACKAGES = [
    "python3",
    "python3-pip",
    "python3-venv",
    "python3-matplotlib",
    "python3-pil",
    "nodejs",
    "git",
    "ca-certificates",
    "procps",
    "curl",
    "less",
    "file",
    "unzip",
    "xz-utils",
]
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Bumped whenever PACKAGES or the recipe changes, so an old image is never mistaken for this one.
RECIPE_VERSION = DEFAULT_IMAGE.rsplit(":", 1)[1]

Progress = Callable[[str, float], None]  # (stage description, fraction 0..1)


def _mirror() -> str:
    """The mirror apt already uses on this host, so a proxied or local mirror keeps working."""
    env = os.environ.get("CORRAL_DEBIAN_MIRROR")
    if env:
        return env
    for source in [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]:
        try:
            text = source.read_text()
        except OSError:
            continue
        match = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s+\S+", text, re.M
        )
        if match:
            return match.group(1)
    return DEFAULT_MIRROR


def build_image(name: str = DEFAULT_IMAGE, progress: Progress | None = None) -> None:
    """Build `name` from scratch. Needs root, debootstrap and the docker CLI; takes about a minute."""
    report = progress or (lambda _stage, _fraction: None)
    if os.geteuid() != 0:
        raise BackendError("building the sandbox image needs root (debootstrap); run it with sudo")
    if shutil.which("debootstrap") is None:
        raise BackendError("debootstrap is missing: apt-get install debootstrap (scripts/setup-host.sh does)")
    with tempfile.TemporaryDirectory(prefix="corral-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        _debootstrap(root, report)
        report("configuring the sandbox user", 0.86)
        _configure(root)
        _install_statx_shim(root)
        report("importing into Docker", 0.9)
        _import(root, name)
    report("done", 1.0)


def _debootstrap(root: Path, report: Progress) -> None:
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(root),
        _mirror(),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    # debootstrap prints "I: Retrieving X", "I: Extracting X", "I: Unpacking X", "I: Configuring X":
    # the phases give a coarse but honest progress measure.
    phases = {
        "Retriev": (0.0, 0.3),
        "Validat": (0.3, 0.35),
        "Extract": (0.35, 0.45),
        "Install": (0.45, 0.5),
        "Unpack": (0.5, 0.7),
        "Configur": (0.7, 0.85),
    }
    counts: dict[str, int] = {}
    shown = 0.0
    for line in proc.stdout:
        line = line.rstrip()
        tail = [*tail[-20:], line]
        for key, (start, end) in phases.items():
            if line.startswith(f"I: {key}"):
                counts[key] = counts.get(key, 0) + 1
                shown = max(shown, start + (end - start) * min(1.0, counts[key] / 250))
                report(line[3:][:60], shown)
                break
    if proc.wait() != 0:
        raise BackendError("debootstrap failed:\n" + "\n".join(tail))


def _configure(root: Path) -> None:
    script = """
set -e
groupadd --gid 1000 sandbox
useradd --uid 1000 --gid 1000 --home-dir /workspace --create-home --shell /bin/bash sandbox
chmod 755 /workspace
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log
mkdir -p /etc/matplotlib && echo 'backend: Agg' > /etc/matplotlib/matplotlibrc
"""
    subprocess.run(["chroot", str(root), "/bin/sh", "-c", script], check=True, capture_output=True)


def _install_statx_shim(root: Path) -> None:
    source = Path(__file__).with_name("shim") / "statx_compat.c"
    target = root / "usr/local/lib/corral-statx-compat.so"
    target.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(target), str(source)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise BackendError(f"could not compile the statx shim (is gcc installed?): {result.stderr.strip()}")
    (root / "etc/ld.so.preload").write_text("/usr/local/lib/corral-statx-compat.so\n")


def _import(root: Path, name: str) -> None:
    changes = [
        "USER sandbox",
        "WORKDIR /workspace",
        "ENV HOME=/workspace",
        "ENV LANG=C.UTF-8",
        "ENV PATH=/workspace/.local/bin:/usr/local/bin:/usr/bin:/bin",
        f"LABEL {LABEL_NAMESPACE}.image-recipe={RECIPE_VERSION}",
        'CMD ["sleep", "infinity"]',
    ]
    args = ["docker", "import"]
    for change in changes:
        args += ["--change", change]
    args += ["-", name]
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    imp = subprocess.run(args, stdin=tar.stdout, capture_output=True, text=True)
    tar.wait()
    if imp.returncode != 0 or tar.returncode != 0:
        raise BackendError(f"docker import failed: {imp.stderr.strip()}")
