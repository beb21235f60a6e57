"""Credentials and redaction: secrets reach git only through one process's environment, and every
text that leaves the feature goes through `redact`."""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from corral.errors import BackendError, CorralError, InvalidRequest
from corral.service.git.constants import DEFAULT_TOKEN_USER
from corral.service.git.models import GitCredentials

log = logging.getLogger(__name__)


_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")
_AUTH_HEADER_RE = re.compile(r"(?i)(authorization:\s*[a-z]+\s+)[^\s'\"]+")


def redact(text: str, secret_values: Iterable[str] = ()) -> str:
    """`text` with every secret, any URL userinfo and any Authorization header value masked."""
    for secret in sorted({s for s in secret_values if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _USERINFO_RE.sub(r"\1***@", text)
    return _AUTH_HEADER_RE.sub(r"\1***", text)


@dataclass(frozen=True)
class Auth:
    username: str
    password: str

    @property
    def _basic(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def env(self) -> dict[str, str]:
        """Config for one git process: the header, no redirects to elsewhere, no credential helper."""
        pairs = [
            ("http.extraHeader", f"Authorization: Basic {self._basic}"),
            ("http.followRedirects", "false"),
            ("credential.helper", ""),
        ]
        env = {"GIT_CONFIG_COUNT": str(len(pairs))}
        for i, (key, value) in enumerate(pairs):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        return env

    @property
    def secrets(self) -> list[str]:
        values = [self.password, quote(self.password, safe=""), self._basic]
        if not self.password:  # a token given as the URL's user name
            values += [self.username, quote(self.username, safe="")]
        return [v for v in values if v]


def auth_from(credentials: GitCredentials | None, url_auth: Auth | None) -> Auth | None:
    if credentials is None:
        return url_auth
    username = credentials.username or DEFAULT_TOKEN_USER
    password = credentials.password.get_secret_value()
    if "\n" in username + password or "\r" in username + password or ":" in username:
        raise InvalidRequest("credentials must not contain line breaks, and the user name no ':'")
    return Auth(username, password)


def secrets_of(*auths: Auth | None) -> list[str]:
    return [s for a in auths if a is not None for s in a.secrets]


@contextlib.contextmanager
def scrubbed(secret_values: Sequence[str]) -> Iterator[None]:
    """Whatever escapes carries no secret: Corral errors are re-raised redacted (and unchained, so
    no traceback shows the original), anything else becomes a generic BackendError."""
    try:
        yield
    except CorralError as exc:
        raise type(exc)(redact(str(exc), secret_values)) from None
    except Exception as exc:
        log.error("git operation failed: %s", redact(f"{type(exc).__name__}: {exc}", secret_values))
        raise BackendError(
            f"the git operation failed unexpectedly ({type(exc).__name__}); the server log has details"
        ) from None
