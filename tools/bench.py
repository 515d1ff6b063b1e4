"""`make bench`: the monitor at tenant scale, measured. A benchmark: it reports, it never fails on noise.

    .venv/bin/python tools/bench.py [--scales 10k,100k,1M] [--runs 3] [--skip PHASES] [--no-write]
    .venv/bin/python tools/bench.py --quick      (10k and 100k, one run, 100k-row replay: ~8 min)

`make bench BENCH_ARGS=--quick` passes flags through; BENCH_SCALES in the environment sets the
default of --scales.

Phases (all by default; `--skip naive,replay,...` leaves some out):

  ticks      per scale: generate (cached) and load a synthetic tenant into the local query API,
             then a cold tick (empty state) and per run a warm tick (same rows, state known)
  naive      per scale and run: the naive design (tools/bench/naive.py) on the same rows and state
  whatif     per scale and run: the warm tick with the baseline check as it was before (one point
             read per principal; patched in the tick's process only), to compare in the same run
  coldstart  `import function_app` and a fresh worker's first history response
  alert      time-to-alert: rows ingested while the timer runs every minute, until the card lands
  replay     `python -m monitors replay` over generated portal CSV exports (rows/s, peak RSS) + profile

Results go to `<work>/results-<UTC time>.json` and, unless `--no-write`, into the generated part
of BENCHMARKS.md (between the `bench:begin`/`bench:end` markers; text outside them is kept).
`--render A.json B.json ...` measures nothing: it joins the phases of earlier results files (a
later file's phase replaces an earlier one's; replay exports of other sizes are added) and writes
(or prints) the report from them, for phases run separately, e.g. the ticks while the replay code
was still changing.
Generated data is cached in `<work>` (default: $TMPDIR/mfamon-bench), so a second run skips it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from bench import alert, coldstart, dataset, replay, report, ticks  # noqa: E402
from bench.common import DEFAULT_WORK, REPO, machine, say  # noqa: E402
from bench.stack import Stack  # noqa: E402

PHASES = ("ticks", "naive", "whatif", "coldstart", "alert", "replay")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scales",
        default=os.environ.get("BENCH_SCALES", "10k,100k,1M"),
        help="sign-in rows per tick window (default: $BENCH_SCALES or %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a look in minutes: 10k and 100k (unless --scales), one run, 3 alert samples, "
        "a 100k-row replay; not the issue's full set of figures",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement; medians are reported")
    parser.add_argument(
        "--heavy-runs",
        type=int,
        default=None,
        help="cold and naive ticks per scale (default: --runs below 1M sign-ins, 1 from 1M, where each "
        "takes minutes: the cold tick's cost is its per-alert writes, the naive one's its 1M rows)",
    )
    parser.add_argument(
        "--skip", default="", help=f"comma-separated phases to leave out: {', '.join(PHASES)}"
    )
    parser.add_argument("--alert-samples", type=int, default=6, help="rows timed from ingestion to Teams")
    parser.add_argument(
        "--replay-sizes", default="100k,1M", help="rows of the generated AzureActivity CSV exports"
    )
    parser.add_argument(
        "--replay-rss-guard-gb",
        type=float,
        default=None,
        help="stop a replay whose RSS passes this (default: 60%% of available memory, at most 14)",
    )
    parser.add_argument("--full-rows", action="store_true", help="keep every sign-in column in the engine")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache and scratch folder")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true", help="print the report instead of writing it")
    parser.add_argument("--render", type=Path, nargs="+", metavar="RESULTS", help="report from results files")
    args = parser.parse_args(argv)
    if args.render:
        return _render(args.render, args.out, args.no_write)
    if args.quick:
        explicit = set(argv if argv is not None else sys.argv[1:])
        if not any(a.startswith("--scales") for a in explicit) and "BENCH_SCALES" not in os.environ:
            args.scales = "10k,100k"
        if not any(a.startswith("--runs") for a in explicit):
            args.runs = 1
        if not any(a.startswith("--alert-samples") for a in explicit):
            args.alert_samples = 3
        if not any(a.startswith("--replay-sizes") for a in explicit):
            args.replay_sizes = "100k"
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s) {sorted(unknown)}; known: {', '.join(PHASES)}")
    scales = dataset.parse_scales(args.scales)
    args.work.mkdir(parents=True, exist_ok=True)

    began = time.perf_counter()
    started_at = datetime.now(UTC)
    results: dict = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "command": "tools/bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "runs": args.runs,
        "scales": {},
        "phase_seconds": {},
        "loadavg": {},  # 1-, 5- and 15-minute load averages at the end of each phase
    }
    say(
        f"bench: {results['machine']['nproc']} CPUs, {results['machine']['cpu']}, "
        f"load average {results['machine']['loadavg_at_start']}; work folder {args.work}"
    )
    state = args.work / "state"
    shutil.rmtree(state / "logs", ignore_errors=True)
    stack = Stack(state)
    try:
        if {"ticks", "coldstart", "alert"} - skip:
            stack.start()
        if "ticks" not in skip:
            for scale in scales:
                phase = time.perf_counter()
                say(f"\n== ticks at {scale.name} sign-ins per tick window")
                default_heavy = args.runs if scale.signins < 1_000_000 else 1
                heavy_runs = max(1, args.heavy_runs if args.heavy_runs is not None else default_heavy)
                results["scales"][scale.name] = ticks.run_scale(
                    stack,
                    args.work,
                    scale,
                    args.runs,
                    heavy_runs,
                    full_rows=args.full_rows,
                    naive="naive" not in skip,
                    whatif="whatif" not in skip,
                )
                results["phase_seconds"][f"ticks {scale.name}"] = round(time.perf_counter() - phase)
                results["loadavg"][f"ticks {scale.name}"] = _load()
        if "coldstart" not in skip:
            phase = time.perf_counter()
            say("\n== cold start")
            # the largest scale's first cold tick left the most alerts in the history: the page reads them
            ran = sorted(results["scales"].values(), key=lambda x: -x["dataset"]["signins"])
            prefix = ran[0]["prefixes"][0] if ran else "bcoldstart"
            results["coldstart"] = coldstart.run(stack, prefix, max(args.runs, 5))
            results["phase_seconds"]["coldstart"] = round(time.perf_counter() - phase)
            results["loadavg"]["coldstart"] = _load()
        if "alert" not in skip and args.alert_samples > 0:
            phase = time.perf_counter()
            say("\n== time to alert (1-minute schedule)")
            results["time_to_alert"] = alert.run(stack, args.alert_samples)
            results["phase_seconds"]["alert"] = round(time.perf_counter() - phase)
            results["loadavg"]["alert"] = _load()
    finally:
        stack.stop()
    if "replay" not in skip:
        phase = time.perf_counter()
        say("\n== replay")
        results["replay"] = replay.run(args.work, args.replay_sizes, args.replay_rss_guard_gb)
        results["phase_seconds"]["replay"] = round(time.perf_counter() - phase)
        results["loadavg"]["replay"] = _load()
    results["total_seconds"] = round(time.perf_counter() - began)
    path = args.work / f"results-{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    say(f"\nresults: {path} ({results['total_seconds'] / 60:.1f} min)")
    _publish(results, args.out, args.no_write)
    return 0


def _render(paths: list[Path], out: Path, no_write: bool) -> int:
    """One report from several results files: the first gives the machine and start, each adds
    (or replaces) the phases it ran; commands and durations add up."""
    merged: dict = {}
    for path in paths:
        results = json.loads(path.read_text())
        if not merged:
            merged = results
            continue
        merged["scales"].update(results.get("scales") or {})
        for phase in ("coldstart", "time_to_alert"):
            if phase in results:
                merged[phase] = results[phase]
        if "replay" in results:
            merged["replay"] = _join_replays(merged.get("replay"), results["replay"])
        for part in ("phase_seconds", "loadavg"):
            merged[part].update(results.get(part) or {})
        merged["command"] += " + " + results["command"]
        merged["total_seconds"] += results["total_seconds"]
    _publish(merged, out, no_write)
    return 0


def _join_replays(earlier: dict | None, later: dict) -> dict:
    """A later replay phase's export sizes replace the same sizes of an earlier one and add the
    others (e.g. one larger export run on its own); its guard and profile replace the earlier's."""
    runs = {run["rows"]: run for run in (earlier or {}).get("runs", [])}
    runs.update((run["rows"], run) for run in later["runs"])
    return {**later, "runs": [runs[rows] for rows in sorted(runs)]}


def _publish(results: dict, out: Path, no_write: bool) -> None:
    text = report.render(results)
    if no_write:
        print(text)
    else:
        report.write(out, text)
        say(f"wrote {out}")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


if __name__ == "__main__":
    raise SystemExit(main())
