"""The in-sandbox agent, bundled for shipping through `docker exec` argv.

`bootstrap_argv(mode)` is a complete command line: a small bootstrap script plus the base64 zip of
agent.py and drivers/*. Inside the sandbox it unpacks the bundle once into
`<agent dir>/v-<AGENT_VERSION>/` (atomically; `<agent dir>` is $CORRAL_AGENT_DIR or /tmp/.corral)
and execs `agent.py <mode>` from there, so the daemon and its drivers run as real files.
`AGENT_VERSION` is a digest of the bundle; the daemon reports the same value in `hello`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

__all__ = ["AGENT_SOURCE_DIR", "AGENT_VERSION", "bootstrap_argv", "bundle_files"]

AGENT_SOURCE_DIR = Path(__file__).resolve().parent

# Python 3.8-compatible; argv after `-c BOOT` is: mode, bundle, mode arguments...
_BOOT = """\
import base64, io, os, shutil, sys, tempfile, zipfile
root = os.environ.get("CORRAL_AGENT_DIR") or "/tmp/.corral"
home = os.path.join(root, "v-%(version)s")
if not os.path.isfile(os.path.join(home, "VERSION")):
    os.makedirs(root, mode=0o700, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".unpack-", dir=root)
    zipfile.ZipFile(io.BytesIO(base64.b64decode(sys.argv[2]))).extractall(staging)
    try:
        os.rename(staging, home)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
agent = os.path.join(home, "agent.py")
os.execv(sys.executable, [sys.executable, agent, sys.argv[1]] + sys.argv[3:])
"""


def _is_bundled_driver(name: str) -> bool:
    # Must match agent.py's _is_bundled_driver: both sides hash the same file list.
    return not name.startswith((".", "_")) and not name.endswith((".pyc", "~"))


def bundle_files(root: Path = AGENT_SOURCE_DIR) -> list[str]:
    """Bundle members relative to `root`: agent.py, then drivers/* in name order."""
    names = ["agent.py"]
    drivers = root / "drivers"
    if drivers.is_dir():
        members = sorted(p for p in drivers.iterdir() if _is_bundled_driver(p.name) and p.is_file())
        names += [f"drivers/{p.name}" for p in members]
    return names


def _digest(files: list[tuple[str, bytes]]) -> str:
    # Same construction as agent.py's bundle_digest().
    digest = hashlib.sha256()
    for name, data in files:
        digest.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0")
        digest.update(data)
    return digest.hexdigest()[:16]


def _zip(files: list[tuple[str, bytes]], version: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in [*files, ("VERSION", version.encode() + b"\n")]:
            info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def _build() -> tuple[str, str]:
    files = [(name, (AGENT_SOURCE_DIR / name).read_bytes()) for name in bundle_files()]
    version = _digest(files)
    return version, base64.b64encode(_zip(files, version)).decode("ascii")


AGENT_VERSION, _BUNDLE_B64 = _build()
_BOOT_SCRIPT = _BOOT % {"version": AGENT_VERSION}


def bootstrap_argv(mode: str = "relay", *args: str, python: str = "python3") -> list[str]:
    """argv that runs the bundled agent in `mode` ("relay", "serve-stdio", "daemon",
    "tcp-relay" with HOST PORT as `args`) with the sandbox's `python` (>= 3.8)."""
    return [python, "-c", _BOOT_SCRIPT, mode, _BUNDLE_B64, *args]
