"""docs/images/history.png: the history page with two weeks of realistic alerts, as on-call sees it.

    .venv/bin/python tools/history_screenshot.py [--out docs/images/history.png]

Everything goes through the production path on a throw-away devstack: log rows into the local
Log Analytics API, one real tick per simulated day (monitors.bootstrap.tick with that day's
clock), a waiver through monitors.waivers, acknowledgements through HistoryStore, the page served
by function_app through devstack/functions_host.py and shot with Debian's Chromium.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devstack.functions_host import FunctionsHost  # noqa: E402
from devstack.stack import Devstack  # noqa: E402
from monitors.detections.break_glass_use import BG_ID, BG_UPN, FIDO2, PASSWORD, sign_in_row  # noqa: E402
from monitors.detections.user_arm_write import arm_row  # noqa: E402

DAYS = 14
# (day offset, new user accounts doing ARM writes that day); day 0 is today.
WRITERS = {
    13: ["megan.bowen", "svc-backup"],
    12: ["alex.wilber"],
    11: ["ci-deploy", "lee.gu"],
    10: [],
    9: ["svc-terraform", "diego.siciliani", "isaiah.langer"],
    8: ["grady.archie"],
    7: ["lynne.robbins"],
    6: ["svc-reports", "nestor.wilke"],
    5: [],
    4: ["joni.sherman", "pradeep.gupta"],
    3: ["johanna.lorenz"],
    2: ["svc-dataload", "miriam.graham"],
    1: ["patti.fernandez"],
    0: ["adele.vance", "svc-etl"],
}
OPERATIONS = [
    "MICROSOFT.RESOURCES/DEPLOYMENTS/WRITE",
    "MICROSOFT.WEB/SITES/WRITE",
    "MICROSOFT.STORAGE/STORAGEACCOUNTS/WRITE",
    "MICROSOFT.KEYVAULT/VAULTS/WRITE",
    "MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE",
]
CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"


def claims(upn: str, mfa: bool) -> dict[str, str]:
    return {
        "appid": CLI,
        "http://schemas.microsoft.com/claims/authnmethodsreferences": "pwd,mfa" if mfa else "pwd",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": upn,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "history.png")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed: run `make install-browser`")
    from playwright.sync_api import sync_playwright

    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="history-shot-") as scratch, Devstack(Path(scratch)) as stack:
        os.environ.update(stack.app_settings(BREAK_GLASS_ACCOUNTS=BG_ID, STATE_TABLE_PREFIX="shot"))
        from monitors.bootstrap import services_from_environment, tick
        from monitors.history_store import HistoryQuery, HistoryStore
        from monitors.waivers import WaiverBook

        services = services_from_environment()
        start = now - timedelta(days=DAYS - 1, hours=now.hour - 1)
        tick(services, start - timedelta(hours=1))  # the first tick sets the watermarks
        WaiverBook(services.store).add(
            detection="user-arm-write",
            principal="svc-backup@contoso.com",
            owner="Backup platform team",
            reason="Nightly restore test signs in as a user until it moves to a managed identity (CHG-4471)",
            approver="Ines Berger (CISO office)",
            created_by="Kari Nordmann",
            expires_at=now + timedelta(days=5),
            now=start - timedelta(minutes=30),
            max_days=60,
        )
        for day in range(DAYS - 1, -1, -1):
            moment = now - timedelta(days=day) if day else now - timedelta(minutes=20)
            moment = moment.replace(hour=7 + (day * 5) % 11, minute=(day * 17) % 60) if day else moment
            activity = [
                {
                    **arm_row(
                        f"w-{day}-{n}",
                        f"{name}@contoso.com",
                        claims(f"{name}@contoso.com", mfa=n % 2 == 0),
                        OperationNameValue=OPERATIONS[(day + n) % len(OPERATIONS)],
                    ),
                    "TimeGenerated": (moment - timedelta(minutes=30 + n)).isoformat(),
                }
                for n, name in enumerate(WRITERS[day])
            ]
            signins = []
            if day == 9:  # the quarterly drill
                signins.append({**sign_in_row("drill", BG_ID, BG_UPN, "0", FIDO2)})
            if day == 3:  # a password spray against the break-glass account
                signins += [sign_in_row(f"spray-{n}", BG_ID, BG_UPN, "50126", PASSWORD) for n in range(6)]
            if day == 0:
                signins.append(sign_in_row("today", BG_ID, BG_UPN, "0", FIDO2))
            for row in signins:
                row["TimeGenerated"] = (moment - timedelta(minutes=25)).isoformat()
            ingested = (moment - timedelta(minutes=10)).isoformat()
            if activity:
                stack.log_analytics.ingest(
                    "AzureActivity", [{**r, "_IngestionTime": ingested} for r in activity]
                )
            if signins:
                stack.log_analytics.ingest("SigninLogs", [{**r, "_IngestionTime": ingested} for r in signins])
            tick(services, moment)

        history = HistoryStore(services.store)
        for row in history.query(HistoryQuery(limit=200)).rows:
            _triage(history, row, now)

        function_app = importlib.import_module("function_app")
        with FunctionsHost(function_app.app, Path(scratch)) as host, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-quic"]
            )
            page = browser.new_context(
                ignore_https_errors=True, viewport={"width": 1280, "height": 800}
            ).new_page()
            page.goto(host.url_for("alerts?limit=12", with_key=True))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    print(f"wrote {args.out}")
    return 0


def _triage(history: Any, row: dict[str, Any], now: datetime) -> None:
    """What on-call did: older alerts resolved, recent ones acknowledged, today's still new."""
    age = now - row["CreatedAt"]
    if row["Status"] != "new" or age < timedelta(hours=20):
        return
    upn = row["Principal"]
    if row["Detection"] == "break-glass-use":
        by, note = (
            "Kari Nordmann",
            (
                "Quarterly break-glass drill DR-2026-Q4, confirmed with the account owners."
                if age > timedelta(days=5)
                else "Password spray from 2 IPs, blocked in CA; account uses FIDO2 only."
            ),
        )
    elif upn.startswith("svc-"):
        by, note = (
            "Ola Hansen",
            "Automation in a user object: migration to a workload identity tracked in INC-2231.",
        )
    else:
        by, note = "Ola Hansen", f"Confirmed with {upn.split('@')[0]}; MFA registered."
    status = "resolved" if age > timedelta(days=3) else "acknowledged"
    history.set_status(row["RowKey"], status, by=by, note=note, now=row["CreatedAt"] + timedelta(hours=2))


if __name__ == "__main__":
    raise SystemExit(main())
