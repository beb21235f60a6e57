"""Secrets the egress proxy adds to requests (CORRAL_EGRESS_SECRETS), so that a sandbox can use
an API without ever holding its key.

The file is JSON: host pattern -> header name -> value, where a value is a string, or
`{"env": "NAME"}` (read from the server's environment when it starts), optionally with a
`"prefix"` such as `"Bearer "`:

    {"api.example.com": {"Authorization": {"env": "EXAMPLE_TOKEN", "prefix": "Bearer "}},
     "*.internal.test:8080": {"X-Api-Key": "k-123"}}

Patterns use the allow-entry grammar for names (`*.x`, optional `:port`). A header of the same
name the sandbox sent is replaced, never merged. Plain HTTP requests get them as they pass; HTTPS
requests to those hosts are opened by the proxy (mitm.py). Values exist only in the server's
memory: they never reach the sandbox, a tool result, the audit log or SQLite, and logs name only
the header.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from corral.errors import ConfigurationError
from corral.service.network.policy import Entry, parse_entry

_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
SETTING = "CORRAL_EGRESS_SECRETS"


@dataclass(frozen=True)
class Binding:
    pattern: Entry
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Secrets:
    bindings: tuple[Binding, ...] = ()

    def headers_for(self, host: str, port: int) -> list[tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        for binding in self.bindings:
            if binding.pattern.matches_name(host, port):
                for name, value in binding.headers:
                    found.setdefault(name.lower(), (name, value))
        return list(found.values())

    def any_for(self, host: str, port: int) -> bool:
        return any(b.pattern.matches_name(host, port) for b in self.bindings)

    @property
    def values(self) -> list[str]:
        return [value for b in self.bindings for _, value in b.headers]

    @classmethod
    def load(cls, path: Path | None) -> Secrets:
        if path is None:
            return cls()
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigurationError(f"{SETTING}: cannot read {path} ({exc.strerror})") from None
        except ValueError as exc:
            raise ConfigurationError(f"{SETTING}: {path} is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigurationError(f"{SETTING}: {path} must hold an object: host pattern -> header -> value")
        return cls(tuple(_binding(pattern, headers) for pattern, headers in data.items()))


def _binding(pattern: str, headers: object) -> Binding:
    try:
        entry = parse_entry(pattern)
    except ValueError as exc:
        raise ConfigurationError(f"{SETTING}: host pattern {pattern!r}: {exc}") from None
    if entry.name is None:
        raise ConfigurationError(f"{SETTING}: {pattern!r} must be a host name or *.pattern, not an address")
    if not isinstance(headers, dict) or not headers:
        raise ConfigurationError(f"{SETTING}: {pattern!r} must map header names to values")
    return Binding(entry, tuple(_header(pattern, name, value) for name, value in headers.items()))


def _header(pattern: str, name: str, spec: object) -> tuple[str, str]:
    where = f"{SETTING}: {pattern!r} header {name!r}"
    if not _HEADER_NAME_RE.match(name):
        raise ConfigurationError(f"{where}: not a valid header name")
    if isinstance(spec, str):
        value = spec
    elif isinstance(spec, dict) and isinstance(spec.get("env"), str) and set(spec) <= {"env", "prefix"}:
        env_value = os.environ.get(spec["env"])
        if env_value is None:
            raise ConfigurationError(f"{where}: the environment variable {spec['env']} is not set")
        value = str(spec.get("prefix", "")) + env_value
    else:
        raise ConfigurationError(f'{where}: give a string or {{"env": "NAME", "prefix": "..."}}')
    if any(c in value for c in "\r\n\0") or not value:
        raise ConfigurationError(f"{where}: the value is empty or holds a line break")
    return name, value


def scrub(text: str, values: Iterable[str]) -> str:
    for value in sorted(set(values), key=len, reverse=True):
        if value:
            text = text.replace(value, "***")
    return text
