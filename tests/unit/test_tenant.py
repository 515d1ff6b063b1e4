"""The synthetic tenant (devstack/tenant.py): deterministic, documented columns only, and the cases
the monitor must handle (break-glass use, workload writes, late rows, duplicates) actually present.

One small tenant is generated per module and read back; the scale test runs the real CLI.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack import tenant
from devstack.tenant import (
    ACTIVITY,
    ARM,
    AUDIT,
    BREAK_GLASS_ACCOUNT_CHANGED,
    BREAK_GLASS_USE,
    BREAK_GLASS_WEAK_METHOD,
    GUEST_ARM_WRITE,
    KINDS,
    MFA_BLOCKED_AUTOMATION,
    NONINTERACTIVE,
    POLICY_MFA_AUDIT,
    ROPC_SIGN_IN,
    SIGNIN,
    SITE_WRITE,
    SOURCE_SILENT,
    TABLES,
    USER_ARM_WRITE,
    Principal,
    activity_rows,
    generate,
    json_text,
    population,
    signin_row,
)
from monitors.schema import load as load_schema

REPO = Path(__file__).resolve().parents[2]
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
AMR = "http://schemas.microsoft.com/claims/authnmethodsreferences"
UPN_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
OID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
IDP_CLAIM = "http://schemas.microsoft.com/identity/claims/identityprovider"
EMAIL_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
# Columns typed `string` that hold JSON text (in the fixtures and in the docs).
JSON_TEXT = {
    SIGNIN: {
        "AuthenticationDetails",
        "AuthenticationProcessingDetails",
        "AuthenticationRequirementPolicies",
        "NetworkLocationDetails",
        "RiskEventTypes",
        "RiskEventTypes_V2",
        "AuthenticationContextClassReferences",
    },
    NONINTERACTIVE: {
        "AuthenticationDetails",
        "AuthenticationProcessingDetails",
        "AuthenticationRequirementPolicies",
        "Status",
        "LocationDetails",
        "DeviceDetail",
        "ConditionalAccessPolicies",
        "MfaDetail",
        "SignInEventTypes",
        "NetworkLocationDetails",
    },
    ACTIVITY: {"Claims", "Authorization", "Properties", "HTTPRequest"},
    AUDIT: set(),  # every JSON column of AuditLogs is dynamic
}
START = datetime(2025, 10, 6, tzinfo=UTC)  # a Monday
Rows = dict[str, list[dict[str, Any]]]


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys: {[k for k, n in Counter(keys).items() if n > 1]}"
    return dict(pairs)


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def schema() -> dict[str, dict[str, str]]:
    documented = load_schema()
    return {table: documented[table] for table in TABLES}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tenant.Manifest]:
    out = tmp_path_factory.mktemp("tenant")
    return out, generate(out, users=120, days=2, seed=11, start=START, workers=1)


@pytest.fixture(scope="module")
def manifest(generated: tuple[Path, tenant.Manifest]) -> dict[str, Any]:
    return json.loads((generated[0] / "tenant.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rows(generated: tuple[Path, tenant.Manifest]) -> Rows:
    out = generated[0]
    return {
        t: [json.loads(line, object_pairs_hook=no_duplicate_keys) for line in read_lines(out / f"{t}.jsonl")]
        for t in TABLES
    }


def administrative(rows: Rows) -> list[dict[str, Any]]:
    return [r for r in rows[ACTIVITY] if r["CategoryValue"] == "Administrative"]


def is_write(row: dict[str, Any]) -> bool:
    """An Administrative create, update or delete: actions (/action) are no writes."""
    operation = row["OperationNameValue"]
    return row["CategoryValue"] == "Administrative" and bool(re.search(r"/(write|delete)$", operation, re.I))


def writes(rows: Rows) -> list[dict[str, Any]]:
    return [r for r in rows[ACTIVITY] if is_write(r)]


def by_caller(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Principals by AzureActivity's Caller: a member's UPN, a guest's e-mail (no upn claim)."""
    return {
        p["mail"] or p["user_principal_name"]: p for p in manifest["principals"] if p["user_principal_name"]
    }


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", users=30, days=2, seed=5, start=START, workers=1)
    b = generate(tmp_path / "b", users=30, days=2, seed=5, start=START, workers=2)  # workers do not matter
    assert a.rows == b.rows
    for name in [*(f"{t}.jsonl" for t in TABLES), "tenant.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_another_seed_gives_another_tenant(tmp_path: Path) -> None:
    generate(tmp_path / "a", users=30, days=1, seed=5, start=START)
    generate(tmp_path / "b", users=30, days=1, seed=6, start=START)
    signins = [(tmp_path / d / "SigninLogs.jsonl").read_bytes() for d in ("a", "b")]
    assert signins[0] != signins[1]


def test_principals_depend_on_seed_and_user_count_not_on_the_window(tmp_path: Path) -> None:
    one = generate(tmp_path / "one", users=20, days=1, seed=3, start=START)
    three = generate(tmp_path / "three", users=20, days=3, seed=3, start=START + timedelta(days=7))
    extra = tenant.watcher_principals(3, tenant.TENANT)  # the never-drilled break-glass account
    assert one.principals == three.principals == population(20, 3) + extra
    assert population(20, 3) != population(20, 4)


# --------------------------------------------------------------------------- shape: columns and types


def test_every_column_is_documented_and_typed(schema: dict[str, dict[str, str]], rows: Rows) -> None:
    for table, table_rows in rows.items():
        assert table_rows, table
        columns = schema[table]
        for row in table_rows:
            assert row["Type"] == table
            unknown = set(row) - set(columns) - {"_IngestionTime"}
            assert not unknown, f"{table}: undocumented columns {unknown}"
            for column, value in row.items():
                if value is None:
                    continue
                kind = columns.get(column, "datetime")  # _IngestionTime is a datetime
                if kind == "datetime":
                    assert isinstance(value, str), (table, column, value)
                    assert value.endswith("Z"), (table, column, value)
                    assert when(value).tzinfo is not None
                elif kind == "bool":
                    assert isinstance(value, bool), (table, column, value)
                elif kind in ("int", "long"):
                    assert type(value) is int, (table, column, value)
                elif kind == "real":
                    assert type(value) in (int, float), (table, column, value)
                elif kind == "dynamic":
                    assert isinstance(value, dict | list), (table, column, value)
                else:
                    assert isinstance(value, str), (table, column, value)
                    if column in JSON_TEXT[table] and value:
                        json.loads(value)


def test_the_same_column_changes_type_between_the_sign_in_tables(rows: Rows) -> None:
    """The documented pitfall: dynamic in SigninLogs, JSON text in the non-interactive table."""
    for column in ("Status", "LocationDetails", "DeviceDetail", "ConditionalAccessPolicies", "MfaDetail"):
        assert all(isinstance(r[column], dict | list) for r in rows[SIGNIN]), column
        assert all(isinstance(r[column], str) for r in rows[NONINTERACTIVE]), column
    assert {r["IsInteractive"] for r in rows[SIGNIN]} == {True}
    assert {r["IsInteractive"] for r in rows[NONINTERACTIVE]} == {False}


def test_sign_in_rows_carry_the_core_columns(rows: Rows) -> None:
    core = {
        "Id",
        "UserId",
        "UserPrincipalName",
        "UserDisplayName",
        "UserType",
        "AppId",
        "AppDisplayName",
        "ResourceIdentity",
        "ResourceDisplayName",
        "ResultType",
        "ResultDescription",
        "AuthenticationRequirement",
        "AuthenticationProtocol",
        "AuthenticationDetails",
        "ConditionalAccessStatus",
        "IPAddress",
        "UserAgent",
        "LocationDetails",
        "DeviceDetail",
        "Status",
        "HomeTenantId",
        "ResourceTenantId",
        "UniqueTokenIdentifier",
        "CorrelationId",
        "IsInteractive",
        "CreatedDateTime",
        "TimeGenerated",
        "Category",
        "OperationName",
        "Type",
    }
    for table in (SIGNIN, NONINTERACTIVE):
        for row in rows[table]:
            assert core <= set(row), core - set(row)
            assert GUID.match(row["Id"])
            assert GUID.match(row["UserId"])
            assert re.fullmatch(r"0|\d{5,6}", row["ResultType"])
            steps = json.loads(row["AuthenticationDetails"])
            assert steps
            assert all(
                {"authenticationMethod", "succeeded", "authenticationStepDateTime"} <= set(s) for s in steps
            )
    assert rows[NONINTERACTIVE][0]["TenantId"]
    assert "TenantId" not in rows[SIGNIN][0]
    assert {ARM.resource_id, "00000003-0000-0000-c000-000000000000"} <= {
        r["ResourceIdentity"] for r in rows[SIGNIN] + rows[NONINTERACTIVE]
    }


def test_activity_operations_come_as_start_then_outcome(rows: Rows) -> None:
    by_operation: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in administrative(rows):
        by_operation[row["OperationId"]][row["EventDataId"]] = row  # duplicates collapse here
    assert by_operation
    for operation in by_operation.values():
        ordered = sorted(operation.values(), key=lambda r: r["TimeGenerated"])
        statuses = [r["ActivityStatusValue"] for r in ordered]
        assert statuses[0] == "Start", statuses
        assert statuses[-1] in ("Success", "Failure"), statuses
        assert set(statuses[1:-1]) <= {"Accept"}
        assert len({r["CorrelationId"] for r in ordered}) == 1
        assert len({r["OperationNameValue"] for r in ordered}) == 1
    values = {r["ActivityStatusValue"] for r in rows[ACTIVITY]}
    assert {"Start", "Success", "Failure"} <= values  # as Log Analytics exports write them
    names = {r["OperationNameValue"] for r in administrative(rows)}
    # case varies, as in real data
    assert any(n.isupper() for n in names)
    assert any(not n.isupper() for n in names)
    assert all(re.search(r"/(write|delete|action)$", n, re.IGNORECASE) for n in names)
    assert {"Policy", "ServiceHealth"} <= {r["CategoryValue"] for r in rows[ACTIVITY]}  # noise to ignore


def test_claims_text_and_dynamic_agree(rows: Rows) -> None:
    for row in administrative(rows):
        assert json.loads(row["Claims"]) == row["Claims_d"]
        assert json.loads(row["Authorization"]) == row["Authorization_d"]
        assert json.loads(row["Properties"]) == row["Properties_d"]
        assert row["Claims_d"]["aud"] == "https://management.core.windows.net/"
        assert row["Properties_d"]["eventDataId"] == row["EventDataId"]


def test_rows_stay_inside_the_window(rows: Rows, generated: tuple[Path, tenant.Manifest]) -> None:
    m = generated[1]
    times = [when(r["TimeGenerated"]) for table_rows in rows.values() for r in table_rows]
    assert m.start <= min(times)
    assert max(times) < m.end
    assert m.end - m.start == timedelta(days=2)


# --------------------------------------------------------------------------- the population


def test_manifest_lists_every_kind_and_three_break_glass_accounts(manifest: dict[str, Any]) -> None:
    """Two in use, and a third nobody has signed in to (its drill is overdue)."""
    kinds = Counter(p["kind"] for p in manifest["principals"])
    assert set(kinds) == set(KINDS)
    assert kinds["break-glass"] == 3
    ids = [p["object_id"] for p in manifest["principals"]]
    assert len(ids) == len(set(ids))
    assert all(GUID.match(i) for i in ids)
    accounts = manifest["break_glass"]
    assert len(accounts) == 3
    assert {a["object_id"] for a in accounts} == {
        p["object_id"] for p in manifest["principals"] if p["kind"] == "break-glass"
    }
    assert all(a["user_principal_name"].endswith(".onmicrosoft.com") for a in accounts)


def test_the_smallest_tenant_still_has_one_of_each_kind() -> None:
    assert {p.kind for p in population(5, seed=1)} == set(KINDS)
    with pytest.raises(ValueError, match="at least 5"):
        population(4, seed=1)


def test_guests_come_from_another_tenant(rows: Rows, manifest: dict[str, Any]) -> None:
    guests = {p["object_id"] for p in manifest["principals"] if p["kind"] == "guest"}
    signins = [r for r in rows[SIGNIN] + rows[NONINTERACTIVE] if r["UserId"] in guests]
    assert signins
    for row in signins:
        assert row["UserType"] == "Guest"
        assert "#ext#" in row["UserPrincipalName"]
        assert row["HomeTenantId"] != row["ResourceTenantId"]


def test_guests_arm_rows_have_the_shape_of_microsofts_samples(rows: Rows, manifest: dict[str, Any]) -> None:
    """A guest's ARM token as the Activity Log records it (Microsoft's "Monitoring Azure Monitor
    data reference" Create/Delete Action Group events; "Understand user tokens in B2B
    collaboration"): Caller the e-mail, no upn claim, the e-mail claim, and the home tenant's
    issuer under the identity provider claim's long key; a member's token has none of it."""
    guests = {p["object_id"]: p for p in manifest["principals"] if p["kind"] == "guest"}
    mine = [r for r in administrative(rows) if r["Claims_d"][OID_CLAIM] in guests]
    assert mine
    for row in mine:
        guest, claims = guests[row["Claims_d"][OID_CLAIM]], row["Claims_d"]
        assert row["Caller"] == guest["mail"] == claims[EMAIL_CLAIM]
        assert "#ext#" not in row["Caller"].lower()
        assert UPN_CLAIM not in claims
        assert "idp" not in claims  # the JWT's short key is not what the Activity Log stores
        assert claims[IDP_CLAIM] == f"https://sts.windows.net/{guest['home_tenant_id']}/" != claims["iss"]
        assert row["Properties_d"]["caller"] == row["Caller"]
    members = [r for r in administrative(rows) if UPN_CLAIM in r["Claims_d"]]
    assert members
    assert all(IDP_CLAIM not in r["Claims_d"] and EMAIL_CLAIM not in r["Claims_d"] for r in members)


# --------------------------------------------------------------------------- what the monitor must see


def test_break_glass_rows_in_both_sign_in_tables_with_failures(rows: Rows, manifest: dict[str, Any]) -> None:
    bg1, bg2, dormant = (a["object_id"] for a in manifest["break_glass"])
    for table in (SIGNIN, NONINTERACTIVE):
        mine = [r for r in rows[table] if r["UserId"] in (bg1, bg2)]
        assert mine, table
        assert any(r["ResultType"] == "50126" for r in mine), f"{table}: no failed (sprayed) sign-in"
    methods = {
        (r["UserId"], s["authenticationMethod"], s["succeeded"])
        for r in rows[SIGNIN]
        if r["UserId"] in (bg1, bg2) and r["ResultType"] == "0"
        for s in json.loads(r["AuthenticationDetails"])
    }
    assert (bg1, "FIDO2 security key", True) in methods
    assert {(bg2, "Password", True), (bg2, "Text message", True)} <= methods
    bg1_upn = manifest["break_glass"][0]["user_principal_name"]
    assert [r for r in administrative(rows) if r["Caller"] == bg1_upn]
    expected = {p["object_id"]: p["expected"] for p in manifest["principals"]}
    # both accounts are also tampered with in the directory (test_break_glass_accounts_are_changed_...)
    assert expected[bg1] == [BREAK_GLASS_ACCOUNT_CHANGED, BREAK_GLASS_USE, USER_ARM_WRITE]
    assert expected[bg2] == [BREAK_GLASS_ACCOUNT_CHANGED, BREAK_GLASS_USE, BREAK_GLASS_WEAK_METHOD]
    assert expected[dormant] == [BREAK_GLASS_WEAK_METHOD]  # no rows at all: the drill is overdue
    assert not [r for table in rows.values() for r in table if r.get("UserId") == dormant]


def test_break_glass_accounts_are_changed_in_the_directory_among_everyone_s_changes(
    rows: Rows, manifest: dict[str, Any]
) -> None:
    """AuditLogs: the admin deletes bg1's key, registers a pass for it, removes bg2 from Global
    Administrator and drops bg1 from a policy's exclusions; ordinary people's changes surround it."""
    bg1, bg2, dormant = (a["object_id"] for a in manifest["break_glass"])

    def targets(row: dict[str, Any]) -> set[str]:
        return {t["id"] for t in row["TargetResources"]}

    audit = rows[AUDIT]
    about_bg = [r for r in audit if targets(r) & {bg1, bg2}]
    assert sorted((r["OperationName"], sorted(targets(r) & {bg1, bg2})) for r in about_bg) == [
        ("Admin deleted security info", [bg1]),
        ("Admin registered security info", [bg1]),
        ("Remove member from role", [bg2]),
    ]
    policies = [r for r in audit if r["OperationName"] == "Update conditional access policy"]
    assert len(policies) == 2  # one drops bg1 from the exclusions, one adds an ordinary user to them
    assert all(r["InitiatedBy"]["user"]["userPrincipalName"] for r in audit)
    assert len(audit) > len(about_bg) + len(policies)  # the ordinary background
    assert not [r for r in audit if dormant in json.dumps(r)]
    verdicts = {p["object_id"]: p["expected"] for p in manifest["principals"]}
    changed = {o for o, found in verdicts.items() if BREAK_GLASS_ACCOUNT_CHANGED in found}
    assert changed == {bg1, bg2}


def test_workload_writes_are_apps_with_guid_callers(rows: Rows, manifest: dict[str, Any]) -> None:
    workloads = {p["object_id"]: p for p in manifest["principals"] if p["kind"] in tenant.WORKLOAD_KINDS}
    writes = [r for r in administrative(rows) if r["Caller"] in workloads]
    assert {workloads[r["Caller"]]["kind"] for r in writes} == set(tenant.WORKLOAD_KINDS)
    for row in writes:
        claims = row["Claims_d"]
        who = workloads[row["Caller"]]
        assert GUID.match(row["Caller"])
        assert claims["idtyp"] == "app"
        assert UPN_CLAIM not in claims
        assert AMR not in claims
        assert claims["appid"] == who["app_id"]
        assert claims[OID_CLAIM] == who["object_id"]
        assert claims.get("xms_mirid") == who["mi_resource_id"]  # None for service principals
        assert row["Authorization_d"]["evidence"]["principalType"] == "ServicePrincipal"
        assert who["expected"] == []  # workload identities are exempt


def test_user_writes_name_the_sign_in_that_issued_their_token(rows: Rows) -> None:
    arm_tokens = {
        r["UniqueTokenIdentifier"]: r
        for r in rows[SIGNIN] + rows[NONINTERACTIVE]
        if r["ResourceIdentity"] == ARM.resource_id and r["ResultType"] == "0"
    }
    user_writes = [r for r in administrative(rows) if "@" in r["Caller"]]
    assert user_writes
    assert any(IDP_CLAIM in r["Claims_d"] for r in user_writes)  # guests' among them
    for row in user_writes:
        signin = arm_tokens[row["Claims_d"]["uti"]]
        assert signin["UserId"] == row["Claims_d"][OID_CLAIM]
        # sign-in logs lower-case the UPN; a guest's Caller is its e-mail, in its token's e-mail claim
        caller = row["Claims_d"].get(EMAIL_CLAIM) or signin["UserPrincipalName"]
        assert caller.lower() == row["Caller"].lower()
        assert signin["TimeGenerated"] <= row["TimeGenerated"]


def test_mfa_and_password_only_writes_both_exist(rows: Rows) -> None:
    amrs = {r["Claims_d"].get(AMR) for r in administrative(rows) if "@" in r["Caller"]}
    assert "pwd" in amrs  # Adele-style portal writes and service accounts
    assert amrs & {"pwd,mfa", "rsa,mfa"}
    apps = {r["Claims_d"]["appid"] for r in administrative(rows) if r["Claims_d"].get(AMR) == "pwd"}
    assert tenant.PORTAL.app_id in apps
    audit = "Microsoft.Authorization/policies/audit/action"
    audits = [r for r in rows[ACTIVITY] if r["OperationNameValue"] == audit]
    assert audits
    assert all("mfa" not in r["Claims_d"][AMR] for r in audits)


def test_a_user_holds_a_role_through_a_group(rows: Rows) -> None:
    via_group = [
        r for r in administrative(rows) if r["Authorization_d"]["evidence"]["principalType"] == "Group"
    ]
    assert via_group
    assert all("@" in r["Caller"] for r in via_group)


def test_service_accounts_fail_mfa_after_enforcement(
    rows: Rows, generated: tuple[Path, tenant.Manifest]
) -> None:
    m = generated[1]
    accounts = {p.object_id: p for p in m.principals if p.kind == "service-account"}
    upns = {p.upn for p in accounts.values()}
    signins = [r for r in rows[SIGNIN] + rows[NONINTERACTIVE] if r["UserId"] in accounts]
    failed = [r for r in signins if r["ResultType"] in ("50074", "50076")]
    assert failed
    assert all(when(r["TimeGenerated"]) >= m.enforcement for r in failed)
    assert {r["ResultType"] for r in failed} == {"50074", "50076"}  # refresh token and ROPC
    assert {r["AuthenticationProtocol"] for r in signins} >= {"ropc", "none"}
    assert {r["Type"] for r in signins} == {SIGNIN, NONINTERACTIVE}
    writes = [r for r in administrative(rows) if r["Caller"] in upns]
    assert writes
    assert all(when(r["TimeGenerated"]) < m.enforcement + timedelta(minutes=5) for r in writes)


def test_expected_verdicts_match_the_rows(rows: Rows, manifest: dict[str, Any]) -> None:
    users = by_caller(manifest)
    truth: dict[str, set[str]] = defaultdict(set)
    for row in writes(rows):
        if row["Caller"] in users:
            truth[users[row["Caller"]]["object_id"]].add(USER_ARM_WRITE)
    break_glass = {a["object_id"] for a in manifest["break_glass"]}
    drilled = set()
    for row in rows[SIGNIN] + rows[NONINTERACTIVE]:
        if row["UserId"] in break_glass:
            truth[row["UserId"]].add(BREAK_GLASS_USE)
            steps = json.loads(row["AuthenticationDetails"])
            if any(
                s["succeeded"] and s["authenticationMethod"] in ("Password", "Text message") for s in steps
            ):
                truth[row["UserId"]].add(BREAK_GLASS_WEAK_METHOD)
            if row["Type"] == SIGNIN and row["ResultType"] == "0":
                drilled.add(row["UserId"])
    for account in break_glass - drilled:
        truth[account].add(BREAK_GLASS_WEAK_METHOD)
    for row in rows[ACTIVITY]:
        if row["OperationNameValue"].lower() == "microsoft.insights/diagnosticsettings/delete":
            truth[users[row["Caller"]]["object_id"]].add(SOURCE_SILENT)
    for row in rows[AUDIT]:  # a change that names a break-glass account, or moves it in a policy
        for target in row["TargetResources"]:
            if target["id"] in break_glass:
                truth[target["id"]].add(BREAK_GLASS_ACCOUNT_CHANGED)
            for prop in target.get("modifiedProperties", []):
                if prop["displayName"] == "ConditionalAccessPolicy":
                    old, new = (set(json.loads(prop[v])["conditions"]["users"]["excludeUsers"])
                                for v in ("oldValue", "newValue"))  # fmt: skip
                    for account in break_glass & (old ^ new):
                        truth[account].add(BREAK_GLASS_ACCOUNT_CHANGED)
    automation = {
        p["object_id"]
        for p in manifest["principals"]
        if p["kind"] == "service-account" or p["tool"] == tenant.POWER_AUTOMATE_TOOL
    }
    targets = {ARM.resource_id, *tenant.POWER_PLATFORM_RESOURCES}
    for row in rows[SIGNIN] + rows[NONINTERACTIVE]:
        password_right = row["ResultType"] in ("0", "50072", "50074", "50076", "50079", "500121", "53003")
        if row["UserId"] in automation and row["ResourceIdentity"] in targets and password_right:
            truth[row["UserId"]].add(tenant.USER_SERVICE_ACCOUNT)
    _mandatory_mfa_truth(rows, manifest, truth)
    for p in manifest["principals"]:
        assert set(p["expected"]) == truth.get(p["object_id"], set()), p
    writers = {p["kind"] for p in manifest["principals"] if USER_ARM_WRITE in p["expected"]}
    assert {"human-no-mfa", "human-mfa", "admin", "service-account", "guest"} <= writers
    for detection in (MFA_BLOCKED_AUTOMATION, ROPC_SIGN_IN, GUEST_ARM_WRITE, POLICY_MFA_AUDIT):
        assert any(detection in p["expected"] for p in manifest["principals"]), detection


def test_principals_with_actions_only_expect_no_arm_write(rows: Rows, manifest: dict[str, Any]) -> None:
    """Actions (listKeys, a Sentinel blade's requirement check) are no writes: a user whose ARM rows
    are all actions expects no user-arm-write, and such users exist (the portal browser at least)."""
    users = by_caller(manifest)
    operations: dict[str, set[str]] = defaultdict(set)
    for row in administrative(rows):
        if row["Caller"] in users:
            operations[users[row["Caller"]]["object_id"]].add(row["OperationNameValue"].lower())
    actions_only = {oid for oid, names in operations.items() if all(n.endswith("/action") for n in names)}
    expected = {p["object_id"]: p["expected"] for p in manifest["principals"]}
    kinds = {p["object_id"]: p["kind"] for p in manifest["principals"]}
    assert {"human-mfa", "guest"} <= {kinds[oid] for oid in actions_only}
    assert not [
        oid for oid in actions_only if USER_ARM_WRITE in expected[oid] or GUEST_ARM_WRITE in expected[oid]
    ]
    blade = "microsoft.securityinsights/dataconnectorscheckrequirements/action"
    assert any(blade in operations[oid] for oid in actions_only)
    writers = {oid for oid, names in operations.items() if oid not in actions_only}
    assert writers
    assert all(USER_ARM_WRITE in expected[oid] for oid in writers)


def _mandatory_mfa_truth(rows: Rows, manifest: dict[str, Any], truth: dict[str, set[str]]) -> None:
    """The mandatory-MFA detections, derived from the rows independently of the generator's verdicts."""
    kinds = {p["object_id"]: p["kind"] for p in manifest["principals"]}
    users = by_caller(manifest)
    for table in (SIGNIN, NONINTERACTIVE):
        for row in rows[table]:
            if kinds.get(row["UserId"]) in tenant.WORKLOAD_KINDS:
                continue
            unattended = table == NONINTERACTIVE or row["AuthenticationProtocol"] == "ropc"
            refused_for_mfa = row["ResultType"] in ("50074", "50076", "50079", "50072")
            if unattended and row["ResourceIdentity"] == ARM.resource_id and refused_for_mfa:
                truth[row["UserId"]].add(MFA_BLOCKED_AUTOMATION)
            password_accepted = refused_for_mfa or row["ResultType"] in ("0", "53003")
            if row["AuthenticationProtocol"] == "ropc" and password_accepted:
                truth[row["UserId"]].add(ROPC_SIGN_IN)
    for row in rows[ACTIVITY]:
        who = users.get(row["Caller"])
        if who is None:
            continue
        if is_write(row) and who["kind"] == "guest":
            truth[who["object_id"]].add(GUEST_ARM_WRITE)
        status = str(row["Properties_d"].get("statusMessage") or "")
        if (
            is_write(row)
            and row["ActivityStatusValue"] == "Failure"
            and "RequestDisallowedByPolicy" in status
        ):
            assert tenant.MFA_POLICY_WRITE in status
            truth[who["object_id"]].add(MFA_BLOCKED_AUTOMATION)
        if row["OperationNameValue"] == "Microsoft.Authorization/policies/audit/action":
            truth[who["object_id"]].add(POLICY_MFA_AUDIT)


# --------------------------------------------------------------------------- delivery: late rows, duplicates


def test_ingestion_latency_is_realistic_and_some_rows_are_hours_late(
    rows: Rows, manifest: dict[str, Any]
) -> None:
    for table, table_rows in rows.items():
        delays = sorted(when(r["_IngestionTime"]) - when(r["TimeGenerated"]) for r in table_rows)
        assert delays[0] > timedelta(0)
        median = delays[len(delays) // 2]
        if table == ACTIVITY:
            assert timedelta(minutes=3) <= median <= timedelta(minutes=20), table
        else:
            assert timedelta(minutes=1) <= median <= timedelta(minutes=5), table
        late = sum(d > timedelta(hours=1) for d in delays)
        assert late == manifest["late_rows"][table], table
    assert all(manifest["late_rows"][t] for t in TABLES)


def test_duplicates_exist_as_real_exports_have_them(
    generated: tuple[Path, tenant.Manifest], rows: Rows, manifest: dict[str, Any]
) -> None:
    key = {SIGNIN: "Id", NONINTERACTIVE: "Id", ACTIVITY: "EventDataId", AUDIT: "Id"}
    for table, table_rows in rows.items():
        repeats = sum(n - 1 for n in Counter(r[key[table]] for r in table_rows).values())
        assert repeats == manifest["duplicate_rows"][table], table
    assert manifest["duplicate_rows"][ACTIVITY]
    assert manifest["duplicate_rows"][SIGNIN]
    lines = read_lines(generated[0] / f"{ACTIVITY}.jsonl")
    assert any(n > 1 for n in Counter(lines).values())  # at least one byte-for-byte copy


# --------------------------------------------------------------------------- the Python API


def test_row_builders_make_single_rows_for_other_tests() -> None:
    rng = random.Random(1)  # noqa: S311 - test data, not secrets
    adele = Principal(
        kind="human-no-mfa",
        object_id="9b117c67-170e-4aed-9702-658b3fddc889",
        display_name="Adele Vance",
        upn="AdeleV@contoso.com",
        auth=tenant.PASSWORD,
    )
    at = datetime(2025, 10, 6, 14, 8, tzinfo=UTC)
    signin = signin_row(adele, at, rng=rng)
    assert signin["Type"] == SIGNIN
    assert signin["ResourceIdentity"] == ARM.resource_id
    assert signin["AuthenticationRequirement"] == "singleFactorAuthentication"
    assert signin["UserPrincipalName"] == "adelev@contoso.com"
    refresh = signin_row(adele, at, interactive=False, result=50074, rng=rng)
    assert refresh["Type"] == NONINTERACTIVE
    assert json.loads(refresh["Status"])["errorCode"] == 50074

    subscription = "/subscriptions/8f153238-e602-427e-a7c0-3043fbe50918"
    target = f"{subscription}/resourceGroups/rg/providers/Microsoft.Web/sites/app"
    start, done = activity_rows(adele, at, SITE_WRITE, target, uti=signin["UniqueTokenIdentifier"], rng=rng)
    assert (start["ActivityStatusValue"], done["ActivityStatusValue"]) == ("Start", "Success")
    assert start["CorrelationId"] == done["CorrelationId"]
    assert start["OperationId"] == done["OperationId"]
    assert start["EventDataId"] != done["EventDataId"]
    assert done["OperationNameValue"] == "MICROSOFT.WEB/SITES/WRITE"
    assert done["Caller"] == "AdeleV@contoso.com"
    assert done["Claims_d"]["uti"] == signin["UniqueTokenIdentifier"]
    assert done["Claims_d"][AMR] == "pwd"

    done["Claims_d"]["uti"] = "changed"  # rows handed out are independent copies
    signin["Status"]["errorCode"] = 1
    assert signin_row(adele, at, rng=rng)["Status"] == {"errorCode": 0}


def test_json_text_is_laid_out_like_json_dumps_indent_2() -> None:
    samples: list[Any] = [
        {"a": 1, "b": "x\ny", "c": [], "d": {}, "e": None, "f": True},
        [{"key": "IsCAEToken", "value": "False"}, {"k": [1, {"z": "é"}]}],
        {"scope": "/s", "evidence": {"role": "Owner", "nested": {"deep": [1, 2]}}},
        [],
        "plain",
    ]
    for sample in samples:
        assert json_text(sample) == json.dumps(sample, indent=2), sample


# --------------------------------------------------------------------------- the CLI


def test_cli_takes_any_iso_start_and_checks_its_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "logs"
    assert (
        tenant.main(
            ["--out", str(out), "--users", "5", "--seed", "1", "--start", "2025-10-06T08:00:00+02:00"]
        )
        == 0
    )
    manifest = json.loads((out / "tenant.json").read_text(encoding="utf-8"))
    assert manifest["start"] == "2025-10-06T06:00:00.000000Z"
    assert manifest["enforcement"] == "2025-10-06T18:00:00.000000Z"  # the middle of the window, on the hour
    assert "rows/s" in capsys.readouterr().err
    for bad in (["--users", "4"], ["--days", "0"], ["--start", "yesterday"]):
        with pytest.raises(SystemExit) as exit_:
            tenant.main(["--out", str(out), *bad])
        assert exit_.value.code == 2, bad


@pytest.mark.slow
def test_cli_at_scale_writes_what_the_manifest_says(tmp_path: Path) -> None:
    out, accounts = tmp_path / "logs", tmp_path / "break-glass.json"
    cmd = [
        sys.executable,
        "-m",
        "devstack.tenant",
        "--out",
        str(out),
        "--users",
        "2000",
        "--days",
        "1",
        "--seed",
        "5",
        "--start",
        "2025-10-06T00:00:00Z",
        "--break-glass-out",
        str(accounts),
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "tenant.json").read_text(encoding="utf-8"))
    for table in TABLES:
        with (out / f"{table}.jsonl").open(encoding="utf-8") as f:
            assert sum(1 for _ in f) == manifest["rows"][table], table
    assert sum(manifest["rows"].values()) > 10_000
    assert json.loads(accounts.read_text(encoding="utf-8")) == manifest["break_glass"]
    users = [p for p in manifest["principals"] if p["kind"] in tenant.USER_KINDS]
    # --users of them, plus the scripted owner of Power Automate connections (user-service-account).
    assert len(users) == 2000 + 1
    assert [p["tool"] for p in users].count(tenant.POWER_AUTOMATE_TOOL) == 1
    assert not list(out.glob(".parts-*"))  # worker part files are cleaned up


def test_the_answer_key_leaves_out_a_silent_step_up_the_person_answers() -> None:
    """A person's silent ARM refresh refused for a step-up (50074) and answered by an interactive
    MFA sign-in a minute later expects no mfa-blocked-automation; the same refusal with no answer,
    or answered only an hour later, does; every expected detection names its rows."""
    rng = random.Random(3)  # noqa: S311 - test data, not secrets
    adele = Principal(
        kind="human-mfa", object_id="9b117c67-170e-4aed-9702-658b3fddc889", display_name="Adele Vance",
        upn="AdeleV@contoso.com", auth=tenant.PASSWORD_APP,
    )  # fmt: skip
    at = datetime(2025, 10, 6, 14, 8, tzinfo=UTC)
    answered = signin_row(adele, at, interactive=False, result=50074, rng=rng)
    late = signin_row(adele, at + timedelta(hours=2), interactive=False, result=50074, rng=rng)
    mfa = signin_row(adele, at + timedelta(minutes=1), rng=rng)
    mfa_late = signin_row(adele, at + timedelta(hours=3), rng=rng)
    assert mfa["AuthenticationRequirement"] == "multiFactorAuthentication"
    key = tenant.AnswerKey()
    for row in (answered, late, mfa, mfa_late):
        key.add(adele, row)
    assert key.settle() == {adele.object_id: {tenant.MFA_BLOCKED_AUTOMATION: (late["Id"],)}}

    only_answered = tenant.AnswerKey()
    for row in (answered, mfa):
        only_answered.add(adele, row)
    assert only_answered.settle() == {}
