"""What a Table Storage write costs the app's process, by how it is sent (against Azurite).

    .venv/bin/python tools/bench_table_requests.py [--entities 1000]

The same small entities (an alert summary's size), each written three ways through the app's
TableStore and the Azure SDK: a plain upsert request each, an entity-group transaction of one
each, and transactions of 100. Prints the client's CPU and the wall time per entity. A benchmark:
it reports, it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.stack import Devstack
from monitors.bootstrap import services_from_environment


def entity(partition: str, n: int) -> dict[str, Any]:
    headline = "ARM writes by a user account " + "x" * 60
    return {"PartitionKey": partition, "RowKey": f"{n:06d}", "Detection": "user-arm-write",
            "Severity": "high", "Headline": headline, "EventCount": 3}  # fmt: skip


def measure(label: str, count: int, write: Callable[[], None]) -> None:
    cpu, wall = time.process_time(), time.perf_counter()
    write()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{label:<36} {cpu / count * 1000:6.2f} ms CPU  {wall / count * 1000:6.2f} ms wall per entity")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=1000)
    count = parser.parse_args().entities
    with tempfile.TemporaryDirectory() as state, Devstack(state_dir=Path(state)) as stack:
        os.environ.update(stack.app_settings(STATE_TABLE_PREFIX=f"b{uuid.uuid4().hex[:12]}"))
        store = services_from_environment().store
        table = store._table("bench")  # the SDK client itself, for the transaction of one
        store.upsert_many("bench", [entity("warm-up", 0)])  # table created, connection open

        def plain() -> None:
            for n in range(count):
                store.replace("bench", entity(f"a{n}", n), None)

        def transactions_of_one() -> None:
            for n in range(count):
                table.submit_transaction([("upsert", entity(f"b{n}", n))])

        def transactions_of_100() -> None:
            store.upsert_many("bench", [entity("c", n) for n in range(count)])

        measure("plain upsert, one each", count, plain)
        measure("transaction of one, one each", count, transactions_of_one)
        measure("transactions of 100 (one partition)", count, transactions_of_100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
