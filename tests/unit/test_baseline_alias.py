"""One user, one baseline entry: the UPN form of a principal's key, and how a tick reads it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from monitors.detections.base import baseline_alias, known_keys, principal_key
from monitors.model import Finding, Principal, Severity, baseline_key

ADELE = "9b117c67-170e-4aed-9702-658b3fddc889"  # object id in tests/fixtures/sentinel-training-lab/
UPN = "adelev@contoso.com"


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    principal: Principal
    app: str = "Azure CLI"

    @property
    def key_with_app(self) -> str:  # a detection whose findings carry a subject (ropc-sign-in's shape)
        return baseline_key(self.principal, self.app)


@dataclass(frozen=True, slots=True, kw_only=True)
class Derived:
    user_id: str
    upn: str

    @property
    def principal(self) -> Principal:
        return Principal(user_id=self.user_id, user_principal_name=self.upn)


def _finding(principal: Principal, subject: str | None = None) -> Finding:
    at = datetime(2026, 11, 20, 10, tzinfo=UTC)
    return Finding(
        detection="user-arm-write", severity=Severity.MEDIUM, principal=principal, headline="h",
        facts=(), events=(), event_ids=("e1",), first_time=at, last_time=at, subject=subject,
    )  # fmt: skip


def test_the_upn_form_exists_only_for_a_principal_named_both_ways() -> None:
    both = Principal(user_id=ADELE, user_principal_name=UPN, episode="period from 2026-09-04")
    assert both.upn_form == Principal(user_id=None, user_principal_name=UPN, episode="period from 2026-09-04")
    assert Principal(user_id=ADELE, user_principal_name=None).upn_form is None
    assert Principal(user_id=None, user_principal_name=UPN).upn_form is None


def test_a_findings_alias_is_the_key_a_upn_only_finding_of_its_user_has() -> None:
    both = Principal(user_id=ADELE, user_principal_name=UPN)
    upn_only = Principal(user_id=None, user_principal_name=UPN)
    assert _finding(both).baseline_key == ADELE
    assert _finding(both).baseline_alias == _finding(upn_only).baseline_key == UPN
    assert _finding(both, "Azure CLI").baseline_alias == _finding(upn_only, "Azure CLI").baseline_key
    assert _finding(both, "Azure CLI").baseline_alias == f"{UPN}|Azure CLI"
    assert _finding(upn_only).baseline_alias is None
    assert _finding(Principal(user_id=ADELE, user_principal_name=None)).baseline_alias is None


def test_an_observations_alias_uses_the_detections_own_key() -> None:
    seen = Seen(principal=Principal(user_id=ADELE, user_principal_name=UPN))
    assert baseline_alias(principal_key, seen) == UPN
    assert baseline_alias(lambda s: s.key_with_app, seen) == f"{UPN}|Azure CLI"
    assert (
        baseline_alias(principal_key, Seen(principal=Principal(user_id=None, user_principal_name=UPN)))
        is None
    )
    # an observation that derives its principal (no field to rename) has no alias
    assert baseline_alias(principal_key, Derived(user_id=ADELE, upn=UPN)) is None


def test_a_key_is_known_when_it_or_its_alias_is_held_in_either_order() -> None:
    with_claims = (ADELE, UPN)  # a row with token claims: object id, alias the UPN
    upn_only = (UPN, None)  # a row without claims: Caller alone
    # object id first, UPN-only later: the alias the first alert wrote answers
    assert known_keys([upn_only], held={ADELE, UPN}) == {UPN}
    # UPN-only first, object id later: the UPN key the first alert wrote answers
    assert known_keys([with_claims], held={UPN}) == {ADELE}
    assert known_keys([with_claims, upn_only], held=set()) == frozenset()
    # another user's entries answer nothing
    assert (
        known_keys(
            [with_claims, upn_only], held={"other@contoso.com", "1f0b1e7c-0000-4000-8000-000000000000"}
        )
        == frozenset()
    )
