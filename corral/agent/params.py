"""Request field validation: type, range, no unknown fields; `null` means absent.

Every accessor raises Failure("bad_request") with a message naming the field. Without a default
a field is required; with one, absent or null gives the default.
"""

from __future__ import annotations

import base64
import math
import re
import signal

from .errors import bad_request
from .wire import MAX_FRAME

TYPE_CHECKING = False  # typing is not imported at run time: it costs the daemon ~1 MiB in every sandbox
if TYPE_CHECKING:
    from typing import Any, TypeVar, overload

    T = TypeVar("T")

else:

    def overload(fn):  # the stubs only type the accessors; the last definition is the one that runs
        return fn

DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 7 * 24 * 3600.0
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

_MISSING: Any = object()


def short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class Params:
    """Typed access to a request's fields; absent and null fields take the default."""

    def __init__(self, op: str, msg: dict[str, Any], allowed: frozenset[str]) -> None:
        unknown = sorted(k for k in msg if k not in allowed and k not in ("id", "op"))
        if unknown:
            names = ", ".join(short(k, 40) for k in unknown[:10])
            raise bad_request(f"unknown field(s) for op {op}: {names}")
        self._msg = msg

    def _get(self, name: str, default: object) -> Any:
        value = self._msg.get(name)
        if value is None and default is _MISSING:
            raise bad_request(f"missing required field '{name}'")
        return value

    @overload
    def string(self, name: str, *, max_len: int = ..., allow_empty: bool = ...) -> str: ...
    @overload
    def string(self, name: str, default: T, max_len: int = ..., allow_empty: bool = ...) -> str | T: ...
    def string(self, name: str, default: Any = _MISSING, max_len: int = 65536, allow_empty: bool = False) -> Any:
        value = self._get(name, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise bad_request(f"'{name}' must be a string, got {type(value).__name__}")
        if not value and not allow_empty:
            raise bad_request(f"'{name}' must not be empty")
        if len(value) > max_len:
            raise bad_request(f"'{name}' is longer than {max_len} characters")
        return value

    @overload
    def path(self, name: str) -> str: ...
    @overload
    def path(self, name: str, default: T) -> str | T: ...
    def path(self, name: str, default: Any = _MISSING) -> Any:
        value = self.string(name, default, max_len=4096)
        if value is not None and "\0" in value:
            raise bad_request(f"'{name}' contains a NUL character")
        return value

    @overload
    def integer(self, name: str, *, lo: int | None = ..., hi: int | None = ...) -> int: ...
    @overload
    def integer(self, name: str, default: T, lo: int | None = ..., hi: int | None = ...) -> int | T: ...
    def integer(self, name: str, default: Any = _MISSING, lo: int | None = None, hi: int | None = None) -> Any:
        value = self._get(name, default)
        if value is None:
            return default
        if type(value) is not int:
            raise bad_request(f"'{name}' must be an integer, got {type(value).__name__}")
        check_range(name, value, lo, hi)
        return value

    def number(
        self, name: str, default: float, lo: float | None = None, hi: float | None = None, lo_exclusive: bool = False
    ) -> float:
        value = self._get(name, default)
        if value is None:
            return default
        if type(value) not in (int, float) or not math.isfinite(value):
            raise bad_request(f"'{name}' must be a finite number, got {short(value)}")
        if lo_exclusive and lo is not None and value <= lo:
            raise bad_request(f"'{name}' must be greater than {lo}, got {value}")
        check_range(name, value, None if lo_exclusive else lo, hi)
        return float(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise bad_request(f"'{name}' must be true or false, got {short(value)}")
        return value

    def choice(self, name: str, options: tuple[str, ...], default: str = _MISSING) -> str:
        value = self.string(name, default, max_len=64)
        if value not in options:
            allowed = "/".join(options)
            raise bad_request(f"'{name}' must be one of {allowed}, got {short(value)}")
        return value

    def name(self, name: str) -> str:
        value = self.string(name, max_len=64)
        if not NAME_RE.match(value):
            raise bad_request(f"'{name}' must match [A-Za-z0-9_.-]{{1,64}}, got {short(value)}")
        return value

    @overload
    def b64(self, name: str, *, max_bytes: int = ...) -> bytes: ...
    @overload
    def b64(self, name: str, default: T, max_bytes: int = ...) -> bytes | T: ...
    def b64(self, name: str, default: Any = _MISSING, max_bytes: int = MAX_FRAME) -> Any:
        value = self.string(name, default, max_len=MAX_FRAME, allow_empty=True)
        if value is None:
            return default
        try:
            data = base64.b64decode(value.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise bad_request(f"'{name}' is not valid base64") from None
        if len(data) > max_bytes:
            raise bad_request(f"'{name}' decodes to more than {max_bytes} bytes")
        return data

    def data(self, name: str, b64_name: str) -> bytes:
        """Bytes given either raw in a binary frame (field `name`) or as base64 (`b64_name`)."""
        raw = self._msg.get(name)
        if raw is not None and self._msg.get(b64_name) is not None:
            raise bad_request(f"give '{name}' or '{b64_name}', not both")
        if raw is None:
            return self.b64(b64_name)
        if not isinstance(raw, bytes):
            raise bad_request(f"'{name}' must be sent as the raw bytes of a binary frame")
        return raw

    def str_list(self, name: str, default: list[str] | None) -> list[str] | None:
        value = self._get(name, default)
        if value is None:
            return default
        if not isinstance(value, list) or not value:
            raise bad_request(f"'{name}' must be a non-empty list of strings")
        for item in value:
            if not isinstance(item, str) or "\0" in item:
                raise bad_request(f"'{name}' must contain only strings without NUL characters")
        if len(value) > 100000:
            raise bad_request(f"'{name}' has too many items")
        return list(value)

    def environment(self, name: str) -> dict[str, str] | None:
        value = self._get(name, None)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise bad_request(f"'{name}' must be an object of string values")
        for key, item in value.items():
            if not key or "=" in key or "\0" in key:
                raise bad_request(f"'{name}' has an invalid variable name {short(key)}")
            if not isinstance(item, str) or "\0" in item:
                raise bad_request(f"'{name}' value for {short(key)} must be a string without NUL")
        return dict(value)

    def signal_number(self, name: str, default: Any = _MISSING) -> int:
        value = self._get(name, default)
        if value is None:
            value = default
        return parse_signal(value)


def check_range(name: str, value: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and value < lo:
        raise bad_request(f"'{name}' must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise bad_request(f"'{name}' must be <= {hi}, got {value}")


def parse_signal(value: object) -> int:
    if type(value) is int:
        if 1 <= value <= 64:
            return value
        raise bad_request(f"signal number must be 1..64, got {value}")
    if isinstance(value, str) and value:
        name = value.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        number = getattr(signal.Signals, name, None) if re.match(r"^SIG[A-Z0-9]+$", name) else None
        if isinstance(number, signal.Signals):
            return int(number)
    raise bad_request(f"unknown signal {short(value)}")

