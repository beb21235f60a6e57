"""The agent package ships into sandboxes as a top-level package: stdlib and relative imports only."""

from __future__ import annotations

import ast
import os
import stat
import sys
from pathlib import Path

import pytest

from corral.agent.bundle import bundle_files

from .helpers import AGENT_PACKAGE

MODULES = {path.stem: ast.parse(path.read_text()) for path in sorted(AGENT_PACKAGE.glob("*.py"))}


def sibling_imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module] if node.module else [alias.name for alias in node.names])
    return found


def test_agent_modules_import_only_the_stdlib_and_each_other() -> None:
    for name, tree in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                tops = [str(node.module).split(".")[0]]
            else:
                continue
            foreign = [top for top in tops if top not in sys.stdlib_module_names and top != "__future__"]
            assert not foreign, f"{name}.py imports {foreign}: the sandbox has only the stdlib"
        assert sibling_imports(tree) <= set(MODULES), name


def test_agent_module_imports_have_no_cycles() -> None:
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        assert name not in path, "import cycle: " + " -> ".join([*path, name])
        if name not in done:
            for dependency in sibling_imports(MODULES[name]):
                visit(dependency, [*path, name])
            done.add(name)

    for name in MODULES:
        visit(name, [])


def test_every_module_and_driver_is_in_the_bundle() -> None:
    shipped = set(bundle_files())
    assert {f"{name}.py" for name in MODULES} <= shipped
    assert {"drivers/python_driver.py", "drivers/bash_driver.py", "drivers/node_driver.js"} <= shipped
    assert not any(Path(name).suffix in (".pyc", ".toml") for name in shipped)


def test_the_installed_bundle_is_root_owned_read_only_and_runs_by_absolute_path(tmp_path: Path) -> None:
    import io
    import subprocess
    import tarfile

    from corral.agent.bundle import AGENT_VERSION, install_tar, installed_argv

    with tarfile.open(fileobj=io.BytesIO(install_tar())) as archive:
        members = archive.getmembers()
        assert all((m.uid, m.gid) == (0, 0) and not m.mode & 0o022 for m in members)
        assert {m.name for m in members} >= {f"agent/v-{AGENT_VERSION}/corral_agent/VERSION"}
        archive.extractall(tmp_path, filter="data")
    argv = installed_argv("version", python=sys.executable, root=str(tmp_path / "agent"))
    assert argv[0] == sys.executable and argv[1] == "-I"  # no PATH lookup, no user site or cwd imports
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert done.stdout.strip() == AGENT_VERSION, done.stderr


def test_the_installed_bundle_runs_from_the_bytecode_it_ships(tmp_path: Path) -> None:
    """The sandbox user cannot write the installed code's __pycache__, so the tar carries the
    bytecode: a daemon, relay or driver start compiles nothing. Proof: with every source of the
    installed tree broken, the agent still starts (Python loads the shipped .pyc files)."""
    import io
    import subprocess
    import tarfile

    from corral.agent.bundle import AGENT_VERSION, install_tar, installed_argv

    with tarfile.open(fileobj=io.BytesIO(install_tar())) as archive:
        names = archive.getnames()
        archive.extractall(tmp_path, filter="data")
    package = tmp_path / "agent" / f"v-{AGENT_VERSION}" / "corral_agent"
    tag = sys.implementation.cache_tag
    sources = [p for p in package.rglob("*.py")]
    for source in sources:
        relative = source.relative_to(tmp_path).as_posix()
        cached = f"{relative.rpartition('/')[0]}/__pycache__/{source.stem}.{tag}.pyc"
        assert cached in names, f"{relative} ships without bytecode"
        source.write_text("raise SystemExit('compiled from source')\n")
    argv = installed_argv("version", python=sys.executable, root=str(tmp_path / "agent"))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert done.stdout.strip() == AGENT_VERSION, done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="only root installs the agent on the host's side")
def test_unpacking_on_the_host_side_makes_the_same_root_owned_tree(tmp_path: Path) -> None:
    import io
    import subprocess
    import tarfile

    from corral.agent.bundle import AGENT_VERSION, install_tar, installed_argv, unpack_install

    unpack_install(str(tmp_path))
    with tarfile.open(fileobj=io.BytesIO(install_tar())) as archive:
        members = archive.getmembers()
    for member in members:
        st = (tmp_path / member.name).lstat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, member.mode), member.name
    argv = installed_argv("version", python=sys.executable, root=str(tmp_path / "agent"))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert done.stdout.strip() == AGENT_VERSION, done.stderr
