"""One user, one baseline entry: the UPN form of a principal's key, and how a tick reads it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from monitors.detections.base import known_keys, principal_key, same_user_key
from monitors.model import Finding, Principal, Severity, alias_key, baseline_key

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


def test_a_findings_alias_is_the_upn_only_key_of_its_user_in_its_own_namespace() -> None:
    both = Principal(user_id=ADELE, user_principal_name=UPN)
    upn_only = Principal(user_id=None, user_principal_name=UPN)
    assert _finding(both).baseline_key == ADELE
    assert _finding(both).baseline_alias == alias_key(_finding(upn_only).baseline_key) == f"alias|{UPN}"
    assert _finding(both, "Azure CLI").baseline_alias == alias_key(
        _finding(upn_only, "Azure CLI").baseline_key
    )
    assert _finding(both, "Azure CLI").baseline_alias == f"alias|{UPN}|Azure CLI"
    assert _finding(upn_only).baseline_alias is None
    assert _finding(Principal(user_id=ADELE, user_principal_name=None)).baseline_alias is None


def test_an_observation_with_an_object_id_asks_for_the_plain_upn_key_never_the_alias() -> None:
    seen = Seen(principal=Principal(user_id=ADELE, user_principal_name=UPN))
    assert same_user_key(principal_key, seen) == UPN
    assert same_user_key(lambda s: s.key_with_app, seen) == f"{UPN}|Azure CLI"
    assert (
        same_user_key(principal_key, Seen(principal=Principal(user_id=ADELE, user_principal_name=None)))
        is None
    )


def test_a_upn_only_observation_asks_for_the_alias_of_its_key() -> None:
    upn_only = Seen(principal=Principal(user_id=None, user_principal_name="AdeleV@contoso.com"))
    assert same_user_key(principal_key, upn_only) == f"alias|{UPN}"
    assert same_user_key(lambda s: s.key_with_app, upn_only) == f"alias|{UPN}|Azure CLI"
    # an observation that derives its principal (no field to rename) asks for nothing else
    assert same_user_key(principal_key, Derived(user_id=ADELE, upn=UPN)) is None


def _asked(principal: Principal) -> tuple[str, str | None]:
    seen = Seen(principal=principal)
    return principal_key(seen), same_user_key(principal_key, seen)


def test_one_user_is_known_in_either_order_and_a_new_account_with_a_reused_upn_is_not() -> None:
    with_claims = _asked(Principal(user_id=ADELE, user_principal_name=UPN))
    upn_only = _asked(Principal(user_id=None, user_principal_name=UPN))
    adele_alerted = {ADELE, alias_key(UPN)}  # what committing her alert with claims wrote
    # object id first, UPN-only later: the alias the first alert wrote answers
    assert known_keys([upn_only], held=adele_alerted) == {UPN}
    # UPN-only first, object id later: the plain UPN key the first alert wrote answers
    assert known_keys([with_claims], held={UPN}) == {ADELE}
    assert known_keys([with_claims, upn_only], held=set()) == frozenset()
    # her UPN given to a new account: her alias does not make it known
    successor = _asked(Principal(user_id="00000000-0000-4000-8000-0000000005c0", user_principal_name=UPN))
    assert known_keys([successor], held=adele_alerted) == frozenset()
    # another user's entries answer nothing
    other = {"other@contoso.com", alias_key("other@contoso.com"), "1f0b1e7c-0000-4000-8000-000000000000"}
    assert known_keys([with_claims, upn_only], held=other) == frozenset()
