"""Issue 9: network policy per sandbox, proven against real Docker, runsc, iptables and the proxy.

The internet is played by servers on the gateway of a test network (tests/security/egress_lab.py),
named through CORRAL_EGRESS_HOSTS and opened with CORRAL_EGRESS_ALLOW_PRIVATE; a second test
network's gateway is the "forbidden private address". Listeners prove that nothing arrived where
nothing may arrive. No traffic leaves this machine: names outside CORRAL_EGRESS_HOSTS are only ever
asked of an allowlist sandbox, whose proxy never looks them up.
"""

from __future__ import annotations

import json
import logging
import secrets
import shlex
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import docker
import pytest
from mcp import Client

from corral.config import NetworkSettings, Settings
from corral.server import build_server
from corral.service.containers import home_label
from tests.helpers import call_error, call_ok, corral_env, run_cli
from tests.integration.cleanup import reap_containers, rules_of
from tests.security.egress_lab import Lab, open_lab

WAIT = 240

# Runs inside a sandbox: fetch every URL (through the proxy or not) and send a UDP datagram to every
# address, all at once; prints what happened to each as JSON.
PROBE = r"""
import concurrent.futures, json, os, socket, sys, urllib.error, urllib.request
spec = json.loads(sys.argv[1])
proxy = os.environ.get("HTTP_PROXY")
for name in ("no_proxy", "NO_PROXY"):
    os.environ.pop(name, None)  # the probe asks the proxy even about loopback
def http(url, proxied):
    if proxied and not proxy:
        return "error no proxy"
    handler = urllib.request.ProxyHandler({"http": proxy, "https": proxy} if proxied else {})
    try:
        with urllib.request.build_opener(handler).open(url, timeout=float(spec["timeout"])) as reply:
            return "%d %s" % (reply.status, reply.read()[:300].decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return "%d %s" % (exc.code, exc.read()[:400].decode(errors="replace"))
    except Exception as exc:
        return "error %s" % (exc,)
def udp(target):
    host, port = target.rsplit(":", 1)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"probe", (host, int(port)))
        return "sent"
    except Exception as exc:
        return "error %s" % (exc,)
with concurrent.futures.ThreadPoolExecutor(64) as pool:
    jobs = {k: pool.submit(http, url, via) for k, (url, via) in spec.get("http", {}).items()}
    jobs.update({k: pool.submit(udp, target) for k, target in spec.get("udp", {}).items()})
    print(json.dumps({k: job.result() for k, job in jobs.items()}))
"""


@dataclass
class Egress:
    client: Client
    settings: Settings
    lab: Lab
    allowlisted: str
    internet: str
    offline: str
    gateway: str  # the sandbox network's gateway: the proxy's address, a host address
    secret: str
    shown: list[str] = field(default_factory=list)  # every tool result of this module, as text

    async def call(self, tool: str, **args: Any) -> dict[str, Any]:
        with anyio.fail_after(WAIT):
            out = await call_ok(self.client, tool, **args)
        self.shown.append(json.dumps(out))
        return out

    async def error(self, tool: str, **args: Any) -> str:
        with anyio.fail_after(WAIT):
            text = await call_error(self.client, tool, **args)
        self.shown.append(text)
        return text

    async def sh(self, sandbox: str, command: str) -> dict[str, Any]:
        return await self.call("run_command", sandbox=sandbox, command=command, timeout=180)

    async def probe(self, sandbox: str, spec: dict[str, Any]) -> dict[str, str]:
        await self.call("write_file", sandbox=sandbox, path="/tmp/probe.py", content=PROBE)
        spec = {"timeout": 4, **spec}
        out = await self.sh(sandbox, f"python3 /tmp/probe.py {shlex.quote(json.dumps(spec))}")
        assert out["exit_code"] == 0, out
        return dict(json.loads(out["stdout"]))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from open_lab(tmp_path_factory.mktemp("egress-lab"))


@pytest.fixture(scope="module")
async def egress(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Egress]:
    home = tmp_path_factory.mktemp("egress-home")
    secret = f"sekret-{secrets.token_hex(12)}"
    secrets_file = tmp_path_factory.mktemp("egress-secrets") / "secrets.json"
    bound = {"X-Api-Key": secret}
    secrets_file.write_text(json.dumps({"secret.test": bound, "secret-tls.test": bound}))
    ok, no = lab.allowed_gateway, lab.forbidden_gateway
    names = ("web.test", "tls.test", "secret.test", "secret-tls.test")
    settings = Settings(
        home=home,
        network=NetworkSettings(
            modes=("none", "allowlist", "internet"),
            allow_private=(ok,),
            hosts=(*((n, ok) for n in names), ("rebind.test", no), ("loop.test", "127.0.0.1")),
            sandbox_ca=lab.ca_pem,
            secrets_file=secrets_file,
        ),
    )
    owner = home_label(settings)
    try:
        async with Client(build_server(settings), raise_exceptions=False) as client:
            box = Egress(client, settings, lab, "", "", "", "", secret)
            allow = [*names, "rebind.test", "loop.test"]
            box.allowlisted = (await box.call("create_sandbox", network="allowlist", allow=allow))["id"]
            box.internet = (await box.call("create_sandbox", network="internet"))["id"]
            box.offline = (await box.call("create_sandbox"))["id"]
            network = docker.from_env().networks.get(f"corral-net-{owner}")
            box.gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
            yield box
            for sandbox in (box.allowlisted, box.internet, box.offline):
                await box.call("delete_sandbox", sandbox=sandbox)
            assert rules_of(owner) == [], "the last networked sandbox took its rules with it"
    finally:
        reap_containers(home)


def web(lab: Lab, path: str = "/") -> str:
    return f"http://web.test:{lab.web.port}{path}"


async def test_allowlisted_names_work_over_http_and_https(egress: Egress) -> None:
    lab = egress.lab
    tls = f"https://tls.test:{lab.tls.port}/"
    out = await egress.sh(
        egress.allowlisted,
        f"curl -sS -m 30 {web(lab)} && curl -sS -m 30 {tls} && "
        f"python3 -c 'import urllib.request; print(urllib.request.urlopen(\"{tls}\", timeout=30).read().decode())'",
    )
    assert out["stdout"] == "hello from web\nhello from tls\nhello from tls\n\n", out


async def test_everything_off_the_list_is_refused_by_the_proxy_naming_the_rule(egress: Egress) -> None:
    lab = egress.lab
    found = await egress.probe(
        egress.allowlisted,
        {
            "http": {
                "unlisted name": ("http://unlisted.test/", True),
                "unlisted name, https": ("https://unlisted.test/", True),
                "unlisted address": (f"http://{lab.allowed_gateway}:{lab.web.port}/", True),
                "listed name, private address": (f"http://rebind.test:{lab.forbidden.port}/", True),
                "listed name, loopback": (f"http://loop.test:{lab.loopback.port}/", True),
            }
        },
    )
    assert found["unlisted name"].startswith("403 Blocked by Corral egress policy: unlisted.test:80")
    assert "403 Blocked by Corral egress policy: unlisted.test:443" in found["unlisted name, https"]
    assert "not in this sandbox's allowlist" in found["unlisted address"]
    assert f"{lab.forbidden_gateway} is a private address" in found["listed name, private address"]
    assert "127.0.0.1 is a loopback address" in found["listed name, loopback"]
    assert lab.forbidden.hits == [] and lab.loopback.hits == []
    info = await egress.call("get_sandbox", sandbox=egress.allowlisted)
    assert info["network"] == "allowlist" and "rebind.test" in info["allow"]
    assert info["egress"]["denied"] >= 5
    listed = {s["id"]: s for s in (await egress.call("list_sandboxes"))["sandboxes"]}
    assert listed[egress.internet]["network"] == "internet" and listed[egress.offline]["network"] == "none"
    assert listed[egress.offline]["egress"] is None


async def test_no_mode_reaches_the_host_another_sandbox_or_a_private_address(egress: Egress) -> None:
    lab = egress.lab
    host_side = lab.recorder(egress.gateway)  # a service on the host, on the sandbox network's gateway
    loop = lab.loopback.port
    # A listener in each networked sandbox: each is "another sandbox" to the other.
    listen = (
        "cd /tmp && (nohup python3 -m http.server 8000 >/tmp/served.log 2>&1 &) && "
        "for i in $(seq 100); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8000), 1)' "
        "2>/dev/null && break; sleep 0.1; done; hostname -I"
    )
    networked = (egress.allowlisted, egress.internet)
    address = {box: (await egress.sh(box, listen))["stdout"].split()[0] for box in networked}
    neighbour = {egress.allowlisted: address[egress.internet], egress.internet: address[egress.allowlisted]}
    neighbour[egress.offline] = address[egress.internet]
    results = {}
    for sandbox in (egress.allowlisted, egress.internet, egress.offline):
        targets = {
            "sandbox gateway": host_side.authority,
            "forbidden private": lab.forbidden.authority,
            "neighbour": f"{neighbour[sandbox]}:8000",
        }
        spec: dict[str, Any] = {"http": {}, "udp": {}}
        for name, authority in targets.items():
            spec["http"][f"{name}, direct"] = (f"http://{authority}/", False)
            spec["http"][f"{name}, proxy"] = (f"http://{authority}/", True)
            spec["udp"][f"{name}, udp"] = authority
        for spelling in ("127.0.0.1", "localhost", "0.0.0.0", "127.1", "2130706433", "[::1]", "[::ffff:127.0.0.1]"):
            spec["http"][f"loopback {spelling}"] = (f"http://{spelling}:{loop}/", True)
        spec["http"]["allowed private (operator)"] = (web(lab).replace("web.test", lab.allowed_gateway), True)
        results[sandbox] = await egress.probe(sandbox, spec)
    assert host_side.hits == [] and lab.forbidden.hits == [] and lab.loopback.hits == []
    for box in (egress.allowlisted, egress.internet):
        served_log = await egress.sh(box, "cat /tmp/served.log")
        assert "GET" not in served_log["stdout"] + served_log["stderr"], served_log
    for sandbox, found in results.items():
        for key, outcome in found.items():
            if sandbox == egress.internet and key == "allowed private (operator)":
                assert outcome == "200 hello from web\n", outcome
            elif key.endswith("proxy") or key.startswith(("loopback", "allowed")):
                if sandbox == egress.offline:
                    assert outcome.startswith("error"), (sandbox, key, outcome)
                else:
                    assert outcome.startswith("403 Blocked by Corral egress policy"), (sandbox, key, outcome)
    internet = results[egress.internet]
    assert "Corral's sandbox network" in internet["neighbour, proxy"]
    assert "Corral's sandbox network" in internet["sandbox gateway, proxy"]
    assert "is a private address" in internet["forbidden private, proxy"]
    for spelling in ("127.0.0.1", "0.0.0.0", "127.1", "2130706433", "[::1]", "[::ffff:127.0.0.1]", "localhost"):
        assert "loopback" in internet[f"loopback {spelling}"], (spelling, internet[f"loopback {spelling}"])


async def test_a_redirect_to_a_forbidden_address_is_refused(egress: Egress) -> None:
    lab = egress.lab
    for url in (web(lab, "/redirect"), f"https://tls.test:{lab.tls.port}/redirect"):
        out = await egress.sh(egress.allowlisted, f"curl -sS -L -m 30 {url}")
        assert out["stdout"].startswith(f"Blocked by Corral egress policy: {lab.forbidden.authority}"), out
    assert lab.forbidden.hits == []


async def test_pip_installs_from_an_allowlisted_index_and_not_without_network(egress: Egress) -> None:
    index = f"https://tls.test:{egress.lab.tls.port}/simple/"
    # The current image needs --user --break-system-packages (issue 9's image work makes them defaults).
    install = f"pip install -q --user --break-system-packages --no-cache-dir --index-url {index} corral-probe"
    check = "python3 -c 'import corral_probe; print(corral_probe.WHO)'"
    out = await egress.sh(egress.allowlisted, f"{install} 2>&1 && {check}")
    assert out["exit_code"] == 0 and out["stdout"].endswith("installed from the test index\n"), out
    offline = await egress.sh(egress.offline, f"{install} --retries 0 --timeout 5 2>&1; {check}")
    assert offline["exit_code"] != 0 and "installed from the test index" not in offline["stdout"]
    assert "externally-managed" not in offline["stdout"], offline


async def test_update_network_takes_effect_on_a_live_sandbox_both_ways(egress: Egress) -> None:
    fetch = f"curl -sS -m 30 {web(egress.lab)}"
    assert (await egress.sh(egress.allowlisted, fetch))["stdout"] == "hello from web\n"
    off = await egress.call("update_network", sandbox=egress.allowlisted, network="none")
    assert off["network"] == "none"
    refused = await egress.sh(egress.allowlisted, fetch)
    assert "Blocked by Corral egress policy" in refused["stdout"] and "network 'none'" in refused["stdout"]
    allow = ["web.test", "tls.test", "secret.test", "secret-tls.test", "rebind.test", "loop.test"]
    on = await egress.call("update_network", sandbox=egress.allowlisted, network="allowlist", allow=allow)
    assert on["network"] == "allowlist" and on["allow"] == allow
    assert (await egress.sh(egress.allowlisted, fetch))["stdout"] == "hello from web\n"
    message = await egress.error("update_network", sandbox=egress.offline, network="allowlist", allow=["web.test"])
    assert "no network interface" in message and "Create a new sandbox" in message


async def test_a_networked_sandbox_stops_without_its_memory_saying_why_and_its_fork_keeps_the_policy(
    egress: Egress,
) -> None:
    fetch = f"curl -sS -m 30 {web(egress.lab)}"
    box = (await egress.call("create_sandbox", network="allowlist", allow=["web.test"]))["id"]
    fork = None
    try:
        await egress.sh(box, "echo kept > note.txt")
        stopped = await egress.call("stop_sandbox", sandbox=box)
        assert stopped["status"] == "stopped" and stopped["memory_kept"] is False
        assert "network" in stopped["reason"], stopped
        # Any call resumes it: files kept, the same policy in force.
        out = await egress.sh(box, f"cat note.txt && {fetch}")
        assert out["stdout"] == "kept\nhello from web\n", out
        forked = await egress.call("fork_sandbox", sandbox=box)
        fork = forked["id"]
        assert forked["memory_kept"] is False and "network" in forked["reason"], forked
        got = await egress.call("get_sandbox", sandbox=fork)
        assert (got["network"], got["allow"]) == ("allowlist", ["web.test"])
        out = await egress.sh(fork, f"cat note.txt && {fetch}")
        assert out["stdout"] == "kept\nhello from web\n", out
        refused = await egress.sh(fork, f"curl -sS -m 30 http://tls.test:{egress.lab.tls.port}/")
        assert "Blocked by Corral egress policy" in refused["stdout"], refused
    finally:
        for sandbox in (box, fork):
            if sandbox:
                await egress.call("delete_sandbox", sandbox=sandbox)


async def test_secrets_are_added_by_the_proxy_and_never_reach_the_sandbox(
    egress: Egress, caplog: pytest.LogCaptureFixture
) -> None:
    lab, secret = egress.lab, egress.secret
    with caplog.at_level(logging.INFO, logger="corral.egress"):
        out = await egress.sh(
            egress.allowlisted,
            f"curl -sS -m 30 -H 'X-Api-Key: made-up' http://secret.test:{lab.web.port}/api && "
            f"curl -sS -m 30 -H 'X-Api-Key: made-up' https://secret-tls.test:{lab.tls.port}/api-tls && "
            f"curl -sS -m 30 https://tls.test:{lab.tls.port}/no-secret",
        )
    assert out["stdout"] == "hello from web\nhello from tls\nhello from tls\n", out
    # Over HTTP, and over HTTPS through the proxy's own TLS (the sandbox trusts the egress CA for
    # exactly the names secrets are bound to); other hosts' tunnels are untouched and get nothing.
    assert ("/api", secret) in [(path, headers.get("x-api-key")) for path, headers in lab.web.requests]
    assert ("/api-tls", secret) in [(path, headers.get("x-api-key")) for path, headers in lab.tls.requests]
    assert ("/no-secret", None) in [(path, headers.get("x-api-key")) for path, headers in lab.tls.requests]
    search = (
        f"env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; "
        f"grep -rl {secret} /workspace /tmp /etc /opt /home /var/tmp 2>/dev/null; echo searched"
    )
    inside = await egress.sh(egress.allowlisted, search)
    assert inside["stdout"].endswith("searched\n") and "HTTP_PROXY" in inside["stdout"]
    assert secret not in json.dumps(inside)
    assert not [text for text in egress.shown if secret in text]
    assert secret.encode() not in egress.settings.db_path.read_bytes()
    assert "added X-Api-Key" in caplog.text and secret not in caplog.text


async def test_gc_and_the_suites_reaper_remove_what_a_crashed_server_left(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, network=NetworkSettings())
    owner = home_label(settings)
    try:
        async with Client(build_server(settings), raise_exceptions=False) as client:
            with anyio.fail_after(WAIT):
                await call_ok(client, "create_sandbox", network="allowlist", allow=["pypi.org"])
        # The server is gone and its database with it: the sandbox, its network and rules remain.
        assert rules_of(owner) and _networks(owner)
        settings.db_path.unlink()
        done = await anyio.to_thread.run_sync(lambda: run_cli(tmp_path, "gc", env=corral_env(tmp_path)))
        assert done.returncode == 0, done.stderr
        assert f"corral-net-{owner}" in done.stdout and "iptables rules" in done.stdout, done.stdout
        assert rules_of(owner) == [] and _networks(owner) == []
        # A test that fails half-way leaves the same; the suite's reaper removes it all too.
        async with Client(build_server(settings), raise_exceptions=False) as client:
            with anyio.fail_after(WAIT):
                await call_ok(client, "create_sandbox", network="allowlist")
        assert rules_of(owner) and _networks(owner)
    finally:
        reap_containers(tmp_path)
    assert rules_of(owner) == [] and _networks(owner) == []


def _networks(owner: str) -> list[str]:
    listing = subprocess.run(
        ["docker", "network", "ls", "-q", "--filter", f"label=dev.corral.owner={owner}"],
        capture_output=True, text=True, timeout=60,
    )
    return listing.stdout.split()
