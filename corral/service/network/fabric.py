"""The sandbox network of a data dir and what fences it: an internal Docker bridge (no NAT, no route
out, members isolated from each other), the host's packet filter rules for its bridge, and the
egress proxy listening on its gateway, the one address sandboxes on it can reach.

Made on first need (in that order: network, rules, proxy; so no sandbox ever runs on an unfenced
bridge) and removed with the last sandbox or helper that needs it (proxy, network, rules).
The proxy's port is chosen when the network is made and kept in its labels, so sandboxes whose
environment names it keep working across server restarts.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from dataclasses import dataclass

import anyio

from corral.errors import NetworkUnavailable
from corral.sandbox_backend.engine import Engine, NetworkInfo, NetworkSpec
from corral.sandbox_backend.firewall import Fence, Firewall
from corral.service.containers import LABEL_ROLE, Containers
from corral.service.network.policy import Network
from corral.service.network.proxy import EgressProxy

log = logging.getLogger(__name__)

LABEL_PROXY_PORT = "dev.corral.proxy-port"
ROLE = "sandbox-network"


@dataclass(frozen=True)
class Fabric:
    network: str
    bridge: str
    gateway: str
    subnet: Network
    port: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


class FabricManager:
    def __init__(
        self, engine: Engine, firewall: Firewall, containers: Containers, proxy: EgressProxy, *, serve: bool
    ) -> None:
        self._engine = engine
        self._firewall = firewall
        self._containers = containers
        self._proxy = proxy
        self._serve = serve
        self._lock = anyio.Lock()
        self.current: Fabric | None = None
        owner = containers.owner
        self.owner = owner
        self.network_name = f"corral-net-{owner}"
        self.bridge = f"crl-{owner[:11]}"

    @property
    def owner_filter(self) -> str:
        return self._containers.owner_filter

    @property
    def lock(self) -> anyio.Lock:
        return self._lock

    async def ensure(self) -> Fabric:
        """The fabric, made or checked (idempotent; cheap when it is already up here)."""
        async with self._lock:
            return await self._ensure()

    async def _ensure(self) -> Fabric:
        if self.current is not None:
            if self._proxy.serving or not self._serve:
                return self.current
            # Known network, proxy served elsewhere until now: only try to take it over.
            if await self._serve_proxy(self.current):
                return self.current
            self.current = None  # its address is gone: the network was removed; make it again
        labels = {**self._containers.network_labels(ROLE), LABEL_PROXY_PORT: str(free_port())}
        spec = NetworkSpec(self.network_name, labels, internal=True, isolated=True, bridge=self.bridge)
        info = await self._engine.ensure_network(spec)
        fabric = _fabric_of(info)
        await self._firewall.install(Fence(self.owner, fabric.bridge, fabric.gateway, fabric.port))
        self.current = fabric
        if self._serve and not await self._serve_proxy(fabric):
            raise NetworkUnavailable(f"cannot start the egress proxy on {fabric.gateway}:{fabric.port}")
        return fabric

    async def _serve_proxy(self, fabric: Fabric) -> bool:
        """Listen on the gateway; True also when another Corral server on this data dir already
        does (this one takes over if it stops), False when the address is gone."""
        if self._proxy.serving:
            return True
        try:
            await self._proxy.start(fabric.gateway, fabric.port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                log.debug("the egress proxy on %s:%d is served by another process", fabric.gateway, fabric.port)
                return True
            if exc.errno == errno.EADDRNOTAVAIL:
                return False
            raise NetworkUnavailable(
                f"cannot start the egress proxy on {fabric.gateway}:{fabric.port} ({exc.strerror})"
            ) from None
        return True

    async def teardown(self) -> bool:
        """Remove proxy, network and rules; False (and nothing removed) while containers still use
        the network. Call with `lock` held."""
        await self._proxy.close()
        if not await self._engine.remove_network(self.network_name):
            log.info("network %s is still in use; kept", self.network_name)
            self.current = None
            return False
        await self._firewall.remove(self.owner)
        self.current = None
        log.info("sandbox network %s and its rules removed", self.network_name)
        return True

    async def sandbox_subnets(self) -> tuple[Network, ...]:
        """The subnets of every Corral sandbox network on this engine, whichever data dir made it:
        no proxy ever connects into one (another server's sandboxes are sandboxes too)."""
        found = []
        for info in await self._engine.list_networks(f"{LABEL_ROLE}={ROLE}"):
            if info.subnet:
                found.append(ipaddress.ip_network(info.subnet, strict=False))
        if self.current is not None and self.current.subnet not in found:
            found.append(self.current.subnet)
        return tuple(found)

    async def leftovers(self) -> list[str]:
        """What of this data dir's fabric exists on the host (for gc)."""
        found = [n.name for n in await self._engine.list_networks(self._containers.owner_filter)]
        if self.owner in await self._firewall.owners():
            found.append(f"iptables rules of {self.owner}")
        return found


def _fabric_of(info: NetworkInfo) -> Fabric:
    port_text = info.labels.get(LABEL_PROXY_PORT, "")
    if not info.internal or not port_text.isdigit() or not info.gateway or not info.subnet or not info.bridge:
        raise NetworkUnavailable(
            f"the Docker network {info.name} exists but is not a Corral sandbox network (internal, with a proxy "
            f"port label); remove it (`docker network rm {info.name}`) and try again"
        )
    return Fabric(info.name, info.bridge, info.gateway, ipaddress.ip_network(info.subnet, strict=False), int(port_text))
