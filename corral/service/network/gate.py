"""The proxy's judge: who a connection belongs to, where it may go, and a record of every decision.

Rules of a sandbox come from the `egress` table (cached for a moment, so that any server on the data
dir enforces a change another one made); a git helper's rule is its one signed destination.
Every decision is logged (logger `corral.egress`) and counted per sandbox; the counts reach SQLite
in batches. Open connections are remembered so that narrowing a policy cuts the ones it no longer
allows.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio

from corral.sandbox_backend.store import EgressTable
from corral.service.network.identity import Identity, Keyring
from corral.service.network.inject import Secrets
from corral.service.network.policy import (
    Address,
    Entry,
    Guard,
    Network,
    Rules,
    Verdict,
    decide,
    normalize_host,
    parse_address,
    parse_entries,
)

log = logging.getLogger("corral.egress")

RULES_TTL = 2.0  # seconds a sandbox's rules are trusted before the table is read again
RESOLVE_TIMEOUT = 10.0


def parse_hosts(pairs: Iterable[tuple[str, str]]) -> dict[str, tuple[Address, ...]]:
    """CORRAL_EGRESS_HOSTS as name -> addresses (a name may be given more than once)."""
    hosts: dict[str, tuple[Address, ...]] = {}
    for name, text in pairs:
        address = parse_address(text)
        if address is None:
            raise ValueError(f"{text!r} (for {name}) is not an IP address")
        key = normalize_host(name)
        hosts[key] = (*hosts.get(key, ()), address)
    return hosts


@dataclass
class Live:
    host: str
    port: int
    address: Address
    cut: Callable[[], None]


@dataclass
class Gate:
    keyring: Keyring | None  # None until the data dir's key is loaded: nobody is let in
    table: EgressTable
    operator: tuple[Entry, ...]
    guard_for: Callable[[], Guard]
    hosts: Mapping[str, tuple[Address, ...]]
    secrets: Secrets = field(default_factory=Secrets)
    _rules: dict[str, tuple[float, Rules]] = field(default_factory=dict)
    _counts: dict[str, list[int]] = field(default_factory=dict)
    _live: dict[str, dict[int, Live]] = field(default_factory=dict)
    denials: dict[str, str] = field(default_factory=dict)

    # -- who and what ---------------------------------------------------------------------------

    def identify(self, authorization: str | None) -> Identity | None:
        return None if self.keyring is None else self.keyring.identify(authorization)

    def rules_of(self, mode: str, allow: Sequence[str]) -> Rules:
        return Rules(mode, parse_entries(allow, "allow"), self.operator)

    async def rules(self, who: Identity) -> Rules:
        if who.destination is not None:
            return Rules("destination", destination=who.destination)
        cached = self._rules.get(who.sandbox_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        row = await self.table.get(who.sandbox_id)
        rules = Rules("none") if row is None else self.rules_of(row.mode, row.allow)
        self._rules[who.sandbox_id] = (time.monotonic() + RULES_TTL, rules)
        return rules

    def remember(self, sandbox_id: str, rules: Rules) -> None:
        self._rules[sandbox_id] = (time.monotonic() + RULES_TTL, rules)

    async def resolve(self, host: str, port: int) -> tuple[list[Address], str]:
        """The addresses `host` stands for: an IP literal itself, CORRAL_EGRESS_HOSTS, then DNS."""
        literal = parse_address(host)
        if literal is not None:
            return [literal], ""
        if host in self.hosts:
            return list(self.hosts[host]), ""
        try:
            with anyio.fail_after(RESOLVE_TIMEOUT):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            return [], f"cannot resolve {host} ({getattr(exc, 'strerror', None) or exc or 'timed out'})"
        found: list[Address] = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if address not in found:
                found.append(address)
        return found, ""

    async def decide(self, who: Identity, host: str, port: int) -> Verdict:
        rules = await self.rules(who)
        if rules.mode == "none" or (parse_address(host) is None and rules.name_rule(host, port) is None):
            verdict = decide(rules, self.guard_for(), host, port, [])  # refused without a lookup
        else:
            addresses, failure = await self.resolve(host, port)
            verdict = Verdict(False, failure) if failure else decide(rules, self.guard_for(), host, port, addresses)
        self._record(who, host, port, verdict)
        return verdict

    def report(self, who: Identity, host: str, port: int, rule: str) -> None:
        self._record(who, host, port, Verdict(False, rule))

    def _record(self, who: Identity, host: str, port: int, verdict: Verdict) -> None:
        shown = ",".join(str(a) for a in verdict.addresses) or "-"
        word = "allowed" if verdict.allowed else "denied"
        log.info("egress %s %s:%d %s -> %s: %s", who.label, host, port, word, shown, verdict.rule)
        if who.destination is not None:
            if not verdict.allowed:
                self.denials[who.key] = f"{host}:{port}: {verdict.rule}"
            return
        counts = self._counts.setdefault(who.sandbox_id, [0, 0])
        counts[0 if verdict.allowed else 1] += 1

    def intercepts(self, who: Identity, host: str, port: int) -> bool:
        return who.destination is None and self.secrets.any_for(host, port)

    def inject(self, who: Identity, host: str, port: int) -> list[tuple[str, str]]:
        if who.destination is not None:
            return []
        headers = self.secrets.headers_for(host, port)
        if headers:
            log.info("egress %s %s:%d: added %s", who.label, host, port, ", ".join(n for n, _ in headers))
        return headers

    # -- open connections ---------------------------------------------------------------------------

    def track(
        self, who: Identity, host: str, port: int, address: Address, cut: Callable[[], None]
    ) -> Callable[[], None]:
        live = self._live.setdefault(who.sandbox_id, {})
        key = id(cut)
        live[key] = Live(host, port, address, cut)

        def forget() -> None:
            live.pop(key, None)

        return forget

    def cut_disallowed(self, sandbox_id: str, rules: Rules) -> int:
        """Cut the sandbox's open connections its new rules do not allow; returns how many."""
        cut = 0
        for live in list(self._live.get(sandbox_id, {}).values()):
            if not decide(rules, self.guard_for(), live.host, live.port, [live.address]).allowed:
                live.cut()
                cut += 1
        return cut

    def forget(self, sandbox_id: str) -> None:
        self._rules.pop(sandbox_id, None)
        self._counts.pop(sandbox_id, None)
        for live in list(self._live.pop(sandbox_id, {}).values()):
            live.cut()

    # -- counts -------------------------------------------------------------------------------------

    def pending(self, sandbox_id: str) -> tuple[int, int]:
        allowed, denied = self._counts.get(sandbox_id, (0, 0))
        return allowed, denied

    async def flush(self) -> None:
        counts, self._counts = self._counts, {}
        batch = {k: (v[0], v[1]) for k, v in counts.items() if v[0] or v[1]}
        if not batch:
            return
        try:
            await self.table.add_counts(batch)
        except Exception:
            for key, (allowed, denied) in batch.items():  # keep them for the next try
                kept = self._counts.setdefault(key, [0, 0])
                kept[0] += allowed
                kept[1] += denied
            raise


def sandbox_guard(base: Guard, subnets: Sequence[Network]) -> Guard:
    return Guard(base.private, tuple(subnets))
