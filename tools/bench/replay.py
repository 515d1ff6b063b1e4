"""`python -m monitors replay` over big portal CSV exports: rows/s, peak RSS, and where time goes.

The export is the real portal CSV in tests/fixtures (23 AzureActivity rows, ~6.5 KB each)
repeated with fresh EventDataIds, streamed to disk. Replay runs in a child process; its peak
RSS and CPU come from wait4, and its RSS is sampled every half second against how far it has
read the file (/proc/PID/io rchar), which shows whether memory grows with the file. A guard
stops a run whose RSS passes a limit (the machine is shared); the report then says so.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pstats
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import PYTHON, REPO, child_env, poll_usage, proc_rss_mb, say, wait_usage

FIXTURE = REPO / "tests" / "fixtures" / "sentinel-training-lab" / "azureActivity_adele.csv"
PROFILE_ROWS = 20_000
# `python -m monitors ARGS`, plus the process's peak RSS (VmHWM) written to argv[1] at exit.
# Not ru_maxrss from wait4: Linux keeps it across exec, so it would include the forking parent.
LAUNCHER = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            open(out, "w").write(line.split()[1])
atexit.register(hwm)
sys.argv[0] = "monitors"
runpy.run_module("monitors", run_name="__main__", alter_sys=True)
"""
_ROWS_FACT = re.compile(r"\((\d+) log rows\)")


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for item in text.split(","):
        item = item.strip().lower()
        if item:
            sizes.append(int(float(item.replace("k", "e3").replace("m", "e6"))))
    return sizes


def make_csv(path: Path, rows: int) -> dict[str, Any]:
    """Fixture rows repeated with fresh EventDataIds, written as they are produced."""
    marker = path.parent.parent / f"{path.parent.name}.csv.json"  # outside the folder replay reads
    if path.exists() and marker.exists():
        return json.loads(marker.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    with FIXTURE.open(encoding="utf-8-sig", newline="") as source:
        records = list(csv.reader(source))
    header, body = records[0], records[1:]
    column = header.index("EventDataId")
    templates = []
    for record in body:
        record = list(record)
        record[column] = "\x00"
        buffer = io.StringIO()
        csv.writer(buffer).writerow(record)
        templates.append(buffer.getvalue().split("\x00"))
    began = time.perf_counter()
    with path.open("w", encoding="utf-8", newline="") as out:
        buffer = io.StringIO()
        csv.writer(buffer).writerow(header)
        out.write(buffer.getvalue())
        for n in range(rows):
            before, after = templates[n % len(templates)]
            out.write(f"{before}{uuid.uuid4()}{after}")
    info = {"rows": rows, "bytes": path.stat().st_size, "write_s": round(time.perf_counter() - began, 1)}
    marker.write_text(json.dumps(info))
    return info


def _rchar(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_replay(folder: Path, rows: int, size: int, guard_mb: float, log: Path) -> dict[str, Any]:
    out_path = folder.parent / f"{folder.name}.out.json"
    hwm_path = folder.parent / f"{folder.name}.hwm"
    hwm_path.unlink(missing_ok=True)
    began = time.perf_counter()
    with out_path.open("w") as out, log.open("ab") as err:
        proc = subprocess.Popen(  # noqa: S603 - our interpreter, the app's CLI
            [PYTHON, "-c", LAUNCHER, str(hwm_path), "replay", str(folder), "--format", "json"],
            stdout=out,
            stderr=err,
            env=child_env(),
            cwd=REPO,
        )
        timeline: list[tuple[float, float, float]] = []
        stopped = None
        while (usage := poll_usage(proc, began)) is None:
            rss = proc_rss_mb(proc.pid)
            read = min(1.0, _rchar(proc.pid) / size)
            if rss != rss:  # NaN: the process has just exited (a zombie has no VmRSS)
                time.sleep(0.05)
                continue
            timeline.append((round(time.perf_counter() - began, 1), round(rss), round(read, 3)))
            if rss > guard_mb:
                stopped = {"at_s": timeline[-1][0], "rss_mb": rss, "file_read": read}
                proc.kill()
                usage = wait_usage(proc, began)
                break
            time.sleep(0.5)
    result: dict[str, Any] = {
        "rows": rows,
        "bytes": size,
        "wall_s": round(usage.wall_s, 2),
        "cpu_s": round(usage.cpu_s, 2),
        "max_rss_mb": round(_peak(hwm_path, timeline)),
        "ru_maxrss_mb": round(usage.max_rss_mb),
        "returncode": usage.returncode,
        "stopped_by_guard": stopped,
        "guard_mb": round(guard_mb),
        "timeline": timeline[:: max(1, len(timeline) // 60)],
    }
    read_done = next((t for t, _, r in timeline if r >= 0.999), None)
    result["read_and_ingest_s"] = read_done
    if stopped is None and usage.returncode == 0:
        alerts = json.loads(out_path.read_text() or "[]")
        counted = [
            int(m.group(1))
            for a in alerts
            for m in [_ROWS_FACT.search(a["facts"].get("Operations", ""))]
            if m
        ]
        result["alerts"] = len(alerts)
        result["rows_in_alerts"] = sum(counted)
        result["rows_per_s"] = round(rows / usage.wall_s)
        result["rows_per_cpu_s"] = round(rows / usage.cpu_s)  # what one uncontended core would do
    else:
        done = stopped["file_read"] if stopped else 0
        result["rows_per_s_while_reading"] = round(done * rows / stopped["at_s"]) if stopped else None
    # where the memory goes: while the file is read and ingested, then while the detections run
    reading = [m for _, m, r in timeline if r < 0.999]
    after = [m for _, m, r in timeline if r >= 0.999]
    result["max_rss_reading_mb"] = max(reading) if reading else None
    result["max_rss_after_reading_mb"] = max(after) if after else None
    out_path.unlink(missing_ok=True)
    return result


READ_ONLY = """
import json, sys, time
from pathlib import Path
from monitors import exports
from monitors.cli import _columns_read
wall, cpu = time.perf_counter(), time.process_time()
rows = exports.read_export(Path(sys.argv[1]), "AzureActivity", exports.ReadReport(),
                           columns=_columns_read("AzureActivity"), dynamic_text=True)
count = sum(1 for _ in rows)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({"rows": count, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                  "rows_per_cpu_s": round(count / cpu), "max_rss_mb": round(hwm / 1024)}))
"""


def read_only(folder: Path, log: Path) -> dict[str, Any]:
    """Only reading the export (monitors/exports.py, the columns replay asks for), no engine."""
    with log.open("ab") as err:
        done = subprocess.run(  # noqa: S603 - our interpreter, the app's reader
            [PYTHON, "-c", READ_ONLY, str(folder / "AzureActivity.csv")],
            stdout=subprocess.PIPE,
            stderr=err,
            env=child_env(),
            cwd=REPO,
            check=True,
            text=True,
        )
    return json.loads(done.stdout)


def _peak(hwm_path: Path, timeline: list[tuple[float, float, float]]) -> float:
    """VmHWM written at exit; a run stopped by the guard has none: the highest RSS sample then."""
    try:
        return int(hwm_path.read_text()) / 1024
    except (OSError, ValueError):
        return max((m for _, m, _ in timeline), default=float("nan"))


def profile(work: Path, log: Path) -> dict[str, Any]:
    folder = work / "replay" / f"{PROFILE_ROWS}"
    make_csv(folder / "AzureActivity.csv", PROFILE_ROWS)
    prof = work / "replay" / "profile.prof"
    with log.open("ab") as err:
        subprocess.run(  # noqa: S603
            [
                PYTHON,
                "-m",
                "cProfile",
                "-o",
                str(prof),
                "-m",
                "monitors",
                "replay",
                str(folder),
                "--format",
                "json",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=child_env(),
            cwd=REPO,
            check=True,
        )
    stats = pstats.Stats(str(prof))
    table = stats.stats  # type: ignore[attr-defined]
    total = max(ct for (_, _, _, ct, _) in table.values())

    def cumulative(file_part: str, function: str) -> float:
        return sum(v[3] for (f, _, name), v in table.items() if file_part in f and name == function)

    ingest = cumulative("devstack/loganalytics.py", "ingest_typed")
    checks = cumulative("devstack/loganalytics.py", "_typed_column")
    buckets = {
        "read CSV + build rows (monitors/exports.py)": cumulative("monitors/exports.py", "_csv_rows"),
        "  of which finding records (one regular expression per record)": _builtin(table, MATCH),
        "  of which _Plan.build (types, datetimes; dynamic JSON left as text)": cumulative(
            "monitors/exports.py", "build"
        ),
        "engine ingest (LogAnalyticsServer.ingest_typed)": ingest,
        "  of which checks and conversions in Python (_typed_column)": checks,
        "  of which the DuckDB insert (dynamic JSON parsed there)": ingest - checks,
        "detections (run_detection: KQL -> SQL, DuckDB)": cumulative("monitors/pipeline.py", "run_detection"),
        "  of which KQL translation (duckdb_kql.to_sql)": cumulative("duckdb_kql/__init__.py", "to_sql"),
        "start-up (imports, engine, schema)": 0.0,
    }
    named = sum(v for k, v in buckets.items() if not k.startswith("  "))
    buckets["start-up (imports, engine, schema)"] = max(0.0, total - named)
    top = sorted(table.items(), key=lambda kv: -kv[1][2])[:12]
    return {
        "rows": PROFILE_ROWS,
        "total_s": round(total, 2),
        "buckets_s": {k: round(v, 2) for k, v in buckets.items()},
        "top_tottime": [
            {
                "function": f"{Path(f).name}:{line}({name})",
                "calls": v[1],
                "tottime_s": round(v[2], 3),
                "cumtime_s": round(v[3], 3),
            }
            for (f, line, name), v in top
        ],
    }


MATCH = "match' of 're.Pattern"  # how cProfile names re.Pattern.match


def _builtin(table: dict[Any, Any], name: str) -> float:
    return sum(v[2] for (f, _, n), v in table.items() if f == "~" and name in n)


def run(work: Path, sizes_text: str, guard_gb: float | None) -> dict[str, Any]:
    available = _available_mb()
    guard_mb = guard_gb * 1024 if guard_gb else min(14 * 1024, 0.6 * available)
    results: dict[str, Any] = {
        "guard_mb": round(guard_mb),
        "available_mb_at_start": round(available),
        "runs": [],
    }
    log = work / "state" / "logs" / "replay.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    for rows in parse_sizes(sizes_text):
        folder = work / "replay" / f"{rows}"
        estimate = rows * 6_600
        free = shutil.disk_usage(work).free
        if not (folder / "AzureActivity.csv").exists() and free < estimate * 1.3:
            fitted = int(free / 1.3 / 6_600 // 10_000 * 10_000)
            say(
                f"  {rows:,} rows need ~{estimate / 2**30:.1f} GB, {free / 2**30:.1f} GB free: "
                f"using {fitted:,}"
            )
            results.setdefault("notes", []).append(f"disk: {rows:,} rows did not fit, used {fitted:,}")
            rows = fitted
            folder = work / "replay" / f"{rows}"
        say(f"  generating a {rows:,}-row portal CSV export ...")
        info = make_csv(folder / "AzureActivity.csv", rows)
        say(f"  replaying {info['bytes'] / 2**30:.2f} GB (RSS guard {guard_mb / 1024:.1f} GB) ...")
        result = run_replay(folder, rows, info["bytes"], guard_mb, log)
        result["csv_write_s"] = info["write_s"]
        result["read_only"] = read_only(folder, log)
        results["runs"].append(result)
        if result["stopped_by_guard"]:
            say(
                f"  stopped by the RSS guard at {result['stopped_by_guard']['rss_mb']:.0f} MB after "
                f"{result['stopped_by_guard']['file_read']:.0%} of the file"
            )
        else:
            say(
                f"  {result.get('rows_per_s', 0):,} rows/s, peak RSS {result['max_rss_mb']:,} MB, "
                f"{result['wall_s']} s; reading alone {result['read_only']['rows_per_cpu_s']:,} rows "
                f"per CPU-second, peak RSS {result['read_only']['max_rss_mb']} MB"
            )
    say(f"  profiling a {PROFILE_ROWS:,}-row replay with cProfile ...")
    results["profile"] = profile(work, log)
    return results


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) / 2**20
