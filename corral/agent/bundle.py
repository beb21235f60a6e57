"""The agent's bundle: what ships into a sandbox, its version, and the command lines that run it.

One module for both sides, so the version digest exists once:
- the host imports it as `corral.agent.bundle` for `AGENT_VERSION` and `bootstrap_argv(mode)`;
- the agent imports it (as `corral_agent.bundle` inside a sandbox) for `agent_version()`, which
  `hello` reports, and `launch_argv(mode)`, with which it starts its daemon and helpers.

The bundle is a zlib-compressed zip of this package (`*.py` + `drivers/*`, plus a `VERSION` file)
whose members sit under `corral_agent/`. `bootstrap_argv()` is a complete command line: a short bootstrap script
plus the base64 zip. Inside the sandbox the bootstrap unpacks the zip once into
`<agent dir>/v-<AGENT_VERSION>/` (staging dir + atomic rename) and execs the package's entry point
from there with `python3 -I`: isolated mode ignores PYTHON* variables and the user site, and puts
neither the working directory (the sandbox's /workspace) nor a script's directory on sys.path, so
files in the sandbox cannot shadow the modules the agent imports. The code directory is only read
(apart from Python's own __pycache__), so it may as well be a root-owned, pre-installed one.

In a Corral sandbox the bundle is not unpacked by the sandbox at all: the host installs it
root-owned under `AGENT_ROOT` (`install_tar()`, copied in before the container starts) and runs it
with `installed_argv()`, the image's python by absolute path. Sandbox code runs as the same user as
the agent but cannot write there, nor put a `python3` of its own in the way.

`AGENT_VERSION` is the first 16 hex digits of a sha256 over the members (name, length, bytes).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    import tarfile

# hashlib (OpenSSL: ~80 ms to import under gVisor), zipfile, zlib, io and base64 are imported
# where they are used: the agent in a sandbox only reads its VERSION file, and its daemon, relay and
# helpers all import this module at start.

PACKAGE = "corral_agent"  # the package's top-level name inside a sandbox
DEFAULT_AGENT_DIR = "/tmp/.corral"  # the daemon's runtime state: socket, lock, pid, log
DEFAULT_DATA_DIR = "/workspace/.corral"  # what must survive a restart: background process spools
AGENT_MOUNT = "/opt/corral"  # root-owned in a sandbox: the sandbox user cannot write it
AGENT_ROOT = AGENT_MOUNT + "/agent"
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _import_root() -> str:
    """The sys.path entry this package is imported from (`corral.agent` -> the repository)."""
    root = PACKAGE_DIR
    for _ in __name__.split(".")[:-1]:
        root = os.path.dirname(root)
    return root


PACKAGE_NAME = __name__.rpartition(".")[0]  # "corral.agent" on the host, PACKAGE in a sandbox
IMPORT_ROOT = _import_root()

# `python -I -c LAUNCHER <import root> <package> MODE ARGS...` runs `<package>.__main__.main`.
LAUNCHER = (
    "import sys; sys.path.insert(0, sys.argv[1]); from importlib import import_module; "
    "sys.exit(import_module(sys.argv[2] + '.__main__').main(sys.argv[3:]))"
)


def launch_argv(mode: str, *args: str, python: str | None = None) -> list[str]:
    """argv that runs this very package (where it is installed now) in `mode`."""
    return [python or sys.executable, "-I", "-S", "-c", LAUNCHER, IMPORT_ROOT, PACKAGE_NAME, mode, *args]


# -- the bundle's content and version -------------------------------------------------------------


def _is_member(name: str, top_level: bool) -> bool:
    if name.startswith((".", "_")) and not (top_level and name in ("__init__.py", "__main__.py")):
        return False
    if top_level:
        return name.endswith(".py")
    return not name.endswith((".pyc", "~"))


def bundle_files(root: str = PACKAGE_DIR) -> list[str]:
    """Bundle members relative to the package directory `root`: the package's modules, then
    drivers/* (both in name order)."""
    names = [n for n in sorted(os.listdir(root)) if _is_member(n, True) and os.path.isfile(os.path.join(root, n))]
    drivers = os.path.join(root, "drivers")
    if os.path.isdir(drivers):
        for name in sorted(os.listdir(drivers)):
            if _is_member(name, False) and os.path.isfile(os.path.join(drivers, name)):
                names.append("drivers/" + name)
    return names


def _read_members(root: str) -> list[tuple[str, bytes]]:
    members = []
    for name in bundle_files(root):
        with open(os.path.join(root, name), "rb") as f:
            members.append((name, f.read()))
    return members


def _digest(members: list[tuple[str, bytes]]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name, data in members:
        digest.update(name.encode("utf-8") + b"\0" + str(len(data)).encode("ascii") + b"\0")
        digest.update(data)
    return digest.hexdigest()[:16]


_version: list[str] = []


def agent_version() -> str:
    """The bundle's version: its VERSION file once unpacked, else the digest of the source."""
    if not _version:
        version = ""
        try:
            with open(os.path.join(PACKAGE_DIR, "VERSION")) as f:
                version = f.read().strip()
        except OSError:
            pass
        _version.append(version or _digest(_read_members(PACKAGE_DIR)))
    return _version[0]


# -- host side: the zip and the bootstrap --------------------------------------------------------

# Python 3.8-compatible; its argv after `-I -c BOOT` is: mode, bundle, mode arguments...
_BOOT = """\
import os, sys
root = os.environ.get("CORRAL_AGENT_DIR") or %(agent_dir)r
home = os.path.join(root, "v-%(version)s")
if not os.path.isfile(os.path.join(home, %(package)r, "VERSION")):
    import base64, io, shutil, tempfile, zipfile, zlib
    os.makedirs(root, mode=0o700, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".unpack-", dir=root)
    zipfile.ZipFile(io.BytesIO(zlib.decompress(base64.b64decode(sys.argv[2])))).extractall(staging)
    try:
        os.rename(staging, home)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
argv = [sys.executable, "-I", "-S", "-c", %(launcher)r, home, %(package)r, sys.argv[1]] + sys.argv[3:]
os.execv(sys.executable, argv)
"""


def _zip(members: list[tuple[str, bytes]], version: str) -> bytes:
    """The members, stored, in a zip that is then compressed as a whole: about a fifth smaller
    than deflating each member on its own (the command line has to stay under 128 KiB)."""
    import io
    import zipfile
    import zlib

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in [*members, ("VERSION", version.encode() + b"\n")]:
            info = zipfile.ZipInfo(f"{PACKAGE}/{name}", date_time=(2000, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return zlib.compress(buffer.getvalue(), 9)


_boot: list[tuple[str, str]] = []


def _bootstrap() -> tuple[str, str]:
    """(bootstrap script, base64 bundle), built once per process."""
    if not _boot:
        version = agent_version()
        import base64

        bundle = base64.b64encode(_zip(_read_members(PACKAGE_DIR), version)).decode("ascii")
        fields = {"agent_dir": DEFAULT_AGENT_DIR, "version": version, "package": PACKAGE, "launcher": LAUNCHER}
        _boot.append((_BOOT % fields, bundle))
    return _boot[0]


def bootstrap_argv(mode: str = "relay", *args: str, python: str = "python3") -> list[str]:
    """argv that runs the bundled agent in `mode` ("relay", "serve-stdio", "daemon", "version",
    "tcp-relay" with HOST PORT as `args`) with the sandbox's `python` (>= 3.8)."""
    script, bundle = _bootstrap()
    return [python, "-I", "-S", "-c", script, mode, bundle, *args]


_tars: dict[str, bytes] = {}


def install_tar(prefix: str = "agent") -> bytes:
    """A tar to unpack at AGENT_MOUNT: `agent/v-<version>/corral_agent/...` (`prefix` replaces
    `agent`), owned by root, directories 0755 and files 0644, so only root can change the code.
    It carries bytecode for this host's Python too (`_bytecode`); built once per process."""
    if prefix not in _tars:
        _tars[prefix] = _install_tar(prefix)
    return _tars[prefix]


def unpack_install(directory: str) -> None:
    """Unpack `install_tar()` into `directory` (the host's side of a new, empty agent volume),
    root-owned as Docker's archive API would make it, without its ~50 ms. Only as root: code the
    sandbox's user could own is never installed."""
    import io
    import tarfile

    if os.geteuid() != 0:
        raise PermissionError("only root installs the agent's code on the host's side")
    with tarfile.open(fileobj=io.BytesIO(install_tar())) as archive:
        for member in archive.getmembers():
            path = os.path.join(directory, member.name)
            if member.isdir():
                os.makedirs(path, exist_ok=True)
            else:
                source = archive.extractfile(member)
                assert source is not None
                with open(path, "xb") as f:
                    f.write(source.read())
            os.chown(path, 0, 0)
            os.chmod(path, member.mode)
            os.utime(path, (member.mtime, member.mtime))


def _bytecode(members: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """`__pycache__/*.pyc` for the Python modules among `members`, for the Python running this.

    The sandbox user cannot write the installed code's directory, so without these every start of
    the daemon, a relay or a driver compiles the agent again: ~40 ms and ~2 MiB more per daemon
    under gVisor (measured). A sandbox Python of another version ignores them (their names carry
    the version tag) and compiles as before. They are unchecked-hash pycs (PEP 552): the code sits
    in a directory named for its own digest that only root can write, so there is nothing to
    check them against, and no file time they depend on."""
    import importlib.util
    import marshal

    tag = sys.implementation.cache_tag
    if tag is None:
        return []
    out = []
    for name, data in members:
        if not name.endswith(".py"):
            continue
        code = compile(data, name, "exec", dont_inherit=True)
        folder, _, base = name.rpartition("/")
        header = importlib.util.MAGIC_NUMBER + (0b01).to_bytes(4, "little") + importlib.util.source_hash(data)
        out.append((f"{folder + '/' if folder else ''}__pycache__/{base[:-3]}.{tag}.pyc", header + marshal.dumps(code)))
    return out


def _install_tar(prefix: str) -> bytes:
    import io
    import tarfile

    version = agent_version()
    sources = _read_members(PACKAGE_DIR)
    members = [*sources, ("VERSION", version.encode() + b"\n"), *_bytecode(sources)]
    top = f"{prefix}/v-{version}"
    parts = prefix.split("/")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        dirs = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        dirs += [top, f"{top}/{PACKAGE}", f"{top}/{PACKAGE}/drivers"]
        dirs += [f"{top}/{PACKAGE}/__pycache__", f"{top}/{PACKAGE}/drivers/__pycache__"]
        for name in dirs:
            archive.addfile(_tar_entry(name, tarfile.DIRTYPE, 0o755))
        for name, data in members:
            info = _tar_entry(f"{top}/{PACKAGE}/{name}", tarfile.REGTYPE, 0o644)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _tar_entry(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    import tarfile

    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, 0, 0, 946684800
    return info


# Run as root in a running sandbox (`-I -S`: no environment, user site or .pth file has a say):
# unpacks the bundle into <root>/v-<version>/ through the sandbox's own kernel, so the running
# sandbox sees it (files copied in from outside while it runs may stay invisible to gVisor).
_INSTALL = """\
import base64, io, os, shutil, sys, tempfile, zipfile, zlib
root, version = sys.argv[1], sys.argv[2]
os.umask(0o022)
os.makedirs(root, mode=0o755, exist_ok=True)
home = os.path.join(root, "v-" + version)
if not os.path.isfile(os.path.join(home, %(package)r, "VERSION")):
    staging = tempfile.mkdtemp(prefix=".install-", dir=root)
    os.chmod(staging, 0o755)
    zipfile.ZipFile(io.BytesIO(zlib.decompress(base64.b64decode(sys.argv[3])))).extractall(staging)
    try:
        os.rename(staging, home)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
"""


def install_argv(*, python: str, root: str = AGENT_ROOT) -> list[str]:
    """argv that installs the bundle root-owned under `root` inside a running sandbox (run it as
    root there); `install_tar()` does the same before the sandbox starts."""
    _, bundle = _bootstrap()
    return [python, "-I", "-S", "-c", _INSTALL % {"package": PACKAGE}, root, agent_version(), bundle]


def installed_argv(mode: str, *args: str, python: str, root: str = AGENT_ROOT) -> list[str]:
    """argv that runs the bundle installed by `install_tar()` in `mode` with `python` (an absolute
    path: a PATH lookup would find whatever the sandbox put first on it)."""
    home = f"{root}/v-{agent_version()}"
    return [python, "-I", "-c", LAUNCHER, home, PACKAGE, mode, *args]


# Computed on first use (PEP 562), so the agent never builds a zip just to start.
AGENT_VERSION: str


def __getattr__(name: str) -> str:
    if name == "AGENT_VERSION":
        return agent_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
