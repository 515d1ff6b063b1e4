"""The synthetic tenant's rows against the real corpus: a generated row may hold only what real
rows hold, or what Microsoft's documentation names (listed below with the document).

Real rows: the portal exports in tests/fixtures/sentinel-training-lab and the exports in
tests/fixtures/real (provenance in their READMEs). They are text, as exported; generated values are
compared as an export would show them (`as_export_text`). What is compared:
- column sets, per table: a column generated rows fill and no real row fills is a defect, unless
  it is documented and newer than the corpus (`NEWER_THAN_THE_CORPUS`);
- value forms per column (JSON object or array text, GUID, other text, empty);
- dynamic vs string: the columns a real union export shows as `X_dynamic` for a table are dynamic
  in that table's generated rows;
- ARM token claims: the keys, and that every value is a string as in real Claims;
- Caller: the token's upn claim, as in real rows; a guest's e-mail, a workload's object id as
  documented;
- keys inside JSON values (DeviceDetail, Status, AuthenticationDetails' steps, Properties...);
- an operation's rows: their (ActivityStatusValue, ActivitySubstatusValue) pairs, the resource type
  they act on, and a portal blade's burst of checks under one CorrelationId.

Each exception list is checked to be still needed: once real rows show a thing, its entry goes.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devstack.tenant import (
    ACTIVITY,
    AUDIT,
    EMAIL_CLAIM,
    IDENTITY_PROVIDER_CLAIM,
    NONINTERACTIVE,
    SIGNIN,
    TABLES,
    UPN_CLAIM,
    generate,
)
from monitors.schema import load as load_schema

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REAL_EXPORTS = (
    (FIXTURES / "sentinel-training-lab" / "azureActivity_adele.csv", ACTIVITY),
    (FIXTURES / "sentinel-training-lab" / "sign-in_adelete.csv", SIGNIN),
    (FIXTURES / "real" / "msticnb-sentinel-portal-actions" / "AzureActivity.json", ACTIVITY),
    (FIXTURES / "real" / "msticpy-signin-logs" / "SigninLogs.json", SIGNIN),
)
OID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
SEEDS = (5, 23)

# Documented columns the corpus's exports (2020, 2021) predate; the detections read the first
# four. Source: Microsoft's table reference, monitors/schema/tables.json (SOURCES.md there).
_NEWER_SIGN_IN_COLUMNS = {
    "AuthenticationProtocol": "ROPC is told by it (ropc-sign-in, user-service-account)",
    "UniqueTokenIdentifier": "joins an ARM write's uti claim to its sign-in",
    "AutonomousSystemNumber": "data-centre networks (user-service-account)",
    "SessionId": "the rows of one session",
    "AppOwnerTenantId": "first-party apps are owned by Microsoft's services tenant",
    "ResourceOwnerTenantId": "as AppOwnerTenantId, for the resource",
    "AuthenticationContextClassReferences": "documented JSON text, '[]' without an auth context",
    "ClientCredentialType": "documented; 'none' for a user's sign-in",
    "CrossTenantAccessType": "documented; 'b2bCollaboration' for guests, 'none' for members",
    "IncomingTokenType": "documented; 'refreshToken' in the non-interactive table",
    "IsTenantRestricted": "documented bool",
    "IsThroughGlobalSecureAccess": "documented bool",
}
NEWER_THAN_THE_CORPUS: dict[str, dict[str, str]] = {
    SIGNIN: _NEWER_SIGN_IN_COLUMNS,
    # No real AADNonInteractiveUserSignInLogs row yet: its rows are compared with real SigninLogs
    # rows (the same sign-in record, documented in both tables), plus its own documented columns.
    NONINTERACTIVE: {
        **_NEWER_SIGN_IN_COLUMNS,
        "ProcessingTimeInMs": "the non-interactive table's name for ProcessingTimeInMilliseconds",
        "SignInEventTypes": "documented JSON text, '[\"nonInteractiveUser\"]'",
    },
    ACTIVITY: {},
    # No real AuditLogs row yet: its rows may fill documented columns only, with the row shape
    # devstack/tenant.py takes from Microsoft Graph's directoryAudit resource. Their values and
    # JSON keys have nothing real to be compared with (COMPARED_VALUES leaves the table out).
    AUDIT: dict.fromkeys(
        (
            "AADOperationType", "AADTenantId", "ActivityDateTime", "ActivityDisplayName", "AdditionalDetails",
            "Category",
            "CorrelationId", "DurationMs", "Id", "Identity", "InitiatedBy", "Level", "Location",
            "LoggedByService", "OperationName", "OperationVersion", "Resource", "ResourceGroup",
            "ResourceId", "ResourceProvider", "Result", "ResultReason", "ResultSignature", "SourceSystem",
            "TargetResources", "TimeGenerated", "Type",
        ),
        "documented (AuditLogs table reference); no real AuditLogs export in the corpus yet",
    ),
}  # fmt: skip
REAL_TABLE = {SIGNIN: SIGNIN, NONINTERACTIVE: SIGNIN, ACTIVITY: ACTIVITY, AUDIT: AUDIT}
# The tables whose generated values and JSON keys real rows can be held to.
COMPARED_VALUES = tuple(table for table in TABLES if table != AUDIT)

# Value forms no real row shows in that column, each from Microsoft's documentation.
DOCUMENTED_FORMS = {
    # Activity Log event schema, `caller`: "the UPN claim or SPN claim based on availability";
    # app-only tokens (service principals, managed identities) have no upn: their object id.
    (ACTIVITY, "Caller", "guid"): "a workload's Caller is its object id",
}

# ARM token claim keys no real Claims column holds yet. The Activity Log stores standard JWT
# claims under their long claim-type URIs, as Adele's real rows show for oid, upn and amr.
DOCUMENTED_CLAIMS = {
    IDENTITY_PROVIDER_CLAIM: "idp: a guest's home tenant issuer, an app token's own issuer "
    "(access token claims reference; 'Understand user tokens in B2B collaboration')",
    EMAIL_CLAIM: "email: a guest's token ('Understand user tokens in B2B collaboration')",
    "idtyp": "'app' on app-only tokens, 'user' on newer user tokens (access token claims reference)",
    "xms_mirid": "a managed identity's resource id (managed identities' token claims)",
}

# Keys inside JSON values (`.key`, `[].key` for array items) no real row has in that column,
# from Microsoft's documentation. Claims are `test_token_claims_...`'s business.
DOCUMENTED_KEYS = {
    "DeviceDetail": dict.fromkeys(
        (".displayName", ".isCompliant", ".isManaged", ".trustType"),
        "a managed device (Microsoft Graph, deviceDetail resource type); real rows' devices are unmanaged",
    ),
    "MfaDetail": dict.fromkeys(
        (".authMethod", ".authDetail"), "a sign-in that did MFA (Microsoft Graph, signIn: mfaDetail)"
    ),
    "AuthenticationRequirementPolicies": dict.fromkeys(
        ("[].requirementProvider", "[].detail"),
        "why MFA was required (Microsoft Graph beta, authenticationRequirementPolicy)",
    ),
    "Properties": {
        ".statusMessage": "the error of a failed operation (Activity Log event schema)",
        **dict.fromkeys(
            (".ancestors", ".isComplianceCheck", ".policies", ".resourceLocation"),
            "a Policy event (Activity Log event schema, Policy category)",
        ),
        **dict.fromkeys(
            (
                ".title", ".service", ".region", ".communication", ".incidentType", ".trackingId",
                ".impactStartTime", ".impactedServices", ".defaultLanguageTitle", ".stage",
            ),
            "a ServiceHealth event (Activity Log event schema, Service health category)",
        ),
    },
}  # fmt: skip

# (ActivityStatusValue, ActivitySubstatusValue) of a failed operation: no real row has failed yet.
# Activity Log event schema: a failed operation's status, and its HTTP status as subStatus.
DOCUMENTED_PHASES = {
    ("Failure", "Conflict"): "a write refused because another operation is in progress (409)",
    ("Failure", "Forbidden"): "a write denied by an Azure Policy deny assignment (403)",
}


# --------------------------------------------------------------------------- reading both sides


def _column(name: str) -> str:
    return name.removesuffix(" [UTC]")


def _read(path: Path) -> list[dict[str, str]]:
    if path.suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as source:
            return [
                {_column(k): v for k, v in row.items() if k != "$table"} for row in csv.DictReader(source)
            ]
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def real() -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    for path, table in REAL_EXPORTS:
        rows[table] += _read(path)
    return rows


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for seed in SEEDS:
        out = tmp_path_factory.mktemp(f"tenant-{seed}")
        generate(out, users=40, days=1, seed=seed, start=datetime(2025, 10, 6, tzinfo=UTC), workers=1)
        for table in TABLES:
            with (out / f"{table}.jsonl").open(encoding="utf-8") as lines:
                for line in lines:
                    row = json.loads(line)
                    del row["_IngestionTime"]  # the emulator's ingestion time, not a column
                    rows[table].append(row)
    return rows


def as_export_text(value: Any) -> str:
    """A generated value as an export shows it: JSON text for dynamic values, text for the rest."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def form(text: str) -> str:
    stripped = text.strip()
    if not stripped:
        return "empty"
    if stripped[0] in "{[":
        try:
            parsed = json.loads(stripped)
        except ValueError:
            return "text"
        return "json object" if isinstance(parsed, dict) else "json array"
    return "guid" if GUID.fullmatch(stripped) else "text"


def filled(rows: Iterable[dict[str, Any]]) -> set[str]:
    """Columns with a value in at least one row (an export lists every column of a union)."""
    return {column for row in rows for column, value in row.items() if as_export_text(value).strip()}


def _base(column: str) -> str:
    """A union export's `X_dynamic` / `X_string` stands for the table's X."""
    return re.sub(r"_(dynamic|string)$", "", column)


def claims_of(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for row in rows:
        claims = row.get("Claims_d") or row.get("Claims")
        if isinstance(claims, str):
            claims = json.loads(claims) if claims.strip() else None
        if claims:
            found.append(claims)
    return found


def administrative(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("CategoryValue") == "Administrative"]


# --------------------------------------------------------------------------- the comparisons


@pytest.mark.parametrize("table", TABLES)
def test_generated_rows_fill_only_columns_real_rows_fill(
    table: str, real: dict[str, list[dict[str, str]]], generated: dict[str, list[dict[str, Any]]]
) -> None:
    real_columns = {_base(c) for c in filled(real[REAL_TABLE[table]])}
    invented = sorted(filled(generated[table]) - real_columns - NEWER_THAN_THE_CORPUS[table].keys())
    assert not invented, f"{table}: generated rows fill columns no real row fills: {invented}"


@pytest.mark.parametrize("table", TABLES)
def test_the_columns_newer_than_the_corpus_are_documented_and_still_missing_from_it(
    table: str, real: dict[str, list[dict[str, str]]]
) -> None:
    documented = load_schema()[table]
    newer = NEWER_THAN_THE_CORPUS[table].keys()
    assert not newer - documented.keys(), f"{table}: not documented: {sorted(newer - documented.keys())}"
    now_real = sorted(newer & {_base(c) for c in filled(real[REAL_TABLE[table]])})
    assert not now_real, f"{table}: real rows now fill {now_real}: compare them, drop them from the list"


def forms_by_column(rows: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    forms: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        for column, value in row.items():
            forms[_base(column)].add(form(as_export_text(value)))
    return forms


@pytest.mark.parametrize("table", COMPARED_VALUES)
def test_generated_values_take_the_forms_real_values_take(
    table: str, real: dict[str, list[dict[str, str]]], generated: dict[str, list[dict[str, Any]]]
) -> None:
    """E.g. a column real rows fill with JSON text is never plain text in generated rows, and a GUID
    column never holds a name. Columns real rows lack are the first test's business."""
    real_forms = forms_by_column(real[REAL_TABLE[table]])
    wrong = []
    for column, forms in forms_by_column(generated[table]).items():
        seen = real_forms.get(column, set()) - {"empty"}
        if not seen:
            continue
        for unseen in sorted(forms - seen - {"empty"}):
            if (table, column, unseen) not in DOCUMENTED_FORMS:
                wrong.append(f"{column}: {unseen} (real rows: {', '.join(sorted(seen))})")
    assert not wrong, f"{table}: {wrong}"


def test_the_documented_forms_are_still_missing_from_the_corpus(
    real: dict[str, list[dict[str, str]]],
) -> None:
    now_real = [key for key in DOCUMENTED_FORMS if key[2] in forms_by_column(real[key[0]]).get(key[1], set())]
    assert not now_real, f"real rows now show {now_real}: drop them from DOCUMENTED_FORMS"


def test_columns_real_rows_export_as_dynamic_are_dynamic(
    real: dict[str, list[dict[str, str]]], generated: dict[str, list[dict[str, Any]]]
) -> None:
    """A union's portal export names a table's dynamic column `X_dynamic` (Adele's SigninLogs rows
    fill Status_dynamic, DeviceDetail_dynamic, ...): in generated SigninLogs rows they are dynamic."""
    dynamic = {_base(c) for c in filled(real[SIGNIN]) if c.endswith("_dynamic")}
    assert {"Status", "DeviceDetail", "LocationDetails", "ConditionalAccessPolicies"} <= dynamic
    wrong = sorted(
        {c for row in generated[SIGNIN] for c in dynamic if c in row and not isinstance(row[c], dict | list)}
    )
    assert not wrong, f"SigninLogs: dynamic in real rows, not in generated ones: {wrong}"


def test_token_claims_are_keys_and_values_real_claims_have(
    real: dict[str, list[dict[str, str]]], generated: dict[str, list[dict[str, Any]]]
) -> None:
    real_claims = claims_of(real[ACTIVITY])
    assert real_claims, "the corpus lost its Claims"
    real_keys = {key for claims in real_claims for key in claims}
    assert all(isinstance(v, str) for claims in real_claims for v in claims.values())

    generated_claims = claims_of(generated[ACTIVITY])
    assert generated_claims
    invented = sorted(
        {key for claims in generated_claims for key in claims} - real_keys - DOCUMENTED_CLAIMS.keys()
    )
    assert not invented, f"claim keys no real Claims column holds: {invented}"
    not_text = sorted({k for claims in generated_claims for k, v in claims.items() if not isinstance(v, str)})
    assert not not_text, f"claims whose value is not a string, as every real one is: {not_text}"
    assert not DOCUMENTED_CLAIMS.keys() & real_keys, "real Claims now hold a documented key: compare it"


def test_caller_is_what_the_token_names(
    real: dict[str, list[dict[str, str]]], generated: dict[str, list[dict[str, Any]]]
) -> None:
    """Real rows: Caller is the upn claim, case kept. Documented: a guest's token has no upn and its
    Caller is its e-mail; an app-only token's Caller is its object id."""
    for row in real[ACTIVITY]:
        (claims,) = claims_of([row]) or [None]
        if claims:
            assert row["Caller"] == claims[UPN_CLAIM]

    callers: dict[str, int] = defaultdict(int)  # rows per Caller form
    for row in generated[ACTIVITY]:
        (claims,) = claims_of([row]) or [None]
        if not claims:
            continue
        if UPN_CLAIM in claims:
            expected, form_name = claims[UPN_CLAIM], "upn"
        elif claims.get("idtyp") == "app":
            expected, form_name = claims[OID_CLAIM], "object id"
        else:
            expected, form_name = claims.get(EMAIL_CLAIM), "e-mail"
        assert row["Caller"] == expected, (form_name, row["Caller"], claims)
        callers[form_name] += 1
    assert set(callers) == {"upn", "object id", "e-mail"}  # members, workloads and guests all write


def phases(rows: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(r["ActivityStatusValue"], r.get("ActivitySubstatusValue") or "") for r in administrative(rows)}


def test_an_operations_rows_have_real_statuses(
    real: dict[str, list[dict[str, str]]], generated: dict[str, list[dict[str, Any]]]
) -> None:
    """Real operations come as Start, Accept (long-running), then Success with or without a
    substatus (OK, Created). (Their Properties keys: `test_json_values_hold_keys_real_ones_hold`.)"""
    real_phases = phases(real[ACTIVITY])
    assert {("Start", ""), ("Accept", "Accepted"), ("Success", "OK"), ("Success", "Created")} <= real_phases
    unseen = sorted(phases(generated[ACTIVITY]) - real_phases - DOCUMENTED_PHASES.keys())
    assert not unseen, f"status pairs no real row has: {unseen}"
    assert not DOCUMENTED_PHASES.keys() & real_phases


def key_paths(value: Any, prefix: str = "") -> Iterable[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield f"{prefix}.{key}"
            yield from key_paths(inner, f"{prefix}.{key}")
    elif isinstance(value, list):
        for item in value:
            yield from key_paths(item, f"{prefix}[]")


def keys_by_column(rows: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    """Key paths inside each column's JSON values; `X_d` and `X_dynamic` count as X."""
    keys: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        for column, value in row.items():
            text = as_export_text(value)
            if form(text) in ("json object", "json array"):
                keys[_base(column).removesuffix("_d")] |= set(key_paths(json.loads(text)))
    return keys


@pytest.mark.parametrize("table", COMPARED_VALUES)
def test_json_values_hold_keys_real_ones_hold(
    table: str, real: dict[str, list[dict[str, str]]], generated: dict[str, list[dict[str, Any]]]
) -> None:
    """Inside JSON columns (DeviceDetail, Status, AuthenticationDetails' steps, Properties,
    Authorization...), generated values use keys real values use, or documented ones."""
    real_keys = keys_by_column(real[REAL_TABLE[table]])
    invented = []
    for column, keys in keys_by_column(generated[table]).items():
        if column == "Claims" or column not in real_keys:
            continue
        unseen = keys - real_keys[column] - DOCUMENTED_KEYS.get(column, {}).keys()
        invented += [f"{column}: {key}" for key in sorted(unseen)]
    assert not invented, f"{table}: keys no real row holds: {invented}"


def test_the_documented_keys_are_still_missing_from_the_corpus(real: dict[str, list[dict[str, str]]]) -> None:
    real_keys = keys_by_column(real[SIGNIN] + real[ACTIVITY])
    now_real = sorted(
        f"{column}: {key}"
        for column, keys in DOCUMENTED_KEYS.items()
        for key in keys.keys() & real_keys[column]
    )
    assert not now_real, f"real rows now hold {now_real}: drop them from DOCUMENTED_KEYS"


def resource_type(resource_id: str) -> str:
    """A resource id with its names left out: /subscriptions/x/resourcegroups/y/providers/
    Microsoft.Web/sites/z is subscriptions/resourcegroups/providers/microsoft.web/sites."""
    segments = resource_id.strip("/").lower().split("/")
    kept = [s for i, s in enumerate(segments) if i % 2 == 0 or segments[i - 1] == "providers"]
    return "/".join(kept)


def resource_types(rows: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    types: dict[str, set[str]] = defaultdict(set)
    for row in administrative(rows):
        if row.get("_ResourceId"):
            types[row["OperationNameValue"].lower()].add(resource_type(row["_ResourceId"]))
    return types


def test_operations_act_on_the_resource_types_real_ones_act_on(
    real: dict[str, list[dict[str, str]]], generated: dict[str, list[dict[str, Any]]]
) -> None:
    """E.g. Microsoft.Web/sites/delete on a site; a Sentinel blade's requirement check on the
    workspace's Microsoft.SecurityInsights provider, not on a resource of its own."""
    real_types = resource_types(real[ACTIVITY])
    generated_types = resource_types(generated[ACTIVITY])
    compared = real_types.keys() & generated_types.keys()
    assert len(compared) >= 3, sorted(compared)
    wrong = {
        op: sorted(generated_types[op] - real_types[op])
        for op in compared
        if generated_types[op] - real_types[op]
    }
    assert not wrong, f"resource ids no real row of the operation has: {wrong}"


def bursts(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """Operations of a user under one CorrelationId, per operation name: (correlation, name) -> ids."""
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in administrative(rows):
        if "@" in row["Caller"] and row.get("OperationId"):
            found[(row["CorrelationId"], row["OperationNameValue"].lower())].add(row["OperationId"])
    return found


def test_a_portal_blade_issues_its_checks_together_as_real_ones_do(
    real: dict[str, list[dict[str, str]]], generated: dict[str, list[dict[str, Any]]]
) -> None:
    """Each real opening of a Sentinel blade logs nine requirement checks, distinct operations
    under one CorrelationId within a second: generated blade openings do the same."""
    real_sizes = {
        (name, len(ids)) for (_, name), ids in bursts(real[ACTIVITY]).items() if name.endswith("/action")
    }
    check = "microsoft.securityinsights/dataconnectorscheckrequirements/action"
    assert real_sizes == {(check, 9)}
    generated_sizes = {
        (name, len(ids)) for (_, name), ids in bursts(generated[ACTIVITY]).items() if name == check
    }
    assert generated_sizes == real_sizes
