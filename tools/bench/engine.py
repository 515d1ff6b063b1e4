"""The local Log Analytics query API in a process of its own, instrumented from outside.

`python -m bench.engine --state-dir DIR --workspace-id ID` starts devstack.loganalytics'
LogAnalyticsServer (unchanged) and answers JSON lines on stdin:

    {"op": "load", "dir": ..., "now": ISO}   stream <Table>.jsonl into the engine in batches,
                                             shifting TimeGenerated and stamping _IngestionTime
    {"op": "ingest", "table": T, "rows": [...]}  rows as they are (a row without
                                             _IngestionTime is ingested now, as the server does)
    {"op": "ingest_now", "table": T, "rows": [...]}  stamped now; answers the stamp
    {"op": "clear"} / {"op": "reset"} / {"op": "stats"} / {"op": "quit"}

Wrapping, not editing: `LogAnalyticsServer.query` is wrapped on the instance (engine wall time,
rows) and `JsonHandler.send_bytes` in this process only (bytes of each query response as sent).
Process CPU is read with getrusage, so `stats` after `reset` is what the query API spent while
the function ran a tick: duckdb-kql translation and execution, row formatting, JSON, TLS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devstack import httpserver
from devstack.loganalytics import LogAnalyticsServer

BATCH = 20_000
TABLES = ("SigninLogs", "AADNonInteractiveUserSignInLogs", "AzureActivity")
# Where the data lands relative to the load's `now`: the generated day ends an hour before now,
# and every row's ingestion time falls in [now - 20 h, now - 10 min]: inside the first tick's
# window (the last 24 h of ingestion minus the 2-minute visibility lag) for the next ~4 hours.
DATA_END_BEFORE_NOW = timedelta(hours=1)
INGEST_EARLIEST = timedelta(hours=20)
INGEST_LATEST = timedelta(minutes=10)


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.queries = 0
            self.query_wall_s = 0.0
            self.rows = 0
            self.bytes = 0
            self.partial = 0
            self.max_rows_one_query = 0
            self.cpu0 = _cpu()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "queries": self.queries,
                "query_wall_s": round(self.query_wall_s, 4),
                "rows": self.rows,
                "bytes": self.bytes,
                "partial": self.partial,
                "max_rows_one_query": self.max_rows_one_query,
                "process_cpu_s": round(_cpu() - self.cpu0, 4),
                "rss_mb": round(_rss_mb(), 1),
                "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def instrument(server: LogAnalyticsServer, stats: Stats) -> None:
    inner = server.query

    def query(request: Any) -> dict[str, Any]:
        began = time.perf_counter()
        response = inner(request)
        elapsed = time.perf_counter() - began
        rows = len(response["tables"][0]["rows"])
        with stats.lock:
            stats.queries += 1
            stats.query_wall_s += elapsed
            stats.rows += rows
            stats.partial += "error" in response
            stats.max_rows_one_query = max(stats.max_rows_one_query, rows)
        return response

    server.query = query  # type: ignore[method-assign]

    send_bytes = httpserver.JsonHandler.send_bytes

    def counted(self: Any, status: int, body: bytes, content_type: str, headers: Any = None) -> None:
        if "/query" in getattr(self, "path", ""):
            with stats.lock:
                stats.bytes += len(body)
        send_bytes(self, status, body, content_type, headers)

    httpserver.JsonHandler.send_bytes = counted  # type: ignore[method-assign]


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def load(server: LogAnalyticsServer, folder: Path, now: datetime, data_end: datetime) -> dict[str, Any]:
    """Stream prepared rows in, shifted so the generated day ends an hour before `now`."""
    shift = (now - DATA_END_BEFORE_NOW) - data_end
    low, high = now - INGEST_EARLIEST, now - INGEST_LATEST
    counts: dict[str, int] = {}
    began = time.perf_counter()
    for table in TABLES:
        path = folder / f"{table}.jsonl"
        if not path.exists():
            continue
        batch: list[dict[str, Any]] = []
        count = 0
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                generated = _iso(row["TimeGenerated"]) + shift
                ingested = _iso(row["_IngestionTime"]) + shift if row.get("_IngestionTime") else generated
                row["TimeGenerated"] = generated
                row["_IngestionTime"] = min(max(ingested, low), high)
                batch.append(row)
                if len(batch) >= BATCH:
                    count += server.ingest(table, batch)
                    batch = []
            if batch:
                count += server.ingest(table, batch)
        counts[table] = count
    return {
        "rows": counts,
        "seconds": round(time.perf_counter() - began, 1),
        "shift_s": shift.total_seconds(),
        "ingestion_range": [low.isoformat(), high.isoformat()],
        "rss_mb": round(_rss_mb(), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--workspace-id", required=True)
    parser.add_argument("--max-rows", type=int, default=500_000)
    args = parser.parse_args()
    server = LogAnalyticsServer(args.workspace_id, args.state_dir, max_rows=args.max_rows)
    stats = Stats()
    instrument(server, stats)
    server.start()
    out = sys.stdout

    def answer(payload: dict[str, Any]) -> None:
        out.write(json.dumps(payload, default=str) + "\n")
        out.flush()

    answer({"ready": server.url})
    for line in sys.stdin:
        request = json.loads(line)
        op = request.get("op")
        try:
            if op == "quit":
                break
            if op == "load":
                answer(load(server, Path(request["dir"]), _iso(request["now"]), _iso(request["data_end"])))
            elif op == "ingest":
                answer({"ingested": server.ingest(request["table"], request["rows"])})
            elif op == "ingest_now":  # stamped with this moment: what time-to-alert starts from
                stamp = datetime.now(UTC)
                rows = [{**row, "_IngestionTime": stamp} for row in request["rows"]]
                answer({"ingested": server.ingest(request["table"], rows), "at": stamp.isoformat()})
            elif op == "clear":
                answer({"deleted": server.clear()})
            elif op == "reset":
                stats.reset()
                answer({"ok": True})
            elif op == "stats":
                answer(stats.snapshot())
            else:
                answer({"error": f"unknown op {op!r}"})
        except Exception as error:  # report, keep serving: the orchestrator decides
            answer({"error": f"{type(error).__name__}: {error}"})
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
