"""A local managed-identity endpoint speaking the App Service protocol.

In Azure Functions the platform sets IDENTITY_ENDPOINT and IDENTITY_HEADER; azure-identity's
ManagedIdentityCredential then asks `GET {IDENTITY_ENDPOINT}?resource=...&api-version=2019-08-01`
with the secret in `X-IDENTITY-HEADER`. Serving the same protocol here means the app's real
token path runs unchanged against the devstack.

Tokens are RS256 JWTs signed by a key pair kept in the state folder, so the local query API
can verify signature, audience and expiry like the real service does.
"""

from __future__ import annotations

import argparse
import secrets
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.httpserver import JsonHandler, make_server, serve_in_thread

DEVSTACK_TENANT_ID = "00000000-0000-4000-8000-00000000d5c0"
DEVSTACK_PRINCIPAL_ID = "00000000-0000-4000-8000-0000000000a1"
DEVSTACK_CLIENT_ID = "00000000-0000-4000-8000-0000000000c1"
TOKEN_LIFETIME_S = 3600


class TokenError(Exception):
    """A bearer token that the devstack would refuse."""


class TokenIssuer:
    """Signs managed-identity tokens with a key that lives in the state folder."""

    def __init__(self, state_dir: Path, tenant_id: str = DEVSTACK_TENANT_ID) -> None:
        self.tenant_id = tenant_id
        key_path = state_dir / "identity" / "signing-key.pem"
        if not key_path.exists():
            key_path.parent.mkdir(parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            key_path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        self._private_key_pem = key_path.read_bytes()
        private_key = serialization.load_pem_private_key(self._private_key_pem, password=None)
        self.public_key_pem = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def issue(self, resource: str, lifetime_s: int = TOKEN_LIFETIME_S) -> tuple[str, int]:
        """Return (token, expires_on epoch seconds) for a resource such as https://storage.azure.com."""
        now = int(time.time())
        expires_on = now + lifetime_s
        resource = resource.removesuffix("/.default")
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "tid": self.tenant_id,
            "oid": DEVSTACK_PRINCIPAL_ID,
            "sub": DEVSTACK_PRINCIPAL_ID,
            "appid": DEVSTACK_CLIENT_ID,
            "appidacr": "2",
            "idtyp": "app",
            "xms_mirid": "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/devstack"
            "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mfa-monitor",
            "iat": now,
            "nbf": now - 60,
            "exp": expires_on,
            "uti": uuid.uuid4().hex,
            "ver": "1.0",
        }
        return jwt.encode(claims, self._private_key_pem, algorithm="RS256"), expires_on


def verify_token(token: str, *, public_key_pem: bytes, audience: str) -> dict:
    """Check signature, expiry and audience (with or without a trailing slash)."""
    try:
        return jwt.decode(
            token,
            public_key_pem,
            algorithms=["RS256"],
            audience=[audience.rstrip("/"), audience.rstrip("/") + "/"],
            options={"require": ["exp", "aud", "iss"]},
        )
    except jwt.PyJWTError as error:
        raise TokenError(str(error)) from error


class IdentityEndpoint:
    """`GET /msi/token?resource=...&api-version=2019-08-01` with the X-IDENTITY-HEADER secret."""

    def __init__(self, issuer: TokenIssuer, host: str = "127.0.0.1", port: int = 0) -> None:
        self.issuer = issuer
        self.secret = secrets.token_urlsafe(24)
        self.token_requests: list[str] = []
        endpoint = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path != "/msi/token":
                    self.send_json(404, {"error": "not_found"})
                    return
                if self.headers.get("X-IDENTITY-HEADER") != endpoint.secret:
                    self.send_json(401, {"error": "invalid_request", "error_description": "bad header"})
                    return
                query = parse_qs(url.query)
                resource = (query.get("resource") or [""])[0]
                if not resource:
                    self.send_json(400, {"error": "invalid_request", "error_description": "no resource"})
                    return
                endpoint.token_requests.append(resource)
                token, expires_on = endpoint.issuer.issue(resource)
                self.send_json(
                    200,
                    {
                        "access_token": token,
                        "expires_on": str(expires_on),
                        "resource": resource,
                        "token_type": "Bearer",
                        "client_id": DEVSTACK_CLIENT_ID,
                    },
                )

        # The real endpoint is plain HTTP on localhost too; it never leaves the host.
        self.server = make_server(Handler, host, port, certs=None)
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}/msi/token"

    def start(self) -> IdentityEndpoint:
        serve_in_thread(self.server)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def environment(self) -> dict[str, str]:
        """What the Functions platform would set for the app."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.secret}


def main() -> None:
    parser = argparse.ArgumentParser(description="Local managed-identity endpoint (App Service protocol)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--secret", help="X-IDENTITY-HEADER value (default: random)")
    args = parser.parse_args()
    endpoint = IdentityEndpoint(TokenIssuer(args.state_dir), port=args.port)
    if args.secret:
        endpoint.secret = args.secret
    print(f"ready {endpoint.url}", flush=True)
    endpoint.server.serve_forever()


if __name__ == "__main__":
    main()
