"""What the watchdog's query (infra/modules/watchdog.bicep) counts, on the app's own log line.

The rule fires when the query returns no row in its window, so it must return one row per
successful tick and nothing else. The rule skips Azure's creation-time check of the query, and
no Azure is reachable here, so three things are checked offline:
- Microsoft's Kusto language service (tools/kqlcheck.mjs) accepts it against the documented
  AppTraces columns, and rejects a misspelt column (so the check can fail);
- the devstack's KQL engine (duckdb-kql) runs it over lines made by TickReport.summary(), the
  code that writes the line run_tick logs;
- host.json lets that line reach Application Insights unsampled.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb_kql
import pytest

from monitors.tick import TickReport
from tests.test_kql_files import run_checker

from .bicep_ast import REPO, template

QUERY = template("modules/watchdog.bicep")["variables"]["successfulTicks"]["value"]

# AppTraces columns and their KQL types, from Microsoft's Azure Monitor table reference
# (learn.microsoft.com/azure/azure-monitor/reference/tables/apptraces; public repository
# MicrosoftDocs/azure-reference-other, azure-monitor-ref/tables/includes/apptraces-include.md).
APPTRACES = [
    ("AppRoleInstance", "string"),
    ("AppRoleName", "string"),
    ("AppVersion", "string"),
    ("_BilledSize", "real"),
    ("ClientBrowser", "string"),
    ("ClientCity", "string"),
    ("ClientCountryOrRegion", "string"),
    ("ClientIP", "string"),
    ("ClientModel", "string"),
    ("ClientOS", "string"),
    ("ClientStateOrProvince", "string"),
    ("ClientType", "string"),
    ("IKey", "string"),
    ("_IsBillable", "string"),
    ("ItemCount", "int"),
    ("Measurements", "dynamic"),
    ("Message", "string"),
    ("OperationId", "string"),
    ("OperationName", "string"),
    ("ParentId", "string"),
    ("Properties", "dynamic"),
    ("ReferencedItemId", "string"),
    ("ReferencedType", "string"),
    ("ResourceGUID", "string"),
    ("_ResourceId", "string"),
    ("SDKVersion", "string"),
    ("SessionId", "string"),
    ("SeverityLevel", "int"),
    ("SourceSystem", "string"),
    ("_SubscriptionId", "string"),
    ("SyntheticSource", "string"),
    ("TenantId", "string"),
    ("TimeGenerated", "datetime"),
    ("Type", "string"),
    ("UserAccountId", "string"),
    ("UserAuthenticatedId", "string"),
    ("UserId", "string"),
]


# --------------------------------------------------------------------------------------------
# Microsoft's Kusto language service
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def language_service_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """Diagnostics per file name: the watchdog query, and a copy with a misspelt column."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: install Node 20+ and run `make install`")
    root = tmp_path_factory.mktemp("watchdog-kql")
    schema = root / "tables.json"
    schema.write_text(json.dumps({"AppTraces": [list(column) for column in APPTRACES]}))
    (root / "watchdog.kql").write_text(QUERY)
    (root / "misspelt.kql").write_text(QUERY.replace("parse_json(Message)", "parse_json(Messages)"))
    report = run_checker(node, root, schema=schema).report
    return {Path(entry["file"]).name: entry["diagnostics"] for entry in report["files"]}


def test_query_is_valid_kql_for_apptraces(language_service_report: dict[str, list[dict]]) -> None:
    errors = [d for d in language_service_report["watchdog.kql"] if d["severity"] == "error"]
    assert not errors, errors


def test_language_service_rejects_a_misspelt_column(language_service_report: dict[str, list[dict]]) -> None:
    errors = [d for d in language_service_report["misspelt.kql"] if d["severity"] == "error"]
    assert any("Messages" in d["message"] for d in errors), errors


# --------------------------------------------------------------------------------------------
# What it counts, on the devstack's KQL engine
# --------------------------------------------------------------------------------------------


def rows_counted(*messages: str) -> int:
    con = duckdb_kql.connect(":memory:")
    try:
        con.execute('CREATE TABLE AppTraces ("TimeGenerated" TIMESTAMP, "Message" VARCHAR)')
        con.executemany("INSERT INTO AppTraces VALUES (now(), ?)", [(m,) for m in messages])
        sql = str(duckdb_kql.to_sql(QUERY, schema={"AppTraces": ["TimeGenerated", "Message"]}))
        return len(con.execute(sql).fetchall())
    finally:
        con.close()


def test_a_clean_tick_counts() -> None:
    assert rows_counted(TickReport().summary()) == 1


def test_a_tick_with_work_and_delivery_trouble_still_counts() -> None:
    # Teams failing is the app's own business (it retries); the tick itself ran and read its data.
    report = TickReport(rows={"break-glass-use": 2}, findings=2, alerts_stored=2, delivery_failures=1)
    assert rows_counted(report.summary()) == 1


@pytest.mark.parametrize(
    "message",
    [
        TickReport(query_errors=["break-glass-use: QueryFailed: 403"]).summary(),
        TickReport(stood_back="lost the lease mid-tick: held by tick x").summary(),
        # the other lines run_tick and the lease log; none is a tick summary
        "another tick is running, this one stands back: held by tick x until 2026-01-01T00:04:00",
        "tick stopped: lost the lease mid-tick",
        json.dumps({"event": "delivery", "query_errors": [], "stood_back": None}),
        # a summary without its error list is not a clean one
        json.dumps({"event": "tick", "stood_back": None}),
    ],
    ids=["query-error", "stood-back", "stand-back-warning", "stopped", "other-event", "no-error-list"],
)
def test_anything_else_does_not_count(message: str) -> None:
    assert rows_counted(message) == 0


def test_counts_one_row_per_clean_tick() -> None:
    clean = TickReport().summary()
    failed = TickReport(query_errors=["x"]).summary()
    assert rows_counted(clean, failed, clean, "unrelated trace") == 2


# --------------------------------------------------------------------------------------------
# The line reaches Application Insights
# --------------------------------------------------------------------------------------------

LOG_LEVELS = ["Trace", "Debug", "Information", "Warning", "Error", "Critical", "None"]


def test_host_json_lets_the_tick_line_reach_app_insights() -> None:
    logging = json.loads((REPO / "host.json").read_text())["logging"]
    levels = logging["logLevel"]
    # A Python function's own logs have the category Function.<name>.User; the most specific
    # logLevel key that matches it decides.
    category = "Function.monitor_tick.User"
    matching = [k for k in levels if k != "default" and (category == k or category.startswith(k + "."))]
    level = levels[max(matching, key=len)] if matching else levels["default"]
    assert LOG_LEVELS.index(level) <= LOG_LEVELS.index("Information"), level
    # Sampling would drop some tick lines and fire the watchdog while the app works.
    assert logging["applicationInsights"]["samplingSettings"]["isEnabled"] is False
