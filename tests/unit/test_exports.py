"""Reading log exports for replay: the two real portal exports, az-style JSON, and broken files.

The real files are tests/fixtures/sentinel-training-lab (see tests/fixtures/README.md); tests copy them
under the names replay expects, or cut and edit copies to make them bad.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import REAL_EXPORTS
from monitors.exports import (
    MAX_RECORD_CHARS,
    SCHEMA,
    ExportError,
    FileReport,
    ReadReport,
    discover,
    read_export,
)
from tests.peak_memory import PEAK_MB

REPO = Path(__file__).resolve().parents[2]
ACTIVITY = REAL_EXPORTS / "azureActivity_adele.csv"
SIGNINS = REAL_EXPORTS / "sign-in_adelete.csv"
ADELE = "AdeleV@M365x816222.OnMicrosoft.com"
AMR = "http://schemas.microsoft.com/claims/authnmethodsreferences"
ARM = "797f4846-ba00-4fd7-ba43-dac1f8f63013"  # Windows Azure Service Management API


def read(path: Path, table: str) -> tuple[list[dict[str, Any]], FileReport]:
    report = ReadReport()
    rows = list(read_export(path, table, report))
    [file_report] = report.files
    return rows, file_report


def write_csv(path: Path, header: list[str], *rows: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows([header, *rows])
    return path


def write_json(path: Path, items: list[Any]) -> Path:
    path.write_text(json.dumps(items, indent=2), encoding="utf-8")
    return path


def activity_csv(path: Path, *times: str) -> Path:
    """A minimal AzureActivity portal export, one row per TimeGenerated value."""
    header = ["TimeGenerated [UTC]", "EventDataId", "Caller", "Claims_d", "Type"]
    claims = json.dumps({AMR: "pwd"})
    rows = [[t, f"id-{i}", ADELE, claims, "AzureActivity"] for i, t in enumerate(times, start=1)]
    return write_csv(path, header, *rows)


# --- the real exports


def test_the_real_activity_export_parses_fully() -> None:
    rows, report = read(ACTIVITY, "AzureActivity")

    assert (report.rows_read, report.rows_skipped) == (23, 0)
    assert len({row["EventDataId"] for row in rows}) == 23
    first = rows[0]
    assert first["Caller"] == ADELE
    assert first["OperationNameValue"] == "MICROSOFT.WEB/SITES/DELETE"
    # '4/28/2021, 2:32:14.029 PM' under 'TimeGenerated [UTC]'
    assert first["TimeGenerated"] == datetime(2021, 4, 28, 14, 32, 14, 29000, tzinfo=UTC)
    assert first["EventSubmissionTimestamp"] == first["TimeGenerated"]
    # Claims_d is documented dynamic: parsed. Claims is documented string: stays JSON text.
    assert first["Claims_d"][AMR] == "pwd"
    assert isinstance(first["Claims"], str)
    assert json.loads(first["Claims"])[AMR] == "pwd"
    assert isinstance(first["Authorization_d"], dict)
    assert first["_BilledSize"] is None  # documented, absent from this export: null of its type
    assert first["Level"] == ""  # string columns are never null in KQL
    assert all(set(row) == set(SCHEMA["AzureActivity"]) for row in rows)
    assert "$table" not in first
    assert {"Result", "Id", "DurationMs"} <= set(report.undocumented_columns)


def test_the_real_signin_export_parses_fully() -> None:
    rows, report = read(SIGNINS, "SigninLogs")

    assert (report.rows_read, report.rows_skipped) == (56, 0)
    first = rows[0]
    assert first["UserPrincipalName"] == "adelev@m365x816222.onmicrosoft.com"
    assert first["CreatedDateTime"] == datetime(2021, 4, 28, 14, 8, 45, 221000, tzinfo=UTC)
    # No TimeGenerated in this export: it is the sign-in's CreatedDateTime.
    assert all(row["TimeGenerated"] == row["CreatedDateTime"] for row in rows)
    assert any("TimeGenerated taken from CreatedDateTime" in note for note in report.notes)
    # Status_dynamic / LocationDetails_dynamic stand in for the documented dynamic columns.
    assert first["Status"] == {"errorCode": 0}
    assert first["LocationDetails"]["countryOrRegion"] == "IL"
    assert first["IsInteractive"] is True
    assert first["IsRisky"] is None
    assert first["DurationMs"] == 0
    assert first["ResultType"] == "0"
    assert isinstance(first["AuthenticationDetails"], str)  # documented string, though JSON text
    assert json.loads(first["AuthenticationDetails"])[0]["authenticationMethod"] == "Previously satisfied"
    assert sum(row["ResourceIdentity"] == ARM for row in rows) == 3
    assert "TenantId" in report.undocumented_columns  # not documented for SigninLogs
    assert "Status_string" not in report.undocumented_columns  # used, as Status's fallback


# --- discovering a folder


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    shutil.copy(ACTIVITY, tmp_path / "AzureActivity.csv")
    shutil.copy(SIGNINS, tmp_path / "signinlogs.CSV")  # table names match case-insensitively
    return tmp_path


def test_discover_finds_exports_by_table_name_and_lists_the_rest(logdir: Path) -> None:
    shutil.copy(SIGNINS, logdir / "sign-in_adelete.csv")
    (logdir / "notes.txt").write_text("hello", encoding="utf-8")
    (logdir / "AADNonInteractiveUserSignInLogs.csv.gz").write_bytes(b"\x1f\x8b")

    found = discover(logdir)

    assert found.files == {
        "SigninLogs": logdir / "signinlogs.CSV",
        "AzureActivity": logdir / "AzureActivity.csv",
    }
    assert [p.name for p in found.ignored] == [
        "AADNonInteractiveUserSignInLogs.csv.gz",
        "notes.txt",
        "sign-in_adelete.csv",
    ]
    report = ReadReport()
    counts = {table: sum(1 for _ in read_export(path, table, report)) for table, path in found.files.items()}
    assert counts == {"SigninLogs": 56, "AzureActivity": 23}
    assert report.rows_read == 79


def test_discover_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"no such folder"):
        discover(tmp_path / "nope")


def test_discover_refuses_a_folder_without_exports(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"no export found.*holds: nothing"):
        discover(tmp_path)
    shutil.copy(SIGNINS, tmp_path / "sign-in_adelete.csv")
    with pytest.raises(ExportError, match=r"sign-in_adelete.csv"):
        discover(tmp_path)


def test_discover_refuses_two_exports_of_one_table(logdir: Path) -> None:
    write_json(logdir / "SigninLogs.json", [])
    with pytest.raises(
        ExportError, match=r"both SigninLogs.json and signinlogs.CSV hold SigninLogs; keep one"
    ):
        discover(logdir)


# --- az monitor log-analytics query -o json


def test_az_json_values_are_typed_like_the_portal_export(tmp_path: Path) -> None:
    item = {
        "TimeGenerated": "2021-04-28T14:32:14.029Z",
        "CreatedDateTime": "2021-04-28T14:32:13.5Z",
        "Id": "a1",
        "UserPrincipalName": "adelev@m365x816222.onmicrosoft.com",
        "IsInteractive": "true",
        "DurationMs": "0",
        "Status": '{"errorCode": 50126, "failureReason": "Invalid username or password."}',
        "LocationDetails": "",
        "AuthenticationDetails": '[{"authenticationMethod": "Password", "succeeded": false}]',
        "TenantId": "workspace",
        "Type": "SigninLogs",
    }
    path = write_json(tmp_path / "SigninLogs.json", [item, {**item, "Id": "a2", "IsInteractive": "False"}])

    rows, report = read(path, "SigninLogs")

    assert [row["Id"] for row in rows] == ["a1", "a2"]
    first = rows[0]
    assert first["TimeGenerated"] == datetime(2021, 4, 28, 14, 32, 14, 29000, tzinfo=UTC)
    assert first["IsInteractive"] is True
    assert rows[1]["IsInteractive"] is False
    assert first["DurationMs"] == 0
    assert first["Status"]["errorCode"] == 50126
    assert first["LocationDetails"] is None  # "" is null
    assert first["DeviceDetail"] is None  # missing is null too
    assert first["AuthenticationDetails"].startswith("[{")  # documented string: stays text
    assert report.undocumented_columns == ["TenantId"]
    assert report.format == "json"


def test_non_interactive_status_is_documented_as_text_and_stays_text(tmp_path: Path) -> None:
    item = {"TimeGenerated": "2026-11-20T08:00:00Z", "Status": '{"errorCode":0}', "Id": "n1"}
    path = write_json(tmp_path / "AADNonInteractiveUserSignInLogs.json", [item])

    [row], _ = read(path, "AADNonInteractiveUserSignInLogs")

    assert row["Status"] == '{"errorCode":0}'


def test_native_json_values_are_accepted(tmp_path: Path) -> None:
    """Not what az prints, but JSON a person may hand-write: typed values, nulls, objects."""
    item = {
        "TimeGenerated": "2026-11-20T08:00:00+01:00",
        "Id": "n1",
        "IsInteractive": True,
        "DurationMs": 5,
        "Status": {"errorCode": 0},
        "AppId": None,
        "ResultType": 0,
        "Agent": None,
    }
    [row], _ = read(write_json(tmp_path / "x.json", [item]), "SigninLogs")

    assert row["TimeGenerated"] == datetime(2026, 11, 20, 7, 0, tzinfo=UTC)
    assert (row["IsInteractive"], row["DurationMs"], row["Status"]) == (True, 5, {"errorCode": 0})
    assert (row["AppId"], row["ResultType"]) == ("", "0")


def test_a_json_array_is_decoded_across_chunk_boundaries(tmp_path: Path) -> None:
    """Rows of every size, one of them several times the 64 Ki-character read size."""
    sizes = [*range(0, 4000, 10), 300_000, 5]
    items = [
        {"TimeGenerated": "2026-11-20T08:00:00Z", "EventDataId": f"e{i}", "Properties": "x" * size}
        for i, size in enumerate(sizes)
    ]
    path = write_json(tmp_path / "AzureActivity.json", items)
    assert path.stat().st_size > 1_000_000

    rows, report = read(path, "AzureActivity")

    assert [row["EventDataId"] for row in rows] == [f"e{i}" for i in range(len(sizes))]
    assert [len(row["Properties"]) for row in rows] == sizes
    assert report.rows_skipped == 0


def test_json_items_that_are_not_objects_are_skipped(tmp_path: Path) -> None:
    good = {"TimeGenerated": "2026-11-20T08:00:00Z", "EventDataId": "e1"}
    path = write_json(tmp_path / "AzureActivity.json", [good, 42, ["x"], {"Foo": "bar"}, good])

    rows, report = read(path, "AzureActivity")

    assert len(rows) == 2
    assert report.rows_skipped == 3
    assert report.skip_examples[0] == "row 2: a JSON int, not an object"
    assert report.skip_examples[2] == "row 4: no documented AzureActivity column"


def test_a_truncated_json_array_keeps_the_rows_before_the_cut(tmp_path: Path) -> None:
    items = [{"TimeGenerated": "2026-11-20T08:00:00Z", "EventDataId": f"e{i}"} for i in range(3)]
    text = json.dumps(items, indent=2)
    path = tmp_path / "AzureActivity.json"
    path.write_text(text[: text.index('"e2"') + 2], encoding="utf-8")

    rows, report = read(path, "AzureActivity")

    assert [row["EventDataId"] for row in rows] == ["e0", "e1"]
    assert report.rows_skipped == 1
    assert "row 3: invalid or truncated JSON" in report.skip_examples[0]


def test_a_json_array_cut_inside_its_first_row_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "AzureActivity.json"
    path.write_text('[\n  {"TimeGenerated": "2026-11-20T08:00:00Z", "EventDa', encoding="utf-8")

    with pytest.raises(ExportError, match=r"AzureActivity.json: no row could be read.*row 1"):
        list(read_export(path, "AzureActivity", ReadReport()))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"tables": []}', "a JSON object; expected an array"),
        ("TimeGenerated,EventDataId\n", "not JSON"),
    ],
)
def test_json_that_is_not_an_array_is_an_error(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "AzureActivity.json"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(ExportError, match=problem) as caught:
        read_export(path, "AzureActivity", ReadReport())
    assert str(path) in str(caught.value)


def test_data_after_the_json_array_is_reported(tmp_path: Path) -> None:
    item = {"TimeGenerated": "2026-11-20T08:00:00Z", "EventDataId": "e1"}
    path = tmp_path / "AzureActivity.json"
    path.write_text(json.dumps([item]) + "\n" + json.dumps([item]), encoding="utf-8")

    rows, report = read(path, "AzureActivity")

    assert len(rows) == 1
    assert "after the closing ']'" in report.skip_examples[0]


# --- files that are not exports


def test_binary_garbage_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "AzureActivity.csv"
    path.write_bytes(bytes(range(256)) * 64)

    with pytest.raises(ExportError, match=r"AzureActivity.csv: binary data"):
        read_export(path, "AzureActivity", ReadReport())


def test_text_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "AzureActivity.csv"
    path.write_bytes("TimeGenerated,Caller\n2026-11-20T08:00:00Z,José\n".encode("latin-1"))

    with pytest.raises(ExportError, match=r"not UTF-8"):
        read_export(path, "AzureActivity", ReadReport())


@pytest.mark.parametrize("content", [b"", b"  \n"])
def test_an_empty_file_is_an_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "SigninLogs.csv"
    path.write_bytes(content)

    with pytest.raises(ExportError, match=r"SigninLogs.csv: the file is empty"):
        read_export(path, "SigninLogs", ReadReport())


def test_an_unreadable_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"missing.csv: cannot read"):
        read_export(tmp_path / "missing.csv", "SigninLogs", ReadReport())
    (tmp_path / "SigninLogs.csv").mkdir()
    with pytest.raises(ExportError, match=r"SigninLogs.csv: cannot read"):
        read_export(tmp_path / "SigninLogs.csv", "SigninLogs", ReadReport())


def test_a_csv_without_documented_columns_is_an_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "SigninLogs.csv", ["name", "age"], ["ada", "36"])

    with pytest.raises(ExportError, match=r"SigninLogs.csv: no documented SigninLogs column.*'name'"):
        read_export(path, "SigninLogs", ReadReport())


def test_the_wrong_table_is_caught_row_by_row(tmp_path: Path) -> None:
    """The activity export read as sign-ins: shared column names, but every Type says otherwise."""
    with pytest.raises(ExportError, match=r"no row could be read.*'AzureActivity', not SigninLogs"):
        list(read_export(ACTIVITY, "SigninLogs", ReadReport()))


def test_a_table_name_that_is_not_known_is_a_programming_error() -> None:
    # documented in the schema, but no detection reads it
    with pytest.raises(ValueError, match=r"unknown table 'AADServicePrincipalSignInLogs'"):
        read_export(ACTIVITY, "AADServicePrincipalSignInLogs", ReadReport())


def test_a_time_column_without_utc_is_refused(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "AzureActivity.csv",
        ["TimeGenerated [Local Time]", "EventDataId"],
        ["16/07/2026 20:26:12.030", "e1"],
    )

    with pytest.raises(
        ExportError, match=r"column 'TimeGenerated \[Local Time\]' is shown in Local Time, not UTC"
    ):
        read_export(path, "AzureActivity", ReadReport())


def test_a_table_without_a_time_column_is_an_error(tmp_path: Path) -> None:
    activity = write_csv(tmp_path / "AzureActivity.csv", ["EventDataId", "Caller"], ["e1", ADELE])
    with pytest.raises(ExportError, match=r"no TimeGenerated column"):
        read_export(activity, "AzureActivity", ReadReport())
    signins = write_csv(tmp_path / "SigninLogs.csv", ["Id", "UserId"], ["s1", "u1"])
    with pytest.raises(ExportError, match=r"no TimeGenerated column"):
        read_export(signins, "SigninLogs", ReadReport())


# --- bad rows: skipped, counted, named


def test_a_truncated_csv_keeps_the_rows_before_the_cut(tmp_path: Path) -> None:
    data = ACTIVITY.read_bytes()
    cut = data.rindex(b'""aud"": ""https://management.core.windows.net/""')  # inside the last row's Claims
    path = tmp_path / "AzureActivity.csv"
    path.write_bytes(data[:cut])

    rows, report = read(path, "AzureActivity")

    assert (report.rows_read, report.rows_skipped) == (22, 1)
    assert report.skip_examples[0].startswith("row 23 (line ")
    assert "unexpected end of data" in report.skip_examples[0]
    assert rows[-1]["Caller"] == ADELE


def test_a_csv_cut_inside_its_first_row_is_an_error(tmp_path: Path) -> None:
    data = ACTIVITY.read_bytes()
    path = tmp_path / "AzureActivity.csv"
    path.write_bytes(data[: data.index(b'""aud"": ""https://management.core.windows.net/""')])

    rows = read_export(path, "AzureActivity", ReadReport())  # the header is fine
    with pytest.raises(ExportError, match=r"AzureActivity.csv: no row could be read; first problem: row 1"):
        list(rows)


def test_a_bad_datetime_skips_its_row_and_names_row_and_column(tmp_path: Path) -> None:
    path = activity_csv(
        tmp_path / "AzureActivity.csv", "4/28/2021, 2:32:14.029 PM", "yesterday", "4/28/2021, 3:00 PM"
    )

    rows, report = read(path, "AzureActivity")

    assert [row["EventDataId"] for row in rows] == ["id-1", "id-3"]
    assert report.rows_skipped == 1
    assert report.skip_examples == [
        "row 2 (line 3): TimeGenerated: not a datetime: 'yesterday' "
        "(expected M/D/YYYY, h:mm:ss.fff AM/PM or ISO 8601)"
    ]


def test_a_bad_row_in_the_real_export_is_skipped_with_its_line(tmp_path: Path) -> None:
    with ACTIVITY.open(newline="", encoding="utf-8-sig") as source:
        header, *rows = list(csv.reader(source))
    rows[4][header.index("TimeGenerated [UTC]")] = "4/31/2021, 2:32:14.029 PM"
    path = write_csv(tmp_path / "AzureActivity.csv", header, *rows)

    read_rows, report = read(path, "AzureActivity")

    assert (len(read_rows), report.rows_skipped) == (22, 1)
    assert report.skip_examples[0].startswith("row 5 (line ")
    assert (
        "TimeGenerated: not a datetime: '4/31/2021, 2:32:14.029 PM' (day is out of range"
        in report.skip_examples[0]
    )


def test_rows_with_the_wrong_number_of_fields_are_skipped(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "AzureActivity.csv",
        ["TimeGenerated", "EventDataId"],
        ["2026-11-20T08:00:00Z", "e1"],
        ["2026-11-20T08:00:00Z"],
        [],
        ["2026-11-20T08:00:00Z", "e3", "x"],
    )

    rows, report = read(path, "AzureActivity")

    assert [row["EventDataId"] for row in rows] == ["e1"]
    assert report.skip_examples == [
        "row 2 (line 3): 1 fields, the header has 2",
        "row 3 (line 5): 3 fields, the header has 2",
    ]


def test_skip_examples_are_bounded_but_every_skip_is_counted(tmp_path: Path) -> None:
    path = activity_csv(tmp_path / "AzureActivity.csv", "2026-11-20T08:00:00Z", *["bad"] * 50)

    rows, report = read(path, "AzureActivity")

    assert (len(rows), report.rows_skipped, len(report.skip_examples)) == (1, 50, 5)
    assert "50 skipped" in report.summary()


def test_a_bad_bool_names_its_column(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "SigninLogs.csv",
        ["TimeGenerated [UTC]", "Id", "IsInteractive"],
        ["2026-11-20T08:00:00Z", "s1", "maybe"],
    )

    with pytest.raises(ExportError, match=r"row 1 \(line 2\): IsInteractive: not a bool: 'maybe'"):
        list(read_export(path, "SigninLogs", ReadReport()))


def test_rows_of_another_table_in_a_union_export_are_skipped(tmp_path: Path) -> None:
    header = ["$table", "TimeGenerated [UTC]", "Id", "Status_dynamic", "Status_string", "Type"]
    path = write_csv(
        tmp_path / "SigninLogs.csv",
        header,
        ["SigninLogs", "4/28/2021, 2:08:45.221 PM", "s1", '{"errorCode":0}', "", "SigninLogs"],
        ["AADNonInteractiveUserSignInLogs", "4/28/2021, 2:08:46 PM", "n1", "", '{"errorCode":0}', ""],
    )

    rows, report = read(path, "SigninLogs")

    assert [row["Id"] for row in rows] == ["s1"]
    assert report.skip_examples == [
        "row 2 (line 3): $table is 'AADNonInteractiveUserSignInLogs', not SigninLogs"
    ]


# --- values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4/28/2021, 12:00:00.000 AM", datetime(2021, 4, 28, 0, 0, tzinfo=UTC)),
        ("4/28/2021, 12:59:59.999 AM", datetime(2021, 4, 28, 0, 59, 59, 999000, tzinfo=UTC)),
        ("4/28/2021, 12:00:00.000 PM", datetime(2021, 4, 28, 12, 0, tzinfo=UTC)),
        ("4/28/2021, 12:30:05 PM", datetime(2021, 4, 28, 12, 30, 5, tzinfo=UTC)),
        ("4/28/2021, 1:00:00 AM", datetime(2021, 4, 28, 1, 0, tzinfo=UTC)),
        ("12/31/2021, 11:59:59.999 PM", datetime(2021, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
        ("1/2/2021, 3:04:05.6 pm", datetime(2021, 1, 2, 15, 4, 5, 600000, tzinfo=UTC)),
        ("2021-04-28T14:32:14.0291234Z", datetime(2021, 4, 28, 14, 32, 14, 29123, tzinfo=UTC)),
        ("2021-04-28 14:32:14", datetime(2021, 4, 28, 14, 32, 14, tzinfo=UTC)),
        ("2021-04-28T16:32:14+02:00", datetime(2021, 4, 28, 14, 32, 14, tzinfo=UTC)),
    ],
)
def test_portal_and_iso_datetimes(tmp_path: Path, text: str, expected: datetime) -> None:
    [row], _ = read(activity_csv(tmp_path / "AzureActivity.csv", text), "AzureActivity")

    assert row["TimeGenerated"] == expected
    assert row["TimeGenerated"].utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    "text", ["4/28/2021, 0:30:00 AM", "4/28/2021, 13:30:00 PM", "28/04/2021 14:32:14.029"]
)
def test_datetimes_that_are_not_portal_or_iso_are_refused(tmp_path: Path, text: str) -> None:
    path = activity_csv(tmp_path / "AzureActivity.csv", "2026-11-20T08:00:00Z", text)

    _, report = read(path, "AzureActivity")

    assert report.rows_skipped == 1
    assert f"TimeGenerated: not a datetime: {text!r}" in report.skip_examples[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("TRUE", True), ("true", True), ("1", True), ("False", False), ("FALSE", False), ("0", False)],
)
def test_bools(tmp_path: Path, text: str, expected: bool) -> None:
    path = write_csv(
        tmp_path / "SigninLogs.csv", ["TimeGenerated [UTC]", "IsInteractive"], ["2026-11-20T08:00:00Z", text]
    )

    [row], _ = read(path, "SigninLogs")

    assert row["IsInteractive"] is expected


def test_variant_columns_fill_the_documented_one_dynamic_first(tmp_path: Path) -> None:
    header = ["TimeGenerated [UTC]", "Id", "Status_string", "Status_dynamic", "Status_d"]
    path = write_csv(
        tmp_path / "SigninLogs.csv",
        header,
        ["2026-11-20T08:00:00Z", "both", '{"errorCode":1}', '{"errorCode":2}', '{"errorCode":3}'],
        ["2026-11-20T08:00:00Z", "string only", '{"errorCode":1}', "", ""],
        ["2026-11-20T08:00:00Z", "none", "", "", ""],
        ["2026-11-20T08:00:00Z", "not json", "", "oops {", ""],
    )

    rows, report = read(path, "SigninLogs")

    assert [row["Status"] for row in rows] == [{"errorCode": 2}, {"errorCode": 1}, None, "oops {"]
    assert report.undocumented_columns == []


def test_variants_of_a_column_that_is_present_are_undocumented(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "SigninLogs.csv",
        ["TimeGenerated", "Status", "Status_dynamic"],
        ["2026-11-20T08:00:00Z", '{"errorCode":0}', '{"errorCode":9}'],
    )

    [row], report = read(path, "SigninLogs")

    assert row["Status"] == {"errorCode": 0}
    assert report.undocumented_columns == ["Status_dynamic"]


def test_two_columns_meaning_one_is_an_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "AzureActivity.csv", ["TimeGenerated", "TimeGenerated [UTC]"], ["x", "y"])

    with pytest.raises(ExportError, match=r"two columns mean TimeGenerated"):
        read_export(path, "AzureActivity", ReadReport())


# --- streaming


def test_progress_is_reported_from_zero_to_the_file_size() -> None:
    calls: list[tuple[int, int]] = []
    list(
        read_export(
            ACTIVITY,
            "AzureActivity",
            ReadReport(),
            on_progress=lambda done, total: calls.append((done, total)),
        )
    )

    size = ACTIVITY.stat().st_size
    assert calls[0] == (0, size)
    assert calls[-1] == (size, size)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_memory_stays_flat_however_large_the_file(tmp_path: Path, fmt: str) -> None:
    claims = json.dumps({AMR: "pwd", "padding": "x" * 1500})
    items = [
        {"TimeGenerated": "2026-11-20T08:00:00Z", "EventDataId": f"e{i}", "Claims_d": claims}
        for i in range(4000)
    ]
    path = tmp_path / f"AzureActivity.{fmt}"
    if fmt == "json":
        write_json(path, items)
    else:
        write_csv(path, list(items[0]), *[list(item.values()) for item in items])
    assert path.stat().st_size > 6_000_000

    tracemalloc.start()
    try:
        count = sum(1 for _ in read_export(path, "AzureActivity", ReadReport()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == 4000
    assert peak < 1_500_000, f"peak {peak} bytes for a {path.stat().st_size}-byte file"


def test_stopping_early_closes_the_file() -> None:
    rows = read_export(ACTIVITY, "AzureActivity", ReadReport())
    next(rows)
    rows.close()  # type: ignore[attr-defined]  # it is a generator
    with pytest.raises(StopIteration):
        next(rows)


def test_the_report_reads_well() -> None:
    report = ReadReport()
    list(read_export(SIGNINS, "SigninLogs", report))

    lines = report.lines()

    assert lines[0] == "sign-in_adelete.csv (SigninLogs, csv): 56 rows read, 3 undocumented columns dropped"
    assert lines[-1] == "  undocumented: TenantId, AdditionalDetails, InitiatedBy"


def test_a_later_stage_can_count_its_own_skips_against_the_file(tmp_path: Path) -> None:
    path = activity_csv(tmp_path / "AzureActivity.csv", "2026-11-20T08:00:00Z", "bad")
    report = ReadReport()
    list(read_export(path, "AzureActivity", report))

    assert (report.rows_read, report.rows_skipped) == (1, 1)
    report.skip(path, "the query engine refused it")

    assert (report.rows_read, report.rows_skipped) == (0, 2)
    assert report.files[0].summary() == "AzureActivity.csv (AzureActivity, csv): 0 rows read, 2 skipped"
    assert report.examples()[-1] == "AzureActivity.csv: the query engine refused it"
    with pytest.raises(ValueError, match="has not been read"):
        report.skip(ACTIVITY, "x")


def test_text_that_stops_being_utf8_after_the_first_64_kib_is_an_error(tmp_path: Path) -> None:
    good = [["2026-11-20T08:00:00Z", f"e{i}", "x" * 100] for i in range(1000)]
    path = write_csv(tmp_path / "AzureActivity.csv", ["TimeGenerated", "EventDataId", "Caller"], *good)
    with path.open("ab") as out:
        out.write("2026-11-20T08:00:00Z,e-latin,José\n".encode("latin-1"))

    rows = read_export(path, "AzureActivity", ReadReport())  # the first 64 KiB are fine
    with pytest.raises(ExportError, match=r"AzureActivity.csv: not UTF-8 text \(after row \d+\)"):
        list(rows)


# --- the fast CSV path and its hand-over to the csv module


def _awkward_rows(n: int) -> list[list[str]]:
    """Quotes, commas and line breaks inside fields, and one field longer than a read chunk."""
    rows = []
    for i in range(n):
        claims = json.dumps({AMR: "pwd", "note": f'say "hi", {i}\r\nand\nbye', "pad": "x" * (i * 997 % 3000)})
        if i == 7:
            claims = json.dumps({AMR: "pwd", "pad": "y" * 400_000})
        rows.append([f"2026-11-20T08:{i % 60:02d}:00Z", f"id-{i}", ADELE, claims, "AzureActivity"])
    return rows


HEADER = ["TimeGenerated [UTC]", "EventDataId", "Caller", "Claims_d", "Type"]


def test_the_fast_path_reads_what_the_csv_module_reads(tmp_path: Path) -> None:
    rows = _awkward_rows(60)
    path = write_csv(tmp_path / "AzureActivity.csv", HEADER, *rows)
    read_rows, report = read(path, "AzureActivity")
    assert report.rows_skipped == 0
    with path.open(newline="", encoding="utf-8") as source:
        expected = list(csv.reader(source))[1:]
    assert [(r["EventDataId"], r["Claims_d"]) for r in read_rows] == [
        (e[1], json.loads(e[3])) for e in expected
    ]


@pytest.mark.parametrize(
    "odd",
    [
        "\r\n",  # a blank line
        'x,id-bad,a"b,{},AzureActivity\r\n',  # a quote inside a bare field
        '2026-11-20T08:00:00Z,"id-bad"x,a,{},AzureActivity\r\n',  # text after a closing quote
        "2026-11-20T08:00:00Z,too,few\r\n",
    ],
)
def test_what_the_fast_path_does_not_match_the_csv_module_reads_as_before(tmp_path: Path, odd: str) -> None:
    good = write_csv(tmp_path / "good.csv", HEADER, *_awkward_rows(30)).read_bytes().decode()
    cut = good.index("\r\n2026-11-20T08:15:00Z") + 2
    path = tmp_path / "AzureActivity.csv"
    path.write_bytes((good[:cut] + odd + good[cut:]).encode())
    read_rows, report = read(path, "AzureActivity")
    assert [r["EventDataId"] for r in read_rows] == [f"id-{i}" for i in range(30)]
    if odd.strip():
        line = good[:cut].count("\n") + 1
        assert report.rows_skipped == 1
        assert report.skip_examples[0].startswith(f"row 16 (line {line}): ")
    else:
        assert report.rows_skipped == 0


def test_only_the_columns_asked_for_are_read(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "AzureActivity.csv", [*HEADER, "Properties_d", "Mystery"],
                     *[[*r, "{broken json", "?"] for r in _awkward_rows(3)])  # fmt: skip
    report = ReadReport()
    rows = list(read_export(path, "AzureActivity", report, columns=["Caller"]))
    assert [set(r) for r in rows] == [{"Caller", "TimeGenerated", "Type"}] * 3
    assert report.files[0].undocumented_columns == ["Mystery"]
    with pytest.raises(ValueError, match="not documented AzureActivity columns: Nope"):
        read_export(path, "AzureActivity", ReadReport(), columns=["Caller", "Nope"])


def test_dynamic_text_hands_dynamic_values_on_as_text_and_checks_the_rest(tmp_path: Path) -> None:
    """For a consumer that parses JSON itself (replay's engine): text as exported, a JSON export's
    values as compact JSON text, an empty value null; every other column and check as before."""
    claims = '{"idtyp": "user"}'
    path = write_csv(
        tmp_path / "a.csv",
        ["TimeGenerated [UTC]", "EventDataId", "Claims_d", "Properties_d"],
        ["2026-01-01T00:00:00Z", "e1", claims, ""],
        ["not a time", "e2", claims, ""],
    )
    report = ReadReport()
    (row,) = read_export(path, "AzureActivity", report, dynamic_text=True)
    assert (row["Claims_d"], row["Properties_d"]) == (claims, None)
    assert row["TimeGenerated"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert report.rows_skipped == 1
    items = [{"TimeGenerated": "2026-01-01T00:00:00Z", "Claims_d": {"idtyp": "user"}, "Properties_d": 5}]
    (row,) = read_export(
        write_json(tmp_path / "a.json", items), "AzureActivity", ReadReport(), dynamic_text=True
    )
    assert (row["Claims_d"], row["Properties_d"]) == ('{"idtyp":"user"}', "5")


# --- which columns an export holds (replay says what a detection could not read)


def test_the_report_names_the_documented_columns_a_csv_holds(tmp_path: Path) -> None:
    _, report = read(activity_csv(tmp_path / "AzureActivity.csv", "2026-11-20T08:00:00Z"), "AzureActivity")
    assert report.columns == {"TimeGenerated", "EventDataId", "Caller", "Claims_d", "Type"}


def test_the_report_names_the_columns_of_every_json_row_and_a_derived_time(tmp_path: Path) -> None:
    # az prints the query's columns; a union can give rows different keys. No TimeGenerated here.
    items = [
        {"CreatedDateTime": "2021-04-28T14:32:13.5Z", "Id": "a1", "UserAgent": "curl/8.4.0"},
        {"CreatedDateTime": "2021-04-28T14:33:13.5Z", "Id": "a2", "AuthenticationProtocol": "ropc"},
    ]
    _, report = read(write_json(tmp_path / "SigninLogs.json", items), "SigninLogs")
    assert report.columns == {"CreatedDateTime", "Id", "UserAgent", "AuthenticationProtocol", "TimeGenerated"}


def test_only_the_columns_asked_for_are_reported(tmp_path: Path) -> None:
    path = activity_csv(tmp_path / "AzureActivity.csv", "2026-11-20T08:00:00Z")
    report = ReadReport()
    list(read_export(path, "AzureActivity", report, columns={"Caller"}))
    assert report.files[0].columns == {"TimeGenerated", "Caller", "Type"}


# --- bounded memory whatever a record holds, and structure too deep to follow


BIG = 10 * MAX_RECORD_CHARS  # 160 Mi characters in one record

# Reads an export in a fresh process and reports what it read and its peak memory.
READ_AND_MEASURE = f"""
import json, sys
from pathlib import Path
from monitors.exports import ReadReport, read_export
report = ReadReport()
rows = [row["EventDataId"] for row in read_export(Path(sys.argv[1]), "AzureActivity", report)]
print(json.dumps({{"rows": rows, "skips": report.examples(), "peak_mb": {PEAK_MB}}}))
"""


def _huge_record(out: Any, shape: str) -> None:
    """One record of BIG characters, written in pieces: on one line, quoted or bare, or on many
    lines inside one quoted field."""
    piece = "x" * (1 << 20)
    if shape == "many lines":
        piece = ("y" * 1023 + "\n") * 1024
    out.write("2026-11-20T08:00:00Z,big,")
    out.write('"' if shape != "bare" else "")
    for _ in range(BIG // len(piece)):
        out.write(piece)
    out.write('"\n' if shape != "bare" else "\n")


@pytest.mark.parametrize("shape", ["quoted", "bare", "many lines"])
def test_an_over_long_csv_record_is_skipped_and_counted_in_bounded_memory(tmp_path: Path, shape: str) -> None:
    path = tmp_path / "AzureActivity.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("TimeGenerated,EventDataId,Claims\n2026-11-20T08:00:00Z,before,{}\n")
        _huge_record(out, shape)
        out.write("2026-11-20T08:00:00Z,after,{}\nnot a time,bad,{}\n")
    lines_in_record = BIG // 1024 + 1 if shape == "many lines" else 1

    result = subprocess.run(
        [sys.executable, "-c", READ_AND_MEASURE, str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    found = json.loads(result.stdout)

    assert found["rows"] == ["before", "after"]  # nothing around the record is lost
    big, bad = found["skips"]
    assert big.startswith("AzureActivity.csv: row 2 (line 3): not valid CSV: a record longer than")
    assert big.endswith(f" {MAX_RECORD_CHARS:,} characters, not read (not a log row)")
    # The lines after it are numbered right.
    assert bad.startswith(f"AzureActivity.csv: row 4 (line {4 + lines_in_record}): TimeGenerated")
    # The record alone is 160 MB; the csv module held it whole (and then some) before: 1.2 GB.
    assert found["peak_mb"] < 150, found["peak_mb"]


def test_an_over_long_csv_header_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "AzureActivity.csv"
    path.write_text("TimeGenerated,EventDataId," + "h" * MAX_RECORD_CHARS + "\n", encoding="utf-8")
    with pytest.raises(ExportError, match=r"AzureActivity\.csv: no readable CSV header \(a record longer"):
        read(path, "AzureActivity")


def test_an_over_long_json_item_ends_the_array_with_the_rows_before_kept(tmp_path: Path) -> None:
    row = {"TimeGenerated": "2026-11-20T08:00:00Z", "EventDataId": "before"}
    huge = {**row, "EventDataId": "huge", "Claims": "x" * MAX_RECORD_CHARS}
    rows, report = read(write_json(tmp_path / "AzureActivity.json", [row, huge, row]), "AzureActivity")
    assert [r["EventDataId"] for r in rows] == ["before"]
    assert report.rows_skipped == 1
    assert report.skip_examples[0].startswith(f"row 2: larger than {MAX_RECORD_CHARS:,} characters")


def test_a_json_export_nested_too_deeply_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "AzureActivity.json"
    row = '{"TimeGenerated": "2026-11-20T08:00:00Z", "EventDataId": "e1"}'
    path.write_text(f'[{row}, {{"Claims": {"[" * 100_000}{"]" * 100_000}}}]', encoding="utf-8")
    report = ReadReport()
    rows = read_export(path, "AzureActivity", report)
    assert next(rows)["EventDataId"] == "e1"
    with pytest.raises(ExportError, match=rf"{re.escape(str(path))}: row 2 is JSON nested too deeply"):
        next(rows)


def test_a_csv_value_nested_too_deeply_skips_its_row(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    path = write_csv(
        tmp_path / "AzureActivity.csv",
        ["TimeGenerated", "EventDataId", "Claims_d"],
        ["2026-11-20T08:00:00Z", "deep", deep],
        ["2026-11-20T08:00:00Z", "fine", "{}"],
    )
    rows, report = read(path, "AzureActivity")
    assert [r["EventDataId"] for r in rows] == ["fine"]
    (reason,) = report.skip_examples
    assert reason.startswith("row 1 (line 2): Claims_d: JSON nested too deeply to read: '[[[[")


def test_a_quote_inside_an_unquoted_field_does_not_make_later_records_one_long_one(tmp_path: Path) -> None:
    """'a"b' is text to the csv module, not an opening quote: records are what the csv module
    makes of the lines, so the rows after it (more characters than a record may hold) all count."""
    rows = [["2026-11-20T08:00:00Z", 'stray"quote', "{}"]]
    claims = "{" + "x" * 1000 + "}"
    rows += [["2026-11-20T08:00:00Z", f"e{i}", claims] for i in range(MAX_RECORD_CHARS // 1000)]
    path = write_csv(tmp_path / "AzureActivity.csv", ["TimeGenerated", "EventDataId", "Claims"], *rows)
    read_rows, report = read(path, "AzureActivity")
    assert len(read_rows) == len(rows)
    assert read_rows[0]["EventDataId"] == 'stray"quote'
    assert report.rows_skipped == 0
