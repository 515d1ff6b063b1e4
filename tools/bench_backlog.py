"""What a tick costs while alerts sit in the outbox (against the devstack).

    .venv/bin/python tools/bench_backlog.py [--alerts 2000]

One tick stores `--alerts` new user-arm-write alerts; the report is the tick after it, in two
cases: the alerts go to no webhook (below its minimum severity, as waived ones do too), and
Teams refuses every card (an outage with a backlog). Prints the outbox entities that tick read,
its Table Storage requests and the function's CPU. A benchmark: it reports, it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.stack import Devstack
from monitors.bootstrap import services_from_environment, tick
from monitors.detections.user_arm_write import AMR, OID, UPN, arm_row

AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"


def arm_writes(count: int, now: datetime) -> list[dict[str, Any]]:
    """One first ARM write (password only) by each of `count` user accounts."""
    times = {
        "TimeGenerated": (now - timedelta(minutes=9)).isoformat(),
        "_IngestionTime": (now - timedelta(minutes=8)).isoformat(),
    }
    rows = []
    for n in range(count):
        upn = f"user{n}@contoso.com"
        claims = {"appid": AZURE_CLI, AMR: "pwd", UPN: upn, OID: f"00000000-0000-4000-8000-{n:012d}"}
        rows.append({**arm_row(f"w-{n}", upn, claims), **times})
    return rows


def next_tick(stack: Devstack, count: int, case: str) -> str:
    os.environ.update(stack.app_settings(STATE_TABLE_PREFIX=f"b{uuid.uuid4().hex[:12]}"))
    os.environ.pop("TEAMS_WEBHOOK_MIN_SEVERITY", None)
    stack.log_analytics.clear()
    stack.teams.clear()
    stack.teams.clear_faults()
    if case == "unrouted":
        os.environ["TEAMS_WEBHOOK_MIN_SEVERITY"] = "critical"
    else:
        stack.teams.set_fault("500")
    services = services_from_environment()
    now = datetime.now(UTC)
    stack.log_analytics.ingest("AzureActivity", arm_writes(count, now))
    stored = tick(services, now).alerts_stored

    store, read = services.store, [0]
    query = store.query

    def counted(table: str, *args: Any, **kwargs: Any) -> Any:
        for entity in query(table, *args, **kwargs):
            read[0] += table == "outbox"
            yield entity

    store.query = counted  # type: ignore[method-assign]
    requests, cpu = store.transactions, time.process_time()
    tick(services, now + timedelta(minutes=1))
    cpu, requests = time.process_time() - cpu, store.transactions - requests
    return (f"{case:<22} {stored:>6,} alerts stored; the next tick: {read[0]:>6,} outbox entities read, "
            f"{requests:>6,} Table requests, {cpu:5.2f} s CPU")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=2000)
    count = parser.parse_args().alerts
    with tempfile.TemporaryDirectory() as state, Devstack(state_dir=Path(state)) as stack:
        for case in ("unrouted", "teams refusing"):
            print(next_tick(stack, count, case), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
