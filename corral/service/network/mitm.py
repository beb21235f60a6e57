"""Secrets over HTTPS: for hosts that CORRAL_EGRESS_SECRETS binds headers to (and only those), the
proxy ends the sandbox's TLS with a certificate of the data dir's own CA, adds the headers, and
speaks TLS to the real server itself, checking its certificate against the system's CAs and the
operator's CORRAL_SANDBOX_CA. Every other host is tunnelled untouched.

The CA's certificate carries name constraints: it can vouch only for the names secrets are bound
to, so even its key could not be used to impersonate any other site to a sandbox. Its key stays in
the data dir (0600) and never enters a sandbox; a new set of names makes a new CA (sandboxes made
before trust the old one and get secrets only for the old names).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral.errors import ConfigurationError
from corral.service.network.policy import Entry


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    encoding, form = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(encoding, form, serialization.NoEncryption())


class Authority:
    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, workdir: Path) -> None:
        self._cert = cert
        self._key = key
        self._workdir = workdir
        self._contexts: dict[str, ssl.SSLContext] = {}

    @property
    def pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def load(cls, home: Path, patterns: list[Entry]) -> Authority:
        """The data dir's CA for exactly these name patterns, made on first use."""
        names = sorted({p.name for p in patterns if p.name})
        tag = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
        cert_path, key_path = home / f"egress-ca-{tag}.pem", home / f"egress-ca-{tag}.key"
        try:
            if cert_path.exists() and key_path.exists():
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
                key = serialization.load_pem_private_key(key_path.read_bytes(), None)
                assert isinstance(key, ec.EllipticCurvePrivateKey)
                return cls(cert, key, home)
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _ca_certificate(key, names)
            _write_private(key_path, _key_pem(key))
            _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        except (OSError, ValueError, AssertionError) as exc:
            raise ConfigurationError(f"cannot read or make the egress CA in {home} ({exc})") from None
        return cls(cert, key, home)

    def context_for(self, host: str) -> ssl.SSLContext:
        """A server-side TLS context presenting a certificate for `host`, signed by this CA."""
        context = self._contexts.get(host)
        if context is not None:
            return context
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(host))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_alpn_protocols(["http/1.1"])
        # ssl loads keys only from files: a private temporary one, gone right after.
        with tempfile.TemporaryDirectory(dir=self._workdir, prefix=".egress-") as tmp:
            chain = Path(tmp) / "leaf.pem"
            _write_private(chain, _key_pem(key) + cert.public_bytes(serialization.Encoding.PEM) + self.pem)
            context.load_cert_chain(chain)
        self._contexts[host] = context
        return context


def _ca_certificate(key: ec.EllipticCurvePrivateKey, names: list[str]) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    subject = _name(f"Corral egress CA for {len(names)} name(s)")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.NameConstraints(permitted_subtrees=[x509.DNSName(n) for n in names], excluded_subtrees=None),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
