"""What the networked git helper runs, and where credentials may go: checked without Docker."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from corral.config import Settings
from corral.errors import InvalidRequest
from corral.sandbox_backend.archive import tar_file
from corral.sandbox_backend.engine import ContainerSpec, ExecOutput
from corral.sandbox_backend.fake import FakeEngine
from corral.sandbox_backend.firewall import FakeFirewall
from corral.sandbox_backend.store import Store
from corral.service.containers import Containers
from corral.service.git.deps import GitDeps
from corral.service.git.helper import Helper
from corral.service.git.refs import origin_of, parse_host, parse_url
from corral.service.git.secrets import Auth
from corral.service.git.trust import check_credentials_target, remember_clone
from corral.service.network import HelperRoute, NetworkService
from corral.service.network.identity import Identity


def config_of(argv: list[str]) -> dict[str, str]:
    pairs = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "-c"]
    return dict(pair.split("=", 1) for pair in pairs)


ROUTE = HelperRoute(
    "corral-net-x", "http://git.abc:pw-123@198.18.1.1:3128", Identity("sb-1", ("git.example.test", 443), "n1"), "pw-123"
)


async def make_helper(tmp_path: Path, route: HelperRoute | None) -> tuple[Helper, FakeEngine, Store]:
    engine = FakeEngine()
    settings = Settings(home=tmp_path)
    store = await Store.open(settings.db_path)
    spec = ContainerSpec("h", "corral/sandbox:3", "runc", {}, 1 << 30, 10**9, 64, "1000:1000", "/tmp")
    container = await engine.create_container(spec)
    containers = Containers(settings)

    async def no_ids() -> set[str]:
        return set()

    network = NetworkService(
        settings, engine, containers, store.egress, sandbox_ids=no_ids, firewall=FakeFirewall(), serve=False
    )
    deps = GitDeps(None, engine, containers, settings, store.git_remotes, network)  # type: ignore[arg-type]
    return Helper(deps, container, route), engine, store


async def test_helper_git_runs_by_path_without_hooks_redirects_or_foreign_protocols(tmp_path: Path) -> None:
    helper, engine, store = await make_helper(tmp_path, ROUTE)
    try:
        await helper.git("push", "--", "https://git.example.test/r.git", "x", auth=Auth("u", "p"), network=True)
        await helper.git("--git-dir=repo.git", "fetch", "in/sandbox.bundle", "+refs/heads/*:refs/heads/*")
    finally:
        await store.close()
    (net_argv, net_env), (local_argv, local_env) = engine.execs
    for argv in (net_argv, local_argv):
        assert argv[0] == "/usr/bin/git"
        config = config_of(argv)
        assert config["core.hooksPath"] == "/dev/null" and config["http.followRedirects"] == "false"
        assert config["credential.helper"] == "" and config["protocol.allow"] == "never"
    net, local = config_of(net_argv), config_of(local_argv)
    assert net["protocol.https.allow"] == net["protocol.http.allow"] == "always" and "protocol.file.allow" not in net
    # The network steps leave only through the egress proxy, with the helper's own credential.
    assert net["http.proxy"] == ROUTE.proxy_url and net["http.proxyAuthMethod"] == "basic"
    assert net_env["GIT_ALLOW_PROTOCOL"] == "http:https" and net_env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert local["protocol.file.allow"] == "always" and "protocol.https.allow" not in local
    assert local["http.proxy"] == "" and local_env == {"GIT_ALLOW_PROTOCOL": "file"}


async def test_a_destination_the_proxy_refused_is_named_in_the_error(tmp_path: Path) -> None:
    helper, engine, store = await make_helper(tmp_path, ROUTE)

    async def failing(*args: object, **kwargs: object) -> ExecOutput:
        return ExecOutput(128, b"", b"fatal: unable to access: CONNECT tunnel failed, response 403 (pw-123)")

    engine.exec_collect = failing  # type: ignore[method-assign]
    try:
        out = await helper.git("ls-remote", "https://git.example.test/r.git", network=True)
        assert b"pw-123" not in out.stderr and b"***" in out.stderr  # the proxy credential is masked
        reason = "git.example.test:443: 10.0.0.5 is a private address; only the operator can open it"
        helper.deps.network.gate.denials[ROUTE.identity.key] = reason
        with pytest.raises(InvalidRequest, match=r"refusing to reach git\.example\.test:443: 10\.0\.0\.5 is a private"):
            await helper.git("ls-remote", "https://git.example.test/r.git", network=True)
    finally:
        await store.close()


def test_urls_never_crash_the_parser() -> None:
    for bad in ("http://[::1", "http://[::1]:99999/x", "http://:80/r", "http://[zz]/r", "http://a\x00b/r", "http:"):
        with pytest.raises(InvalidRequest, match="URL"):
            parse_url(bad)
    assert origin_of("HTTPS://Example.TEST/r") == "https://example.test:443"
    assert origin_of("http://[::1]:8080/r") == "http://[::1]:8080"
    assert parse_host("github.com") == "https://github.com:443"
    assert parse_host("http://git.local:8080/owner/r.git") == "http://git.local:8080"
    for bad in ("", "ftp://x", "u:p@host", "[::1", "a b"):
        with pytest.raises(InvalidRequest, match="invalid host"):
            parse_host(bad)


async def test_credentials_go_only_where_a_call_pointed(tmp_path: Path) -> None:
    helper, _, store = await make_helper(tmp_path, None)
    deps = helper.deps
    try:
        await remember_clone(deps, "sb-1", "/workspace/r", "https://git.example.test/o/r.git")
        await check_credentials_target(deps, "sb-1", "/workspace/r/", "origin", "https://git.example.test/o/x", None)
        with pytest.raises(InvalidRequest, match=r"http://evil\.test:80.*https://git\.example\.test:443"):
            await check_credentials_target(deps, "sb-1", "/workspace/r", "origin", "http://evil.test/r", None)
        with pytest.raises(InvalidRequest, match=r"to http://git\.example\.test:80.*for https://git\.example\.test:443"):
            await check_credentials_target(deps, "sb-1", "/workspace/r", "origin", "http://git.example.test/r", None)
        with pytest.raises(InvalidRequest, match="pass host="):
            await check_credentials_target(deps, "sb-2", "/workspace/r", "origin", "https://git.example.test/r", None)
        # A call that names the host is believed, and remembered for the repository.
        await check_credentials_target(deps, "sb-1", "/workspace/r", "origin", "http://evil.test/r", "http://evil.test")
        await check_credentials_target(deps, "sb-1", "/workspace/r", "origin", "http://evil.test/r", None)
        await store.git_remotes.forget("sb-1")
        assert await store.git_remotes.origin("sb-1", "/workspace/r", "origin") is None
    finally:
        await store.close()


def test_files_for_the_helper_are_made_by_the_host() -> None:
    data = tar_file("shallow", b"a" * 40 + b"\n", 1000, 1000)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.isfile(), member.mode, member.uid) == ("shallow", True, 0o644, 1000)
    for bad in ("../x", "a/b", ""):
        with pytest.raises(ValueError):
            tar_file(bad, b"", 0, 0)
