"""One tick as the Functions host runs it, under a given time budget:
`python -m tests.reliability.host_child BUDGET_JSON NOW`.

Prints `ready` once the services are built (the host has loaded the app), then runs the tick.
The parent kills the process when the function timeout passes, as the host does, so whatever
the tick had not finished by then never happens.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime

from monitors.bootstrap import build_services, tick
from monitors.settings import load_settings
from monitors.tick import TickBudget


def main(budget: str, now: str) -> int:
    services = build_services(load_settings(os.environ), TickBudget(**json.loads(budget)))
    print("ready", flush=True)
    report = tick(services, datetime.fromisoformat(now))
    print(report.summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
