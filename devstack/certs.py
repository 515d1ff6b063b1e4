"""A throw-away certificate authority for the devstack's HTTPS endpoints.

The app trusts it through REQUESTS_CA_BUNDLE, the same knob it would use behind a
corporate TLS proxy, so no code path disables certificate checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True, slots=True, kw_only=True)
class CertPaths:
    ca: Path
    cert: Path
    key: Path


def ensure_certs(state_dir: Path) -> CertPaths:
    """Create (once) a CA and a server certificate for 127.0.0.1 and localhost."""
    cert_dir = state_dir / "certs"
    paths = CertPaths(ca=cert_dir / "ca.pem", cert=cert_dir / "server.pem", key=cert_dir / "server-key.pem")
    if all(p.exists() for p in (paths.ca, paths.cert, paths.key)):
        return paths
    cert_dir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(paths.ca))
    server.private_key_pem.write_to_path(str(paths.key))
    server.cert_chain_pems[0].write_to_path(str(paths.cert))
    return paths
