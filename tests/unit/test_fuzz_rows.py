"""Hostile and malformed query rows: parsing either yields an observation or a RowError, and
whatever parses becomes a valid Teams message under 28 KB."""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.teams_sink import validate_message
from monitors import alerts, cards
from monitors.detections import (
    DETECTIONS,
    break_glass_use,
    guest_arm_write,
    mfa_blocked_automation,
    policy_mfa_audit,
    ropc_sign_in,
    user_arm_write,
)
from monitors.detections.base import Context, RowError
from monitors.settings import BreakGlassAccounts

REPO = Path(__file__).resolve().parents[2]

BG_ID = "7f6d3c2a-5b4e-4c1d-9a8b-0e1f2a3b4c5d"
CONTEXT = Context(break_glass=BreakGlassAccounts(object_ids=frozenset({BG_ID}), upns=frozenset({"bg@x.com"})))
NOW = datetime(2026, 11, 22, tzinfo=UTC)
LINKS = cards.CardLinks(history_url="https://func.example/api/alerts/x")

nasty_text = st.one_of(
    st.text(max_size=300),  # any unicode, control characters, surrogates excluded by hypothesis
    st.sampled_from(["<script>alert(1)</script>", "[x](https://evil.example)", "${jndi:x}", "**b**",
                     "\u202egnp.exe", "\x00\x1b[31m", "None", "", "{", "[]", "null", '{"a":'] ),
    st.builds(lambda n: "A" * n, st.integers(min_value=10_000, max_value=1_100_000)),  # up to 1 MB
)  # fmt: skip
garbage = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), nasty_text,
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)  # fmt: skip
guid = st.uuids().map(str)
iso_time = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
)


@st.composite
def corrupted(draw: st.DrawFn, rows: st.SearchStrategy) -> dict:
    """A plausible row with up to three columns replaced by garbage or removed: most rows reach
    evaluate() and the card builder, the rest exercise every RowError path."""
    row = draw(rows)
    for column in draw(st.lists(st.sampled_from(sorted(row)), max_size=3, unique=True)):
        if draw(st.booleans()):
            row[column] = draw(garbage)
        else:
            del row[column]
    return row


json_list = st.lists(st.one_of(nasty_text, guid), max_size=30).map(json.dumps)
counts = st.integers(min_value=0, max_value=10**6)
auth_details = st.lists(
    st.fixed_dictionaries({"authenticationMethod": st.one_of(nasty_text, st.sampled_from(
        ["Password", "FIDO2 security key", "Text message", "Previously satisfied", "X.509 Certificate"])),
        "succeeded": st.booleans()}), max_size=4,
).map(json.dumps)  # fmt: skip

user_arm_rows = st.fixed_dictionaries({
    "PrincipalKey": guid, "UserId": guid, "UserPrincipalName": nasty_text,
    "Rows": counts, "Operations": counts, "Succeeded": counts,
    "Failed": counts, "WithMfa": counts, "WithoutMfa": counts,
    "OperationNames": json_list, "ClientAppIds": json_list,
    "IpAddresses": json_list, "Subscriptions": json_list,
    "EventIds": st.lists(guid, min_size=1, max_size=50).map(json.dumps),
    "FirstTime": iso_time, "LastTime": iso_time, "Actions": counts, "ActionNames": json_list,
})  # fmt: skip

break_glass_rows = st.fixed_dictionaries({
    "EventId": guid, "TimeGenerated": iso_time,
    "Source": st.sampled_from(["SigninLogs", "AADNonInteractiveUserSignInLogs", "AzureActivity"]),
    "UserId": st.just(BG_ID), "UserPrincipalName": st.just("bg@x.com"),
    "App": nasty_text, "AppId": guid, "IPAddress": nasty_text,
    "Location": nasty_text, "ResultType": st.sampled_from(["0", "50126", "Success"]),
    "ResultDescription": nasty_text, "AuthenticationDetails": auth_details,
    "UserAgent": nasty_text, "Operation": nasty_text,
})  # fmt: skip


mfa_blocked_rows = st.fixed_dictionaries({
    "EventId": guid, "TimeGenerated": iso_time,
    "Source": st.sampled_from(["SigninLogs", "AADNonInteractiveUserSignInLogs", "AzureActivity"]),
    "UserId": guid, "UserPrincipalName": nasty_text, "AppId": st.one_of(guid, nasty_text),
    "App": nasty_text, "IPAddress": nasty_text, "UserAgent": nasty_text, "Protocol": nasty_text,
    "Result": st.sampled_from(["50074", "50076", "50079", "50072", "Failure"]), "Detail": nasty_text,
    "Operation": nasty_text,
})  # fmt: skip

ropc_rows = st.fixed_dictionaries({
    "EventId": guid, "TimeGenerated": iso_time,
    "Source": st.sampled_from(["SigninLogs", "AADNonInteractiveUserSignInLogs"]),
    "UserId": guid, "UserPrincipalName": nasty_text, "UserType": nasty_text, "AppId": guid,
    "App": nasty_text, "Resource": nasty_text, "ResourceId": st.one_of(guid, nasty_text),
    "IPAddress": nasty_text, "UserAgent": nasty_text, "ResultType": st.sampled_from(["0", "50076", "53003"]),
    "ResultDescription": nasty_text,
})  # fmt: skip

# Writes raise the guest alert, actions only join one: most rows must be writes to reach the card.
operations = st.one_of(nasty_text.map(lambda t: t + "/write"), nasty_text, st.sampled_from([
    "microsoft.web/sites/write", "microsoft.web/sites/delete",
    "microsoft.storage/storageaccounts/listkeys/action",
]))  # fmt: skip

guest_rows = st.fixed_dictionaries({
    "EventId": guid, "TimeGenerated": iso_time, "UserId": guid, "UserPrincipalName": nasty_text,
    "Operation": operations, "Status": nasty_text, "OperationKey": nasty_text, "AuthMethods": nasty_text,
    "IdentityProvider": nasty_text, "ResourceTenant": guid, "ClientAppId": guid, "IPAddress": nasty_text,
    "SubscriptionId": guid, "Resource": nasty_text,
})  # fmt: skip

policy_json = st.lists(
    st.fixed_dictionaries({
        "policyDefinitionName": st.one_of(nasty_text, st.sampled_from(
            ["4e6c27d5-a6ee-49cf-b2b4-d8fe90fa2b8b", "db4a9d17-db75-4f46-9fcb-9f9526604417"])),
        "policyAssignmentName": nasty_text,
    }), max_size=3,
).map(json.dumps)  # fmt: skip

policy_rows = st.fixed_dictionaries({
    "EventId": guid, "TimeGenerated": iso_time, "UserId": guid, "UserPrincipalName": nasty_text,
    "Policies": st.one_of(policy_json, nasty_text), "Resource": nasty_text, "CorrelationId": guid,
    "IPAddress": nasty_text, "ClientAppId": guid, "AuthMethods": nasty_text, "SubscriptionId": guid,
})  # fmt: skip

BY_ID = {d.id: d for d in DETECTIONS}


def check_message(finding_list: list) -> None:
    for alert in alerts.make_alerts(finding_list, NOW):
        detection = BY_ID[alert.finding.detection]
        message = cards.build_message(alert, detection, LINKS)
        body = json.dumps(message).encode()
        assert validate_message(body) == []
        assert len(body) <= cards.MAX_MESSAGE_BYTES
        assert alerts.from_json(alerts.to_json(alert)) == alert  # survives the outbox round trip


# Each example validates its cards against the Adaptive Card schema (~0.1-0.3 s): `make test`
# runs 200 examples of up to 5 rows per detection, `make reliability` sets FUZZ_EXAMPLES=3000.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


FUZZED: Counter[str] = Counter()  # rows generated, and how many were skipped as RowError


def parse_all(parse: Callable[[dict], object], rows: list[dict]) -> list:
    """What the pipeline does with a result: parse each row, skip (and count) the bad ones."""
    parsed = []
    for row in rows:
        FUZZED["rows"] += 1
        try:
            parsed.append(parse(row))
        except RowError:
            FUZZED["skipped"] += 1
    return parsed


@pytest.fixture(scope="module", autouse=True)
def report_rows_fuzzed() -> Iterator[None]:
    """RELIABILITY.md reports how many rows were fuzzed (tests/reliability/conftest.py reads this)."""
    yield
    results = os.environ.get("RELIABILITY_RESULTS") or REPO / "artifacts" / "reliability" / "results.json"
    path = Path(results).with_name("fuzz.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**FUZZED, "examples_per_test": FUZZ.max_examples}))


@FUZZ
@given(st.lists(corrupted(user_arm_rows), min_size=1, max_size=3))
def test_user_arm_write_rows(rows: list[dict]) -> None:
    check_message(user_arm_write.evaluate(parse_all(user_arm_write.parse, rows), Context()))


@FUZZ
@given(st.lists(corrupted(break_glass_rows), min_size=1, max_size=5))
def test_break_glass_rows(rows: list[dict]) -> None:
    check_message(break_glass_use.evaluate(parse_all(break_glass_use.parse, rows), CONTEXT))


@FUZZ
@given(
    st.sampled_from([
        (mfa_blocked_automation, mfa_blocked_rows), (ropc_sign_in, ropc_rows),
        (guest_arm_write, guest_rows), (policy_mfa_audit, policy_rows),
    ]).flatmap(lambda pair: st.tuples(st.just(pair[0]), st.lists(corrupted(pair[1]), min_size=1, max_size=4)))
)  # fmt: skip
def test_mandatory_mfa_detection_rows(case: tuple) -> None:
    module, rows = case
    check_message(module.evaluate(parse_all(module.parse, rows), Context()))


def test_invalid_json_and_a_1_mb_user_agent_are_contained() -> None:
    row = {"EventId": str(uuid.uuid4()), "Source": "SigninLogs",
           "TimeGenerated": (NOW - timedelta(hours=1)).isoformat(), "UserId": BG_ID,
           "UserPrincipalName": "bg@x.com", "ResultType": "0",
           "AuthenticationDetails": "not json", "UserAgent": "A" * 1_000_000}  # fmt: skip
    event = break_glass_use.parse(row)
    assert event.methods == ("unreadable authentication details",)
    assert len(event.user_agent or "") <= 512
    check_message(break_glass_use.evaluate([event], CONTEXT))
