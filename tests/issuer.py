"""A tiny OAuth authorization server for tests, on a loopback port: it publishes its metadata
(RFC 8414) and its JWKS, and mints RS256 access tokens with whatever claims a test asks for."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass
class LocalIssuer:
    url: str
    key: rsa.RSAPrivateKey
    kid: str = "test-key-1"

    def token(self, audience: str, *, subject: str = "alice", lifetime: float = 300, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.url, "sub": subject, "aud": audience, "iat": now, "exp": now + int(lifetime), **claims}
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "alg": "RS256", "use": "sig"}]}


@contextmanager
def running_issuer() -> Iterator[LocalIssuer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer: LocalIssuer | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            assert issuer is not None
            documents = {
                "/.well-known/oauth-authorization-server": {
                    "issuer": issuer.url,
                    "jwks_uri": f"{issuer.url}/jwks.json",
                    "authorization_endpoint": f"{issuer.url}/authorize",
                    "token_endpoint": f"{issuer.url}/token",
                    "response_types_supported": ["code"],
                },
                "/jwks.json": issuer.jwks(),
            }
            document = documents.get(self.path)
            body = json.dumps(document).encode()
            self.send_response(200 if document is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer = LocalIssuer(f"http://127.0.0.1:{server.server_address[1]}", key)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
