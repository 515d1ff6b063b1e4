"""The local Log Analytics query API, driven by the real LogsQueryClient and a real MI credential."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb_kql
import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.monitor.query import LogsQueryClient, LogsQueryPartialResult, LogsQueryResult, LogsQueryStatus
from duckdb_kql.errors import KqlSyntaxError

from devstack.identity import IdentityEndpoint, TokenIssuer
from devstack.loganalytics import AUDIENCE, LogAnalyticsServer, QueryRequest, rewrite_ingestion_time

REPO = Path(__file__).resolve().parents[2]
WORKSPACE_ID = "6f1d2b9c-5a7e-4c1b-9d3f-00000000beef"
MAX_ROWS = 20
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
AROUND_T0 = (T0 - timedelta(days=7), T0 + timedelta(days=1))


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("devstack")


@pytest.fixture(scope="module")
def issuer(state_dir: Path) -> TokenIssuer:
    return TokenIssuer(state_dir)


@pytest.fixture(scope="module")
def identity(issuer: TokenIssuer) -> Iterator[IdentityEndpoint]:
    endpoint = IdentityEndpoint(issuer).start()
    yield endpoint
    endpoint.stop()


@pytest.fixture(scope="module")
def la(state_dir: Path, issuer: TokenIssuer) -> Iterator[LogAnalyticsServer]:
    server = LogAnalyticsServer(
        WORKSPACE_ID, state_dir, public_key_pem=issuer.public_key_pem, max_rows=MAX_ROWS
    )
    with server:
        yield server


@pytest.fixture(autouse=True)
def _empty_tables(la: LogAnalyticsServer) -> None:
    la.clear()


@pytest.fixture
def app_env(la: LogAnalyticsServer, identity: IdentityEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the Functions host gives the app: an MI endpoint, plus trust in the devstack CA."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(la.ca_path))
    for name, value in identity.environment().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def client(la: LogAnalyticsServer, app_env: None) -> LogsQueryClient:
    return LogsQueryClient(ManagedIdentityCredential(), endpoint=la.url, audience=AUDIENCE)


def add_rows(la: LogAnalyticsServer, table: str, rows: list[dict[str, Any]]) -> requests.Response:
    return requests.post(f"{la.url}/admin/tables/{table}/rows", json=rows, verify=str(la.ca_path), timeout=10)


def ingest(la: LogAnalyticsServer, table: str, rows: list[dict[str, Any]]) -> None:
    response = add_rows(la, table, rows)
    assert response.status_code == 200, response.text
    assert response.json() == {"ingested": len(rows)}


def run(client: LogsQueryClient, kql: str, timespan: Any = AROUND_T0, **kwargs: Any) -> LogsQueryResult:
    result = client.query_workspace(WORKSPACE_ID, kql, timespan=timespan, **kwargs)
    assert isinstance(result, LogsQueryResult), result
    return result


def rows_of(result: LogsQueryResult) -> list[list[Any]]:
    return [list(row) for row in result.tables[0].rows]


def post_query(la: LogAnalyticsServer, token: str | None, workspace: str = WORKSPACE_ID) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(
        f"{la.url}/v1/workspaces/{workspace}/query",
        json={"query": "print x = 1"},
        headers=headers,
        verify=str(la.ca_path),
        timeout=10,
    )


# --- types and values


def test_columns_keep_documented_types_and_values(la: LogAnalyticsServer, client: LogsQueryClient) -> None:
    big = 2**53 + 1  # a long that a JSON double would round
    steps = [{"authenticationMethod": "Password", "succeeded": False}]
    ingest(
        la,
        "SigninLogs",
        [
            {
                "TimeGenerated": "2026-03-02T11:00:00.1234567Z",
                "Id": "s1",
                "Status": {"errorCode": 50126, "failureReason": "Invalid password"},
                "IsInteractive": True,
                "DurationMs": big,
                "AuthenticationDetails": steps,  # a string column: stored as JSON text, like exports
            }
        ],
    )
    result = run(
        client,
        "SigninLogs | project TimeGenerated, Id, Status, IsInteractive, DurationMs,"
        " AuthenticationDetails, UserPrincipalName, Type",
        include_statistics=True,
    )
    table = result.tables[0]
    assert table.name == "PrimaryResult"
    assert table.columns_types == [
        "datetime",
        "string",
        "dynamic",
        "bool",
        "long",
        "string",
        "string",
        "string",
    ]
    [[generated, row_id, status, interactive, duration, details, upn, table_type]] = rows_of(result)
    assert generated == datetime(2026, 3, 2, 11, 0, 0, 123456, tzinfo=UTC)
    assert row_id == "s1"
    assert json.loads(status) == {"errorCode": 50126, "failureReason": "Invalid password"}
    assert interactive is True
    assert duration == big
    assert json.loads(details) == steps
    assert upn == ""  # Kusto strings are never null
    assert table_type == "SigninLogs"  # filled in by the service
    assert result.statistics is not None
    assert result.statistics["query"]["executionTime"] >= 0


def test_computed_columns_get_the_engine_type(client: LogsQueryClient) -> None:
    result = run(
        client,
        'print i = toint(7), l = 7, r = 2.5, b = true, s = "x", d = datetime(2026-03-02T10:00:00Z),'
        ' ts = 90m, g = toguid("8e3f9a4c-0b1d-4c52-a6e1-3f2b1c0d9e8f"), dyn = pack_array(1, "a"),'
        ' parts = split("a/b", "/")',
    )
    assert result.tables[0].columns_types == [
        "int", "long", "real", "bool", "string", "datetime", "timespan", "guid", "dynamic", "dynamic",
    ]  # fmt: skip
    [[i, long_, real, flag, text, moment, span, guid, dyn, parts]] = rows_of(result)
    assert (i, long_, real, flag, text) == (7, 7, 2.5, True, "x")
    assert moment == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert span == "01:30:00"
    assert guid == "8e3f9a4c-0b1d-4c52-a6e1-3f2b1c0d9e8f"
    assert json.loads(dyn) == [1, "a"]
    assert json.loads(parts) == ["a", "b"]


def test_hidden_ingestion_column_is_never_returned(la: LogAnalyticsServer, client: LogsQueryClient) -> None:
    ingest(la, "SigninLogs", [{"TimeGenerated": iso(T0), "Id": "s1"}])
    for kql in ["SigninLogs | take 1", "SigninLogs | summarize arg_max(TimeGenerated, *) by Id"]:
        columns = run(client, kql).tables[0].columns
        assert "Id" in columns
        assert not [c for c in columns if c.startswith("_Ingestion")], kql


# --- ingestion_time()


def test_ingestion_time_finds_a_late_row(la: LogAnalyticsServer, client: LogsQueryClient) -> None:
    """The monitor's watermark pattern: a row generated long ago but ingested after the watermark."""
    watermark = T0 - timedelta(minutes=5)
    ingest(
        la,
        "AzureActivity",
        [
            {
                "EventDataId": "on-time",
                "TimeGenerated": iso(T0 - timedelta(minutes=10)),
                "_IngestionTime": iso(T0 - timedelta(minutes=8)),
            },
            {
                "EventDataId": "late",
                "TimeGenerated": iso(T0 - timedelta(hours=3)),
                "_IngestionTime": iso(T0 - timedelta(minutes=1)),
            },
        ],
    )
    by_ingestion = run(
        client,
        f"AzureActivity | where ingestion_time() > datetime({iso(watermark)})"
        " | project EventDataId, Ingested = ingestion_time()",
    )
    assert by_ingestion.tables[0].columns == ["EventDataId", "Ingested"]
    assert rows_of(by_ingestion) == [["late", T0 - timedelta(minutes=1)]]
    by_generation = run(client, f"AzureActivity | where TimeGenerated > datetime({iso(watermark)})")
    assert rows_of(by_generation) == []  # why the monitor must not filter on TimeGenerated alone


def test_ingestion_time_inside_strings_and_comments_is_left_alone(client: LogsQueryClient) -> None:
    result = run(client, "print a = \"ingestion_time()\", b = 'ingestion_time()' // ingestion_time()")
    assert rows_of(result) == [["ingestion_time()", "ingestion_time()"]]


@pytest.mark.parametrize(
    ("kql", "expected"),
    [
        ("T | where ingestion_time() > ago(1h)", "T | where _IngestionTime > ago(1h)"),
        ("T | extend x = ingestion_time ( )", "T | extend x = _IngestionTime"),
        ('print s = "ingestion_time()"', 'print s = "ingestion_time()"'),
        (
            "print s = @'ingestion_time()' // ingestion_time()",
            "print s = @'ingestion_time()' // ingestion_time()",
        ),
        ("T | project my_ingestion_time, ingestion_time", "T | project my_ingestion_time, ingestion_time"),
    ],
)
def test_rewrite_touches_only_calls(kql: str, expected: str) -> None:
    assert rewrite_ingestion_time(kql) == expected


# --- timespan


def test_timespan_restricts_every_table(la: LogAnalyticsServer, client: LogsQueryClient) -> None:
    ingest(la, "SigninLogs", [{"Id": "i-old", "TimeGenerated": iso(T0 - timedelta(days=2))}])
    ingest(la, "SigninLogs", [{"Id": "i-new", "TimeGenerated": iso(T0 - timedelta(hours=2))}])
    old, new = iso(T0 - timedelta(days=2)), iso(T0 - timedelta(minutes=30))
    ingest(la, "AADNonInteractiveUserSignInLogs", [{"Id": "n-old", "TimeGenerated": old}])
    ingest(la, "AADNonInteractiveUserSignInLogs", [{"Id": "n-new", "TimeGenerated": new}])
    kql = "union SigninLogs, AADNonInteractiveUserSignInLogs | project Id | order by Id asc"

    assert rows_of(run(client, kql, timespan=(T0 - timedelta(days=1), T0))) == [["i-new"], ["n-new"]]
    assert rows_of(run(client, kql, timespan=None)) == [["i-new"], ["i-old"], ["n-new"], ["n-old"]]
    # ago() counts back from the end of the timespan, so a replay of the past behaves as it did live.
    recent = "SigninLogs | where TimeGenerated > ago(3h) | project Id"
    assert rows_of(run(client, recent, timespan=(T0 - timedelta(days=7), T0))) == [["i-new"]]


def test_duration_timespan_ends_now(la: LogAnalyticsServer, client: LogsQueryClient) -> None:
    now = datetime.now(UTC)
    ingest(
        la, "AzureActivity", [{"EventDataId": "recent", "TimeGenerated": iso(now - timedelta(minutes=10))}]
    )
    ingest(la, "AzureActivity", [{"EventDataId": "older", "TimeGenerated": iso(now - timedelta(hours=2))}])
    result = run(client, "AzureActivity | project EventDataId", timespan=timedelta(hours=1))
    assert rows_of(result) == [["recent"]]


def test_concurrent_requests_keep_their_own_timespan(la: LogAnalyticsServer, client: LogsQueryClient) -> None:
    ingest(la, "SigninLogs", [{"Id": "old", "TimeGenerated": iso(T0 - timedelta(days=3))}])
    ingest(la, "SigninLogs", [{"Id": "new", "TimeGenerated": iso(T0 - timedelta(hours=1))}])
    narrow, wide = (T0 - timedelta(days=1), T0), (T0 - timedelta(days=5), T0)

    def count(timespan: tuple[datetime, datetime]) -> int:
        return rows_of(run(client, "SigninLogs | count", timespan=timespan))[0][0]

    spans = [narrow, wide] * 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        counts = list(pool.map(count, spans))
    assert counts == [1, 2] * 8


# --- errors, in the service's shape


def test_syntax_error_carries_the_engine_message(client: LogsQueryClient) -> None:
    kql = "SigninLogs | wherex"
    with pytest.raises(KqlSyntaxError) as engine:
        duckdb_kql.parse(kql)
    with pytest.raises(HttpResponseError) as caught:
        client.query_workspace(WORKSPACE_ID, kql, timespan=AROUND_T0)
    assert caught.value.status_code == 400
    message = str(caught.value)
    assert "BadArgumentError" in message
    assert "SyntaxError" in message
    assert str(engine.value) in message


@pytest.mark.parametrize(
    ("kql", "named"),
    [
        ("SigninLogs | where NoSuchColumn == 1", "NoSuchColumn"),
        ("NoSuchTable | take 1", "NoSuchTable"),
        ("SigninLogs | extend keys = bag_keys(Status)", "bag_keys"),  # not translated by duckdb-kql
    ],
)
def test_semantic_errors_name_the_culprit(client: LogsQueryClient, kql: str, named: str) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.query_workspace(WORKSPACE_ID, kql, timespan=AROUND_T0)
    assert caught.value.status_code == 400
    assert "SemanticError" in str(caught.value)
    assert named in str(caught.value)


def test_other_workspace_is_not_found(client: LogsQueryClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.query_workspace("00000000-0000-0000-0000-000000000000", "print x = 1", timespan=None)
    assert caught.value.status_code == 404
    assert "WorkspaceNotFoundError" in str(caught.value)


def test_request_without_token_is_refused(la: LogAnalyticsServer) -> None:
    response = post_query(la, token=None)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthorizationRequiredError"


def test_token_for_another_audience_is_refused(la: LogAnalyticsServer, app_env: None) -> None:
    arm_client = LogsQueryClient(
        ManagedIdentityCredential(), endpoint=la.url, audience="https://management.azure.com"
    )
    with pytest.raises(HttpResponseError) as caught:
        arm_client.query_workspace(WORKSPACE_ID, "print x = 1", timespan=None)
    assert caught.value.status_code == 403
    assert "InvalidTokenError" in str(caught.value)


@pytest.mark.parametrize("kind", ["expired", "foreign key"])
def test_bad_token_is_refused(la: LogAnalyticsServer, issuer: TokenIssuer, tmp_path: Path, kind: str) -> None:
    if kind == "expired":
        token, _ = issuer.issue(AUDIENCE, lifetime_s=-300)
    else:
        token, _ = TokenIssuer(tmp_path).issue(AUDIENCE)  # right audience, signed by someone else
    response = post_query(la, token)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "InvalidTokenError"


def test_wrong_workspace_is_checked_after_the_token(la: LogAnalyticsServer) -> None:
    assert post_query(la, token=None, workspace="someone-else").status_code == 401


# --- partial results


def test_too_many_rows_is_a_partial_result(client: LogsQueryClient) -> None:
    exactly = client.query_workspace(WORKSPACE_ID, f"range x from 1 to {MAX_ROWS} step 1", timespan=None)
    assert isinstance(exactly, LogsQueryResult)
    assert len(exactly.tables[0].rows) == MAX_ROWS

    result = client.query_workspace(WORKSPACE_ID, f"range x from 1 to {MAX_ROWS + 5} step 1", timespan=None)
    assert isinstance(result, LogsQueryPartialResult)
    assert result.status == LogsQueryStatus.PARTIAL
    assert [row[0] for row in result.partial_data[0].rows] == list(range(1, MAX_ROWS + 1))
    assert result.partial_error is not None
    assert result.partial_error.code == "PartialError"
    [detail] = result.partial_error.details
    assert detail["innererror"]["code"] == "-2133196797"
    assert "record count limit" in detail["innererror"]["message"]


# --- the sign-in tables together


def test_union_of_sign_in_tables_with_todynamic_status(
    la: LogAnalyticsServer, client: LogsQueryClient
) -> None:
    ingest(la, "SigninLogs", [{"Id": "a", "TimeGenerated": iso(T0), "Status": {"errorCode": 0}}])
    non_interactive_status = '{"errorCode":50126,"failureReason":"Invalid username or password."}'
    ingest(
        la,
        "AADNonInteractiveUserSignInLogs",
        [{"Id": "b", "TimeGenerated": iso(T0), "Status": non_interactive_status}],
    )
    result = run(
        client,
        """union
            (SigninLogs | project TimeGenerated, Id, Type, Status = todynamic(Status)),
            (AADNonInteractiveUserSignInLogs | project TimeGenerated, Id, Type, Status = todynamic(Status))
        | extend ErrorCode = toint(Status.errorCode), Reason = tostring(Status.failureReason)
        | project Id, Type, ErrorCode, Reason
        | order by Id asc""",
    )
    assert result.tables[0].columns_types == ["string", "string", "int", "string"]
    assert rows_of(result) == [
        ["a", "SigninLogs", 0, ""],
        ["b", "AADNonInteractiveUserSignInLogs", 50126, "Invalid username or password."],
    ]


# --- make_set and make_list as Log Analytics answers them (devstack/kql_aggregates.py)


def activity(caller: str, ip: str, claims: Any = None, index: int = 0) -> dict[str, Any]:
    row = {"TimeGenerated": iso(T0), "EventDataId": f"e{index}", "Caller": caller, "CallerIpAddress": ip}
    return row if claims is None else {**row, "Claims_d": claims}


def test_make_set_returns_at_most_its_size_distinct_values(
    la: LogAnalyticsServer, client: LogsQueryClient
) -> None:
    ips = [f"10.0.0.{i}" for i in range(30)]
    ingest(la, "AzureActivity", [activity("a@x", ip, index=i) for i, ip in enumerate(ips + ips)])
    ingest(la, "AzureActivity", [activity("b@x", "10.9.9.9", index=99)])
    result = run(
        client,
        "AzureActivity | summarize Ips = make_set(CallerIpAddress, 5), All = make_set(CallerIpAddress),"
        " Listed = make_list(CallerIpAddress, 7), Rows = count() by Caller | order by Caller asc",
    )
    [[_, capped, everything, listed, rows], [_, lone, lone_all, lone_list, _]] = rows_of(result)
    assert rows == 60
    capped, everything, listed = json.loads(capped), json.loads(everything), json.loads(listed)
    assert len(set(capped)) == len(capped) == 5
    assert set(capped) <= set(ips)
    assert sorted(everything) == sorted(ips)  # no size: every distinct value, each once
    assert len(listed) == 7
    assert set(listed) <= set(ips)
    assert json.loads(lone) == json.loads(lone_all) == json.loads(lone_list) == ["10.9.9.9"]


def test_a_capped_make_set_is_its_smallest_distinct_values_from_a_bounded_heap(
    la: LogAnalyticsServer, client: LogsQueryClient
) -> None:
    # The heap (min(DISTINCT v, N)) keeps memory bounded by N, whatever a group's size; gathering
    # every distinct value and cutting the list gives other values (this order of ingestion: the
    # first five). duckdb-kql renders the size as `CAST(5 AS BIGINT)`: that must take the heap too.
    ips = [f"10.0.0.{i}" for i in range(30)]
    ingest(la, "AzureActivity", [activity("a@x", ip, index=i) for i, ip in enumerate(ips + ips)])
    result = run(client, "AzureActivity | summarize Ips = make_set(CallerIpAddress, 5) by Caller")
    [[_, capped]] = rows_of(result)
    assert sorted(json.loads(capped)) == sorted(ips)[:5]


def test_make_set_unions_dynamic_arrays_but_not_strings_that_look_like_them(
    la: LogAnalyticsServer, client: LogsQueryClient
) -> None:
    # A string column holding '["a"]' once failed the whole local query; in Log Analytics it is
    # one string value. A dynamic array's elements join the set.
    ingest(
        la,
        "AzureActivity",
        [
            activity("a@x", '["10.0.0.1"]', claims=["amr", "pwd"], index=1),
            activity("a@x", "10.0.0.2", claims=["pwd", "mfa"], index=2),
            activity("a@x", "10.0.0.2", claims="mfa", index=3),
        ],
    )
    result = run(
        client,
        "AzureActivity | summarize Ips = make_set(CallerIpAddress, 10), Methods = make_set(Claims_d, 10)"
        " by Caller",
    )
    [[_, ips, methods]] = rows_of(result)
    assert sorted(json.loads(ips)) == ["10.0.0.2", '["10.0.0.1"]']
    assert sorted(json.loads(methods)) == ["amr", "mfa", "pwd"]


def test_aggregates_are_replaced_only_over_the_templates_they_were_written_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from duckdb_kql.translate import functions

    from devstack import kql_aggregates

    changed = functions.AggregateSpec("make_set", "list(DISTINCT {0})", (1, 2))
    monkeypatch.setitem(functions.AGGREGATE_FUNCTIONS, "make_set", changed)
    with pytest.raises(
        RuntimeError, match=r"make_set is not the template devstack/kql_aggregates\.py replaces"
    ):
        kql_aggregates.install()


# --- loading rows


def test_admin_endpoints_validate_and_clear(la: LogAnalyticsServer, client: LogsQueryClient) -> None:
    unknown = add_rows(la, "NoSuchTable", [{"Id": "x"}])
    assert unknown.status_code == 400
    assert "NoSuchTable" in unknown.json()["error"]["message"]
    bad = add_rows(la, "SigninLogs", [{"Id": "ok"}, {"Id": "bad", "DurationMs": "soon"}])
    assert bad.status_code == 400
    assert "DurationMs" in bad.json()["error"]["message"]
    assert rows_of(run(client, "SigninLogs | count", timespan=None)) == [[0]]  # all or nothing

    before = datetime.now(UTC)
    ingest(la, "SigninLogs", [{"Id": "a", "NotInTheSchema": 1}, {"Id": "b"}])
    ingested = run(client, "SigninLogs | project Id, At = ingestion_time(), TimeGenerated", timespan=None)
    for _, at, generated in rows_of(ingested):
        assert before - timedelta(seconds=1) <= at <= datetime.now(UTC)
        assert generated == at  # the service stamps a missing TimeGenerated with the ingestion time
    with pytest.raises(HttpResponseError, match="NotInTheSchema"):
        client.query_workspace(WORKSPACE_ID, "SigninLogs | project NotInTheSchema", timespan=None)

    deleted = requests.delete(f"{la.url}/admin/tables", verify=str(la.ca_path), timeout=10)
    assert deleted.json() == {"deleted": 2}
    assert rows_of(run(client, "SigninLogs | count", timespan=None)) == [[0]]


def test_rows_load_from_the_data_dir(
    tmp_path: Path, state_dir: Path, issuer: TokenIssuer, capfd: pytest.CaptureFixture[str]
) -> None:
    lines = [
        json.dumps({"Id": "a", "TimeGenerated": iso(T0), "IsInteractive": True}),
        json.dumps({"Id": "b", "TimeGenerated": iso(T0), "Status": '{"errorCode":0}'}),
        "{not json",
        json.dumps({"Id": "c", "TimeGenerated": iso(T0), "IsInteractive": "maybe"}),
    ]
    (tmp_path / "SigninLogs.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "NotATable.jsonl").write_text("{}\n")
    server = LogAnalyticsServer(WORKSPACE_ID, state_dir, tmp_path, public_key_pem=issuer.public_key_pem)
    with server:
        result = server.query(QueryRequest("SigninLogs | project Id | order by Id asc", None, 10, False))
    assert result["tables"][0]["rows"] == [["a"], ["b"]]
    warnings = capfd.readouterr().err
    assert "SigninLogs.jsonl:3" in warnings
    assert "SigninLogs.jsonl:4" in warnings
    assert "'IsInteractive'" in warnings
    assert "NotATable" in warnings


@pytest.mark.slow
def test_module_runs_in_the_foreground(tmp_path: Path, state_dir: Path, issuer: TokenIssuer) -> None:
    (tmp_path / "AzureActivity.jsonl").write_text(json.dumps({"EventDataId": "e1", "Caller": "a@b.c"}) + "\n")
    command = [sys.executable, "-m", "devstack.loganalytics", "--port", "0", "--workspace-id", WORKSPACE_ID]
    command += ["--state-dir", str(state_dir), "--data-dir", str(tmp_path)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        ready = process.stdout.readline().strip() if process.stdout else ""
        assert ready.startswith("ready https://127.0.0.1:"), ready
        token, _ = issuer.issue(AUDIENCE)
        response = requests.post(
            f"{ready.removeprefix('ready ')}/v1/workspaces/{WORKSPACE_ID}/query",
            json={"query": "AzureActivity | project EventDataId, Caller", "timespan": "P1D"},
            headers={"Authorization": f"Bearer {token}", "Prefer": "wait=30"},
            verify=str(state_dir / "certs" / "ca.pem"),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert response.json()["tables"][0]["rows"] == [["e1", "a@b.c"]]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_disk_backed_engine_answers_as_the_in_memory_one(tmp_path: Path) -> None:
    """Replay's engine: rows in a file, at most `memory_limit` of them in memory; same answers."""
    now = datetime.now(UTC)
    rows = [
        {
            "TimeGenerated": (now - timedelta(seconds=n)).isoformat(),
            "EventDataId": f"e{n}",
            "Caller": f"u{n % 7}@c.com",
            "Claims": json.dumps({"idtyp": "user" if n % 3 else "app"}),
        }
        for n in range(2_000)
    ]
    query = (
        "AzureActivity | extend T = tostring(todynamic(Claims).idtyp) | summarize n = count() by Caller, T "
        "| order by Caller asc, T asc"
    )
    answers = []
    for database in (None, tmp_path / "rows.duckdb"):
        engine = LogAnalyticsServer("w", state_dir=tmp_path, database=database, memory_limit="64MB")
        engine.ingest("AzureActivity", rows)
        answer = engine.query(QueryRequest(query=query, timespan="P1D", wait_s=60, include_statistics=False))
        answers.append(answer["tables"][0]["rows"])
        if database is not None:
            limit = engine._con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
            assert limit.endswith("MiB"), limit
            assert float(limit.split()[0]) <= 64
            assert database.stat().st_size > 0
        engine.stop()
    assert answers[0] == answers[1]
    assert sum(row[2] for row in answers[0]) == 2_000
