"""Network policy per sandbox through the service, against the FakeEngine (whose sandbox network's
gateway is loopback, so the real egress proxy serves there) and the FakeFirewall."""

from __future__ import annotations

import http.server
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from corral.config import NetworkSettings, Settings
from corral.errors import InvalidRequest, NetworkUnavailable
from corral.sandbox_backend.fake import FakeEngine
from corral.service import Services, open_services


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello {self.headers.get('X-Api-Key', '-')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def web() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(tmp_path: Path, web: int) -> Settings:
    network = NetworkSettings(
        modes=("none", "allowlist"), hosts=(("web.test", "127.0.0.1"),), allow_private=(f"127.0.0.1:{web}",)
    )
    return Settings(home=tmp_path, network=network)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def services(settings: Settings, engine: FakeEngine) -> AsyncIterator[Services]:
    async with open_services(settings, engine=engine) as opened:
        yield opened


def fetch(proxy_url: str, url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy_url}))
    try:
        with opener.open(url, timeout=20) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def get(proxy_url: str, url: str) -> tuple[int, str]:
    return await anyio.to_thread.run_sync(fetch, proxy_url, url)


def env_of(engine: FakeEngine, container_id: str | None) -> dict[str, str]:
    assert container_id is not None
    return dict(engine.containers[container_id].spec.env)


async def test_a_networked_sandbox_sits_on_the_fenced_network_behind_the_proxy(
    services: Services, engine: FakeEngine, web: int
) -> None:
    rec = await services.sandboxes.create(network="allowlist", allow=["web.test"])
    spec = engine.containers[str(rec.container_id)].spec
    network = engine.networks[str(spec.network)]
    assert spec.runtime == "corral-runsc-net" and network.internal and rec.network == "allowlist"
    fence = engine.firewall.fences[services.network.fabric.owner]
    assert (fence.bridge, fence.gateway) == (network.bridge, network.gateway)
    proxy_url = spec.env["HTTPS_PROXY"]
    assert proxy_url == spec.env["HTTP_PROXY"] == spec.env["http_proxy"]
    assert spec.env["NO_PROXY"].startswith("localhost")
    assert proxy_url.startswith(f"http://{rec.id}:") and proxy_url.endswith(f"@127.0.0.1:{fence.proxy_port}")
    # The proxy decides: the allowed name works, anything else gets a 403 naming the rule.
    assert await get(proxy_url, f"http://web.test:{web}/") == (200, "hello -")
    status, body = await get(proxy_url, f"http://127.0.0.1:{web + 1 if web < 65535 else web - 1}/")
    assert status == 403 and "not in this sandbox's allowlist" in body
    status, body = await get(proxy_url.replace(rec.id, "sb-00000000"), f"http://web.test:{web}/")
    assert status == 407  # another sandbox's name with this one's password
    view = await services.network.view(rec)
    assert (view.mode, view.allow, view.allowed, view.denied) == ("allowlist", ("web.test",), 1, 1)
    # A plain sandbox is untouched by all this.
    plain = await services.sandboxes.create()
    plain_spec = engine.containers[str(plain.container_id)].spec
    assert plain_spec.network is None and plain_spec.runtime == "corral-runsc" and "HTTP_PROXY" not in plain_spec.env


async def test_update_network_takes_effect_both_ways(services: Services, engine: FakeEngine, web: int) -> None:
    rec = await services.sandboxes.create(network="allowlist", allow=["web.test"])
    proxy_url = env_of(engine, rec.container_id)["HTTP_PROXY"]
    url = f"http://web.test:{web}/"
    assert (await get(proxy_url, url))[0] == 200
    assert (await services.sandboxes.update_network(rec.id, "none", None)).network == "none"
    status, body = await get(proxy_url, url)
    assert status == 403 and "network 'none'" in body
    await services.sandboxes.update_network(rec.id, "allowlist", ["other.test"])
    assert (await get(proxy_url, url))[0] == 403
    await services.sandboxes.update_network(rec.id, "allowlist", ["web.test"])
    assert (await get(proxy_url, url))[0] == 200
    assert (await services.network.view(rec)).allow == ("web.test",)
    with pytest.raises(InvalidRequest, match="allow only applies with network='allowlist'"):
        await services.sandboxes.update_network(rec.id, "none", ["web.test"])


async def test_requests_outside_the_operators_settings_are_clear_errors(services: Services) -> None:
    offers = r"network='internet' is not enabled on this server; it offers none, allowlist"
    with pytest.raises(InvalidRequest, match=offers):
        await services.sandboxes.create(network="internet")
    with pytest.raises(InvalidRequest, match="CORRAL_EGRESS_ALLOW_PRIVATE"):
        # Refused while parsing the request: nothing is ever sent to this range.
        await services.sandboxes.create(network="allowlist", allow=["10.0.0.0/8"])
    with pytest.raises(InvalidRequest, match="allow only applies"):
        await services.sandboxes.create(allow=["pypi.org"])
    plain = await services.sandboxes.create()
    with pytest.raises(InvalidRequest, match=r"no network interface at all.*Create a new sandbox"):
        await services.sandboxes.update_network(plain.id, "allowlist", ["pypi.org"])
    assert await services.sandboxes.list_all() == [plain]


async def test_the_last_sandbox_takes_the_network_and_rules_with_it(services: Services, engine: FakeEngine) -> None:
    first = await services.sandboxes.create(network="allowlist")
    second = await services.sandboxes.create(network="allowlist")
    owner = services.network.fabric.owner
    await services.sandboxes.delete(first.id)
    assert engine.networks and owner in engine.firewall.fences and services.network.proxy.serving
    await services.sandboxes.delete(second.id)
    assert engine.networks == {} and engine.firewall.fences == {} and not services.network.proxy.serving


async def test_a_fence_that_cannot_be_built_means_no_sandbox(services: Services, engine: FakeEngine) -> None:
    engine.firewall.failure = NetworkUnavailable("iptables is not installed; run scripts/setup-host.sh")
    with pytest.raises(NetworkUnavailable, match="iptables"):
        await services.sandboxes.create(network="allowlist")
    assert await services.sandboxes.list_all() == [] and engine.containers == {}
    assert await services.network._table.list() == []


async def test_sandboxes_keep_their_proxy_across_a_server_restart(
    settings: Settings, engine: FakeEngine, web: int
) -> None:
    async with open_services(settings, engine=engine) as first:
        rec = await first.sandboxes.create(network="allowlist", allow=["web.test"])
    proxy_url = env_of(engine, rec.container_id)["HTTP_PROXY"]
    assert engine.networks, "a sandbox that outlives its server keeps its fenced network"
    async with open_services(settings, engine=engine) as second:
        assert await get(proxy_url, f"http://web.test:{web}/") == (200, "hello -")
        await second.sandboxes.delete(rec.id)
    assert engine.networks == {} and engine.firewall.fences == {}


async def test_gc_removes_a_network_and_rules_nobody_needs(settings: Settings, engine: FakeEngine) -> None:
    async with open_services(settings, engine=engine, serve=False) as services:
        await services.network.fabric.ensure()  # as if a server had died right after making it
        assert await services.network.gc(dry_run=True) == [
            services.network.fabric.network_name, f"iptables rules of {services.network.fabric.owner}"
        ]
        assert engine.networks
        await services.network.gc()
        assert engine.networks == {} and engine.firewall.fences == {}


async def test_a_second_server_on_the_data_dir_takes_the_proxy_over(
    settings: Settings, engine: FakeEngine, web: int
) -> None:
    url = f"http://web.test:{web}/"
    async with open_services(settings, engine=engine) as first:
        rec = await first.sandboxes.create(network="allowlist", allow=["web.test"])
        proxy_url = env_of(engine, rec.container_id)["HTTP_PROXY"]
        async with open_services(settings, engine=engine) as second:
            assert first.network.proxy.serving and not second.network.proxy.serving
            await first.network.proxy.close()  # as if the first server had stopped
            await second.network.fabric.ensure()  # what the second one's upkeep does every few seconds
            assert second.network.proxy.serving
            assert await get(proxy_url, url) == (200, "hello -")
            await second.sandboxes.delete(rec.id)
    assert engine.networks == {} and engine.firewall.fences == {}


async def test_no_sandbox_network_on_the_host_is_reachable_even_where_the_operator_opened_its_range(
    tmp_path: Path, engine: FakeEngine
) -> None:
    opened = NetworkSettings(allow_private=("198.18.0.0/15",))  # covers every fake sandbox network
    other = Settings(home=tmp_path / "other", network=opened)
    async with open_services(other, engine=engine) as neighbour:
        await neighbour.sandboxes.create(network="allowlist")  # another data dir's sandbox network
        neighbour_net = next(iter(engine.networks.values()))
        async with open_services(Settings(home=tmp_path / "mine", network=opened), engine=engine) as mine:
            rec = await mine.sandboxes.create(network="allowlist", allow=["198.18.0.0/16"])
            proxy_url = env_of(engine, rec.container_id)["HTTP_PROXY"]
            target = str(neighbour_net.subnet).replace(".0/24", ".7")
            status, body = await get(proxy_url, f"http://{target}:8000/")
            assert status == 403 and "other sandboxes are never reachable" in body
            for box in await mine.sandboxes.list_all():
                await mine.sandboxes.delete(box.id)
        for box in await neighbour.sandboxes.list_all():
            await neighbour.sandboxes.delete(box.id)
