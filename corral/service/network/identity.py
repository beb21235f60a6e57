"""Who is talking to the egress proxy: proxy credentials signed with a key of the data dir.

A sandbox's proxy URL carries `sb-xxxxxxxx:<hmac>` (good while the sandbox exists: the proxy
refuses everything for a sandbox without a policy row); a git helper's carries a user name that
encodes the one destination it may reach, the sandbox it works for and an expiry, signed the same
way.
Nothing is kept per identity, so every server on the data dir can check any of them, also after a
restart, and a sandbox cannot claim another's identity without the server's key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from corral.errors import ConfigurationError

KEY_FILE = "egress.key"
HELPER_LIFETIME = 6 * 3600  # seconds a git helper's credential is good for (one operation needs far less)


@dataclass(frozen=True)
class Identity:
    sandbox_id: str
    # A helper's one destination (host, port); None for the sandbox itself.
    destination: tuple[str, int] | None = None
    nonce: str = ""

    @property
    def key(self) -> str:
        return f"{self.sandbox_id}/{self.nonce}" if self.destination else self.sandbox_id

    @property
    def label(self) -> str:
        return f"git helper of {self.sandbox_id}" if self.destination else self.sandbox_id


class Keyring:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def load(cls, home: Path) -> Keyring:
        """The data dir's key, made on first use (0600, like the database)."""
        path = home / KEY_FILE
        try:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                key = path.read_bytes()
            else:
                key = secrets.token_bytes(32)
                with os.fdopen(fd, "wb") as f:
                    f.write(key)
        except OSError as exc:
            raise ConfigurationError(f"cannot read or create {path} ({exc.strerror})") from None
        if len(key) < 32:
            raise ConfigurationError(f"{path} is damaged (too short); delete it and restart the server")
        return cls(key)

    def _sign(self, user: str) -> str:
        return hmac.new(self._key, user.encode(), hashlib.sha256).hexdigest()[:40]

    def credentials(self, identity: Identity, *, now: float | None = None) -> tuple[str, str]:
        if identity.destination is None:
            user = identity.sandbox_id
        else:
            host, port = identity.destination
            expires = int((now or time.time()) + HELPER_LIFETIME)
            blob = json.dumps([identity.sandbox_id, host, port, identity.nonce, expires], separators=(",", ":"))
            user = "git." + base64.urlsafe_b64encode(blob.encode()).decode().rstrip("=")
        return user, self._sign(user)

    def proxy_url(self, identity: Identity, host: str, port: int) -> str:
        user, password = self.credentials(identity)
        return f"http://{quote(user, safe='')}:{password}@{host}:{port}"

    def identify(self, authorization: str | None) -> Identity | None:
        """The identity a `Proxy-Authorization: Basic ...` header proves, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not sep or not hmac.compare_digest(self._sign(user), password):
            return None
        if not user.startswith("git."):
            return Identity(user)
        try:
            blob = base64.urlsafe_b64decode(user[4:] + "=" * (-len(user[4:]) % 4))
            sandbox_id, host, port, nonce, expires = json.loads(blob)
            if float(expires) < time.time():
                return None
            return Identity(str(sandbox_id), (str(host), int(port)), str(nonce))
        except (ValueError, TypeError, binascii.Error):
            return None
