"""The function side: one process per measured tick, importing function_app as the host would.

    python -m bench.tick_child tick [--design real|naive] [--reset-watermarks] [--drain-outbox]
    python -m bench.tick_child schedule --minutes N      (ticks on every minute boundary)

Settings come from the environment (the orchestrator points them at the devstack pieces).
`tick` prints {"ready": ...}, waits for {"op": "go"} on stdin (so the orchestrator can zero the
query API's counters first), runs the timer function once and prints one JSON result. Only the
call of the timer function is measured; imports, building the SDK clients and any setup happen
before it (a Functions worker that ticks every minute has done them long before).

Instrumentation wraps instances and module attributes in this process only; nothing in
monitors/ is edited. CPU is `time.process_time()` (all threads of this process); the query API,
Azurite and the Teams sink are other processes, so their work is not in it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import resource
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

STDOUT = sys.stdout


def emit(payload: dict[str, Any]) -> None:
    STDOUT.write(json.dumps(payload, default=str) + "\n")
    STDOUT.flush()


def _rss_mb(field: str = "VmRSS") -> float:
    """VmRSS (now) or VmHWM (peak) of this process, MB. VmHWM belongs to the memory map, which
    exec replaces, so unlike ru_maxrss (kept across exec) it never includes the forking parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Meter:
    """Calls, wall and CPU seconds spent inside wrapped callables, per label."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.wall: defaultdict[str, float] = defaultdict(float)
        self.cpu: defaultdict[str, float] = defaultdict(float)
        self.extra: Counter[str] = Counter()

    def wrap(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def measured(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.calls[label] += 1
                self.wall[label] += time.perf_counter() - wall
                self.cpu[label] += time.process_time() - cpu

        return measured

    def report(self) -> dict[str, Any]:
        return {
            label: {
                "calls": self.calls[label],
                "wall_s": round(self.wall[label], 4),
                "cpu_s": round(self.cpu[label], 4),
            }
            for label in sorted(self.calls)
        }


def instrument_store(store: Any, meter: Meter, scans: list[dict[str, Any]]) -> dict[str, int]:
    """Per-operation transaction counts of a TableStore, attributed by the counter's deltas."""
    by_op: Counter[str] = Counter()
    for name in (
        "get",
        "insert",
        "replace",
        "insert_many",
        "upsert_many",
        "claim_many",
        "merge",
        "delete",
        "delete_many",
    ):
        inner = getattr(store, name)

        def counted(*args: Any, _inner: Callable[..., Any] = inner, _name: str = name, **kwargs: Any) -> Any:
            before = store.transactions
            try:
                return _inner(*args, **kwargs)
            finally:
                if store.transactions > before:  # an empty batch call is no transaction, no row
                    by_op[f"{_name} {args[0]}"] += store.transactions - before

        setattr(store, name, meter.wrap(f"table.{name}", counted))
    inner_query = store.query

    def query(table: str, query_filter: str, parameters: Any, **kwargs: Any) -> Iterator[Any]:
        before = store.transactions
        wall, cpu = time.perf_counter(), time.process_time()
        entities = 0
        try:
            for entity in inner_query(table, query_filter, parameters, **kwargs):
                entities += 1
                yield entity
        finally:
            pages = store.transactions - before
            by_op[f"query {table}"] += pages
            meter.calls["table.query"] += 1
            meter.wall["table.query"] += time.perf_counter() - wall
            meter.cpu["table.query"] += time.process_time() - cpu
            scans.append(
                {
                    "table": table,
                    "filter": query_filter,
                    "pages": pages,
                    "entities": entities,
                    "partition_scoped": "PartitionKey eq" in query_filter,
                }
            )

    store.query = query
    return by_op


def _settings_detections() -> Any:
    from monitors.detections import DETECTIONS

    return DETECTIONS


def setup_state(services: Any, reset_watermarks: bool, drain_outbox: bool) -> dict[str, Any]:
    """Before the measured tick (not counted): forget watermarks and/or the delivery backlog."""
    from monitors import watermark

    done: dict[str, Any] = {}
    store = services.store
    if reset_watermarks:
        for detection in _settings_detections():
            store.delete(watermark.TABLE, services.settings.workspace_id, detection.id)
        done["watermarks_reset"] = True
    if drain_outbox:
        keys = [
            e["RowKey"]
            for e in store.query(
                "outbox", "PartitionKey eq @pk", {"pk": "outbox"}, select=["RowKey"], page_size=1000
            )
        ]
        table = store._table("outbox")  # the SDK client: batch deletes, 100 per transaction
        for first in range(0, len(keys), 100):
            table.submit_transaction(
                [("delete", {"PartitionKey": "outbox", "RowKey": k}) for k in keys[first : first + 100]]
            )
        done["outbox_drained"] = len(keys)
    return done


class Summaries(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith('{"'):
            self.lines.append(message)


def _timer() -> Callable[[Any], None]:
    import function_app

    (timer,) = [f for f in function_app.app.get_functions() if f.get_function_name() == "monitor_tick"]
    return timer.get_user_function()


def tick(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    import function_app

    import_s = time.perf_counter() - began
    meter = Meter()
    _wrap_tokens(meter)
    build_began = time.perf_counter()
    services = function_app._services()  # SDK imports and clients: a warm worker has them
    build_s = time.perf_counter() - build_began
    setup = setup_state(services, args.reset_watermarks, args.drain_outbox)

    from azure.functions.timer import TimerRequest

    from bench.naive import NaiveReader, detection_of, result_digest
    from monitors import alerts

    if args.baseline_point_reads:
        _patch_baseline_point_reads()
    scans: list[dict[str, Any]] = []
    transactions = instrument_store(services.store, meter, scans)
    services.teams.post = meter.wrap("teams.post", services.teams.post)
    reader = services.logs
    la_rows: Counter[str] = Counter()
    la_inner = reader.query

    def la_query(kql_text: str, start: datetime, end: datetime) -> list[Any]:
        rows = la_inner(kql_text, start, end)
        la_rows["rows"] += len(rows)
        la_rows["requests"] += 1
        return rows

    reader.query = meter.wrap("log_analytics.query", la_query)
    seen_by_pipeline: defaultdict[str, list[Any]] = defaultdict(list)
    outer: Any = reader
    if args.design == "naive":
        outer = NaiveReader(reader)
        function_app._services = lambda: dataclasses.replace(services, logs=outer)
    outer_query = outer.query

    def pipeline_query(kql_text: str, start: datetime, end: datetime) -> list[Any]:
        rows = outer_query(kql_text, start, end)
        seen_by_pipeline[detection_of(kql_text)].extend(rows)
        return rows

    outer.query = pipeline_query
    findings: list[tuple[str, str]] = []
    make_alerts = alerts.make_alerts

    def recording(found: Any, created_at: datetime) -> Any:
        findings.extend((f.detection, f.principal.key) for f in found)
        return make_alerts(found, created_at)

    alerts.make_alerts = recording
    summaries = Summaries()
    logging.getLogger("monitors.tick").addHandler(summaries)
    logging.getLogger("monitors.tick").setLevel(logging.INFO)
    run_timer = _timer()
    services.store.transactions = 0
    services.teams.posts = 0
    reader.requests = 0
    rss_before = _rss_mb()
    emit({"ready": True, "import_s": round(import_s, 3), "build_s": round(build_s, 3), "setup": setup})
    request = json.loads(sys.stdin.readline() or "{}")
    if request.get("op") != "go":
        return 1

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    run_timer(TimerRequest(past_due=False))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)

    report = json.loads(summaries.lines[-1]) if summaries.lines else {}
    digests = {d: result_digest(d, rows) for d, rows in seen_by_pipeline.items()}
    emit(
        {
            "design": args.design,
            "wall_s": round(wall, 4),
            "cpu_s": round(cpu, 4),
            "user_s": round(usage1.ru_utime - usage0.ru_utime, 4),
            "system_s": round(usage1.ru_stime - usage0.ru_stime, 4),
            "rss_before_tick_mb": round(rss_before, 1),
            "max_rss_mb": round(_rss_mb("VmHWM"), 1),
            "ru_maxrss_mb": round(usage1.ru_maxrss / 1024, 1),
            "la_requests": reader.requests,
            "la_rows": la_rows["rows"],
            "naive_rows_used": getattr(outer, "rows_pulled", None),
            "pipeline_rows": {d: len(r) for d, r in seen_by_pipeline.items()},
            "digests": digests,
            "table_transactions": services.store.transactions,
            "transactions_by_op": dict(transactions),
            "table_queries": scans,
            "teams_posts": services.teams.posts,
            "meters": meter.report(),
            "report": report,
            "findings": sorted(set(findings)),
        }
    )
    return 0


def _patch_baseline_point_reads() -> None:
    """Before/after for the report: the baseline check as it was before it read the baseline
    partition, one point read per principal the query returned (patched in this process only)."""
    from monitors import state
    from monitors.adapters.table_store import key

    def known_principals(self: Any, detection: str, principal_keys: Any) -> frozenset[str]:
        return frozenset(k for k in set(principal_keys) if self.store.get(state.BASELINE, detection, key(k)))

    state.AlertState.known_principals = known_principals  # type: ignore[method-assign]


def _wrap_tokens(meter: Meter) -> None:
    """Time token requests (a fresh worker's first tick fetches two; later ones use the cache)."""
    from azure.identity import DefaultAzureCredential

    for name in ("get_token", "get_token_info"):
        inner = getattr(DefaultAzureCredential, name, None)
        if inner is not None:
            setattr(DefaultAzureCredential, name, meter.wrap("token", inner))


def schedule(args: argparse.Namespace) -> int:
    """Call the timer function at second 0 of every minute (NCRONTAB `0 */1 * * * *`)."""
    from azure.functions.timer import TimerRequest

    import function_app

    function_app._services()
    run_timer = _timer()
    summaries = Summaries()
    logging.getLogger("monitors.tick").addHandler(summaries)
    logging.getLogger("monitors.tick").setLevel(logging.INFO)
    emit({"ready": True})
    until = datetime.now(UTC) + timedelta(minutes=args.minutes)
    while True:
        now = datetime.now(UTC)
        due = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        if due > until:
            break
        time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
        started = datetime.now(UTC)
        run_timer(TimerRequest(past_due=False))
        report = json.loads(summaries.lines[-1]) if summaries.lines else {}
        emit(
            {
                "tick_started": started.isoformat(),
                "tick_finished": datetime.now(UTC).isoformat(),
                "rows": report.get("rows"),
                "alerts_stored": report.get("alerts_stored"),
                "delivered": report.get("delivered"),
            }
        )
    emit({"done": True})
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("tick")
    one.add_argument("--design", choices=["real", "naive"], default="real")
    one.add_argument("--reset-watermarks", action="store_true")
    one.add_argument("--drain-outbox", action="store_true")
    one.add_argument(
        "--baseline-point-reads",
        action="store_true",
        help="before/after: AlertState.known_principals as it was, one point read per principal "
        "(patched here, in this process only)",
    )
    every = commands.add_parser("schedule")
    every.add_argument("--minutes", type=float, required=True)
    args = parser.parse_args()
    return tick(args) if args.command == "tick" else schedule(args)


if __name__ == "__main__":
    raise SystemExit(main())
