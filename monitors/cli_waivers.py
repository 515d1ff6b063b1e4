"""`python -m monitors waivers ...`: accepted exceptions, managed by people at a terminal.

add     record a waiver: detection, principal, owner, approver, reason, expiry
list    the active waivers, soonest to end first (--all: ended ones too)
revoke  end a waiver now; the account's next finding alerts again
audit   every change (add, replace, revoke, reminder), newest first

Runs with the app's settings in the environment (the state tables and WAIVER_MAX_DAYS), under
your own Azure sign-in. A refused change exits 2 with the reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from monitors.waivers import Waiver, WaiverBook, WaiverRefused, expiry_from

REASON_COLUMN = 60  # the table view shortens reasons; --format json has them whole


def add_commands(subparsers: Any) -> None:
    """Add `waivers add|list|revoke|audit` to the `python -m monitors` parser."""
    waivers = subparsers.add_parser(
        "waivers",
        help="accepted exceptions: add, list, revoke, audit",
        description=__doc__.split("\n\n")[0],
    )
    actions = waivers.add_subparsers(dest="waiver_command", required=True)

    add = actions.add_parser("add", help="record a waiver (break-glass-use cannot be waived)")
    add.add_argument("--detection", required=True, help="e.g. user-arm-write")
    add.add_argument("--principal", required=True, help="object id (preferred) or UPN")
    add.add_argument("--owner", required=True, help="who answers for the account while it is waived")
    add.add_argument("--approver", required=True, help="who approved the exception (not you)")
    add.add_argument("--reason", required=True, help="why it is accepted, and until what")
    add.add_argument("--by", required=True, help="your name: who records the waiver")
    expiry = add.add_mutually_exclusive_group(required=True)
    expiry.add_argument("--expires", metavar="YYYY-MM-DD", help="ends at 00:00 UTC that day")
    expiry.add_argument("--days", type=int, metavar="N", help="ends N days from now")
    add.add_argument("--replace", action="store_true", help="renew: replace an active waiver")
    add.add_argument("--format", choices=["json", "table"], default="table")

    listing = actions.add_parser("list", help="active waivers, soonest to end first")
    listing.add_argument("--all", action="store_true", help="include expired and revoked waivers")
    listing.add_argument("--format", choices=["json", "table"], default="table")

    revoke = actions.add_parser("revoke", help="end a waiver now")
    revoke.add_argument("--detection", required=True)
    revoke.add_argument("--principal", required=True, help="as recorded (see `waivers list`)")
    revoke.add_argument("--by", required=True, help="your name")
    revoke.add_argument("--reason", required=True, help="why it ends early")

    audit = actions.add_parser("audit", help="every change to the waivers, newest first")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--format", choices=["json", "table"], default="table")


def run(args: argparse.Namespace) -> int:
    """Run one `waivers` command; SettingsError is left to the caller (it exits 2 too)."""
    from monitors.bootstrap import services_from_environment

    out, err = sys.stdout, sys.stderr
    services = services_from_environment()
    book = WaiverBook(services.store)
    now = datetime.now(UTC)
    try:
        if args.waiver_command == "add":
            waiver = book.add(
                detection=args.detection, principal=args.principal, owner=args.owner, reason=args.reason,
                approver=args.approver, created_by=args.by, replace_active=args.replace, now=now,
                expires_at=expiry_from(expires=args.expires, days=args.days, now=now),
                max_days=services.settings.waiver_max_days,
            )  # fmt: skip
            _show([waiver], now, args.format, out)
        elif args.waiver_command == "list":
            _show(book.list(now, include_inactive=args.all), now, args.format, out)
        elif args.waiver_command == "revoke":
            waiver = book.revoke(args.detection, args.principal, args.by, args.reason, now=now)
            _show([waiver], now, "table", out)
        else:
            _show_audit(book.audit(args.limit), args.format, out)
    except WaiverRefused as refused:
        print(f"refused: {refused}", file=err)
        return 2
    return 0


def waiver_json(waiver: Waiver, now: datetime) -> dict[str, Any]:
    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat(timespec="seconds") if moment else None

    return {
        "detection": waiver.detection,
        "principal": waiver.principal,
        "status": waiver.status(now),
        "owner": waiver.owner,
        "approver": waiver.approver,
        "reason": waiver.reason,
        "created_by": waiver.created_by,
        "created_at": iso(waiver.created_at),
        "expires_at": iso(waiver.expires_at),
        "revoked_at": iso(waiver.revoked_at),
        "revoked_by": waiver.revoked_by,
        "revoke_reason": waiver.revoke_reason,
        "reminded_at": iso(waiver.reminded_at),
    }


def _show(waivers: list[Waiver], now: datetime, output: str, out: TextIO) -> None:
    if output == "json":
        json.dump([waiver_json(w, now) for w in waivers], out, indent=2)
        out.write("\n")
        return
    if not waivers:
        out.write("No waivers.\n")
        return
    header = ("DETECTION", "PRINCIPAL", "STATUS", "ENDS", "OWNER", "APPROVER", "REASON")
    rows = [
        (w.detection, w.principal, w.status(now), w.expires_at.strftime("%Y-%m-%d %H:%M UTC"), w.owner,
         w.approver, _short(w.reason))
        for w in waivers
    ]  # fmt: skip
    _columns([header, *rows], out)


def _show_audit(entries: list[dict[str, Any]], output: str, out: TextIO) -> None:
    if output == "json":
        json.dump(entries, out, indent=2, default=lambda v: v.isoformat(timespec="seconds"))
        out.write("\n")
        return
    if not entries:
        out.write("No changes recorded.\n")
        return
    header = ("AT", "BY", "ACTION", "DETECTION", "PRINCIPAL", "DETAILS")
    rows = [
        (e["at"].strftime("%Y-%m-%d %H:%M:%S UTC"), e["by"], e["action"], e["detection"], e["principal"],
         _short("; ".join(f"{k}: {v}" for k, v in e["details"].items())))
        for e in entries
    ]  # fmt: skip
    _columns([header, *rows], out)


def _short(text: str) -> str:
    return text if len(text) <= REASON_COLUMN else text[: REASON_COLUMN - 1] + "…"


def _columns(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        out.write(line.rstrip() + "\n")
