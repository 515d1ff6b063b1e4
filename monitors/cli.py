"""`python -m monitors ...`: the monitor for people at a terminal.

tick      run one monitoring tick with the app settings in the environment
status    the monitor's own health: last successful tick, failures, watermark lag, backlog
doctor    after deploying: workspace access, table freshness, state tables, webhooks, settings
replay    run the detections over exported logs, offline, with a fresh empty state
waivers   accepted exceptions: add, list, revoke, audit
alerts    the alert history: list, show, ack, resolve
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from monitors import cli_alerts, cli_waivers, coverage
from monitors.detections import DETECTIONS
from monitors.detections.base import Context
from monitors.schema import SchemaMissing
from monitors.settings import (
    NONE,
    WATCHED_TABLES,
    BreakGlassAccounts,
    SettingsError,
    parse_break_glass,
    parse_group_ids,
)

INGEST_BATCH = 5_000
# The local engine keeps at most this much in memory and spills the rest (rows and query state)
# to the scratch folder, so replay's memory stops growing with the export there. Its database is
# in memory, not a file: a file adds a write-ahead log, checkpoints and compression to every
# insert (10x the insert's CPU on rows that do not compress), and spilling needs none of it.
# 512 MB, on two threads whatever the machine (each thread keeps its own aggregation state): a
# 2M-row export whose one principal has 2M event ids replays in it at 704 MB peak RSS, 703 MB
# at 1M rows; 1 GB took ~450 MB more for ~1.5% less CPU (BENCHMARKS.md, "Replay").
ENGINE_MEMORY_LIMIT = "512MB"
ENGINE_THREADS = 2


class ReplayError(Exception):
    """Replay cannot run: the message names the file and the problem."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitors", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("tick", help="run one tick against the configured workspace")
    status = commands.add_parser(
        "status", help="the monitor's own health (exit 1 when something needs a look)"
    )
    status.add_argument("--format", choices=["table", "json"], default="table")
    doctor = commands.add_parser(
        "doctor", help="check what the monitor needs, one line each (exit 1 on any failure)"
    )
    doctor.add_argument("--send-test-card", action="store_true",
                        help="post a test card to each webhook (tell the channel first)")  # fmt: skip
    doctor.add_argument("--no-state-write", action="store_true",
                        help="leave the state tables alone (run as someone other than the app)")  # fmt: skip
    replay = commands.add_parser("replay", help="run the detections over exported logs (never posts)")
    replay.add_argument("logdir", type=Path, help="folder with <Table>.csv or <Table>.json exports")
    replay.add_argument("--break-glass", action="append", default=[], metavar="ID_OR_UPN",
                        help="a break-glass account (object id or UPN); repeat for several")  # fmt: skip
    replay.add_argument("--break-glass-group", action="append", default=[], metavar="OBJECT_ID",
                        help="a group that excludes the accounts from Conditional Access")  # fmt: skip
    replay.add_argument("--format", choices=["json", "table"], default="table")
    cli_waivers.add_commands(commands)
    cli_alerts.add_commands(commands)
    args = parser.parse_args(argv)
    try:
        if args.command == "tick":
            return _tick()
        if args.command == "status":
            return _status(args.format, sys.stdout)
        if args.command == "doctor":
            return _doctor(args.send_test_card, not args.no_state_write, sys.stdout)
        if args.command == "waivers":
            return cli_waivers.run(args)
        if args.command == "alerts":
            return cli_alerts.run(args)
        return _replay(
            args.logdir, args.break_glass, args.break_glass_group, args.format, sys.stdout, sys.stderr
        )
    except (ReplayError, SettingsError, SchemaMissing) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _tick() -> int:
    from monitors.bootstrap import services_from_environment, tick

    report = tick(services_from_environment())
    print(report.summary())
    return 1 if report.query_errors else 0


def _status(output: str, out: TextIO) -> int:
    from monitors import health
    from monitors.bootstrap import services_from_environment
    from monitors.detections import enabled

    services = services_from_environment()
    found = health.read(
        services.store,
        services.settings.workspace_id,
        enabled(services.settings.disabled_detections),
        datetime.now(UTC),
    )
    if output == "json":
        json.dump(found.as_json(), out, indent=2)
        out.write("\n")
    else:
        _status_table(found, out)
    return 1 if health.problems(found) else 0


def _doctor(send_test_card: bool, write_state: bool, out: TextIO) -> int:
    from monitors import doctor
    from monitors.bootstrap import build_services

    def connect(settings: Any) -> doctor.Probes:
        services = build_services(settings)
        return doctor.Probes(logs=services.logs, store=services.store, teams=services.teams)

    checks = doctor.run(os.environ, connect, datetime.now(UTC), send_test_card, write_state)
    text, passed = doctor.report(checks)
    out.write(text + "\n")
    return 0 if passed else 1


def _status_table(found: Any, out: TextIO) -> None:
    from monitors.health import problems

    def stamp(value: datetime | None) -> str:
        return value.isoformat(timespec="seconds") if value else "never"

    lease = (
        f"held by {found.lease_holder} until {stamp(found.lease_expires_at)}"
        if found.lease_holder
        else "free"
    )
    lines = [
        f"last tick       {stamp(found.last_tick_at)} ({found.last_outcome or 'none recorded'})",
        f"last success    {stamp(found.last_success_at)}",
        f"failing ticks   {found.consecutive_failures}",
        f"tick lease      {lease}",
        f"alerts waiting  {found.outbox_waiting}",
        f"undeliverable   {found.undeliverable}",
        "watermarks:",
    ]
    for lag in found.detections:
        lines.append(f"  {lag.detection:26} {stamp(lag.ingested_up_to):26} {lag.text}")
    issues = problems(found)
    lines += ["problems:", *(f"  - {issue}" for issue in issues)] if issues else ["healthy"]
    out.write("\n".join(lines) + "\n")


def _replay(
    logdir: Path, break_glass: list[str], groups: list[str], output: str, out: TextIO, err: TextIO
) -> int:
    try:  # the devstack's query engine: a development requirement, not shipped with the app
        from devstack.local_reader import LocalLogsReader
        from devstack.loganalytics import LogAnalyticsServer
    except ModuleNotFoundError as error:
        raise ReplayError(
            f"replay runs the detections on the local query engine, and {error.name} is not "
            "installed: it comes with the development requirements (make install, or "
            "pip install -r requirements-dev.txt)"
        ) from error
    from monitors import exports
    from monitors.watermark import Window

    accounts = _break_glass_accounts(break_glass)
    break_glass_groups = _break_glass_groups(groups)
    try:
        discovery = exports.discover(logdir)
    except exports.ExportError as error:
        raise ReplayError(str(error)) from error
    now = datetime.now(UTC)
    ingested_at = now - timedelta(minutes=10)
    with tempfile.TemporaryDirectory(prefix="replay-") as scratch:
        engine = LogAnalyticsServer(
            "replay",
            state_dir=Path(scratch),
            memory_limit=ENGINE_MEMORY_LIMIT,
            temp_directory=Path(scratch) / "spill",
            threads=ENGINE_THREADS,
        )
        report = exports.ReadReport()
        for table, path in sorted(discovery.files.items()):
            progress = _Progress(path, err)
            try:
                rows = exports.read_export(
                    path, table, report, on_progress=progress, columns=_columns_read(table), dynamic_text=True
                )
                for batch in _batches(rows, INGEST_BATCH):
                    _ingest(engine, table, batch, ingested_at, report, path)
            except exports.ExportError as error:
                raise ReplayError(str(error)) from error
            finally:
                progress.done()
        # Every exported row counts as ingested in one window; TimeGenerated is not bounded.
        window = Window(
            start=ingested_at - timedelta(minutes=1), end=now, earliest_time=datetime(1970, 1, 1, tzinfo=UTC)
        )
        # An export has no ingestion history and no "now" of its own: source-silent's silence part and
        # break-glass-weak-method's drill part do not apply to it (README, Offline replay). It holds
        # every row it ever will, so no refusal waits for a person's step-up to arrive.
        context = Context(
            break_glass=accounts,
            break_glass_groups=break_glass_groups,
            drill_check_due=False,
            silence_hours=tuple((table, 0) for table in WATCHED_TABLES),
            step_up_settle=timedelta(0),
        )
        reader = LocalLogsReader(engine)
        try:
            runs = [_run(detection, reader, window, context, now) for detection in DETECTIONS]
        finally:
            engine.stop()
    findings = [f for run in runs for f in run.findings]
    skipped = report.rows_skipped + sum(run.skipped for run in runs)
    covered = _coverage(report)
    _what_replay_did(report, covered, runs, err)
    for path in discovery.ignored:
        print(f"ignored {path.name}: not named after a supported table", file=err)
    if skipped:
        print(f"skipped {skipped} malformed rows: {'; '.join(report.examples()[:5])}", file=err)
    err.flush()  # the report, then the alerts: the order a person reads them in at a terminal
    if output == "json":
        json.dump([_alert_json(f) for f in findings], out, indent=2)
        out.write("\n")
    else:
        _table(findings, [c.detection for c in covered if not c.complete], out)
    return 0


def _coverage(report: Any) -> list[coverage.Coverage]:
    """Per detection, what the exports let it read (a table no export holds is absent)."""
    exported = {file.table: file.columns for file in report.files}
    return [coverage.coverage(detection, needs, exported) for detection, needs in _needs().items()]


def _what_replay_did(report: Any, covered: list[coverage.Coverage], runs: list[Any], err: TextIO) -> None:
    """On stderr, so that `--format json` keeps stdout to the alerts: rows read and skipped per
    export, then per detection whether it could run on them, and if not, why."""
    from monitors.exports import TABLES

    read = {file.table for file in report.files}
    lines = ["read:", *(f"  {line}" for line in report.lines())]
    lines += [f"  {table}: no export" for table in TABLES if table not in read]
    names = {file.table: file.path.name for file in report.files}
    width = max(len(c.detection) for c in covered)
    lines.append("detections:")
    for found, run in zip(covered, runs, strict=True):
        line = f"  {found.detection:{width}}  {found.text(names)}"
        if run.skipped:
            line += f" ({run.skipped} result rows skipped)"
        lines.append(line)
    if not all(found.complete for found in covered):
        lines.append(
            "  (incomplete: the query ran without what is listed; findings that need it cannot appear)"
        )
    err.write("\n".join(lines) + "\n")


def _run(detection: Any, reader: Any, window: Any, context: Context, now: datetime) -> Any:
    from monitors.adapters.log_analytics import QueryFailed
    from monitors.pipeline import run_detection

    try:
        return run_detection(detection, reader, window, context, now)
    except QueryFailed as error:
        raise ReplayError(f"{detection.id}: the local query engine failed: {error}") from error


def _columns_read(table: str) -> frozenset[str]:
    """The columns of `table` that some detection's KQL names: the only ones replay reads and
    stores (a portal AzureActivity row is ~7 KB, most of it JSON no detection looks at)."""
    return frozenset().union(*(needs.get(table, frozenset()) for needs in _needs().values()))


def _needs() -> dict[str, dict[str, frozenset[str]]]:
    """Per detection (in catalogue order), the columns its KQL names in each table replay reads."""
    from monitors.exports import SCHEMA

    return {detection.id: coverage.named_columns(detection.query, SCHEMA) for detection in DETECTIONS}


def _break_glass_accounts(cli_values: list[str]) -> BreakGlassAccounts:
    setting = os.environ.get("BREAK_GLASS_ACCOUNTS", "")
    if setting.strip().lower() == NONE:  # the app's explicit "no account", not an account
        setting = ""
    raw = ",".join([*cli_values, setting])
    try:
        return parse_break_glass(raw)
    except ValueError as error:
        raise ReplayError(f"break-glass accounts {error}") from error


def _break_glass_groups(cli_values: list[str]) -> frozenset[str]:
    """--break-glass-group values and the BREAK_GLASS_GROUPS setting together, like the accounts."""
    setting = os.environ.get("BREAK_GLASS_GROUPS", "")
    if setting.strip().lower() == NONE:
        setting = ""
    try:
        return parse_group_ids(",".join([*cli_values, setting]))
    except ValueError as error:
        raise ReplayError(f"break-glass groups {error}") from error


def _ingest(
    engine: Any, table: str, rows: list[dict[str, Any]], at: datetime, report: Any, path: Path
) -> None:
    try:
        engine.ingest_typed(table, rows, at)
    except ValueError:
        for row in rows:  # find the offenders; keep the rest
            try:
                engine.ingest_typed(table, [row], at)
            except ValueError as error:
                report.skip(path, f"{table}: {error}")


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _alert_json(finding: Any) -> dict[str, Any]:
    return {
        "detection": finding.detection,
        "severity": finding.severity.value,
        "user_id": finding.principal.user_id,
        "user_principal_name": finding.principal.user_principal_name,
        "headline": finding.headline,
        "first_time": finding.first_time.isoformat(),
        "last_time": finding.last_time.isoformat(),
        "facts": dict(finding.facts),
        "event_ids": list(finding.event_ids),
    }


def _table(findings: list[Any], incomplete: list[str], out: TextIO) -> None:
    """The alerts; "No alerts." only when every detection could read all it reads."""
    if not findings and incomplete:
        out.write(
            f"No alerts in what the exports hold, but {len(incomplete)} of {len(DETECTIONS)} detections"
            " could not see everything they read (see the report above, on stderr).\n"
        )
        return
    if not findings:
        out.write("No alerts.\n")
        return
    header = ("DETECTION", "SEVERITY", "PRINCIPAL", "EVENTS", "FIRST", "LAST")
    rows = [
        (f.detection, f.severity.value, f.principal.label, str(len(f.event_ids)),
         f.first_time.isoformat(timespec="seconds"), f.last_time.isoformat(timespec="seconds"))
        for f in findings
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
        )


class _Progress:
    """A one-line progress bar on stderr, only for large files read by a person at a terminal."""

    MIN_BYTES = 20 * 1024 * 1024

    def __init__(self, path: Path, err: TextIO) -> None:
        self.err, self.name = err, path.name
        self.enabled = err.isatty() and path.stat().st_size >= self.MIN_BYTES
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        percent = done * 100 // max(total, 1)
        if self.enabled and percent != self.last:
            self.last = percent
            bar = "#" * (percent // 4)
            self.err.write(f"\r{self.name}: [{bar:<25}] {percent:3d}%")
            self.err.flush()

    def done(self) -> None:
        if self.enabled and self.last >= 0:
            self.err.write("\n")
