"""`python -m monitors alerts ...`: the alert history at a terminal.

list     newest first, with the history page's filters; --after ALERT_ID for the next page
show     one alert: facts, runbook, every event, delivery and status history
ack      acknowledge an alert (--by NAME required, --note optional)
resolve  resolve an alert (--by NAME and --note required)
reindex  write every alert's index copies again (once, after upgrading from a version whose
         principal index had a partition per principal; docs/oncall.md)

Runs with the app's settings in the environment, under your own Azure sign-in. Values from
log rows are printed with control characters made visible (an ANSI escape in a user agent
cannot restyle your terminal). Exit status: 0 done, 1 no such alert or changed meanwhile,
2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from monitors import history
from monitors.adapters.table_store import StaleWrite
from monitors.history import FilterError, InputError
from monitors.history_store import STATUSES, HistoryStore, StatusConflict

HEADLINE_COLUMN = 60  # the table shortens headlines; `show` and --format json have them whole


def add_commands(subparsers: Any) -> None:
    """Add `alerts list|show|ack|resolve|reindex` to the `python -m monitors` parser."""
    alerts = subparsers.add_parser(
        "alerts", help="the alert history: list, show, ack, resolve", description=__doc__.split("\n\n")[0]
    )
    actions = alerts.add_subparsers(dest="alerts_command", required=True)

    listing = actions.add_parser("list", help="alerts, newest first")
    listing.add_argument("--detection", help="e.g. user-arm-write")
    listing.add_argument("--severity", choices=history.SEVERITIES)
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--principal", help="object id or UPN, any case")
    listing.add_argument("--since", metavar="ISO8601", help="raised at or after (a date is 00:00 UTC)")
    listing.add_argument("--until", metavar="ISO8601", help="raised at or before (a date includes that day)")
    listing.add_argument("--after", metavar="ALERT_ID", help="continue after this alert (the next page)")
    listing.add_argument("--limit", type=int, default=history.DEFAULT_LIMIT, help="1 to 200")
    listing.add_argument("--format", choices=["table", "json"], default="table")

    show = actions.add_parser("show", help="one alert with everything known about it")
    show.add_argument("alert_id")
    show.add_argument("--format", choices=["table", "json"], default="table")

    for name, verb in (("ack", "acknowledge"), ("resolve", "resolve")):
        change = actions.add_parser(name, help=f"{verb} an alert")
        change.add_argument("alert_id")
        change.add_argument("--by", required=True, metavar="NAME", help="your name, recorded with the change")
        change.add_argument(
            "--note",
            default="",
            help="what was found and done" + (" (required)" if name == "resolve" else ""),
        )
        change.add_argument("--format", choices=["table", "json"], default="table")

    actions.add_parser("reindex", help="write every alert's index copies again (after an upgrade)")


def run(
    args: argparse.Namespace,
    *,
    store: HistoryStore | None = None,
    now: datetime | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run one `alerts` command. `store` defaults to the configured state tables."""
    out, err = out or sys.stdout, err or sys.stderr
    if store is None:
        from monitors.bootstrap import services_from_environment

        store = HistoryStore(services_from_environment().store)
    from monitors.detections import DETECTIONS

    try:
        if args.alerts_command == "list":
            return _list(store, args, [d.id for d in DETECTIONS], out)
        if args.alerts_command == "reindex":
            out.write(f"{store.reindex()} alerts indexed\n")
            return 0
        if not history.ALERT_ID.match(args.alert_id):
            raise InputError("an alert id looks like 8227921599999-818c8008c6d3")
        if args.alerts_command == "show":
            return _show(store, args.alert_id, args.format, out, err)
        return _change(store, args, now or datetime.now(UTC), out, err)
    except FilterError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=err)
        return 2
    except InputError as error:
        print(f"error: {error}", file=err)
        return 2


def _list(store: HistoryStore, args: argparse.Namespace, detections: list[str], out: TextIO) -> int:
    params = {
        name: str(value)
        for name in (*history.FILTER_NAMES, *history.PAGING_NAMES)
        if (value := getattr(args, name, None)) not in (None, "")
    }
    filters = history.parse_filters(params, detections)
    page = store.query(filters.query())
    rows = [history.summary_json(row) for row in page.rows]
    if args.format == "json":
        json.dump({"alerts": rows, "next": page.next_after, "filters": filters.as_json()}, out, indent=2)
        out.write("\n")
        return 0
    if not rows:
        out.write("No alerts.\n")
        return 0
    header = (
        "RAISED (UTC)",
        "SEVERITY",
        "DETECTION",
        "PRINCIPAL",
        "STATUS",
        "EVENTS",
        "ALERT ID",
        "HEADLINE",
    )
    table = [
        (r["created_at"][:19].replace("T", " "), r["severity"], r["detection"], terminal(r["principal"]),
         r["status"], str(r["events"]), r["alert_id"], _shorten(terminal(r["headline"]), HEADLINE_COLUMN))
        for r in rows
    ]  # fmt: skip
    _write_table(header, table, out)
    if page.next_after:
        out.write(f"\nMore: --after {page.next_after}\n")
    return 0


def _show(store: HistoryStore, alert_id: str, output: str, out: TextIO, err: TextIO) -> int:
    found = store.get(alert_id)
    if found is None:
        print(f"error: no alert {alert_id}", file=err)
        return 1
    entity, alert = found
    detail = history.detail_json(entity, alert)
    if output == "json":
        json.dump(detail, out, indent=2)
        out.write("\n")
        return 0
    from monitors.detections import DETECTIONS

    detection = next((d for d in DETECTIONS if d.id == alert.finding.detection), None)
    lines = [
        f"{detail['severity'].upper()} · {detection.title if detection else detail['detection']}"
        f" · {detail['status']}",
        terminal(detail["headline"]),
        f"alert {alert_id} · {detail['detection']} · raised {detail['created_at']}",
    ]
    if detail["waiver"]:
        lines.append(f"waived: {terminal(detail['waiver'])}")
    lines += ["", "Facts", f"  Principal: {terminal(detail['principal'])}"]
    lines += [f"  {terminal(name)}: {terminal(value)}" for name, value in alert.finding.facts]
    if detection and detection.runbook:
        lines += ["", "What to do"] + [f"  {n}. {step}" for n, step in enumerate(detection.runbook, start=1)]
    events = alert.finding.events
    lines += [
        "",
        f"Events ({len(events)} listed of {len(alert.finding.event_ids)}, oldest first; ! = flagged)",
    ]
    for event in events:
        fields = " · ".join(f"{terminal(k)}: {terminal(v)}" for k, v in event.fields)
        mark = "!" if event.flagged else " "
        lines.append(f" {mark} {event.time.isoformat(timespec='seconds')} {event.source} {fields}")
    lines += ["", "Delivery to Teams", f"  {detail['delivery']}, {detail['delivery_attempts']} attempts"]
    if detail["last_delivery_error"]:
        lines.append(f"  last error: {terminal(detail['last_delivery_error'])}")
    for item in detail["delivery_log"]:
        error = f" {terminal(str(item.get('error')))}" if item.get("error") else ""
        lines.append(f"  {item.get('at')} {item.get('result')}{error}")
    lines += ["", "Status history"]
    for item in detail["status_history"]:
        via = f" ({item['via']})" if item.get("via") else ""
        who = terminal(str(item.get("by")))
        lines.append(f"  {item.get('at')} {who}{via}: {item.get('from')} -> {item.get('to')}")
        if item.get("note"):
            lines += [f"    {terminal(line)}" for line in str(item["note"]).split("\n")]
    if not detail["status_history"]:
        lines.append("  no changes yet")
    out.write("\n".join(lines) + "\n")
    return 0


def _change(store: HistoryStore, args: argparse.Namespace, now: datetime, out: TextIO, err: TextIO) -> int:
    target = "acknowledged" if args.alerts_command == "ack" else "resolved"
    by = history.clean_name(args.by, "--by")
    note = history.clean_note(args.note, required=target == "resolved")
    allowed_from = [status for status, targets in history.TRANSITIONS.items() if target in targets]
    try:
        updated = store.set_status(
            args.alert_id, target, by=by, note=note, now=now, via="cli", allowed_from=allowed_from
        )
    except KeyError:
        print(f"error: no alert {args.alert_id}", file=err)
        return 1
    except StatusConflict as conflict:
        print(f"error: the alert is {conflict.current}; it cannot be {target} now", file=err)
        return 1
    except StaleWrite:  # someone changed it between our read and our write
        print("error: the alert changed meanwhile; run the command again", file=err)
        return 1
    if args.format == "json":
        json.dump(history.summary_json(updated), out, indent=2)
        out.write("\n")
    else:
        out.write(f"{args.alert_id} {target} by {terminal(by)}\n")
    return 0


# --------------------------------------------------------------------------- output


def terminal(value: str) -> str:
    """Text safe to print: control and format characters (ANSI escapes, bidi overrides) made visible."""
    return "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in value)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _write_table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
        )
