"""Replay every file of the real corpus (tests/fixtures/real) and check what it raises.

The expectations were written by reading the rows (the README there says where each file comes
from); each test says why a detection fires or stays quiet. A corpus folder without a test here
fails `test_every_corpus_folder_is_replayed`.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_replay import replay_json

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "real"
PORTAL_ACTIONS = CORPUS / "msticnb-sentinel-portal-actions"
SIGNIN_LOGS = CORPUS / "msticpy-signin-logs"
REPLAYED = {PORTAL_ACTIONS.name, SIGNIN_LOGS.name}


def rows(folder: Path, table: str) -> list[dict[str, str]]:
    return json.loads((folder / f"{table}.json").read_text(encoding="utf-8"))


def test_every_corpus_folder_is_replayed() -> None:
    folders = {p.name for p in CORPUS.iterdir() if p.is_dir()}
    assert folders == REPLAYED


# --------------------------------------------------------------------------- a Sentinel blade, opened


def test_people_opening_a_portal_blade_raise_nothing() -> None:
    """Three people open a Sentinel blade; the portal checks data connector requirements for them:
    50 rows, every one a POST `dataConnectorsCheckRequirements/action`. Actions are not the ARM
    writes mandatory MFA covers (create, update, delete), and no row is a write or a delete, so
    user-arm-write stays quiet. Claims are empty and no row is a Policy event: guest-arm-write and
    policy-mfa-audit have nothing to read; there are no sign-ins."""
    activity = rows(PORTAL_ACTIONS, "AzureActivity")
    assert len(activity) == 50
    assert {r["OperationNameValue"] for r in activity} == {
        "Microsoft.SecurityInsights/dataConnectorsCheckRequirements/action"
    }
    assert {r["CategoryValue"] for r in activity} == {"Administrative"}
    found, stderr = replay_json(PORTAL_ACTIONS)
    assert found == []
    assert "skipped" not in stderr


def test_a_break_glass_caller_in_the_portal_is_seen_by_upn_alone() -> None:
    """The same rows with PAULCU@microsoft.com named a break-glass account (in lower case): his
    18 rows (9 operations, Started and Succeeded) raise break-glass-use, matched on Caller since
    the Claims are empty: there is no object id in these rows. The other two callers stay quiet."""
    activity = rows(PORTAL_ACTIONS, "AzureActivity")
    his = {r["EventDataId"] for r in activity if r["Caller"].lower() == "paulcu@microsoft.com"}
    assert len(his) == 18

    (alert,), _ = replay_json(PORTAL_ACTIONS, "--break-glass", "paulcu@microsoft.com")
    assert alert["detection"] == "break-glass-use"
    assert alert["severity"] == "critical"
    assert alert["user_principal_name"] == "paulcu@microsoft.com"
    assert alert["user_id"] is None
    assert set(alert["event_ids"]) == his


# --------------------------------------------------------------------------- a demo tenant's day of sign-ins

CTFUSER3 = "acc49186-e946-4f6c-85af-669807da0e0f"
SEB = "bdb72692-2275-412b-8af0-ea21c2ebd174"


def test_a_day_of_sign_ins_raises_nothing() -> None:
    """86 rows, 45 sign-ins of six users. Every result is 0 (success) or 90072 (SharePoint, not ARM):
    no sign-in was refused for MFA, so mfa-blocked-automation has nothing. The 2020 export has no
    AuthenticationProtocol column, so no row is ROPC. user-service-account scores each user who
    signs in to ARM: ctfuser3 and zvon sign in interactively in the Azure portal (a person at the
    keyboard); seb has only non-interactive sign-ins, which is 2 points (no person seen at the
    keyboard) and nothing else: a browser user agent, no cadence, no data-centre address (no
    AutonomousSystemNumber column), no Power Platform, no ARM writes; 2 is below the alert at 3.
    No AzureActivity: the ARM write detections have nothing to read."""
    signins = rows(SIGNIN_LOGS, "SigninLogs")
    assert len(signins) == 86
    assert {r["ResultType"] for r in signins} == {"0", "90072"}
    assert "AuthenticationProtocol" not in signins[0]
    seb = [r for r in signins if r["UserId"] == SEB]
    assert {r["IsInteractive"] for r in seb} == {"False"}
    assert any(r["ResourceIdentity"] == "797f4846-ba00-4fd7-ba43-dac1f8f63013" for r in seb)
    found, stderr = replay_json(SIGNIN_LOGS)
    assert found == []
    assert "skipped" not in stderr


def test_a_break_glass_account_signing_in_with_a_password_raises_both_break_glass_alerts() -> None:
    """ctfuser3 named a break-glass account (by object id): three sign-ins, each in the export
    twice (same Id), raise one break-glass-use over the three Ids. One of them, at 17:05:34, is
    an interactive Azure portal sign-in whose only step is a password that worked
    (`CloudOnlyPassword`, succeeded): break-glass-weak-method, for that sign-in alone; the other
    two list no authentication step."""
    signins = [r for r in rows(SIGNIN_LOGS, "SigninLogs") if r["UserId"] == CTFUSER3]
    assert len(signins) == 6
    ids = {r["Id"] for r in signins}
    with_password = {r["Id"] for r in signins if '"CloudOnlyPassword"' in r["AuthenticationDetails"]}
    assert with_password == {"eaa26ca2-ea14-4a4c-a252-ad5234ac3c00"}

    found, _ = replay_json(SIGNIN_LOGS, "--break-glass", CTFUSER3)
    alerts = {a["detection"]: a for a in found}
    assert set(alerts) == {"break-glass-use", "break-glass-weak-method"}
    for alert in alerts.values():
        assert (alert["user_id"], alert["user_principal_name"]) == (CTFUSER3, "ctfuser3@seccxp.ninja")
    assert set(alerts["break-glass-use"]["event_ids"]) == ids
    assert set(alerts["break-glass-weak-method"]["event_ids"]) == with_password
    assert alerts["break-glass-weak-method"]["facts"]["Weak methods that worked"] == "CloudOnlyPassword"


def test_a_break_glass_account_with_only_refresh_tokens_raises_break_glass_use_alone() -> None:
    """seb named a break-glass account: 24 sign-ins (22 of them in the export twice), all
    non-interactive, none failed. break-glass-use covers all 24. Every step of his names no method
    ("MFA requirement satisfied by claim in the token", from the refresh token): no weak method
    worked, so no break-glass-weak-method."""
    seb = [r for r in rows(SIGNIN_LOGS, "SigninLogs") if r["UserId"] == SEB]
    ids = {r["Id"] for r in seb}
    assert len(ids) == 24

    (alert,), _ = replay_json(SIGNIN_LOGS, "--break-glass", SEB)
    assert alert["detection"] == "break-glass-use"
    assert alert["user_id"] == SEB
    assert set(alert["event_ids"]) == ids
    assert alert["facts"]["Failed"] == "0 of 24"
