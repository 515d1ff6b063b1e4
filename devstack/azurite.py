"""Azurite's Table service from the project's own node_modules, over HTTPS with OAuth.

`--oauth basic` makes Azurite demand a bearer token (audience, issuer, expiry), so the app
reaches it through its real token credential, never the well-known development key.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from devstack.certs import CertPaths

REPO = Path(__file__).resolve().parents[1]
AZURITE_TABLE = REPO / "node_modules" / ".bin" / "azurite-table"
ACCOUNT = "devstoreaccount1"


class Azurite:
    def __init__(self, certs: CertPaths, port: int, location: Path | None = None) -> None:
        if not AZURITE_TABLE.exists():
            raise RuntimeError(f"{AZURITE_TABLE} is missing: run `make install` (npm ci) first")
        self.port = port
        self.table_endpoint = f"https://127.0.0.1:{port}/{ACCOUNT}"
        storage = ["--location", str(location)] if location else ["--inMemoryPersistence"]
        self._command = [
            str(AZURITE_TABLE),
            "--tableHost", "127.0.0.1",
            "--tablePort", str(port),
            "--oauth", "basic",
            "--cert", str(certs.cert),
            "--key", str(certs.key),
            "--disableTelemetry",
            "--silent",
            *storage,
        ]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> Azurite:
        self._process = subprocess.Popen(self._command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise RuntimeError(f"Azurite exited with {self._process.returncode}: {error.strip()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Azurite did not listen on 127.0.0.1:{self.port} within {timeout_s:.0f} s")

    @property
    def pid(self) -> int | None:
        """The running process's id (a restart changes it); None when it is not running."""
        return self._process.pid if self._process and self._process.poll() is None else None

    def stop(self) -> None:
        """SIGINT first: Azurite then saves its database (with `location`, SIGTERM loses the writes
        of the last 5 s, its autosave interval), then harder if it does not exit."""
        if self._process and self._process.poll() is None:
            for stop in (lambda p: p.send_signal(signal.SIGINT), subprocess.Popen.terminate):
                stop(self._process)
                try:
                    self._process.wait(timeout=10)
                    return
                except subprocess.TimeoutExpired:
                    continue
            self._process.kill()
            self._process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
