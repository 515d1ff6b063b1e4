"""Start and stop the whole devstack, and hand the app the settings that point at it."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from devstack.azurite import Azurite, free_port
from devstack.certs import ensure_certs
from devstack.identity import IdentityEndpoint, TokenIssuer
from devstack.loganalytics import LogAnalyticsServer
from devstack.teams_sink import TeamsSink
from monitors.schema import SchemaMissing

DEVSTACK_WORKSPACE_ID = "d5c0d5c0-0000-4000-8000-000000000001"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_STATE = REPO / ".devstack"
# Real portal exports (tests/fixtures/README.md says where they come from): the demo replays them.
REAL_EXPORTS = REPO / "tests" / "fixtures" / "sentinel-training-lab"


class Devstack:
    """Identity endpoint, query API and Teams sink in this process; Azurite as a child process."""

    def __init__(self, state_dir: Path = DEFAULT_STATE, data_dir: Path | None = None) -> None:
        self.state_dir = state_dir
        self.data_dir = data_dir or state_dir / "logs"
        self.workspace_id = DEVSTACK_WORKSPACE_ID

    def start(self) -> Devstack:
        """Start every service; if one cannot start, stop those already running and re-raise."""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.certs = ensure_certs(self.state_dir)
            issuer = TokenIssuer(self.state_dir)
            self.identity = IdentityEndpoint(issuer).start()
            self.log_analytics = LogAnalyticsServer(
                workspace_id=self.workspace_id,
                state_dir=self.state_dir,
                data_dir=self.data_dir,
                public_key_pem=issuer.public_key_pem,
            )
            self.log_analytics.start()
            self.teams = TeamsSink(state_dir=self.state_dir)
            self.teams.start()
            self.azurite = Azurite(self.certs, port=free_port()).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for service in ("azurite", "teams", "log_analytics", "identity"):
            if hasattr(self, service):
                getattr(self, service).stop()

    def __enter__(self) -> Devstack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def app_settings(self, **overrides: str) -> dict[str, str]:
        """What the Functions platform and the app settings would hold in Azure, pointed here."""
        settings = {
            "LOG_ANALYTICS_WORKSPACE_ID": self.workspace_id,
            "LOG_ANALYTICS_ENDPOINT": self.log_analytics.url,
            "LOG_ANALYTICS_AUDIENCE": "https://api.loganalytics.io",
            "STATE_TABLE_ENDPOINT": self.azurite.table_endpoint,
            "TEAMS_WEBHOOK_URL": self.teams.webhook_url("oncall"),
            "TEAMS_WEBHOOK_MIN_SEVERITY": "low",
            "TEAMS_ALLOWED_HOSTS": "127.0.0.1",
            # Required; the devstack knows no break-glass account of the rows it is given, so the
            # explicit "none" unless a caller names them (the demo, most tests).
            "BREAK_GLASS_ACCOUNTS": "none",
            "MONITOR_SCHEDULE": "0 */1 * * * *",
            # The devstack's CA, trusted the way a corporate TLS proxy's would be.
            "REQUESTS_CA_BUNDLE": str(self.certs.ca),
            **self.identity.environment(),
        }
        settings.update(overrides)
        return settings


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("command", choices=["up"], help="start everything and wait for Ctrl-C")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    parser.add_argument("--data-dir", type=Path, help="folder of <Table>.jsonl log rows to load")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with Devstack(args.state_dir, args.data_dir) as stack:
            settings = stack.app_settings()
            env_file = args.state_dir / "env"
            env_file.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in settings.items()))
            (args.state_dir / "env.json").write_text(json.dumps(settings, indent=2))
            os.chmod(env_file, 0o600)
            print(f"devstack up; settings in {env_file} (source it to point the app here). Ctrl-C stops.")
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
    except SchemaMissing as error:  # stopped what had started already
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
