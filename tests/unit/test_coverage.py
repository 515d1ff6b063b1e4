"""What a set of exports lets each detection read: derived from its KQL, checked per table."""

from __future__ import annotations

from pathlib import Path

from monitors.coverage import coverage, named_columns
from monitors.detections import ropc_sign_in, user_arm_write
from monitors.exports import SCHEMA, ReadReport, read_export

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "sentinel-training-lab"
SCHEMA_OF_TWO = {
    "SigninLogs": ("Id", "AuthenticationProtocol", "UserAgent", "TimeGenerated"),
    "AzureActivity": ("EventDataId", "Claims", "Claims_d", "Caller", "TimeGenerated"),
}


def test_named_columns_are_the_documented_columns_the_query_names_per_table() -> None:
    query = """
    // UserAgent is only in this comment
    SigninLogs
    | where AuthenticationProtocol == "ropc" and Id != "Caller"
    | project TimeGenerated, Id
    """
    assert named_columns(query, SCHEMA_OF_TWO) == {
        "SigninLogs": frozenset({"AuthenticationProtocol", "Id", "TimeGenerated"})
    }


def test_a_table_the_query_reads_without_naming_a_column_is_still_read() -> None:
    assert named_columns("AzureActivity | take 1", SCHEMA_OF_TWO) == {"AzureActivity": frozenset()}


def test_everything_exported_is_complete() -> None:
    needs = {"SigninLogs": {"Id", "AuthenticationProtocol"}}
    found = coverage("ropc-sign-in", needs, {"SigninLogs": {"Id", "AuthenticationProtocol", "UserAgent"}})
    assert found.complete
    assert found.ran
    assert found.text({}) == "ran"


def test_a_missing_column_is_named_with_its_export() -> None:
    needs = {"SigninLogs": {"Id", "AuthenticationProtocol"}}
    found = coverage("ropc-sign-in", needs, {"SigninLogs": {"Id"}})
    assert not found.complete
    assert found.ran
    assert found.absent_columns == (("SigninLogs", ("AuthenticationProtocol",)),)
    assert found.text({"SigninLogs": "signins-2020.csv"}) == (
        "incomplete: signins-2020.csv has no AuthenticationProtocol column"
    )


def test_a_column_and_its_dynamic_twin_are_one_need_met_by_either() -> None:
    needs = {"AzureActivity": {"Claims", "Claims_d", "Caller"}}
    assert coverage("x", needs, {"AzureActivity": {"Claims", "Caller"}}).complete
    assert coverage("x", needs, {"AzureActivity": {"Claims_d", "Caller"}}).complete
    neither = coverage("x", needs, {"AzureActivity": {"Caller"}})
    assert neither.absent_columns == (("AzureActivity", ("Claims",)),)


def test_a_table_without_an_export_is_named_and_with_none_the_detection_could_not_run() -> None:
    needs = {"SigninLogs": {"Id"}, "AADNonInteractiveUserSignInLogs": {"Id"}}
    part = coverage("x", needs, {"SigninLogs": {"Id"}})
    assert part.ran
    assert not part.complete
    assert part.text({}) == "incomplete: no export of AADNonInteractiveUserSignInLogs"
    none = coverage("x", needs, {"AzureActivity": {"Caller"}})
    assert not none.ran
    assert none.text({}) == "could not run: no export of SigninLogs, AADNonInteractiveUserSignInLogs"


def test_the_real_2021_sign_in_export_cannot_serve_the_password_grant_checks() -> None:
    """The training lab's SigninLogs export predates AuthenticationProtocol: ROPC cannot be seen."""
    report = ReadReport()
    list(read_export(REAL / "sign-in_adelete.csv", "SigninLogs", report))
    (file,) = report.files
    needs = named_columns(ropc_sign_in.DETECTION.query, SCHEMA)
    found = coverage("ropc-sign-in", needs, {"SigninLogs": file.columns})
    assert ("SigninLogs", ("AuthenticationProtocol",)) in found.absent_columns
    assert "AADNonInteractiveUserSignInLogs" in found.absent_tables


def test_the_real_activity_export_holds_every_activity_column_user_arm_write_reads() -> None:
    """Its sign-in lookup (the object id of a write without claims) needs the sign-in tables too:
    with the Activity Log alone, replay says so."""
    report = ReadReport()
    list(read_export(REAL / "azureActivity_adele.csv", "AzureActivity", report))
    (file,) = report.files
    needs = named_columns(user_arm_write.DETECTION.query, SCHEMA)
    assert needs.keys() == {"AzureActivity", "SigninLogs", "AADNonInteractiveUserSignInLogs"}
    found = coverage("user-arm-write", needs, {"AzureActivity": file.columns})
    assert not found.absent_columns
    assert set(found.absent_tables) == {"SigninLogs", "AADNonInteractiveUserSignInLogs"}
