"""The devstack as separate processes, so each one's CPU and memory can be told apart.

devstack/stack.py runs identity, query API and Teams sink in one process; the benchmark needs
the query API's work kept out of the function's figures and out of the other services', so it
starts the same pieces one per process (their own CLIs; the query API through bench.engine).
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import PYTHON, REPO, LineChild, child_env, proc_cpu_s, wait_usage

WORKSPACE_ID = "d5c0d5c0-0000-4000-8000-000000000001"  # devstack.stack.DEVSTACK_WORKSPACE_ID
AUDIENCE = "https://api.loganalytics.io"


class Service:
    """A devstack CLI that prints `ready URL` once it listens."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log.open("ab")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(  # noqa: S603 - our interpreter, devstack modules
            [PYTHON, *args], stdout=subprocess.PIPE, stderr=self.log, env=child_env(), cwd=REPO, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            raise RuntimeError(f"{args} did not start: {line!r}; see {log}")
        self.url = line.split(" ", 1)[1].strip()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            wait_usage(self.proc, self.started, 10)
        self.log.close()


class Stack:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.logs = state / "logs"

    def start(self) -> Stack:
        from devstack.azurite import Azurite, free_port
        from devstack.certs import ensure_certs
        from devstack.identity import TokenIssuer

        self.state.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.certs = ensure_certs(self.state)
        TokenIssuer(self.state)  # the signing key, before two processes race to create it
        self.secret = secrets.token_urlsafe(24)
        self.identity = Service(
            ["-m", "devstack.identity", "--state-dir", str(self.state), "--secret", self.secret],
            self.logs / "identity.log",
        )
        self.teams = Service(
            ["-m", "devstack.teams_sink", "--state-dir", str(self.state)], self.logs / "teams.log"
        )
        self.engine = LineChild(
            ["-m", "bench.engine", "--state-dir", str(self.state), "--workspace-id", WORKSPACE_ID],
            env=child_env(),
            stderr_path=self.logs / "engine.log",
        )
        self.engine_url = self.engine.read()["ready"]
        self.azurite = Azurite(self.certs, port=free_port()).start()
        return self

    def stop(self) -> None:
        for name in ("azurite",):
            if hasattr(self, name):
                getattr(self, name).stop()
        if hasattr(self, "engine"):
            self.engine.close()
        for name in ("teams", "identity"):
            if hasattr(self, name):
                getattr(self, name).stop()

    # --- what the app is given

    def settings(self, prefix: str, break_glass: str = "none", **extra: str) -> dict[str, str]:
        """App settings pointing at this stack (as devstack.stack.Devstack.app_settings)."""
        webhook = (
            f"{self.teams.url}/webhook/oncall?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=devsig"
        )
        return {
            "LOG_ANALYTICS_WORKSPACE_ID": WORKSPACE_ID,
            "LOG_ANALYTICS_ENDPOINT": self.engine_url,
            "LOG_ANALYTICS_AUDIENCE": AUDIENCE,
            "STATE_TABLE_ENDPOINT": self.azurite.table_endpoint,
            "STATE_TABLE_PREFIX": prefix,
            "TEAMS_WEBHOOK_URL": webhook,
            "TEAMS_WEBHOOK_MIN_SEVERITY": "low",
            "TEAMS_ALLOWED_HOSTS": "127.0.0.1",
            "MONITOR_SCHEDULE": "0 */1 * * * *",
            "REQUESTS_CA_BUNDLE": str(self.certs.ca),
            "IDENTITY_ENDPOINT": self.identity.url,
            "IDENTITY_HEADER": self.secret,
            "BREAK_GLASS_ACCOUNTS": break_glass,
            **extra,
        }

    # --- the Teams sink's records

    def teams_messages(self) -> list[dict[str, Any]]:
        import requests

        response = requests.get(f"{self.teams.url}/messages", verify=str(self.certs.ca), timeout=60)
        response.raise_for_status()
        return response.json()

    def teams_clear(self) -> None:
        import requests

        requests.delete(f"{self.teams.url}/messages", verify=str(self.certs.ca), timeout=60)

    def service_cpu(self) -> dict[str, float]:
        return {
            "engine": proc_cpu_s(self.engine.proc.pid),
            "azurite": proc_cpu_s(self.azurite._process.pid) if self.azurite._process else float("nan"),
            "teams": proc_cpu_s(self.teams.pid),
            "identity": proc_cpu_s(self.identity.pid),
        }
