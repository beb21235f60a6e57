"""The host's packet filter for Corral's sandbox networks: the only place that runs iptables.

One set of rules per data dir (`owner`), keyed by the bridge interface of its sandbox network:

    iptables  (filter)
      CORRAL-<owner>     -j DROP                       forwarded traffic from or to the bridge:
                                                       no route out, no sandbox-to-sandbox
      CORRAL-IN-<owner>  -d <gateway> -p tcp --dport <proxy port> -j ACCEPT
                         -j DROP                       traffic to the host itself: only the proxy
      DOCKER-USER  -i <bridge> -j CORRAL-<owner>       (and -o <bridge>)
      INPUT        -i <bridge> -j CORRAL-IN-<owner>
    ip6tables (filter)
      CORRAL-<owner>     -j DROP;  INPUT -i <bridge>, FORWARD -i/-o <bridge> jump to it

Rules live only in chains Corral owns, plus the jumps to them (each carrying the comment
`corral:<owner>`); nothing else is ever added, flushed or removed, so Docker's chains and other
programs' rules are left alone. Chain contents are replaced in one `iptables-restore --noflush`
transaction, so there is no moment when a half-written chain lets traffic through.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio

from corral.errors import NetworkUnavailable

log = logging.getLogger(__name__)

PREFIX = "CORRAL-"
_CHAIN_RE = re.compile(r"^CORRAL-(?:IN-)?([0-9a-f]{6,16})$")
BRIDGE_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
FIX = "run scripts/setup-host.sh as root (it installs iptables and loads br_netfilter)"


@dataclass(frozen=True)
class Fence:
    """What to enforce for one sandbox network."""

    owner: str
    bridge: str
    gateway: str
    proxy_port: int

    @property
    def forward_chain(self) -> str:
        return f"{PREFIX}{self.owner}"

    @property
    def input_chain(self) -> str:
        return f"{PREFIX}IN-{self.owner}"


class Firewall(Protocol):
    async def install(self, fence: Fence) -> None:
        """Make the rules exactly those of `fence` (idempotent); NetworkUnavailable if impossible."""
        ...

    async def remove(self, owner: str) -> None:
        """Remove every rule and chain of `owner` (idempotent)."""
        ...

    async def owners(self) -> set[str]:
        """The owners that have rules on this host."""
        ...


def _comment(owner: str) -> list[str]:
    return ["-m", "comment", "--comment", f"corral:{owner}"]


def jumps(fence: Fence) -> list[tuple[str, str, list[str]]]:
    """(command, chain, rule) of every jump to Corral's chains, per address family."""
    fwd, inp, br, c = fence.forward_chain, fence.input_chain, fence.bridge, _comment(fence.owner)
    return [
        ("iptables", "DOCKER-USER", ["-i", br, *c, "-j", fwd]),
        ("iptables", "DOCKER-USER", ["-o", br, *c, "-j", fwd]),
        ("iptables", "INPUT", ["-i", br, *c, "-j", inp]),
        ("ip6tables", "INPUT", ["-i", br, *c, "-j", fwd]),
        ("ip6tables", "FORWARD", ["-i", br, *c, "-j", fwd]),
        ("ip6tables", "FORWARD", ["-o", br, *c, "-j", fwd]),
    ]


def chain_script(fence: Fence, family: int) -> str:
    """An iptables-restore script that (re)defines the owner's chains: declaring a chain with
    --noflush empties it, and the whole script is applied at once."""
    fwd, inp = fence.forward_chain, fence.input_chain
    if family == 6:
        return f"*filter\n:{fwd} - [0:0]\n-A {fwd} -j DROP\nCOMMIT\n"
    return (
        f"*filter\n:{fwd} - [0:0]\n:{inp} - [0:0]\n-A {fwd} -j DROP\n"
        f"-A {inp} -d {fence.gateway}/32 -p tcp -m tcp --dport {fence.proxy_port} -j ACCEPT\n"
        f"-A {inp} -j DROP\nCOMMIT\n"
    )


class IptablesFirewall:
    """Rules through the iptables / ip6tables commands (nf_tables or legacy backend alike)."""

    def __init__(self) -> None:
        self._lock = anyio.Lock()

    async def _run(self, argv: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        try:
            done = await anyio.run_process(argv, input=stdin, check=False)
        except OSError as exc:
            raise NetworkUnavailable(f"cannot run {argv[0]} ({exc.strerror}); {FIX}") from None
        return done.returncode, (done.stderr or b"").decode(errors="replace").strip()

    async def _ok(self, argv: list[str], stdin: bytes | None = None) -> None:
        code, err = await self._run(argv, stdin)
        if code != 0:
            raise NetworkUnavailable(
                f"`{' '.join(argv)}` failed: {err or f'exit {code}'}. Corral needs root and iptables to keep "
                f"networked sandboxes away from the host and each other; {FIX}"
            )

    def preflight(self) -> None:
        for tool in ("iptables", "ip6tables", "iptables-restore", "ip6tables-restore"):
            if shutil.which(tool) is None:
                raise NetworkUnavailable(f"{tool} is not installed; {FIX}")
        try:
            bridged = BRIDGE_NF.read_text().strip() == "1"
        except OSError:
            bridged = False
        if not bridged:
            # Without br_netfilter, traffic between two containers on one bridge never meets iptables.
            raise NetworkUnavailable(f"the kernel does not filter bridged traffic (br_netfilter is off); {FIX}")

    async def install(self, fence: Fence) -> None:
        self.preflight()
        async with self._lock:
            for family, restore in ((4, "iptables-restore"), (6, "ip6tables-restore")):
                await self._ok([restore, "-w", "--noflush"], chain_script(fence, family).encode())
            for command, chain, rule in jumps(fence):
                if chain == "DOCKER-USER":
                    code, _ = await self._run([command, "-w", "-n", "-L", "DOCKER-USER"])
                    if code != 0:
                        raise NetworkUnavailable(
                            "iptables has no DOCKER-USER chain: Docker's own iptables rules are off "
                            "(\"iptables\": false in daemon.json?); Corral cannot fence sandbox networks"
                        )
                code, _ = await self._run([command, "-w", "-C", chain, *rule])
                if code != 0:
                    await self._ok([command, "-w", "-I", chain, "1", *rule])
            await self._remove_stale_jumps(fence)
        log.info("egress rules in place for bridge %s (proxy %s:%d)", fence.bridge, fence.gateway, fence.proxy_port)

    async def _remove_stale_jumps(self, fence: Fence) -> None:
        """Jumps of this owner for another bridge (a network made earlier) go."""
        wanted = {(cmd, chain, " ".join(rule)) for cmd, chain, rule in jumps(fence)}
        for command, chain, rule in await self._jumps_of(fence.owner):
            if (command, chain, " ".join(rule)) not in wanted:
                await self._run([command, "-w", "-D", chain, *rule])

    async def _jumps_of(self, owner: str) -> list[tuple[str, str, list[str]]]:
        found = []
        for command in ("iptables", "ip6tables"):
            for line in (await _listing(command)).splitlines():
                words = shlex.split(line)
                if len(words) > 2 and words[0] == "-A" and f"corral:{owner}" in words:
                    found.append((command, words[1], words[2:]))
        return found

    async def remove(self, owner: str) -> None:
        async with self._lock:
            for command, chain, rule in await self._jumps_of(owner):
                await self._run([command, "-w", "-D", chain, *rule])
            for command in ("iptables", "ip6tables"):
                for chain in (f"{PREFIX}{owner}", f"{PREFIX}IN-{owner}"):
                    code, _ = await self._run([command, "-w", "-F", chain])
                    if code == 0:
                        await self._run([command, "-w", "-X", chain])
        log.info("egress rules of %s removed", owner)

    async def owners(self) -> set[str]:
        return {owner for _, owner in await list_chains()}


async def _listing(command: str) -> str:
    try:
        done = await anyio.run_process([command, "-w", "-S"], check=False)
    except OSError:
        return ""
    return done.stdout.decode(errors="replace") if done.returncode == 0 else ""


def problem() -> str | None:
    """Why networked sandboxes would be refused on this host (for `corral doctor`), or None."""
    try:
        IptablesFirewall().preflight()
    except NetworkUnavailable as exc:
        return str(exc)
    return None


async def list_chains() -> list[tuple[str, str]]:
    """(command, owner) of every Corral chain on this host."""
    found = []
    for command in ("iptables", "ip6tables"):
        for line in (await _listing(command)).splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "-N" and (m := _CHAIN_RE.match(parts[1])):
                found.append((command, m.group(1)))
    return found


async def list_rules() -> list[str]:
    """Every rule of Corral's on this host (its chains' contents and the jumps to them), as
    `iptables -S` prints them, prefixed by the command; for `corral doctor` and tests."""
    rules = []
    for command in ("iptables", "ip6tables"):
        for line in (await _listing(command)).splitlines():
            parts = line.split()
            if len(parts) > 1 and (parts[1].startswith(PREFIX) or "corral:" in line):
                rules.append(f"{command} {line}")
    return rules


class FakeFirewall:
    """In memory, for unit tests: records what would be installed."""

    def __init__(self) -> None:
        self.fences: dict[str, Fence] = {}
        self.failure: NetworkUnavailable | None = None

    async def install(self, fence: Fence) -> None:
        if self.failure is not None:
            raise self.failure
        self.fences[fence.owner] = fence

    async def remove(self, owner: str) -> None:
        self.fences.pop(owner, None)

    async def owners(self) -> set[str]:
        return set(self.fences)
