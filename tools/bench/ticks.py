"""Ticks at one scale: cold (empty state), warm (state known, same rows) and naive (warm, naive reader)."""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import dataset
from bench.common import LineChild, child_env, median, say, spread
from bench.stack import Stack

KINDS = ("cold", "warm", "naive", "whatif")


def run_one(stack: Stack, env: dict[str, str], kind: str, log: Path) -> dict[str, Any]:
    """One tick in a fresh function process; the services' counters are read around it."""
    args = ["-m", "bench.tick_child", "tick", "--design", "naive" if kind == "naive" else "real"]
    if kind != "cold":
        args += ["--reset-watermarks", "--drain-outbox"]
    if kind == "whatif":
        args += ["--baseline-point-reads"]
    child = LineChild(args, env=child_env(env), stderr_path=log)
    ready = child.read()
    stack.engine.call(op="reset")
    before = stack.service_cpu()
    result = child.call(op="go")
    after = stack.service_cpu()
    engine = stack.engine.call(op="stats")
    usage = child.close(timeout_s=600)
    result.update(
        kind=kind,
        ready=ready,
        engine=engine,
        service_cpu_s={name: round(after[name] - before[name], 3) for name in before},
        process={
            "wall_s": round(usage.wall_s, 3),
            "cpu_s": round(usage.cpu_s, 3),
            "max_rss_mb": round(usage.max_rss_mb, 1),
            "returncode": usage.returncode,
        },
    )
    return result


def run_scale(
    stack: Stack,
    work: Path,
    scale: dataset.Scale,
    runs: int,
    heavy_runs: int,
    *,
    full_rows: bool,
    naive: bool,
    whatif: bool = True,
) -> dict[str, Any]:
    prepared, summary = dataset.ensure(work, scale, full_rows=full_rows)
    say(
        f"  {summary['signins']:,} sign-ins, {summary['rows']['AzureActivity']:,} AzureActivity rows "
        f"({summary['users']:,} users); loading into the query API ..."
    )
    stack.engine.call(op="clear")
    loaded = stack.engine.call(
        op="load", dir=str(prepared), now=datetime.now(UTC).isoformat(), data_end=summary["data_end"]
    )
    say(f"  loaded in {loaded['seconds']} s (engine RSS {loaded['rss_mb']:.0f} MB)")
    break_glass = ",".join(a["object_id"] for a in summary["break_glass"]) or "none"
    expected = {tuple(e) for e in summary["expected"]}

    def kinds(missing: set[tuple[str, ...]]) -> dict[str, str]:
        return dataset.principal_kinds(summary, {oid for _, oid in missing})

    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    prefixes = []

    def tick(kind: str, prefix: str, run: int, runs: int) -> None:
        result = run_one(
            stack,
            stack.settings(prefix, break_glass),
            kind,
            stack.logs / f"tick-{scale.name}-{run}-{kind}.log",
        )
        if kind == "cold":
            alerted = [tuple(f) for f in result["findings"]]
            covered = {detection for detection, _ in expected}  # what the manifest covers
            found = {f for f in alerted if f[0] in covered}
            result["ground_truth"] = {
                "expected": len(expected),
                "alerted": len(found),
                "missing": sorted(expected - found)[:10],
                "missing_count": len(expected - found),
                "unexpected": sorted(found - expected)[:10],
                "unexpected_count": len(found - expected),
                "missing_kinds": dict(Counter(kinds(expected - found).values())),
                "alerted_by_detection": dict(Counter(detection for detection, _ in alerted)),
            }
        result.pop("findings", None)
        samples[kind].append(result)
        say(
            f"  {kind:5} {run + 1}/{runs}: wall {result['wall_s']:.2f} s, function CPU "
            f"{result['cpu_s']:.2f} s, LA rows {result['engine']['rows']:,} "
            f"/ {result['engine']['bytes']:,} B, "
            f"table tx {result['table_transactions']:,}, posts {result['teams_posts']}, "
            f"peak RSS {result['max_rss_mb']:.0f} MB"
        )

    for run in range(heavy_runs):  # each on an empty state of its own
        prefix = f"b{scale.name.lower()}r{run}{secrets.token_hex(3)}"
        prefixes.append(prefix)
        tick("cold", prefix, run, heavy_runs)
    for run in range(runs):  # on the first cold tick's state: every principal known
        order = ["warm", "naive", "whatif"] if run % 2 == 0 else ["naive", "whatif", "warm"]
        for kind in order:
            if kind == "naive" and (not naive or run >= heavy_runs):
                continue
            if kind == "whatif" and not whatif:
                continue
            tick(kind, prefixes[0], run, heavy_runs if kind == "naive" else runs)
    return {
        "scale": scale.name,
        "dataset": summary,
        "load": loaded,
        "prefixes": prefixes,
        "samples": samples,
        "medians": {kind: summarize(samples[kind]) for kind in KINDS if samples[kind]},
    }


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians (and min..max) of the figures the report shows."""

    def pick(getter: Any) -> dict[str, Any]:
        values = [getter(s) for s in samples]
        low, high = spread(values)
        return {"median": median(values), "min": low, "max": high}

    report = lambda s: s.get("report") or {}  # noqa: E731
    return {
        "runs": len(samples),
        "wall_s": pick(lambda s: s["wall_s"]),
        "detect_s": pick(lambda s: (report(s).get("durations_s") or {}).get("detect")),
        "deliver_s": pick(lambda s: (report(s).get("durations_s") or {}).get("deliver")),
        "cpu_s": pick(lambda s: s["cpu_s"]),
        "la_wait_s": pick(lambda s: s["meters"].get("log_analytics.query", {}).get("wall_s", 0.0)),
        "la_client_cpu_s": pick(lambda s: s["meters"].get("log_analytics.query", {}).get("cpu_s", 0.0)),
        "table_cpu_s": pick(
            lambda s: sum(v["cpu_s"] for k, v in s["meters"].items() if k.startswith("table."))
        ),
        "table_wall_s": pick(
            lambda s: sum(v["wall_s"] for k, v in s["meters"].items() if k.startswith("table."))
        ),
        "teams_cpu_s": pick(lambda s: s["meters"].get("teams.post", {}).get("cpu_s", 0.0)),
        "teams_wall_s": pick(lambda s: s["meters"].get("teams.post", {}).get("wall_s", 0.0)),
        "token_wall_s": pick(lambda s: s["meters"].get("token", {}).get("wall_s", 0.0)),
        "engine_query_s": pick(lambda s: s["engine"]["query_wall_s"]),
        "engine_cpu_s": pick(lambda s: s["service_cpu_s"]["engine"]),
        "azurite_cpu_s": pick(lambda s: s["service_cpu_s"]["azurite"]),
        "teams_sink_cpu_s": pick(lambda s: s["service_cpu_s"]["teams"]),
        "max_rss_mb": pick(lambda s: s["max_rss_mb"]),  # VmHWM of the tick's process
        "rss_before_tick_mb": pick(lambda s: s["rss_before_tick_mb"]),
        "la_requests": pick(lambda s: s["la_requests"]),
        "la_rows": pick(lambda s: s["engine"]["rows"]),  # sent, partial results included
        "la_rows_complete": pick(lambda s: s["la_rows"]),  # in complete results the function kept
        "la_partial": pick(lambda s: s["engine"]["partial"]),
        "la_bytes": pick(lambda s: s["engine"]["bytes"]),
        "table_transactions": pick(lambda s: s["table_transactions"]),
        "teams_posts": pick(lambda s: s["teams_posts"]),
        "alerts_stored": pick(lambda s: report(s).get("alerts_stored")),
        "delivered": pick(lambda s: report(s).get("delivered")),
        "findings": pick(lambda s: report(s).get("findings")),
        "pipeline_rows": samples[-1].get("pipeline_rows"),
        "digests": samples[-1].get("digests"),
        "transactions_by_op": samples[-1].get("transactions_by_op"),
        "table_queries": _query_summary(samples[-1].get("table_queries") or []),
        "ground_truth": samples[-1].get("ground_truth"),
        "query_errors": sorted({e for s in samples for e in (report(s).get("query_errors") or [])}),
    }


def _query_summary(scans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table queries of one tick, grouped by table and filter shape."""
    grouped: dict[tuple[str, str, bool], dict[str, Any]] = {}
    for scan in scans:
        key = (scan["table"], scan["filter"], scan["partition_scoped"])
        entry = grouped.setdefault(
            key,
            {
                "table": key[0],
                "filter": key[1],
                "partition_scoped": key[2],
                "calls": 0,
                "pages": 0,
                "entities": 0,
            },
        )
        entry["calls"] += 1
        entry["pages"] += scan["pages"]
        entry["entities"] += scan["entities"]
    return list(grouped.values())
