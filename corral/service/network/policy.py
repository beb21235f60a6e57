"""Egress policy as values: what an allow entry is, which addresses are never reachable, and the
decision for one connection. Pure logic: no sockets except the bind probe that tells whether an
address belongs to this host.

Decisions are made on the addresses a connection would actually go to (after resolution), never
on a name alone, so a name that resolves somewhere private is refused like the address itself.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from corral.errors import InvalidRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ENTRY_FORMS = "a host name (pypi.org), a wildcard (*.example.com), an IP or CIDR, each with an optional :port"
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_MIN_PREFIX = {4: 8, 6: 16}  # broader than this is "the internet": ask for that mode instead


@dataclass(frozen=True)
class Entry:
    """One allow entry: a name (`*.x` for any subdomain of x) or a network, and an optional port."""

    text: str
    name: str | None = None
    wildcard: bool = False
    network: Network | None = None
    port: int | None = None

    def matches_name(self, host: str, port: int) -> bool:
        if self.name is None or (self.port is not None and self.port != port):
            return False
        return host.endswith("." + self.name) if self.wildcard else host == self.name

    def matches_address(self, address: Address, port: int) -> bool:
        if self.network is None or (self.port is not None and self.port != port):
            return False
        return address.version == self.network.version and address in self.network


def normalize_host(host: str) -> str:
    """Lower-case ASCII (IDNA) form of a host name, without a trailing dot; raises ValueError."""
    host = host.strip().rstrip(".").lower()
    if not host:
        raise ValueError("empty host")
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    if len(host) > 253 or not all(_LABEL_RE.match(label) for label in host.split(".")):
        raise ValueError(f"{host!r} is not a valid host name")
    return host


def parse_address(text: str) -> Address | None:
    """An IP literal (brackets allowed for IPv6, zone ids refused), or None."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _split_port(text: str) -> tuple[str, int | None]:
    """'host:port', '[v6]:port', '[v6/len]:port' or a bare host/IP/CIDR (IPv6 without brackets has
    no port)."""
    if text.startswith("["):
        inner, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError("unclosed [")
        if not rest:
            return inner, None
        if not rest.startswith(":"):
            raise ValueError("expected :port after ]")
        return inner, _port(rest[1:])
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, _port(port)
    return text, None


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"port {text!r} is not a number from 1 to 65535")
    return int(text)


def parse_entry(text: str) -> Entry:
    """An allow entry, or ValueError saying what is wrong with it."""
    raw = text.strip()
    if not raw:
        raise ValueError("an entry is empty")
    if "://" in raw:
        host = raw.split("://", 1)[1].split("/", 1)[0]
        raise ValueError(f"{raw!r} is a URL; give its host instead, e.g. {host!r}")
    host, port = _split_port(raw)
    if "/" in host:
        try:
            network = ipaddress.ip_network(host, strict=False)
        except ValueError:
            raise ValueError(f"{raw!r} is neither a host nor a CIDR (for a URL, give its host)") from None
        return Entry(raw, network=network, port=port)
    address = parse_address(host)
    if address is not None:
        return Entry(raw, network=ipaddress.ip_network(address), port=port)
    wildcard = host.startswith("*.")
    if "*" in (host[2:] if wildcard else host):
        raise ValueError(f"{raw!r}: a wildcard may only be the first label, as in *.example.com")
    name = normalize_host(host[2:] if wildcard else host)
    return Entry(raw, name=name, wildcard=wildcard, port=port)


def parse_entries(texts: Iterable[str], what: str) -> tuple[Entry, ...]:
    entries = []
    for text in texts:
        try:
            entries.append(parse_entry(text))
        except ValueError as exc:
            raise InvalidRequest(f"{what}: {exc}. Valid entries: {ENTRY_FORMS}") from None
    return tuple(entries)


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64), which is where it leads."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in ipaddress.ip_network("64:ff9b::/96") or address in ipaddress.ip_network("64:ff9b:1::/48"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


_SHARED = ipaddress.ip_network("100.64.0.0/10")


def forbidden_reason(address: Address) -> str | None:
    """Why `address` is never a destination on its own (the operator can still list it), or None
    when it is a public address of some other machine."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = forbidden_reason(inner)
        if reason:
            return f"{reason} (it leads to {inner})"
    if address.is_unspecified or address.is_loopback:
        return "a loopback address of this server"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services live)"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "a carrier-grade NAT address (100.64.0.0/10)"
    if address.is_private:
        return "a private address"
    if address.is_multicast or address.is_reserved or not address.is_global:
        return "not a public address"
    if is_local_address(address):
        return "an address of this server"
    return None


def is_local_address(address: Address) -> bool:
    """True when `address` is assigned to this host: binding to it succeeds exactly then (with
    non-local binds off, as by default; if they are on, everything looks local and is refused)."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class PrivateAllowance:
    """The operator's CORRAL_EGRESS_ALLOW_PRIVATE: private destinations that are allowed anyway."""

    entries: tuple[Entry, ...] = ()

    def covers(self, host: str, address: Address, port: int) -> Entry | None:
        for entry in self.entries:
            if entry.matches_address(address, port) or entry.matches_name(host, port):
                return entry
        return None


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    rule: str  # what decided, for the log, the 403 body and the model
    addresses: tuple[Address, ...] = ()


@dataclass(frozen=True)
class Rules:
    """Who may go where: a sandbox's mode and entries (plus the operator's), or a helper's one
    destination."""

    mode: str  # none | allowlist | internet | destination
    entries: tuple[Entry, ...] = ()
    operator: tuple[Entry, ...] = ()
    destination: tuple[str, int] | None = None

    def name_rule(self, host: str, port: int) -> str | None:
        """The rule that lets a connection to `host:port` through by its name, if any."""
        if self.mode == "internet":
            return "network 'internet'"
        if self.mode == "destination":
            return "the git operation's URL" if self.destination == (host, port) else None
        for label, entries in (("allow", self.entries), ("CORRAL_EGRESS_ALLOW", self.operator)):
            for entry in entries:
                if entry.matches_name(host, port):
                    return f"{label} {entry.text!r}"
        return None

    def address_rule(self, address: Address, port: int) -> str | None:
        if self.mode != "allowlist":
            return None
        for label, entries in (("allow", self.entries), ("CORRAL_EGRESS_ALLOW", self.operator)):
            for entry in entries:
                if entry.matches_address(address, port):
                    return f"{label} {entry.text!r}"
        return None


@dataclass(frozen=True)
class Guard:
    """Addresses no connection may reach: every non-public address and every address of this host,
    unless the operator allowed it; Corral's own sandbox network never."""

    private: PrivateAllowance = PrivateAllowance()
    sandbox_networks: tuple[Network, ...] = field(default_factory=tuple)

    def check(self, host: str, address: Address, port: int) -> tuple[bool, str]:
        target = embedded_ipv4(address) or address
        if any(target.version == n.version and target in n for n in self.sandbox_networks):
            return False, f"{address} is on Corral's sandbox network (other sandboxes are never reachable)"
        reason = forbidden_reason(address)
        if reason is None:
            return True, ""
        allowed = self.private.covers(host, address, port)
        if allowed is not None:
            return True, f"CORRAL_EGRESS_ALLOW_PRIVATE {allowed.text!r}"
        return False, f"{address} is {reason}; only the operator can open it (CORRAL_EGRESS_ALLOW_PRIVATE)"


def decide(rules: Rules, guard: Guard, host: str, port: int, addresses: Sequence[Address]) -> Verdict:
    """The verdict for a connection to `host:port` that would go to one of `addresses` (the
    resolution of `host`, or the literal itself). IP and CIDR entries allow addresses asked for as
    addresses; a name needs a name entry (or mode internet)."""
    if rules.mode == "none":
        return Verdict(False, "network 'none': this sandbox may not connect anywhere")
    by_name = rules.name_rule(host, port)
    literal = parse_address(host) is not None
    if not by_name and not literal:
        # Names are allowed by name only: the proxy never looks up a name the policy does not name
        # (a lookup alone would carry data out through DNS).
        return Verdict(False, f"{host}:{port} is not in this sandbox's allowlist")
    allowed: list[Address] = []
    rule, refusal = by_name or "", ""
    for address in addresses:
        why = by_name or rules.address_rule(address, port)
        if why is None:
            refusal = refusal or f"{host}:{port} is not in this sandbox's allowlist"
            continue
        ok, note = guard.check(host, address, port)
        if not ok:
            refusal = refusal or note
            continue
        rule = rule or why
        if note and note not in rule:
            rule = f"{rule}; {note}"
        allowed.append(address)
    if allowed:
        return Verdict(True, rule, tuple(allowed))
    if not addresses:
        return Verdict(False, f"{host} does not resolve to any address")
    return Verdict(False, refusal)


def check_agent_entries(entries: Sequence[Entry], private: PrivateAllowance) -> None:
    """An agent's allow list may name any public destination, never a private one the operator did
    not open, nor a network so broad it means 'the internet'."""
    for entry in entries:
        net = entry.network
        if net is None:
            continue
        if net.prefixlen < _MIN_PREFIX[net.version]:
            raise InvalidRequest(
                f"allow entry {entry.text!r} covers most of the internet; ask for network='internet' instead "
                "(if the operator allows it), or list narrower networks"
            )
        first = net.network_address
        if forbidden_reason(first) and not any(
            p.network is not None and p.network.version == net.version and net.subnet_of(p.network)  # type: ignore[arg-type]
            for p in private.entries
        ):
            raise InvalidRequest(
                f"allow entry {entry.text!r} is {forbidden_reason(first)}; sandboxes may only reach public "
                "addresses unless the operator lists private ones in CORRAL_EGRESS_ALLOW_PRIVATE"
            )
