"""The default sandbox image, built offline from Debian packages: debootstrap, apt, `docker import`.

No registry is needed: only a Debian mirror. debootstrap makes a minimal bookworm; apt (inside a
chroot, no recommends) adds what agents reach for: Python 3 with the scientific stack, pytest,
requests/httpx, bs4/lxml, yaml, openpyxl and IPython; `python` as python3; node, npm and TypeScript;
build-essential; git, curl, jq, sqlite3, ripgrep, zip/unzip. A non-root user `sandbox` (uid 1000)
has /workspace as home and working directory.

`pip install X` works as that user (into ~/.local, which is on PATH): /etc/pip.conf allows it
despite Debian's externally-managed marker, and Debian's packages stay importable. npm's global
prefix is ~/.local too, so `npm install -g X` works without root.

Slimming (the image must stay <= 1.2 GB): no docs, man pages or translations; no test suites inside
Python packages (never imported by the packages themselves); no static libraries of OpenBLAS and
libpython, no Boost headers (pulled in only because Debian's scipy depends on the pythran
compiler), no TypeScript language-server bundles.
These files are excluded from the packages with dpkg's path-exclude, so the packages stay properly
installed; the exclusions of specific packages are dropped after the build, the doc/man/locale
ones stay (as in Debian's slim images).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from corral.config import DEFAULT_IMAGE, LABEL_NAMESPACE
from corral.errors import BackendError

BASE_PACKAGES = ["python3", "ca-certificates"]  # debootstrap's --include
PACKAGES = [  # apt-get install --no-install-recommends in the chroot
    "python3-pip",
    "python3-venv",
    "python3-dev",
    "python-is-python3",
    "python3-numpy",
    "python3-pandas",
    "python3-scipy",
    "python3-sklearn",
    "python3-matplotlib",
    "python3-pil",
    "python3-pytest",
    "python3-requests",
    "python3-httpx",
    "python3-bs4",
    "python3-lxml",
    "python3-yaml",
    "python3-openpyxl",
    "ipython3",
    "nodejs",
    "npm",
    "node-typescript",
    "build-essential",
    "git",
    "procps",
    "curl",
    "less",
    "file",
    "jq",
    "sqlite3",
    "ripgrep",
    "unzip",
    "zip",
    "xz-utils",
]
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Bumped whenever PACKAGES or the recipe changes, so an old image is never mistaken for this one.
RECIPE_VERSION = DEFAULT_IMAGE.rsplit(":", 1)[1]

SLIM_DPKG = """\
# Corral's sandbox image: no docs, man pages or translations (as Debian's slim images).
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
"""
BUILD_DPKG = """\
# Only while the image is built (removed afterwards).
force-unsafe-io
path-exclude=/usr/include/boost/*
path-exclude=/usr/lib/x86_64-linux-gnu/openblas-pthread/*.a
path-exclude=/usr/lib/python3.11/config-3.11-x86_64-linux-gnu/*.a
path-exclude=/usr/lib/python3/dist-packages/*/tests/*
path-exclude=/usr/share/nodejs/typescript/lib/tsserver*
path-exclude=/usr/share/nodejs/typescript/lib/typescriptServices*
path-exclude=/usr/share/nodejs/typescript/lib/typingsInstaller*
"""
PIP_CONF = """\
# pip as the sandbox user installs into ~/.local (pip's default when site-packages is not
# writable); Debian's "externally managed" marker would refuse it.
[global]
break-system-packages = true
"""
NPMRC = "prefix=/workspace/.local\n"  # `npm install -g` without root; ~/.local/bin is on PATH

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
    """Build `name` from scratch. Needs root, debootstrap and the docker CLI; takes 2-3 minutes."""
    report = progress or (lambda _stage, _fraction: None)
    if os.geteuid() != 0:
        raise BackendError("building the sandbox image needs root (debootstrap); run it with sudo")
    if shutil.which("debootstrap") is None:
        raise BackendError("debootstrap is missing: apt-get install debootstrap (scripts/setup-host.sh does)")
    with tempfile.TemporaryDirectory(prefix="corral-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        _debootstrap(root, report)
        _install_packages(root, report)
        report("configuring the sandbox user", 0.86)
        _configure(root)
        _install_statx_shim(root)
        report("importing into Docker", 0.9)
        _import(root, name)
    report("done", 1.0)


def _follow(cmd: list[str], what: str, phases: dict[str, tuple[float, float, int]], report: Progress) -> None:
    """Run cmd, turning its progress lines into (stage, fraction); phases: line prefix ->
    (start, end, expected count)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    tail: list[str] = []
    counts: dict[str, int] = {}
    shown = 0.0
    for line in proc.stdout:
        line = line.rstrip()
        tail = [*tail[-30:], line]
        for prefix, (start, end, expected) in phases.items():
            if line.startswith(prefix):
                counts[prefix] = counts.get(prefix, 0) + 1
                shown = max(shown, start + (end - start) * min(1.0, counts[prefix] / expected))
                report(line.removeprefix("I: ")[:60], shown)
                break
    if proc.wait() != 0:
        raise BackendError(f"{what} failed:\n" + "\n".join(tail))


def _debootstrap(root: Path, report: Progress) -> None:
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(root), _mirror()]
    # debootstrap prints "I: Retrieving X", "I: Extracting X", "I: Unpacking X", "I: Configuring X".
    phases = {
        "I: Retriev": (0.0, 0.08, 100),
        "I: Extract": (0.08, 0.12, 100),
        "I: Unpack": (0.12, 0.18, 100),
        "I: Configur": (0.18, 0.25, 100),
    }
    _follow(cmd, "debootstrap", phases, report)


@contextmanager
def _chroot_ready(root: Path) -> Iterator[None]:
    """/proc and the host's resolver inside the chroot while packages are installed."""
    proc_dir = root / "proc"
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    subprocess.run(["mount", "-t", "proc", "proc", str(proc_dir)], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(proc_dir)], capture_output=True)
        (root / "etc/resolv.conf").write_text("")


def _install_packages(root: Path, report: Progress) -> None:
    dpkg_conf = root / "etc/dpkg/dpkg.cfg.d"
    (dpkg_conf / "corral-slim").write_text(SLIM_DPKG)
    (dpkg_conf / "corral-build").write_text(BUILD_DPKG)
    with _chroot_ready(root), _deferred_bytecode(root):
        _follow(["chroot", str(root), "apt-get", "update"], "apt-get update", {}, report)
        install = ["chroot", str(root), "apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
        phases = {"Get:": (0.25, 0.5, 700), "Unpacking": (0.5, 0.65, 700), "Setting up": (0.65, 0.8, 700)}
        _follow(install, "apt-get install", phases, report)
        subprocess.run(["chroot", str(root), "apt-get", "clean"], check=True, capture_output=True)
    (dpkg_conf / "corral-build").unlink()
    # What debootstrap unpacked before the path-excludes existed.
    for pattern in ("usr/share/man/*", "usr/share/info/*", "usr/share/locale/*"):
        for path in root.glob(pattern):
            _remove(path)
    for path in (root / "usr/share/doc").glob("*/*"):
        if path.name != "copyright":
            _remove(path)
    for path in (root / "var/lib/apt/lists").glob("*"):
        _remove(path)
    for path in sorted((root / "usr/lib/python3/dist-packages").glob("**/tests"), reverse=True):
        if path.is_dir() and not path.is_symlink():
            _remove(path)  # left empty by the path-exclude
    report("compiling Python bytecode", 0.8)
    # The sandbox user cannot write __pycache__ under /usr: without .pyc files every import of
    # pandas & co. would compile from source. Errors are files meant for other Pythons.
    compileall = ["chroot", str(root), "python3", "-m", "compileall", "-q", "-j", "0", "/usr/lib/python3/dist-packages"]
    subprocess.run(compileall, capture_output=True)


@contextmanager
def _deferred_bytecode(root: Path) -> Iterator[None]:
    """Packages' postinst scripts compile their .py files one package at a time (py3compile);
    one parallel compileall afterwards is much faster, and lets the test suites be excluded."""
    divert = ["chroot", str(root), "dpkg-divert", "--quiet", "--local", "--rename"]
    subprocess.run([*divert, "--add", "/usr/bin/py3compile"], check=True, capture_output=True)
    (root / "usr/bin/py3compile").symlink_to("/bin/true")
    try:
        yield
    finally:
        (root / "usr/bin/py3compile").unlink(missing_ok=True)
        subprocess.run([*divert, "--remove", "/usr/bin/py3compile"], check=True, capture_output=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _configure(root: Path) -> None:
    script = """
set -e
groupadd --gid 1000 sandbox
useradd --uid 1000 --gid 1000 --home-dir /workspace --create-home --shell /bin/bash sandbox
chmod 755 /workspace
rm -rf /var/cache/apt/*.bin /var/log/*.log /var/log/apt/*
mkdir -p /etc/matplotlib && echo 'backend: Agg' > /etc/matplotlib/matplotlibrc
"""
    subprocess.run(["chroot", str(root), "/bin/sh", "-c", script], check=True, capture_output=True)
    (root / "etc/pip.conf").write_text(PIP_CONF)
    (root / "etc/npmrc").write_text(NPMRC)


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
        "ENV PIP_BREAK_SYSTEM_PACKAGES=1",
        "ENV NPM_CONFIG_PREFIX=/workspace/.local",
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
