"""Input checks with messages that say what was wrong and what is valid."""

from __future__ import annotations

import re
from collections.abc import Mapping

from corral.config import WORKDIR
from corral.errors import InvalidRequest, PayloadTooLarge

ID_RE = re.compile(r"^sb-[0-9a-f]{8}$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
IMAGE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._/:@-]{0,254}$")
LABEL_KEY_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_PATH = 4096


def check_name(name: str) -> str:
    if not NAME_RE.match(name) or ID_RE.match(name):
        raise InvalidRequest(
            f"invalid sandbox name {name!r}: use 1-63 characters of a-z, 0-9, '_', '.', '-', starting "
            "with a letter or digit, and not of the form sb-xxxxxxxx (that is an id)"
        )
    return name


def check_image(image: str) -> str:
    if not IMAGE_RE.match(image):
        raise InvalidRequest(
            f"invalid image reference {image!r}: expected something like 'corral/sandbox:1' or "
            "'python:3.12-slim'"
        )
    return image


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    if len(labels) > 32:
        raise InvalidRequest(f"too many labels ({len(labels)}); at most 32 are allowed")
    for key, value in labels.items():
        if not LABEL_KEY_RE.match(key):
            raise InvalidRequest(f"invalid label key {key!r}: use letters, digits, '_', '.', '-' (max 63)")
        if len(value) > 256:
            raise InvalidRequest(f"label {key!r} is too long ({len(value)} chars); at most 256")
    return dict(labels)


def check_env(env: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(env or {})
    if len(env) > 256:
        raise InvalidRequest(f"too many environment variables ({len(env)}); at most 256")
    for key, value in env.items():
        if not ENV_KEY_RE.match(key):
            raise InvalidRequest(
                f"invalid environment variable name {key!r}: use letters, digits and '_', not starting "
                "with a digit"
            )
        if "\x00" in value or len(value) > 32768:
            raise InvalidRequest(f"invalid value for {key!r}: no NUL bytes, at most 32768 characters")
    return env


def check_path(path: str) -> str:
    if not path or "\x00" in path or len(path) > MAX_PATH:
        raise InvalidRequest(
            f"invalid path {path[:80]!r}: give a non-empty path of at most {MAX_PATH} characters without "
            "NUL bytes; relative paths are resolved against /workspace"
        )
    return path if path.startswith("/") else f"{WORKDIR}/{path}"


def check_size(what: str, size: int, limit: int) -> None:
    if size > limit:
        raise PayloadTooLarge(f"{what} is {size} bytes; the limit is {limit} bytes")


def check_timeout(timeout: float | None, default: float, maximum: float) -> float:
    if timeout is None:
        return default
    if not 0 < timeout <= maximum:
        raise InvalidRequest(f"timeout must be between 0 and {maximum:g} seconds (got {timeout:g})")
    return float(timeout)
