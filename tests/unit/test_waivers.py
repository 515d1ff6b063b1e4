"""Waiver rules, pure: validation, matching by object id and UPN, expiry, reminders."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitors.detections import DETECTIONS
from monitors.model import Finding, Principal, Severity
from monitors.waivers import (
    DEFAULT_MAX_DAYS,
    MAX_REASON_CHARS,
    NEVER_WAIVED,
    Waiver,
    WaiverRefused,
    check_detection,
    covers,
    due_for_reminder,
    expiry_from,
    new_waiver,
    normalize_principal,
    principal_keys,
)

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
SVC_ID = "3f2a1b0c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
SVC_UPN = "svc-deploy@contoso.com"
KNOWN = [d.id for d in DETECTIONS]


def request(**changes: Any) -> dict[str, Any]:
    return {
        "detection": "user-arm-write",
        "principal": SVC_ID,
        "owner": "Platform team (Dana)",
        "reason": "Nightly Terraform job; moves to a managed identity in Q1",
        "approver": "Ciso Office",
        "created_by": "Sam Operator",
        "expires_at": NOW + timedelta(days=30),
        "now": NOW,
        "max_days": DEFAULT_MAX_DAYS,
        "known_detections": KNOWN,
        **changes,
    }


def refused(**changes: Any) -> str:
    with pytest.raises(WaiverRefused) as caught:
        new_waiver(**request(**changes))
    return str(caught.value)


def finding(
    user_id: str | None = SVC_ID, upn: str | None = SVC_UPN, detection: str = "user-arm-write"
) -> Finding:
    return Finding(
        detection=detection,
        severity=Severity.MEDIUM,
        principal=Principal(user_id=user_id, user_principal_name=upn),
        headline="h",
        facts=(),
        events=(),
        event_ids=("e1",),
        first_time=NOW,
        last_time=NOW,
    )


def waiver(**changes: Any) -> Waiver:
    return replace(new_waiver(**request()), **changes)


# --------------------------------------------------------------------------- validation


def test_a_valid_request_becomes_a_normalized_waiver() -> None:
    made = new_waiver(**request(principal=SVC_ID.upper(), owner="  Platform   team  "))
    assert made.principal == SVC_ID
    assert made.owner == "Platform team"
    assert made.created_at == NOW
    assert made.revoked_at is None
    assert made.reminded_at is None
    assert made.active(NOW)
    assert made.summary() == (
        "waiver by Ciso Office until 2026-12-20 10:00 UTC: "
        "Nightly Terraform job; moves to a managed identity in Q1"
    )


def test_break_glass_use_can_never_be_waived() -> None:
    message = refused(detection="break-glass-use")
    assert message.startswith("break-glass-use can never be waived")
    assert "emergency-access account must alert" in message
    assert "Acknowledge the alert" in message


def test_changes_to_break_glass_accounts_can_never_be_waived() -> None:
    message = refused(detection="break-glass-account-changed")
    assert message.startswith("break-glass-account-changed can never be waived")
    assert "Acknowledge the alert" in message


def test_break_glass_refusal_comes_first_whatever_else_is_wrong() -> None:
    assert refused(detection="break-glass-use", principal="nobody", reason="").startswith("break-glass-use")


def test_unknown_detection_names_the_waivable_ones() -> None:
    waivable = sorted(set(KNOWN) - set(NEVER_WAIVED))  # every detection but those never waived
    assert {"user-arm-write", "user-service-account"} <= set(waivable)
    assert "source-silent" not in waivable
    message = refused(detection="user-arm-wrte")
    assert message == f"unknown detection 'user-arm-wrte'; waivable: {', '.join(waivable)}"
    with pytest.raises(WaiverRefused):
        check_detection("user-arm-write", known=[])  # a detection switched off cannot be waived


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (SVC_ID, SVC_ID),
        ("{" + SVC_ID.upper() + "}", SVC_ID),
        ("SVC-Deploy@Contoso.com", SVC_UPN),
        ("  svc-deploy@contoso.com ", SVC_UPN),
        (
            "ext_user_fabrikam.com#EXT#@contoso.onmicrosoft.com",
            "ext_user_fabrikam.com#ext#@contoso.onmicrosoft.com",
        ),
    ],
)
def test_principal_is_an_object_id_or_a_upn_lower_cased(raw: str, expected: str) -> None:
    assert normalize_principal(raw) == expected


@pytest.mark.parametrize(
    "raw", ["svc-deploy", "", "a@b", "x" * 300 + "@contoso.com", "svc deploy@contoso.com"]
)
def test_anything_else_is_refused(raw: str) -> None:
    assert "is neither an object id (GUID) nor a UPN" in refused(principal=raw)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("owner", "   ", "owner is required"),
        ("approver", "", "approver is required"),
        ("created_by", "", "who records the waiver (--by) is required"),
        ("reason", "because", "reason needs at least 10 characters"),
        ("reason", "x" * (MAX_REASON_CHARS + 1), f"reason is {MAX_REASON_CHARS + 1} characters; at most"),
        ("owner", "o" * 129, "owner is 129 characters; at most 128"),
        ("owner", "Dana\u202eevil", "owner contains control or invisible characters"),
    ],
)
def test_people_and_reason_are_required_bounded_and_one_line(field: str, value: str, expected: str) -> None:
    assert expected in refused(**{field: value})


def test_line_breaks_in_a_reason_become_spaces() -> None:
    made = new_waiver(**request(reason="Nightly job\n\nmigrates in Q1"))
    assert made.reason == "Nightly job migrates in Q1"


def test_nobody_approves_their_own_waiver() -> None:
    message = refused(approver="sam operator", created_by="Sam Operator")
    assert message == "'sam operator' cannot approve a waiver they record: ask someone else to approve it"


def test_expiry_must_be_in_the_future() -> None:
    assert "is not in the future" in refused(expires_at=NOW)
    assert "is not in the future" in refused(expires_at=NOW - timedelta(days=1))
    assert new_waiver(**request(expires_at=NOW + timedelta(seconds=1))).active(NOW)


def test_expiry_at_most_max_days_ahead() -> None:
    assert new_waiver(**request(expires_at=NOW + timedelta(days=180))).expires_at == NOW + timedelta(days=180)
    message = refused(expires_at=NOW + timedelta(days=180, seconds=1))
    assert "more than 180 days ahead (WAIVER_MAX_DAYS)" in message
    assert "more than 30 days ahead" in refused(expires_at=NOW + timedelta(days=31), max_days=30)


def test_a_naive_expiry_is_utc() -> None:
    made = new_waiver(**request(expires_at=datetime(2026, 12, 1)))
    assert made.expires_at == datetime(2026, 12, 1, tzinfo=UTC)


def test_expiry_from_a_date_or_a_number_of_days() -> None:
    assert expiry_from(expires="2026-12-31", now=NOW) == datetime(2026, 12, 31, tzinfo=UTC)
    assert expiry_from(expires="2026-12-31T18:00:00+02:00", now=NOW) == datetime(2026, 12, 31, 16, tzinfo=UTC)
    assert expiry_from(days=14, now=NOW) == NOW + timedelta(days=14)
    for bad in ({"expires": "31/12/2026"}, {"days": 0}, {}, {"expires": "2026-12-31", "days": 3}):
        with pytest.raises(WaiverRefused):
            expiry_from(now=NOW, **bad)


# --------------------------------------------------------------------------- matching and expiry


def test_a_waiver_by_object_id_covers_the_finding_whatever_its_upn() -> None:
    by_id = waiver(principal=SVC_ID)
    assert covers(by_id, finding(), NOW)
    assert covers(by_id, finding(upn="renamed@contoso.com"), NOW)
    assert not covers(by_id, finding(user_id=None), NOW)  # a row without claims carries only the UPN
    assert not covers(by_id, finding(user_id="00000000-0000-4000-8000-000000000000"), NOW)


def test_a_waiver_by_upn_covers_any_case_and_rows_without_an_object_id() -> None:
    by_upn = waiver(principal=SVC_UPN)
    assert covers(by_upn, finding(), NOW)
    assert covers(by_upn, finding(user_id=None, upn="SVC-DEPLOY@CONTOSO.COM"), NOW)
    assert not covers(by_upn, finding(upn="other@contoso.com"), NOW)


def test_a_waiver_covers_only_its_own_detection() -> None:
    assert not covers(waiver(), finding(detection="some-other-detection"), NOW)


def test_break_glass_findings_are_never_covered_even_by_a_hand_written_row() -> None:
    forged = waiver(detection="break-glass-use")
    assert not covers(forged, finding(detection="break-glass-use"), NOW)


def test_principal_keys_are_lower_cased_and_skip_missing_values() -> None:
    assert principal_keys(finding(upn="Svc@Contoso.com")) == (SVC_ID, "svc@contoso.com")
    assert principal_keys(finding(user_id=None)) == (SVC_UPN,)


def test_expiry_boundary_active_strictly_before() -> None:
    ends = NOW + timedelta(days=30)
    made = waiver(expires_at=ends)
    assert made.active(ends - timedelta(microseconds=1))
    assert covers(made, finding(), ends - timedelta(microseconds=1))
    assert not made.active(ends)
    assert not covers(made, finding(), ends)
    assert made.status(ends) == "expired"


def test_a_revoked_waiver_covers_nothing() -> None:
    revoked = waiver(revoked_at=NOW + timedelta(days=1), revoked_by="Dana")
    assert not covers(revoked, finding(), NOW + timedelta(days=2))
    assert revoked.status(NOW) == "revoked"


# --------------------------------------------------------------------------- reminders


def test_reminder_is_due_within_the_window_not_before() -> None:
    ends = NOW + timedelta(days=30)
    made = waiver(expires_at=ends)
    assert not due_for_reminder(made, ends - timedelta(days=7, seconds=1), 7)
    assert due_for_reminder(made, ends - timedelta(days=7), 7)
    assert due_for_reminder(made, ends - timedelta(seconds=1), 7)
    assert not due_for_reminder(made, ends, 7)  # ended: nothing left to remind of


def test_a_reminder_is_due_once() -> None:
    ends = NOW + timedelta(days=30)
    reminded = waiver(expires_at=ends, reminded_at=ends - timedelta(days=6))
    assert not due_for_reminder(reminded, ends - timedelta(days=1), 7)


def test_no_reminders_when_off_or_revoked() -> None:
    ends = NOW + timedelta(days=30)
    assert not due_for_reminder(waiver(expires_at=ends), ends - timedelta(days=1), 0)
    revoked = waiver(expires_at=ends, revoked_at=NOW, revoked_by="Dana")
    assert not due_for_reminder(revoked, ends - timedelta(days=1), 7)


def test_a_waiver_shorter_than_the_window_is_reminded_at_once() -> None:
    short = new_waiver(**request(expires_at=NOW + timedelta(days=3)))
    assert due_for_reminder(short, NOW, 7)
