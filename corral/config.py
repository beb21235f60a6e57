"""Settings as small, immutable value objects, read once from the environment or CLI flags."""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import asdict, astuple, dataclass, field, fields, replace
from pathlib import Path
from typing import TypeVar

import platformdirs

from corral.errors import ConfigurationError

DEFAULT_IMAGE = "corral/sandbox:3"  # the tag is the image recipe version
RUNTIME_GVISOR = "corral-runsc"
RUNTIME_GVISOR_NET = "corral-runsc-net"
RUNTIME_RUNC = "runc"
LABEL_NAMESPACE = "dev.corral"
SANDBOX_USER = "1000:1000"
WORKDIR = "/workspace"

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


def default_home() -> Path:
    env = os.environ.get("CORRAL_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("corral"))


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox. pids counts host threads under gVisor's ptrace platform
    (about 5 per guest process, ~40 idle), hence the high default. disk is the size of the
    sandbox's /workspace (everything else it can write is memory: /tmp, /var/tmp, /dev/shm)."""

    memory_bytes: int = 1 * GIB
    cpus: float = 1.0
    pids: int = 2048
    disk_bytes: int = 10 * GIB
    max_disk_bytes: int = 50 * GIB
    # What create_sandbox may ask for; more memory or cpus is clamped to these (and the result says so).
    max_memory_bytes: int = 8 * GIB
    max_cpus: float = float(os.cpu_count() or 1)

    MIN_DISK_MB = 64


@dataclass(frozen=True)
class Lifetimes:
    """Operator defaults and maxima of a sandbox's lifetime, in seconds (None = never / no maximum).

    idle_stop_after: stop (keeping memory where possible, never deleting) after no tool call and no
    running process for that long. delete_after: delete that long after creation, whatever happens.
    """

    idle_stop_after: float | None = 1800.0
    max_idle_stop_after: float | None = None
    delete_after: float | None = None
    max_delete_after: float | None = None


@dataclass(frozen=True)
class ExecPolicy:
    default_timeout: float = 60.0
    max_timeout: float = 600.0
    output_limit: int = 64 * KIB  # per stream, head + tail kept
    max_file_bytes: int = 8 * MIB  # read_file / write_file payloads
    max_code_bytes: int = 1 * MIB  # run_code / run_command source


NETWORK_MODES = ("none", "allowlist", "internet")


@dataclass(frozen=True)
class NetworkSettings:
    """What the operator lets sandboxes reach (issue 9; docs in the README's settings table).

    Entries are validated by `service.network.policy` when the server opens, so a typo stops it
    with a message naming the setting."""

    # Modes agents may ask for (CORRAL_NETWORK_MODES).
    modes: tuple[str, ...] = ("none", "allowlist")
    # Destinations every allowlisted sandbox may reach (CORRAL_EGRESS_ALLOW and CORRAL_EGRESS_ALLOW_FILE).
    allow: tuple[str, ...] = ()
    # Private destinations (CIDRs, IPs, names, each with an optional :port) that are allowed all the
    # same (CORRAL_EGRESS_ALLOW_PRIVATE; the older CORRAL_GIT_ALLOW_PRIVATE is folded in).
    allow_private: tuple[str, ...] = ()
    # name -> addresses the egress proxy answers before DNS (CORRAL_EGRESS_HOSTS, name=ip pairs).
    hosts: tuple[tuple[str, str], ...] = ()
    # A PEM bundle every networked sandbox trusts, and the proxy trusts upstream (CORRAL_SANDBOX_CA).
    sandbox_ca: Path | None = None
    # Where the egress proxy sends connections to public addresses (CORRAL_UPSTREAM_PROXY, default
    # the server's own HTTPS_PROXY); None: connect directly.
    upstream_proxy: str | None = None
    # JSON file binding headers to host patterns, added by the proxy (CORRAL_EGRESS_SECRETS).
    secrets_file: Path | None = None


@dataclass(frozen=True)
class Quota:
    """What one tenant may hold at once, on top of the server's own maxima; None = no tenant limit."""

    sandboxes: int | None = None
    memory_mb: int | None = None
    disk_mb: int | None = None
    executions: int | None = None  # run_command / run_code / git network calls in flight

    def over(self, base: Quota) -> Quota:
        """This quota, with `base`'s value wherever this one sets none."""
        return Quota(
            *(mine if mine is not None else theirs for mine, theirs in zip(astuple(self), astuple(base), strict=True))
        )

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in asdict(self).items() if v is not None]
        return ", ".join(parts) or "none"


QUOTA_KEYS = tuple(f.name for f in fields(Quota))


def parse_quota(spec: str, *, source: str = "CORRAL_TENANT_QUOTA") -> Quota:
    """`sandboxes=5,memory_mb=8192,disk_mb=20480,executions=4` (any subset)."""
    values: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key, _, raw = part.partition("=")
        key = key.strip()
        if key not in QUOTA_KEYS:
            raise ConfigurationError(f"{source}: unknown quota {key!r}; use {', '.join(QUOTA_KEYS)}")
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigurationError(f"{source}: {key} must be a whole number (got {raw.strip()!r})") from None
        if value < 0:
            raise ConfigurationError(f"{source}: {key} must be 0 or more (got {value})")
        values[key] = value
    return Quota(**values)


@dataclass(frozen=True)
class OAuthSettings:
    """Corral as an OAuth 2.1 resource server: JWT access tokens from one issuer (RFC 9068 style),
    checked against the issuer's JWKS. Off unless `issuer` is set."""

    issuer: str | None = None
    audience: tuple[str, ...] = ()  # default: the server's public URL (and its /mcp and /sse)
    jwks_url: str | None = None  # default: from the issuer's metadata (RFC 8414 / OpenID discovery)
    tenant_claim: str = "sub"
    scopes: tuple[str, ...] = ()  # scopes every token must carry

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=default_home)
    image: str = DEFAULT_IMAGE
    limits: Limits = Limits()
    exec: ExecPolicy = ExecPolicy()
    max_sandboxes: int = 50
    max_snapshots: int = 20
    runtime: str = RUNTIME_GVISOR
    # Running without gVisor must be asked for by name; it is shown on every sandbox it affects.
    unsafe_runc: bool = False
    # Likewise sandboxes without a disk limit (where loop devices are unavailable, e.g. not root).
    unsafe_no_disk_limit: bool = False
    instance_id: str = field(default_factory=lambda: secrets.token_hex(4))
    docker_url: str | None = None
    # Private/loopback/link-local destinations git may fetch from or push to (hosts, IPs or CIDRs);
    # everything else non-public is refused, so a model cannot aim the networked helper at the
    # host's own services or a cloud metadata address. CORRAL_GIT_ALLOW_PRIVATE, comma-separated.
    # Deprecated: kept so older callers still work; folded into network.allow_private.
    git_allow_private: tuple[str, ...] = ()
    network: NetworkSettings = NetworkSettings()
    # Host directories upload/download may touch (nothing by default); CORRAL_HOST_DIRS, --allow-host-dir.
    host_dirs: tuple[Path, ...] = ()
    # Where expose_port listens on the host; CORRAL_PORT_HOST.
    port_host: str = "127.0.0.1"
    # Images create_sandbox may use (CORRAL_IMAGES): names or patterns ('repo/*', 'repo:*', '*').
    # None: the default image plus images already present on the engine. An image name is also a
    # registry address, so the model never chooses one the operator did not allow.
    images: tuple[str, ...] | None = None
    # Images the server may pull when they are missing (CORRAL_IMAGE_PULL, same patterns): none.
    image_pull: tuple[str, ...] = ()
    # Publish each tool's outputSchema in tools/list (CORRAL_OUTPUT_SCHEMAS=1). Off by default: the
    # schemas would double what tools/list costs a model's context; results carry
    # structuredContent either way.
    output_schemas: bool = False
    lifetimes: Lifetimes = Lifetimes()
    # Started, agent-ready sandboxes of the default spec kept for create_sandbox to hand out at
    # once. CORRAL_POOL_SIZE (2 when served); 0 here, so a Settings made in code starts none.
    pool_size: int = 0
    # Every tenant's quota unless its token sets its own; CORRAL_TENANT_QUOTA.
    tenant_quota: Quota = Quota()
    # How long audit records are kept; CORRAL_AUDIT_DAYS.
    audit_days: float = 30.0
    oauth: OAuthSettings = OAuthSettings()
    # The URL clients reach this server at (OAuth resource identifier); CORRAL_PUBLIC_URL.
    public_url: str | None = None

    @property
    def db_path(self) -> Path:
        return self.home / "corral.db"

    @property
    def allow_private(self) -> tuple[str, ...]:
        return self.network.allow_private + self.git_allow_private

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        policy = ExecPolicy(
            default_timeout=env_number("CORRAL_DEFAULT_TIMEOUT", ExecPolicy.default_timeout, float, low=0.1),
            max_timeout=env_number("CORRAL_MAX_TIMEOUT", ExecPolicy.max_timeout, float, low=1),
            output_limit=env_number("CORRAL_OUTPUT_LIMIT", ExecPolicy.output_limit, int, low=1024),
        )
        default_limits = Limits()
        memory_mb = env_number("CORRAL_MEMORY_MB", default_limits.memory_bytes // MIB, int, low=64)
        disk_mb = env_number("CORRAL_DISK_MB", Limits.disk_bytes // MIB, int, low=Limits.MIN_DISK_MB)
        max_disk_mb = env_number("CORRAL_MAX_DISK_MB", max(Limits.max_disk_bytes // MIB, disk_mb), int, low=disk_mb)
        limits = Limits(
            memory_bytes=memory_mb * MIB,
            max_memory_bytes=env_number(
                "CORRAL_MAX_MEMORY_MB", max(default_limits.max_memory_bytes // MIB, memory_mb), int, low=memory_mb
            )
            * MIB,
            cpus=env_number("CORRAL_CPUS", default_limits.cpus, float, low=0.1),
            max_cpus=env_number("CORRAL_MAX_CPUS", default_limits.max_cpus, float, low=0.1),
            disk_bytes=disk_mb * MIB,
            max_disk_bytes=max_disk_mb * MIB,
        )
        return cls(
            image=env.get("CORRAL_IMAGE", DEFAULT_IMAGE),
            limits=limits,
            lifetimes=Lifetimes(
                idle_stop_after=env_seconds("CORRAL_IDLE_STOP_AFTER", Lifetimes.idle_stop_after),
                max_idle_stop_after=env_seconds("CORRAL_MAX_IDLE_STOP_AFTER", None),
                delete_after=env_seconds("CORRAL_DELETE_AFTER", None),
                max_delete_after=env_seconds("CORRAL_MAX_DELETE_AFTER", None),
            ),
            pool_size=env_number("CORRAL_POOL_SIZE", 2, int, low=0),
            exec=policy,
            max_sandboxes=env_number("CORRAL_MAX_SANDBOXES", 50, int, low=1),
            max_snapshots=env_number("CORRAL_MAX_SNAPSHOTS", 20, int, low=0),
            docker_url=env.get("DOCKER_HOST"),
            host_dirs=parse_host_dirs(env.get("CORRAL_HOST_DIRS", "")),
            network=network_from_env(),
            port_host=env.get("CORRAL_PORT_HOST", "127.0.0.1"),
            images=image_patterns("CORRAL_IMAGES") if env.get("CORRAL_IMAGES", "").strip() else None,
            image_pull=image_patterns("CORRAL_IMAGE_PULL"),
            output_schemas=env_flag("CORRAL_OUTPUT_SCHEMAS"),
            tenant_quota=parse_quota(env.get("CORRAL_TENANT_QUOTA", "")),
            audit_days=env_number("CORRAL_AUDIT_DAYS", 30.0, float, low=0.01),
            oauth=OAuthSettings(
                issuer=env.get("CORRAL_OAUTH_ISSUER") or None,
                audience=_csv(env.get("CORRAL_OAUTH_AUDIENCE", "")),
                jwks_url=env.get("CORRAL_OAUTH_JWKS_URL") or None,
                tenant_claim=env.get("CORRAL_OAUTH_TENANT_CLAIM") or "sub",
                scopes=_csv(env.get("CORRAL_OAUTH_SCOPES", "")),
            ),
            public_url=env.get("CORRAL_PUBLIC_URL") or None,
        )


def env_flag(name: str) -> bool:
    """A yes/no setting from the environment (1/true/yes, 0/false/no or unset)."""
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"{name}={raw!r} is not a valid flag; use 1/true/yes or 0/false/no")


def network_from_env() -> NetworkSettings:
    """CORRAL_NETWORK_MODES, the egress settings and friends; the entries themselves are checked by
    the network service when the server opens (it knows their grammar)."""
    env = os.environ
    modes = _csv(env.get("CORRAL_NETWORK_MODES", "")) or NetworkSettings.modes
    for mode in modes:
        if mode not in NETWORK_MODES:
            raise ConfigurationError(f"CORRAL_NETWORK_MODES: {mode!r} is not a mode; valid: {', '.join(NETWORK_MODES)}")
    allow = _csv(env.get("CORRAL_EGRESS_ALLOW", ""))
    allow_file = env.get("CORRAL_EGRESS_ALLOW_FILE", "").strip()
    if allow_file:
        try:
            lines = Path(allow_file).expanduser().read_text().splitlines()
        except OSError as exc:
            raise ConfigurationError(f"CORRAL_EGRESS_ALLOW_FILE: cannot read {allow_file} ({exc.strerror})") from None
        allow += tuple(e for line in lines for e in _csv(line.split("#", 1)[0]))
    private = _csv(env.get("CORRAL_EGRESS_ALLOW_PRIVATE", ""))
    legacy = _csv(env.get("CORRAL_GIT_ALLOW_PRIVATE", ""))
    if legacy:
        logging.getLogger("corral.config").warning(
            "CORRAL_GIT_ALLOW_PRIVATE is deprecated: use CORRAL_EGRESS_ALLOW_PRIVATE (it now covers git and "
            "sandboxes alike); its entries are used as if they were listed there"
        )
    hosts: list[tuple[str, str]] = []
    for pair in _csv(env.get("CORRAL_EGRESS_HOSTS", "")):
        name, sep, address = pair.partition("=")
        if not sep or not name.strip() or not address.strip():
            raise ConfigurationError(f"CORRAL_EGRESS_HOSTS: {pair!r} is not name=ip (e.g. pkgs.test=172.17.0.1)")
        hosts.append((name.strip(), address.strip()))
    upstream = env.get("CORRAL_UPSTREAM_PROXY")
    if upstream is None:
        upstream = env.get("HTTPS_PROXY") or env.get("https_proxy") or ""
    return NetworkSettings(
        modes=modes,
        allow=allow,
        allow_private=private + legacy,
        hosts=tuple(hosts),
        sandbox_ca=_path_setting("CORRAL_SANDBOX_CA"),
        upstream_proxy=upstream.strip() if upstream.strip() and upstream.strip() != "none" else None,
        secrets_file=_path_setting("CORRAL_EGRESS_SECRETS"),
    )


def _path_setting(name: str) -> Path | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ConfigurationError(f"{name}={raw!r} is not a readable file")
    return path


N = TypeVar("N", int, float)


def env_number(name: str, default: N, kind: Callable[[str], N], *, low: float) -> N:
    """A numeric setting from the environment, or a ConfigurationError that names it."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value < low:
        raise ConfigurationError(f"{name}={raw!r} is too small; the minimum is {low:g}")
    return value


_IMAGE_PATTERN_RE = re.compile(r"^(\*|[a-zA-Z0-9][a-zA-Z0-9._/:@-]{0,254}?(/\*|:\*)?)$")


def image_patterns(name: str) -> tuple[str, ...]:
    """A comma-separated list of image names or patterns ('repo/*', 'repo:*', '*') from the
    environment, or a ConfigurationError that names the setting and the bad entry."""
    patterns = tuple(p.strip() for p in os.environ.get(name, "").split(",") if p.strip())
    for pattern in patterns:
        if not _IMAGE_PATTERN_RE.match(pattern):
            raise ConfigurationError(
                f"{name}: {pattern!r} is not an image name or pattern (e.g. 'corral/sandbox:3', 'python:*', "
                "'ghcr.io/org/*' or '*')"
            )
    return patterns


def env_seconds(name: str, default: float | None) -> float | None:
    """A duration in seconds from the environment; 0 means never (None)."""
    value = env_number(name, 0.0 if default is None else default, float, low=0)
    return None if value == 0 else value


def _csv(spec: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in spec.split(",") if part.strip())


def parse_host_dirs(spec: str) -> tuple[Path, ...]:
    """`CORRAL_HOST_DIRS`: colon-separated host directories (resolved, so symlinks cannot widen them)."""
    return tuple(Path(part).expanduser().resolve() for part in spec.split(os.pathsep) if part.strip())
