"""Network policy per sandbox (issue 9): `none` (no network stack at all, the default),
`allowlist` (names, wildcards, IPs/CIDRs, optional ports) or `internet` (any public address).

Enforcement is outside the sandbox. A sandbox with network runs under `corral-runsc-net` on the
data dir's internal Docker network, fenced by the host's packet filter so that the only thing it
can reach is the egress proxy on the network's gateway (fabric.py, sandbox_backend/firewall.py).
The proxy (proxy.py) asks the gate (gate.py) about every connection: the sandbox's rules, then
the addresses the name resolves to, none of which may be private, link-local, loopback, this host
or another sandbox unless the operator listed it (policy.py). Tools find the proxy through
HTTP(S)_PROXY in the sandbox's environment; the networked git helper uses the same proxy with a
credential that allows only the URL it was started for.

`update_network` changes a networked sandbox's policy while it runs, also to `none` (the proxy
then refuses everything, and open connections are cut). A sandbox created with `none` has no
network interface, and gVisor cannot add one to a running sandbox, so it cannot be given network
later: that request is refused with a clear error (create a new sandbox instead).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskGroup

from corral.agent.bundle import AGENT_MOUNT
from corral.config import NETWORK_MODES, Settings
from corral.errors import ConfigurationError, CorralError, InvalidRequest
from corral.sandbox_backend.archive import tar_directory, tar_file
from corral.sandbox_backend.engine import ContainerSpec, Engine
from corral.sandbox_backend.firewall import Firewall
from corral.sandbox_backend.store import EgressTable, SandboxRecord
from corral.service.containers import Containers
from corral.service.network import trust
from corral.service.network.fabric import Fabric, FabricManager
from corral.service.network.gate import Gate, parse_hosts
from corral.service.network.identity import Identity, Keyring
from corral.service.network.inject import Secrets
from corral.service.network.mitm import Authority
from corral.service.network.policy import Guard, Network, PrivateAllowance, check_agent_entries, parse_entries
from corral.service.network.proxy import EgressProxy, Interception, UpstreamProxy
from corral.service.supervisor import supervise

log = logging.getLogger(__name__)

NO_PROXY = "localhost,127.0.0.1,::1"
MAX_ENTRIES = 256
SYNC_EVERY = 5.0  # seconds between checks that this data dir's proxy is served and counts saved
HELPER_LINGER = 30.0  # seconds the network stays after a git helper, for the next one


@dataclass(frozen=True)
class Policy:
    mode: str
    allow: tuple[str, ...] = ()

    @property
    def wired(self) -> bool:
        """Whether the sandbox needs a network interface (it can never get one later)."""
        return self.mode != "none"


@dataclass(frozen=True)
class NetworkView:
    """What get_sandbox shows of a sandbox's network."""

    mode: str
    allow: tuple[str, ...] | None
    allowed: int | None
    denied: int | None


@dataclass(frozen=True)
class HelperRoute:
    network: str
    proxy_url: str
    identity: Identity
    secret: str  # the proxy password, masked in anything shown


def _settings_error(exc: InvalidRequest, setting: str) -> ConfigurationError:
    return ConfigurationError(f"{setting}: {exc}")


class NetworkService:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        containers: Containers,
        table: EgressTable,
        *,
        sandbox_ids: Callable[[], Awaitable[set[str]]],
        firewall: Firewall | None = None,
        serve: bool = True,
    ) -> None:
        ns = settings.network
        self.settings = settings
        self._engine = engine
        self._table = table
        self._sandbox_ids = sandbox_ids
        try:
            private = PrivateAllowance(parse_entries(settings.allow_private, "entry"))
        except InvalidRequest as exc:
            raise _settings_error(exc, "CORRAL_EGRESS_ALLOW_PRIVATE") from None
        try:
            operator = parse_entries(ns.allow, "entry")
        except InvalidRequest as exc:
            raise _settings_error(exc, "CORRAL_EGRESS_ALLOW") from None
        try:
            hosts = parse_hosts(ns.hosts)
        except ValueError as exc:
            raise ConfigurationError(f"CORRAL_EGRESS_HOSTS: {exc}") from None
        try:
            upstream = UpstreamProxy.parse(ns.upstream_proxy) if ns.upstream_proxy else None
        except ValueError as exc:
            raise ConfigurationError(f"CORRAL_UPSTREAM_PROXY: {exc}") from None
        self._private = private
        self._extra_ca = trust.load_extra(ns.sandbox_ca)
        self._trusted = self._extra_ca  # what networked sandboxes trust besides the system's CAs
        self._keyring: Keyring | None = None
        self._base_guard = Guard(private)
        self.gate = Gate(
            keyring=None,  # the data dir's key, loaded on first use (see _keys)
            table=table,
            operator=operator,
            guard_for=self._guard,
            hosts=hosts,
            secrets=Secrets.load(ns.secrets_file),
        )
        interception = None
        if self.gate.secrets.bindings and serve:
            # HTTPS requests to hosts with secrets are opened by the proxy, with a CA of the data
            # dir's own that sandboxes trust for exactly those names (mitm.py).
            authority = Authority.load(settings.home, [b.pattern for b in self.gate.secrets.bindings])
            interception = Interception(authority, trust.upstream_context(self._extra_ca))
            self._trusted = self._extra_ca + authority.pem
        self.proxy = EgressProxy(self.gate, upstream, interception)
        self.fabric = FabricManager(engine, firewall or engine.firewall, containers, self.proxy, serve=serve)
        self._helpers = 0
        self._linger_until = 0.0
        self._sandbox_subnets: tuple[Network, ...] = ()
        self._serve = serve

    def _guard(self) -> Guard:
        current = self.fabric.current
        own = (current.subnet,) if current and current.subnet not in self._sandbox_subnets else ()
        return Guard(self._private, self._sandbox_subnets + own)

    async def _refresh_subnets(self) -> None:
        self._sandbox_subnets = await self.fabric.sandbox_subnets()

    def _keys(self) -> Keyring:
        if self._keyring is None:
            self._keyring = Keyring.load(self.settings.home)
            self.gate.keyring = self._keyring
        return self._keyring

    # -- policies -----------------------------------------------------------------------------------

    def prepare(self, network: str | None, allow: Sequence[str] | None) -> Policy:
        """The policy a create or update asks for, checked against the operator's settings."""
        mode = network or "none"
        offered = self.settings.network.modes
        if mode not in NETWORK_MODES:
            raise InvalidRequest(f"network must be one of {', '.join(offered)} (got {mode!r})")
        if mode not in offered:
            raise InvalidRequest(
                f"network={mode!r} is not enabled on this server; it offers {', '.join(offered)} "
                "(the operator sets CORRAL_NETWORK_MODES)"
            )
        if allow is not None and mode != "allowlist":
            raise InvalidRequest("allow only applies with network='allowlist'")
        entries = tuple(dict.fromkeys(e.strip() for e in allow or ()))
        if len(entries) > MAX_ENTRIES or any(len(e) > 255 for e in entries):
            raise InvalidRequest(f"allow takes at most {MAX_ENTRIES} entries of at most 255 characters")
        check_agent_entries(parse_entries(entries, "allow"), self._private)
        return Policy(mode, entries)

    async def attach(self, rec: SandboxRecord, spec: ContainerSpec, policy: Policy) -> ContainerSpec:
        """Record the policy and, for a networked sandbox, put it on the fenced network with the
        proxy in its environment."""
        if not policy.wired:
            return spec
        await self._table.put(rec.id, policy.mode, policy.allow)
        self.gate.remember(rec.id, self.gate.rules_of(policy.mode, policy.allow))
        fabric = await self.fabric.ensure()
        await self._refresh_subnets()
        url = self._keys().proxy_url(Identity(rec.id), fabric.gateway, fabric.port)
        return dataclasses.replace(spec, network=fabric.network, env={**spec.env, **self._env(url)})

    def _env(self, url: str) -> dict[str, str]:
        env = {
            "HTTP_PROXY": url,
            "HTTPS_PROXY": url,
            "http_proxy": url,
            "https_proxy": url,
            "NO_PROXY": NO_PROXY,
            "no_proxy": NO_PROXY,
            "npm_config_proxy": url,
            "npm_config_https_proxy": url,
        }
        if self._trusted:
            env.update(trust.trust_env())
        return env

    async def provision(self, container_id: str, rec: SandboxRecord) -> None:
        """Files a networked sandbox needs before it starts: the CAs it trusts besides the system's
        (the operator's CORRAL_SANDBOX_CA, and the egress CA when secrets are bound to hosts)."""
        if rec.network == "none" or not self._trusted:
            return
        # Into the agent's volume (the root file system is read-only; Docker copies only into volumes).
        ca_dir = tar_directory(trust.CA_DIR.removeprefix(AGENT_MOUNT), 0, 0)
        await self._engine.put_archive(container_id, AGENT_MOUNT, ca_dir)
        for name, data in (("ca-bundle.pem", trust.bundle(self._trusted)), ("extra-ca.pem", self._trusted)):
            await self._engine.put_archive(container_id, trust.CA_DIR, tar_file(name, data, 0, 0))

    async def update(self, rec: SandboxRecord, network: str | None, allow: Sequence[str] | None) -> Policy:
        row = await self._table.get(rec.id)
        if row is None:
            if (network or "none") == "none" and allow is None:
                return Policy("none")
            raise InvalidRequest(
                f"sandbox {rec.id} was created with network='none': it has no network interface at all, and "
                "one cannot be added to a running gVisor sandbox. Create a new sandbox with network='allowlist' "
                "(or 'internet') instead."
            )
        mode = network or row.mode
        if allow is None and mode == "allowlist" and row.mode == "allowlist":
            allow = row.allow
        policy = self.prepare(mode, allow)
        await self._table.put(rec.id, policy.mode, policy.allow)
        rules = self.gate.rules_of(policy.mode, policy.allow)
        self.gate.remember(rec.id, rules)
        cut = self.gate.cut_disallowed(rec.id, rules)
        log.info("network of %s is now %s %s (%d open connection(s) cut)", rec.id, policy.mode, policy.allow, cut)
        return policy

    async def view(self, rec: SandboxRecord) -> NetworkView:
        row = await self._table.get(rec.id)
        if row is None:
            return NetworkView(rec.network, None, None, None)
        allowed, denied = self.gate.pending(rec.id)
        allow = row.allow if row.mode == "allowlist" else None
        return NetworkView(row.mode, allow, row.allowed + allowed, row.denied + denied)

    async def forget_sandbox(self, sandbox_id: str) -> None:
        """The sandbox is being deleted (its container is gone): its policy goes, and with the last
        user the network and its rules."""
        self.gate.forget(sandbox_id)
        await self._table.forget(sandbox_id)
        await self.release()

    async def release(self) -> bool:
        """Remove the fabric if nothing needs it any more; True if it is gone."""
        async with self.fabric.lock:
            if self._helpers or await self._table.list():
                return False
            if self.fabric.current is None and not await self._engine.list_networks(self.fabric.owner_filter):
                return True  # (rules without a network, left by a crash, are `corral gc`'s to find)
            return await self.fabric.teardown()

    # -- the git helper -----------------------------------------------------------------------------

    @asynccontextmanager
    async def helper_route(self, rec: SandboxRecord, url: str) -> AsyncIterator[HelperRoute]:
        """The network and proxy URL for a helper that may reach only `url`'s host and port."""
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        identity = Identity(rec.id, (host, port), secrets.token_hex(6))
        self._helpers += 1
        try:
            fabric = await self.fabric.ensure()
            await self._refresh_subnets()
            keys = self._keys()
            proxy_url = keys.proxy_url(identity, fabric.gateway, fabric.port)
            yield HelperRoute(fabric.network, proxy_url, identity, keys.credentials(identity)[1])
        finally:
            self._helpers -= 1
            self.gate.denials.pop(identity.key, None)
            # Kept a little while for the next git operation; the sync task (or close) removes it.
            self._linger_until = time.monotonic() + HELPER_LINGER

    def denial(self, identity: Identity) -> str | None:
        """Why the proxy last refused this helper, if it did."""
        return self.gate.denials.get(identity.key)

    # -- server life ----------------------------------------------------------------------------------

    async def start(self, tg: TaskGroup) -> None:
        """Serve the proxy for sandboxes that outlived the last server, then keep it served and the
        counts saved."""
        await self._purge_orphans()
        self._keys()
        try:
            if await self._table.list():
                await self.fabric.ensure()
                await self._refresh_subnets()
            else:
                await self.release()
        except CorralError as exc:
            log.warning("the sandbox network is not available: %s", exc)

        async def sync() -> None:
            while True:
                await anyio.sleep(SYNC_EVERY)
                try:
                    await self.gate.flush()
                    if await self._table.list():
                        if not self.proxy.serving:
                            await self.fabric.ensure()
                        await self._refresh_subnets()
                    elif self.fabric.current is not None and time.monotonic() > self._linger_until:
                        await self.release()
                except CorralError as exc:
                    log.warning("egress proxy upkeep failed (will retry): %s", exc)

        supervise(tg, "egress proxy", sync)

    async def _purge_orphans(self) -> None:
        known = await self._sandbox_ids()
        for row in await self._table.list():
            if row.sandbox_id not in known:
                await self._table.forget(row.sandbox_id)

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self.gate.flush()
            except CorralError as exc:
                log.warning("could not save egress counts: %s", exc)
            await self.proxy.close()
            if not self._serve:
                return
            try:
                await self.release()
            except CorralError as exc:
                log.warning("could not remove the sandbox network: %s", exc)

    async def gc(self, *, dry_run: bool = False) -> list[str]:
        """This data dir's network and rules when no sandbox needs them (after `corral gc` removed
        orphaned containers)."""
        if not dry_run:
            await self._purge_orphans()
        if await self._table.list():
            return []
        found = await self.fabric.leftovers()
        if found and not dry_run:
            async with self.fabric.lock:
                for info in await self._engine.list_networks(self.fabric.owner_filter):
                    if info.name != self.fabric.network_name:
                        await self._engine.remove_network(info.name)
                await self.fabric.teardown()
        return found


__all__ = ["Fabric", "HelperRoute", "NetworkService", "NetworkView", "Policy"]
