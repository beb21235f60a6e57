"""The options of a new sandbox, checked against the operator's defaults and maxima.

Values past a maximum (or under a minimum) are clamped, never silently: `adjusted` says what was
asked for and what was set, and create_sandbox returns it. What cannot be meant (a negative
memory size, an environment variable the agent depends on) is refused with a message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from corral.config import MIB, Settings
from corral.errors import InvalidRequest
from corral.service.validation import check_env, check_labels

MIN_MEMORY_MB = 64
MIN_CPUS = 0.1
MIN_LIFETIME = 60.0  # seconds; anything shorter would stop or delete a sandbox between two calls
MAX_LIFETIME = 10 * 365 * 86400.0  # past this, "never" is what is meant (and dates stay printable)
MAX_ENV_BYTES = 256 * 1024
# Variables that would change how the in-sandbox agent itself starts or where it keeps its state.
RESERVED_ENV = re.compile(r"^(CORRAL_|LD_)|^(HOME|PATH)$")
SECRET_KEY = re.compile(r"(?i)secret|token|passw|pwd|key|credential|auth|private|cookie|session|signature")


@dataclass(frozen=True)
class Options:
    memory_bytes: int
    cpus: float
    env: dict[str, str]
    labels: dict[str, str]
    idle_stop_after: float | None
    delete_after: float | None
    ephemeral: bool
    adjusted: dict[str, str] = field(default_factory=dict)


def resolve(
    settings: Settings,
    *,
    memory_mb: int | None = None,
    cpus: float | None = None,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    idle_stop_after: float | None = None,
    delete_after: float | None = None,
    ephemeral: bool = False,
) -> Options:
    limits, lifetimes = settings.limits, settings.lifetimes
    adjusted: dict[str, str] = {}
    memory = limits.memory_bytes
    if memory_mb is not None:
        memory = int(clamp("memory_mb", memory_mb, MIN_MEMORY_MB, limits.max_memory_bytes // MIB, adjusted)) * MIB
    cpu = limits.cpus if cpus is None else clamp("cpus", cpus, MIN_CPUS, limits.max_cpus, adjusted)
    idle, lifetime = lifetimes.idle_stop_after, lifetimes.delete_after
    if idle_stop_after is not None:
        idle = lifetime_seconds("idle_stop_after", idle_stop_after, lifetimes.max_idle_stop_after, adjusted)
    elif idle is not None and lifetimes.max_idle_stop_after is not None:
        idle = min(idle, lifetimes.max_idle_stop_after)
    if delete_after is not None:
        lifetime = lifetime_seconds("delete_after", delete_after, lifetimes.max_delete_after, adjusted)
    elif lifetimes.max_delete_after is not None:
        lifetime = min(lifetime or lifetimes.max_delete_after, lifetimes.max_delete_after)
    return Options(
        memory_bytes=memory,
        cpus=cpu,
        env=check_sandbox_env(env),
        labels=check_labels(labels or {}),
        idle_stop_after=idle,
        delete_after=lifetime,
        ephemeral=bool(ephemeral),
        adjusted=adjusted,
    )


def clamp(name: str, value: float, low: float, high: float, adjusted: dict[str, str]) -> float:
    if isinstance(value, bool) or not value > 0:
        raise InvalidRequest(
            f"{name} must be a positive number (got {value!r}); this server allows {low:g} to {high:g}"
        )
    if value > high:
        adjusted[name] = f"asked {value:g}, set {high:g} (this server's maximum)"
        return high
    if value < low:
        adjusted[name] = f"asked {value:g}, set {low:g} (the minimum)"
        return low
    return value


def lifetime_seconds(name: str, value: float, maximum: float | None, adjusted: dict[str, str]) -> float | None:
    """A lifetime in seconds; 0 means never, which a server with a maximum does not allow."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        raise InvalidRequest(f"{name} must be a number of seconds >= 0 (0 = never; got {value!r})")
    if maximum is None and value > MAX_LIFETIME:
        adjusted[name] = f"asked {value:g} s, set {MAX_LIFETIME:g} s (ten years, the longest)"
        return MAX_LIFETIME
    if value == 0:
        if maximum is None:
            return None
        adjusted[name] = f"asked never, set {maximum:g} s (this server's maximum)"
        return maximum
    if maximum is not None and value > maximum:
        adjusted[name] = f"asked {value:g} s, set {maximum:g} s (this server's maximum)"
        return maximum
    if value < MIN_LIFETIME:
        adjusted[name] = f"asked {value:g} s, set {MIN_LIFETIME:g} s (the minimum)"
        return MIN_LIFETIME
    return float(value)


def check_sandbox_env(env: Mapping[str, str] | None) -> dict[str, str]:
    checked = check_env(env)
    reserved = sorted(key for key in checked if RESERVED_ENV.search(key))
    if reserved:
        raise InvalidRequest(
            f"environment variable(s) {', '.join(reserved)} cannot be set for a whole sandbox: Corral's agent "
            "depends on them (names starting with CORRAL_ or LD_, and HOME, PATH). Pass them to one "
            "command with run_command(env=...) instead"
        )
    size = sum(len(k) + len(v) for k, v in checked.items())
    if size > MAX_ENV_BYTES:
        raise InvalidRequest(f"the environment is {size} bytes; at most {MAX_ENV_BYTES} are allowed")
    return checked


def masked_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment as shown to anyone: values of keys that look secret are hidden."""
    return {key: ("***" if SECRET_KEY.search(key) else value) for key, value in env.items()}
