"""The certificates networked sandboxes trust: the system's, plus the operator's CORRAL_SANDBOX_CA
(e.g. a corporate TLS-intercepting proxy's CA). Written into the sandbox before it starts, and
named in the variables the common tools read (OpenSSL, Python, pip, requests, Node, git, curl)."""

from __future__ import annotations

import ssl
from pathlib import Path

from corral.agent.bundle import AGENT_MOUNT
from corral.errors import ConfigurationError

# In the agent's root-owned volume: the root file system is read-only, and the sandbox user cannot
# change what it trusts.
CA_DIR = f"{AGENT_MOUNT}/ca"
BUNDLE = f"{CA_DIR}/ca-bundle.pem"  # the system's CAs and the operator's
EXTRA = f"{CA_DIR}/extra-ca.pem"  # the operator's alone (Node adds these to its own)
SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def load_extra(path: Path | None) -> bytes:
    """The operator's PEM bundle, checked to hold certificates."""
    if path is None:
        return b""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"CORRAL_SANDBOX_CA: cannot read {path} ({exc.strerror})") from None
    try:
        ssl.create_default_context(cadata=data.decode("ascii"))
    except (ssl.SSLError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"CORRAL_SANDBOX_CA: {path} is not a PEM bundle of CA certificates ({exc})") from None
    return data


def system_bundle() -> bytes:
    for candidate in (ssl.get_default_verify_paths().cafile, *SYSTEM_BUNDLES):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_bytes()
    try:
        import certifi

        return Path(certifi.where()).read_bytes()
    except (ImportError, OSError):
        return b""


def bundle(extra: bytes) -> bytes:
    base = system_bundle()
    return base + (b"" if base.endswith(b"\n") or not base else b"\n") + extra


def trust_env() -> dict[str, str]:
    return {
        "SSL_CERT_FILE": BUNDLE,
        "REQUESTS_CA_BUNDLE": BUNDLE,
        "CURL_CA_BUNDLE": BUNDLE,
        "PIP_CERT": BUNDLE,
        "GIT_SSL_CAINFO": BUNDLE,
        "NODE_EXTRA_CA_CERTS": EXTRA,
    }


def upstream_context(extra: bytes) -> ssl.SSLContext:
    """How the proxy checks servers it talks TLS to itself: the system's CAs and the operator's."""
    context = ssl.create_default_context()
    if extra:
        context.load_verify_locations(cadata=extra.decode("ascii"))
    return context
