"""The shared Entra lists: one reading of the amr claim, in Python and in the KQL alike."""

from __future__ import annotations

import pytest

from devstack.loganalytics import LogAnalyticsServer
from monitors.detections import entra
from monitors.detections.base import Case
from monitors.detections.user_arm_write import _USER_CLAIMS, AMR, OID, UPN, arm_row
from monitors.detections.user_arm_write import DETECTION as USER_ARM_WRITE
from tests.unit.test_detections import run_case

# amr values as Microsoft's access-token reference lists them (entra.py cites it), alone and in
# the comma-separated form the Activity Log's Claims keep ("rsa,mfa" in the real export).
AMR_VALUES = {
    "pwd": False,
    "rsa,mfa": True,
    "pwd,mfa": True,
    "ngcmfa": True,
    "rsa,ngcmfa": True,
    "wiaormfa": True,
    "wia": False,
    "pwd,otp": False,
    "MFA": True,
    "": False,
}


@pytest.mark.parametrize(("amr", "mfa"), AMR_VALUES.items())
def test_has_mfa_reads_whole_amr_values(amr: str, mfa: bool) -> None:
    assert entra.has_mfa(amr) is mfa


def test_first_factor_codes_hold_every_refusal_after_a_right_password() -> None:
    assert set(entra.MFA_REQUIRED) < set(entra.FIRST_FACTOR_VERIFIED)
    assert {"53000", "53001", "53002", "53003", "50055", "50057"} < set(entra.FIRST_FACTOR_VERIFIED)
    assert "50126" not in entra.FIRST_FACTOR_VERIFIED  # a wrong password
    assert set(entra.STEP_UP_RESULTS) <= set(entra.MFA_REQUIRED)


def test_user_arm_write_reads_mfa_from_amr_as_python_does(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One user per amr value, one write each (the member token of the real export
    azureActivity_adele.csv, its amr replaced): the query's MFA count agrees with has_mfa."""
    engine = LogAnalyticsServer("entra", state_dir=tmp_path_factory.mktemp("engine"))
    users = {f"00000000-0000-4000-8000-{n:012d}": amr for n, amr in enumerate(AMR_VALUES) if amr}
    rows = [
        arm_row(
            f"m{n}", f"user{n}@contoso.com", {**_USER_CLAIMS, AMR: amr, OID: oid, UPN: f"user{n}@contoso.com"}
        )
        for n, (oid, amr) in enumerate(users.items())
    ]
    case = Case(name="amr values", rows={"AzureActivity": rows}, findings=())
    findings = {
        f.principal.user_id: dict(f.facts)["MFA"] for f in run_case(USER_ARM_WRITE, case, engine).findings
    }
    assert set(findings) == set(users)
    for oid, amr in users.items():
        assert findings[oid].startswith("yes") is entra.has_mfa(amr), (amr, findings[oid])
