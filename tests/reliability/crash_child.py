"""One tick that SIGKILLs itself at a chosen step: `python -m tests.reliability.crash_child POINT NOW`.

The settings come from the environment, as the Functions host provides them. Just before the
SIGKILL the child prints `SIGKILL at POINT` and the calls the tick made, so the parent sees the
process died at that point and not elsewhere. Exit code 3 means the tick ended without reaching
the point (the test then fails: the crash did not happen).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from datetime import datetime

from monitors.bootstrap import build_services, tick
from monitors.settings import load_settings
from tests.reliability.crash_points import POINTS
from tests.reliability.wrappers import Probe, ProbedLogs, ProbedStore, ProbedTeams, sigkill


def main(point: str, now: str) -> int:
    services = build_services(load_settings(os.environ))
    probe = Probe()

    def die() -> None:
        print(f"SIGKILL at {point}", json.dumps(probe.calls), sep="\n", flush=True)
        sigkill()

    POINTS[point].arm(probe, die)
    services = replace(
        services,
        logs=ProbedLogs(services.logs, probe),
        store=ProbedStore(services.store, probe),
        teams=ProbedTeams(services.teams, probe),
    )
    tick(services, datetime.fromisoformat(now))
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
