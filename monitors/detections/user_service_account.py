"""user-service-account: a user object that behaves like automation.

Why: under mandatory MFA every ARM write by a user needs an MFA token. Automation that runs as a
user (a "service account" synced from AD, a shared admin whose password sits in a pipeline, the
owner of Power Automate connections) either breaks or gets MFA scripted around. It should be a
workload identity. user-arm-write sees each new user writing once; this detection says which of
them, or of any user signing in to ARM or the Power Platform, look like a machine, and why.

Evidence, read over the lookback (the late-arrival window, 48 h or more) for every user with a
sign-in to ARM or the Power Platform in this tick's window; only sign-ins whose password was
right count (a spray is not the account's behaviour). Each signal scores points; 3 or more
alert, 5 or more at high severity, and the card lists every signal found:

- no person at the keyboard (2): sign-ins to ARM or the Power Platform and not one interactive
  sign-in (ROPC aside): every token came from a refresh token or the password grant. With
  non-interactive sign-ins to Power Automate, Power Apps or Dataverse the card names them as
  connections owned by a user object: the same fact, scored once;
- password grant, ROPC (2): it can never satisfy MFA;
- regular cadence (2): at least five runs, three quarters of the gaps within 10 % (or 3 min) of
  the median gap, which is 10 min or more: a scheduler, not a person;
- data-centre network (1): every sign-in from a cloud provider's network (by AS number);
- automation user agent (1): Terraform, a CI runner, an HTTP library, the CLI on an Azure VM;
- ARM writes without an interactive sign-in (1): operations whose name ends in /write (create,
  update) or /delete, what mandatory MFA covers; actions (/action: POST requests such as listKeys
  or a portal blade's checks) are no writes and do not count.

Dedupe: once per account, ever (a baseline); accept a known one with a waiver.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from monitors.detections.base import (
    Case,
    Context,
    Detection,
    Expect,
    Row,
    RowError,
    count,
    object_id,
    summarize_list,
    text,
    text_list,
    when,
)
from monitors.model import Finding, Principal, Severity

ID = "user-service-account"
ALERT_AT = 3
HIGH_AT = 5

# Cloud providers' networks (AS numbers): where build agents, VMs and connectors run.
HOSTING_ASNS = {
    "8075": "Microsoft",
    "16509": "Amazon",
    "14618": "Amazon",
    "15169": "Google",
    "396982": "Google Cloud",
    "14061": "DigitalOcean",
    "16276": "OVH",
    "24940": "Hetzner",
    "63949": "Akamai (Linode)",
    "31898": "Oracle Cloud",
}
# User-agent fragments of automation: IaC tools, CI runners, HTTP libraries, the CLI on an Azure VM.
AUTOMATION_AGENTS = (
    "terraform",
    "hashicorp",
    "github-actions",
    "githubactions",
    "azure-pipelines",
    "vsts",
    "jenkins",
    "gitlab",
    "python-requests",
    "go-http-client",
    "okhttp",
    "curl/",
    "-azure-x86_64",
)

RUNBOOK = (
    "Read the signals on the card: they say why this account looks like a machine.",
    "Find the owner of the automation (the user agent, the IP addresses and the apps point to it: a "
    "pipeline, a VM, a flow) and move it to a workload identity: a managed identity for code on "
    "Azure, federated credentials for CI/CD, a service principal with a certificate otherwise. "
    "Power Automate and Power Apps connections: re-create them with a service principal or a "
    "connection reference owned by an application user.",
    "Then remove the user account's Azure role assignments and, if nobody signs in with it, disable it.",
    "A person after all (an admin running scripts from a jump host in Azure): make sure they have "
    "phishing-resistant MFA, and record a waiver with an owner and an expiry.",
)

FALSE_POSITIVES = (
    "An administrator working from a VM or Cloud Shell in Azure (data-centre network, CLI on an "
    "Azure kernel) for days without an interactive sign-in in the lookback.",
    "A person who signed in interactively before the lookback and has only refreshed tokens since.",
    "Evidence is read over the lookback (48 h by default): automation that runs weekly shows less.",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class UserEvidence:
    principal: Principal
    sign_ins: int
    person_interactive: int
    ropc: int
    arm_sign_ins: int
    power_platform_sign_ins: int
    arm_writes: int
    asns: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    user_agents: tuple[str, ...]
    apps: tuple[str, ...]
    times: tuple[datetime, ...]
    event_ids: tuple[str, ...]
    first_time: datetime
    last_time: datetime
    lookback_start: datetime
    as_of: datetime


def parse(row: Row) -> UserEvidence:
    user_id = object_id(row, "UserId")
    if not user_id:
        raise RowError("no object id")
    event_ids = text_list(row, "EventIds", limit=64)
    if not event_ids:
        raise RowError("no event ids")
    upn = text(row, "UserPrincipalName", limit=256)
    return UserEvidence(
        principal=Principal(user_id=user_id, user_principal_name=upn.lower() if upn else None),
        sign_ins=count(row, "SignIns"),
        person_interactive=count(row, "PersonInteractive"),
        ropc=count(row, "Ropc"),
        arm_sign_ins=count(row, "ArmSignIns"),
        power_platform_sign_ins=count(row, "PowerPlatformSignIns"),
        arm_writes=count(row, "ArmWrites"),
        asns=text_list(row, "Asns", limit=16),
        ip_addresses=text_list(row, "IpAddresses", limit=64),
        user_agents=text_list(row, "UserAgents", limit=300),
        apps=text_list(row, "Apps", limit=128),
        times=tuple(sorted(when({"t": t}, "t") for t in text_list(row, "Times", limit=40))),
        event_ids=event_ids,
        first_time=when(row, "FirstTime"),
        last_time=when(row, "LastTime"),
        lookback_start=when(row, "LookbackStart"),
        as_of=when(row, "AsOf"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Signal:
    name: str
    points: int
    why: str


def signals(e: UserEvidence) -> list[Signal]:
    """Every piece of evidence found, with its points and the words the card shows."""
    found = []
    since = f"since {e.lookback_start:%Y-%m-%d %H:%M} UTC"
    unattended = e.person_interactive == 0
    if unattended and (e.arm_sign_ins or e.power_platform_sign_ins):
        connections = (
            f"; {e.power_platform_sign_ins} of them to Power Automate, Power Apps or Dataverse: "
            "connections owned by a user object"
            if e.power_platform_sign_ins
            else ""
        )
        found.append(Signal(
            name="No person at the keyboard", points=2,
            why=f"{e.arm_sign_ins + e.power_platform_sign_ins} sign-ins to ARM or the Power Platform "
            f"{since} and not one interactive: refresh tokens or the password grant only{connections}",
        ))  # fmt: skip
    if e.ropc:
        found.append(Signal(
            name="Password grant (ROPC)", points=2,
            why=f"{e.ropc} sign-ins with a username and password in the request: can never satisfy MFA",
        ))  # fmt: skip
    cadence = regular_cadence(e.times)
    if cadence:
        found.append(Signal(name="Regular cadence", points=2, why=cadence))
    hosting = [a for a in e.asns if a]
    if hosting and all(a in HOSTING_ASNS for a in hosting):
        names = sorted({f"AS{a} ({HOSTING_ASNS[a]})" for a in hosting})
        found.append(Signal(
            name="Data-centre network", points=1, why=f"every sign-in from {summarize_list(names)}",
        ))  # fmt: skip
    agents = [a for a in e.user_agents if any(s in a.lower() for s in AUTOMATION_AGENTS)]
    if agents:
        found.append(Signal(name="Automation user agent", points=1, why=summarize_list(agents, shown=2)))
    if unattended and e.arm_writes:
        found.append(Signal(
            name="ARM writes without a person", points=1,
            why=f"{e.arm_writes} ARM writes or deletes and no interactive sign-in {since}",
        ))  # fmt: skip
    return found


RUN_GAP = timedelta(minutes=3)  # sign-ins closer than this belong to one run


def regular_cadence(times: Sequence[datetime]) -> str | None:
    """'runs every 60 min (24 runs)' when the runs keep time like a scheduler; else None."""
    starts: list[datetime] = []
    for t in sorted(times):
        if not starts or t - starts[-1] > RUN_GAP:
            starts.append(t)
    if len(starts) < 5:
        return None
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    median = statistics.median(gaps)
    if median < 600:
        return None
    tolerance = max(0.1 * median, 180)
    steady = sum(abs(g - median) <= tolerance for g in gaps) / len(gaps)
    if steady < 0.75:
        return None
    return f"runs about every {round(median / 60)} min ({len(starts)} runs, {steady:.0%} on time)"


def evaluate(evidence: Sequence[UserEvidence], context: Context) -> list[Finding]:
    by_user: dict[str, UserEvidence] = {}
    for e in evidence:  # one row per user; a split window gives one per half, alike but for the events
        seen = by_user.get(e.principal.key)
        by_user[e.principal.key] = (
            replace(e, event_ids=tuple(dict.fromkeys(seen.event_ids + e.event_ids))) if seen else e
        )
    findings = []
    for e in by_user.values():
        if e.principal.key in context.known_principals:
            continue
        found = signals(e)
        score = sum(s.points for s in found)
        if score >= ALERT_AT:
            findings.append(_finding(e, found, score))
    return findings


def _finding(e: UserEvidence, found: list[Signal], score: int) -> Finding:
    return Finding(
        detection=ID,
        severity=Severity.HIGH if score >= HIGH_AT else Severity.MEDIUM,
        principal=e.principal,
        headline=f"User account behaves like automation: {e.principal.label} (score {score})",
        facts=(
            ("User", e.principal.label),
            ("Object id", e.principal.user_id or "not in the log"),
            ("Score", f"{score} (alerts at {ALERT_AT}, high at {HIGH_AT})"),
            *((f"{s.name} (+{s.points})", s.why) for s in found),
            ("Apps", summarize_list(e.apps)),
            ("IP addresses", summarize_list(e.ip_addresses)),
            (
                "Sign-ins read",
                f"{e.sign_ins} from {e.first_time.isoformat(timespec='minutes')} "
                f"to {e.last_time.isoformat(timespec='minutes')}",
            ),
        ),
        events=(),
        event_ids=e.event_ids,
        first_time=e.first_time,
        last_time=e.last_time,
    )


# --- cases: raw sign-in and Activity Log rows, run through the KQL above by tests/unit/test_detections.py

ARM = "797f4846-ba00-4fd7-ba43-dac1f8f63013"
FLOW = "7df0a125-d3be-4c96-aa54-591f83ff541c"
SVC_ID = "5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
MAKER_ID = "6e2d3c4b-5f60-4b7c-9d8e-0f1a2b3c4d5e"
BUILD_ID = "7f3e4d5c-6071-4c8d-ae9f-1a2b3c4d5e6f"
ALICE_ID = "11111111-2222-4333-8444-555555555555"
TERRAFORM = (
    "HashiCorp Terraform/1.9.5 (+https://www.terraform.io) Terraform Plugin SDK/2.10.1 "
    "terraform-provider-azurerm/3.116.0"
)


def sign_in(
    event_id: str, user_id: str, upn: str, hour: float, *, resource: str = ARM, result: str = "0",
    protocol: str = "none", asn: str = "8075", agent: str = TERRAFORM, ip: str = "20.62.14.7",
    app: str = "Microsoft Azure CLI",
) -> dict:  # fmt: skip
    minutes = int(hour * 60)
    return {
        "TimeGenerated": f"2026-11-20T{minutes // 60:02d}:{minutes % 60:02d}:{(minutes * 7) % 50:02d}Z",
        "Id": event_id,
        "UserId": user_id,
        "UserPrincipalName": upn,
        "AppDisplayName": app,
        "ResourceIdentity": resource,
        "ResultType": result,
        "AuthenticationProtocol": protocol,
        "IPAddress": ip,
        "AutonomousSystemNumber": asn,
        "UserAgent": agent,
    }


def _hourly(prefix: str, user_id: str, upn: str, **options: object) -> list[dict]:
    return [sign_in(f"{prefix}{n}", user_id, upn, 2 + n, **options) for n in range(6)]  # type: ignore[arg-type]


_LAPTOP = "python/3.11.9 (Windows-10-10.0.22631-SP0) msal/1.31.0 azure-cli/2.64.0"
_HOME = {"asn": "7922", "ip": "73.162.5.9", "agent": _LAPTOP}
# Refreshes to ARM from a laptop at home, at no regular time, never interactive: 2 points.
_REFRESHES = [
    sign_in(f"r{n}", ALICE_ID, "alice@contoso.com", h, **_HOME)
    for n, h in ((1, 9.5), (2, 11.2), (3, 14.9), (4, 15.1), (5, 17.6))
]


def arm_operation(event_id: str, operation: str) -> dict:
    """Alice's ARM operation, the member token shaped as in the real export azureActivity_adele.csv."""
    claims = {
        "http://schemas.microsoft.com/claims/authnmethodsreferences": "pwd",
        "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
        "http://schemas.microsoft.com/identity/claims/objectidentifier": ALICE_ID,
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": "alice@contoso.com",
    }
    return {
        "TimeGenerated": "2026-11-20T11:15:00Z", "EventDataId": event_id, "CorrelationId": f"op-{event_id}",
        "CategoryValue": "Administrative", "OperationNameValue": operation, "ActivityStatusValue": "Success",
        "Caller": "alice@contoso.com", "Claims": json.dumps(claims),
    }  # fmt: skip


CASES = (
    Case(
        name="a person with the CLI on a laptop: an interactive sign-in, then refreshes now and then",
        rows={
            "SigninLogs": [sign_in("p1", ALICE_ID, "alice@contoso.com", 9, **_HOME)],
            "AADNonInteractiveUserSignInLogs": [
                sign_in(f"p{n}", ALICE_ID, "alice@contoso.com", h, **_HOME)
                for n, h in ((2, 9.5), (3, 11.2), (4, 14.9), (5, 15.1), (6, 17.6))
            ],
        },
        findings=(),
    ),
    Case(
        name="a password spray through the password grant is not the account's behaviour",
        rows={"SigninLogs": _hourly("x", ALICE_ID, "alice@contoso.com", result="50126", protocol="ropc")},
        findings=(),
    ),
    Case(
        name="an account already reported is not reported again",
        rows={"AADNonInteractiveUserSignInLogs": _hourly("k", SVC_ID, "svc-terraform@contoso.com")},
        findings=(),
        context=Context(known_principals=frozenset({SVC_ID})),
    ),
    Case(
        name="ROPC from a build agent, refused MFA after enforcement",
        rows={
            "SigninLogs": [
                sign_in("b1", BUILD_ID, "svc-build@contoso.com", 3, result="50076", protocol="ropc")
            ]
        },
        findings=(Expect(principal=BUILD_ID, event_ids=("b1",)),),
    ),
    Case(
        # 53001 (device not domain-joined) comes only after the password was accepted (Microsoft's
        # Entra error-code reference; entra.FIRST_FACTOR_VERIFIED): the account's own password.
        name="ROPC from a build agent, blocked by a device Conditional Access policy",
        rows={
            "SigninLogs": [
                sign_in("b2", BUILD_ID, "svc-build@contoso.com", 3, result="53001", protocol="ropc")
            ]
        },
        findings=(Expect(principal=BUILD_ID, event_ids=("b2",)),),
    ),
    Case(
        name="Power Automate connections of a user object, every 15 minutes from Azure",
        rows={
            "AADNonInteractiveUserSignInLogs": [
                sign_in(
                    f"f{n}",
                    MAKER_ID,
                    "flow.maker@contoso.com",
                    1 + n / 4,
                    resource=FLOW,
                    agent="",
                    app="Microsoft Flow Service",
                )
                for n in range(8)
            ]
        },
        findings=(Expect(principal=MAKER_ID, event_ids=tuple(f"f{n}" for n in range(8))),),
    ),
    Case(
        # Shapes as the Power Automate case above; from a home network at irregular times.
        name="an employee's few Power Automate refreshes over a weekend: one fact, scored once (2)",
        rows={
            "AADNonInteractiveUserSignInLogs": [
                sign_in(
                    f"w{n}",
                    ALICE_ID,
                    "alice@contoso.com",
                    h,
                    resource=FLOW,
                    app="Microsoft Flow Service",
                    **{**_HOME, "agent": ""},
                )
                for n, h in ((1, 9.4), (2, 13.1), (3, 19.8))
            ]
        },
        findings=(),
    ),
    Case(
        name="refreshes only, and an ARM write with nobody at the keyboard: 2 + 1 points",
        # The write first: evidence is read up to the end of the window being queried, so in the
        # split-window test the write must be ingested before the refreshes' sub-windows end.
        rows={
            "AzureActivity": [arm_operation("a1", "Microsoft.Web/sites/write")],
            "AADNonInteractiveUserSignInLogs": _REFRESHES,
        },
        findings=(Expect(principal=ALICE_ID, event_ids=tuple(f"r{n}" for n in range(1, 6))),),
    ),
    Case(
        name="the same refreshes with actions only (listKeys, a blade's check) are no writes: 2 points",
        rows={
            "AADNonInteractiveUserSignInLogs": _REFRESHES,
            "AzureActivity": [
                arm_operation("a2", "Microsoft.Storage/storageAccounts/listKeys/action"),
                arm_operation("a3", "Microsoft.SecurityInsights/dataConnectorsCheckRequirements/action"),
            ],
        },
        findings=(),
    ),
    Case(
        name="Terraform refreshing a token hourly from Azure, writing to ARM",
        rows={
            "AADNonInteractiveUserSignInLogs": _hourly("t", SVC_ID, "svc-terraform@contoso.com"),
            "AzureActivity": [
                {
                    "TimeGenerated": "2026-11-20T03:01:00Z",
                    "EventDataId": "w1",
                    "CorrelationId": "op-w1",
                    "CategoryValue": "Administrative",
                    "OperationNameValue": "Microsoft.Storage/storageAccounts/write",
                    "ActivityStatusValue": "Success",
                    "Caller": "svc-terraform@contoso.com",
                    "Claims": '{"http://schemas.microsoft.com/identity/claims/objectidentifier": "'
                    + SVC_ID
                    + '"}',
                }
            ],
        },
        findings=(Expect(principal=SVC_ID, event_ids=tuple(f"t{n}" for n in range(6))),),
    ),
)

DETECTION = Detection(
    id=ID,
    title="User account behaves like automation",
    severity=Severity.HIGH,
    mitre=("T1078.004",),
    description=__doc__ or "",
    runbook=RUNBOOK,
    false_positives=FALSE_POSITIVES,
    query_file=Path(__file__).with_suffix(".kql"),
    dedupe="principal",
    parse=parse,
    evaluate=evaluate,
    cases=CASES,
)
