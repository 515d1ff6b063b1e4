"""Synthetic Entra ID tenant: deterministic sign-in and Activity Log rows for the devstack.

Why: the monitor must be exercised against rows shaped like real Log Analytics exports
(tests/fixtures), at realistic volume, with a ground truth saying which principal must raise
which alert. tests/unit/test_tenant_shapes.py holds the rows to the real ones in tests/fixtures
(columns, value forms, claim keys, Caller, keys inside JSON values, an operation's statuses):
whatever no real row shows fails there unless a Microsoft document it names shows it. Three layers,
top to bottom:

1. row builders: one principal and one instant in, Log Analytics rows out (keys are documented
   columns of monitors/schema/tables.json). `signin_row`, `activity_rows`, `policy_audit_row`
   and `service_health_row` return plain dicts for tests that craft rows; the generator uses
   `signin_record` / `activity_records`, the same rows as `Record`s whose shared columns are
   JSON-encoded once (the encoder is the bottleneck at several KB per row);
2. behaviour: who is in the tenant (`population`) and what each of them does in a day
   (`day_rows`), plus the scripted break-glass events (`break_glass_script`);
3. delivery: `TableWriter` streams rows to `<Table>.jsonl`, adding `_IngestionTime` (the latency
   real pipelines have, a few rows hours late) and a few duplicate rows; `generate` splits the
   principals between worker processes (same bytes whatever their number), joins their files and
   writes the manifest `tenant.json` (see `Manifest`). The CLI:

    python -m devstack.tenant --out DIR --users N --days D --seed S [--start ISO] [--break-glass-out FILE]

Ground truth, per principal in the manifest (`expected`, and in `expected_events` the rows each
detection's alerts must cover, as `AnswerKey` collects them):
- "user-arm-write": a user object (member, guest, service account or break-glass account) is the
  caller of at least one `Administrative` write or delete (an OperationNameValue ending in /write
  or /delete). Every generated Administrative operation is a write, delete or action (the
  Activity Log never holds reads); actions (/action: listKeys, a VM start, the checks a portal
  blade makes) are no writes: a principal with actions only (the showcase's portal browser, and
  service accounts whose scripts only start and stop things) expects no user-arm-write.
- "break-glass-use": any row of a break-glass account, in either sign-in table (failures included)
  or in AzureActivity.
- "break-glass-account-changed": an AuditLogs entry about a break-glass account (`directory_script`:
  an admin deletes bg1's FIDO2 key and registers a Temporary Access Pass for it, takes bg2 out of
  Global Administrator, and drops bg1 from a Conditional Access policy's exclusions). Everyone
  else's directory changes (security info, password resets, group members, a policy excluding an
  ordinary user) are AuditLogs background that must not fire.
- "source-silent": whoever deletes a diagnostic setting (the showcase admin deletes the Activity
  Log export once, late in the window; admins do it now and then). Silence is not generated: every
  table receives rows to the end of the window.
- "break-glass-weak-method": a break-glass sign-in with a step that succeeded using a method
  other than FIDO2 / Windows Hello (bg2's password + SMS), and a break-glass account with no
  successful interactive sign-in in the window: the third account, never drilled, has no rows.
- "user-service-account": a sign-in to ARM or the Power Platform, with the right password, by a
  service account or by the user object that owns Power Automate connections (a maker account
  whose flows refresh tokens every 15 minutes from Azure; nobody signs in with it interactively).
- "mfa-blocked-automation": a user's ARM token request refused for MFA (50074/50076/50079/50072)
  in the non-interactive log or over ROPC, or a user's Administrative write refused by the
  built-in MFA policy in deny mode (`mandatory_mfa_script`); not a silent refresh refused for a
  step-up (50074/50076) that the user answers within minutes with an interactive MFA sign-in.
- "ropc-sign-in": a user's ROPC sign-in whose password was accepted (entra.FIRST_FACTOR_VERIFIED: success,
  MFA required, a Conditional Access block, an expired password, a disabled account).
- "guest-arm-write": a guest is the caller of an `Administrative` write or delete. A guest's ARM
  rows have the shape Microsoft's samples show: Caller its e-mail, no upn claim, and its home
  tenant's issuer in the identity provider claim (`IDENTITY_PROVIDER_CLAIM`).
- "policy-mfa-audit": a user is the caller of a built-in MFA policy's audit event (`Policy`).

Rows are grouped by principal, then day, not sorted by time: load them, don't replay them in order.
"""

from __future__ import annotations

import argparse
import base64
import copy
import functools
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TextIO

from monitors.detections import entra
from monitors.detections.entra import FIRST_FACTOR_VERIFIED, has_mfa

# --------------------------------------------------------------------------- tables and well-known ids

SIGNIN = "SigninLogs"
NONINTERACTIVE = "AADNonInteractiveUserSignInLogs"
ACTIVITY = "AzureActivity"
AUDIT = "AuditLogs"
TABLES = (SIGNIN, NONINTERACTIVE, ACTIVITY, AUDIT)

ARM_AUDIENCE = "https://management.core.windows.net/"
# Claim keys as AzureActivity's Claims column stores them (the JWT's idp, email and upn).
IDENTITY_PROVIDER_CLAIM = "http://schemas.microsoft.com/identity/claims/identityprovider"
EMAIL_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
UPN_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
MICROSOFT_SERVICES_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"  # owns the first-party apps

# Built-in Azure Policy definitions that audit user writes without MFA (DOMAIN.md section 1).
MFA_POLICY_WRITE = "4e6c27d5-a6ee-49cf-b2b4-d8fe90fa2b8b"
MFA_POLICY_DELETE = "db4a9d17-db75-4f46-9fcb-9f9526604417"

DEFAULT_START = datetime(2025, 10, 6, tzinfo=UTC)  # a Monday; fixed so a seed alone fixes the bytes

# Detection names used in the manifest's `expected` lists.
USER_ARM_WRITE = "user-arm-write"
BREAK_GLASS_USE = "break-glass-use"
SOURCE_SILENT = "source-silent"
BREAK_GLASS_WEAK_METHOD = "break-glass-weak-method"
BREAK_GLASS_ACCOUNT_CHANGED = "break-glass-account-changed"
# The mandatory-MFA scenarios: verdicts in `_mandatory_mfa_verdicts`, scripted rows in
# `mandatory_mfa_script`.
MFA_BLOCKED_AUTOMATION = "mfa-blocked-automation"
ROPC_SIGN_IN = "ropc-sign-in"
GUEST_ARM_WRITE = "guest-arm-write"
POLICY_MFA_AUDIT = "policy-mfa-audit"


@dataclass(frozen=True, slots=True)
class App:
    """A client application as sign-in rows name it."""

    app_id: str
    name: str
    client: str  # ClientAppUsed


PORTAL = App("c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "Azure Portal", "Browser")
AZURE_CLI = App(
    "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "Microsoft Azure CLI", "Mobile Apps and Desktop clients"
)
AZURE_POWERSHELL = App(
    "1950a258-227b-4e31-a9cf-717495945fc2", "Microsoft Azure PowerShell", "Mobile Apps and Desktop clients"
)
AZURE_MOBILE = App(
    "0c1307d4-29d6-4389-a11c-5cbe7f65d7fa", "Azure Mobile App", "Mobile Apps and Desktop clients"
)
OFFICE_HOME = App("4765445b-32c6-49b0-83e6-1d93765276ca", "OfficeHome", "Browser")
TEAMS_WEB = App("5e3ce6c0-2b1f-4285-8d4b-75ee78787346", "Microsoft Teams Web Client", "Browser")
OFFICE_SHELL = App("89bee1f7-5e6e-4d8a-9f3d-ecd601259da7", "Office365 Shell WCSS-Client", "Browser")
MS_OFFICE = App("d3590ed6-52b3-4102-aeff-aad2292ab01c", "Microsoft Office", "Mobile Apps and Desktop clients")


@dataclass(frozen=True, slots=True)
class Resource:
    """The resource (audience) a token is issued for."""

    resource_id: str
    name: str


ARM = Resource("797f4846-ba00-4fd7-ba43-dac1f8f63013", "Windows Azure Service Management API")
GRAPH = Resource("00000003-0000-0000-c000-000000000000", "Microsoft Graph")
EXCHANGE = Resource("00000002-0000-0ff1-ce00-000000000000", "Office 365 Exchange Online")
SHAREPOINT = Resource("00000003-0000-0ff1-ce00-000000000000", "Office 365 SharePoint Online")
SHELL_SERVER = Resource("5f09333a-842c-47da-a157-57da27fcbca5", "Office365 Shell WCSS-Server")
KEY_VAULT = Resource("cfa8b339-82a2-471a-a3c9-0fc0be7a4093", "Azure Key Vault")

# Everyday Microsoft 365 traffic: the bulk of the sign-in tables, none of it ARM.
OFFICE_TRAFFIC = (
    (OFFICE_HOME, GRAPH),
    (TEAMS_WEB, GRAPH),
    (OFFICE_SHELL, SHELL_SERVER),
    (MS_OFFICE, EXCHANGE),
    (MS_OFFICE, SHAREPOINT),
)


@dataclass(frozen=True, slots=True)
class Auth:
    """How a user proved who they are: methods as AuthenticationDetails names them, and the amr
    claim as AzureActivity Claims carries it (comma-separated; MFA as the rules read it: entra.has_mfa)."""

    methods: tuple[str, ...]
    amr: str

    @property
    def mfa(self) -> bool:
        return has_mfa(self.amr)


PASSWORD = Auth(("Password",), "pwd")
PASSWORD_APP = Auth(("Password", "Mobile app notification"), "pwd,mfa")
PASSWORD_SMS = Auth(("Password", "Text message"), "pwd,mfa")
PASSWORD_TOTP = Auth(("Password", "OATH verification code"), "pwd,mfa")
WHFB = Auth(("Windows Hello for Business",), "rsa,mfa")
FIDO2 = Auth(("FIDO2 security key",), "fido,mfa")

# ResultType -> ResultDescription, as Entra words them.
ERRORS = {
    50126: "Error validating credentials due to invalid username or password.",
    50074: "Strong Authentication is required.",
    50076: "Due to a configuration change made by your administrator, or because you moved to a new "
    "location, you must use multi-factor authentication to access '{resource}'.",
    50058: "The application tried to perform a silent sign in and the user could not be silently "
    "signed in. The application needs to start an interactive flow giving users an option "
    "to sign in. Contact app owner.",
    50140: "This error occurred due to 'Keep me signed in' interrupt when the user was signing in.",
    16000: "Other",
}
MFA_REQUIRED = frozenset(int(code) for code in entra.MFA_REQUIRED)  # ResultType is an int here


# --------------------------------------------------------------------------- the tenant and its network


@dataclass(frozen=True, slots=True, kw_only=True)
class Tenant:
    """The directory, the workspace its logs land in, and its Azure estate."""

    tenant_id: str
    workspace_id: str  # the TenantId column of Log Analytics rows
    domain: str
    initial_domain: str
    management_group: str
    subscriptions: tuple[str, ...]
    resource_groups: tuple[str, ...]
    created_epoch: int  # the xms_tcdt claim


TENANT = Tenant(
    tenant_id="d8d95641-7656-4287-916b-1ab0d7670dce",
    workspace_id="a5b37618-b5e9-4677-8dbe-2334f863690c",
    domain="contoso.com",
    initial_domain="contoso.onmicrosoft.com",
    management_group="CONTOSO-MG",
    subscriptions=(
        "2e1a9236-0b4f-4dc2-9a67-ff6de804d3f3",
        "292812d7-631c-4b81-a691-7edb71837b47",
        "1d2d307d-24f3-41c9-8db0-85fbdddf538d",
    ),
    resource_groups=(
        "rg-web-prod",
        "rg-data-prod",
        "RG-SHARED-SERVICES",
        "rg-network",
        "rg-aks-prod",
        "rg-dev-sandbox",
        "Sentinel-MainRG",
        "rg-identity",
    ),
    created_epoch=1591748537,
)

# Partner directories whose users are B2B guests here: (tenant id, domain).
PARTNERS = (
    ("c72298a0-1263-446b-88be-218b13844c82", "fabrikam.com"),
    ("d183b0cb-6ab2-45c2-9d96-cd64943817d7", "northwindtraders.com"),
    ("6b138ade-fff5-4fa4-b11f-4c0775cd12d9", "tailspintoys.com"),
)


@dataclass(frozen=True, slots=True)
class Site:
    """Where an address sits: LocationDetails, Location and AutonomousSystemNumber come from here."""

    prefix: str  # first two octets (IPv4) or hextets (IPv6)
    country: str
    state: str
    city: str
    lat: float
    lon: float
    asn: str
    tz: int  # hours from UTC, to place working hours


OFFICES = (  # corporate egress addresses, shared by everyone in the building
    (Site("81.2", "GB", "England", "London", 51.5142, -0.0931, "20712", 0), "81.2.69.142"),
    (Site("216.160", "US", "Washington", "Milton", 47.2513, -122.3149, "209", -8), "216.160.83.56"),
    (Site("89.160", "SE", "Östergötland County", "Linköping", 58.4167, 15.6167, "29518", 1), "89.160.20.112"),
    (Site("37.142", "IL", "Tel Aviv", "Azor", 32.0296, 34.7996, "12849", 2), "37.142.150.162"),
)
HOMES = (  # residential ranges; people working from home get their own address
    Site("73.162", "US", "Illinois", "Chicago", 41.8781, -87.6298, "7922", -6),
    Site("86.12", "GB", "England", "Manchester", 53.4808, -2.2426, "5089", 0),
    Site("91.64", "DE", "Berlin", "Berlin", 52.5200, 13.4050, "3320", 1),
    Site("90.84", "FR", "Île-de-France", "Paris", 48.8566, 2.3522, "3215", 1),
    Site("2a02:c7c", "GB", "England", "Leeds", 53.8008, -1.5491, "5607", 0),
    Site("2601:1c0", "US", "Washington", "Seattle", 47.6062, -122.3321, "7922", -8),
)
DATACENTRES = (  # Azure regions: build agents, VMs running scripts, managed identities
    Site("20.62", "US", "Virginia", "Boydton", 36.6676, -78.3875, "8075", 0),
    Site("40.74", "NL", "Noord-Holland", "Amsterdam", 52.3740, 4.8897, "8075", 0),
    Site("52.169", "IE", "Dublin", "Dublin", 53.3498, -6.2603, "8075", 0),
    Site("13.66", "US", "Washington", "Quincy", 47.2343, -119.8526, "8075", 0),
)
SPRAY_SOURCES = (  # hosting ranges a password spray comes from
    Site("185.220", "DE", "Brandenburg", "Brandenburg", 52.4125, 12.5316, "208294", 0),
    Site("45.155", "NL", "Zuid-Holland", "Rotterdam", 51.9244, 4.4777, "206728", 0),
    Site("103.251", "VN", "Hanoi", "Hanoi", 21.0278, 105.8342, "135905", 0),
)
_SITES = {s.prefix: s for s in (*(o for o, _ in OFFICES), *HOMES, *DATACENTRES, *SPRAY_SOURCES)}


def address(site: Site, rng: random.Random) -> str:
    """A random address inside a site's range."""
    if ":" in site.prefix:
        return f"{site.prefix}:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}::{rng.getrandbits(12):x}"
    return f"{site.prefix}.{rng.randint(1, 254)}.{rng.randint(1, 254)}"


# --------------------------------------------------------------------------- principals


Kind = Literal[
    "human-mfa",
    "human-no-mfa",
    "admin",
    "service-account",
    "guest",
    "service-principal",
    "managed-identity",
    "break-glass",
]
USER_KINDS: tuple[Kind, ...] = ("human-mfa", "human-no-mfa", "admin", "service-account", "guest")
WORKLOAD_KINDS: tuple[Kind, ...] = ("service-principal", "managed-identity")
KINDS: tuple[Kind, ...] = (*USER_KINDS, *WORKLOAD_KINDS, "break-glass")

ROLE_DEFINITIONS = {  # built-in role definition ids, as Authorization.evidence writes them
    "Owner": "8e3af657a8ff443ca75c2fe8c4bcb635",
    "Contributor": "b24988ac618042a0ab8820f7382dd24c",
    "Virtual Machine Contributor": "9980e02c92ba4e7eb04c9b40fa2a5a1b",
    "Website Contributor": "de139f84162748b0a4fc0c2ef3a0f51b",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """One identity of the tenant plus the habits that shape its rows. Defaults make a plain
    member user, so tests can build one with a handful of fields."""

    kind: Kind
    object_id: str
    display_name: str
    upn: str | None = None  # directory UPN (mixed case); None for workload identities
    user_type: str | None = "Member"  # "Member" / "Guest"; None for workload identities
    home_tenant_id: str = TENANT.tenant_id
    app_id: str | None = None  # workload identities: the application (client) id
    mi_resource_id: str | None = None  # managed identities: the xms_mirid claim
    auth: Auth = PASSWORD_APP  # how the user signs in interactively
    tool: str = "portal"  # portal | cli | powershell | terraform | pipeline | automation
    ip: str = "81.2.69.142"
    user_agent: str = ""
    os: str = "Windows 10"
    browser: str = "Edge 128.0.0"
    device_id: str = ""  # set for Entra-joined devices
    tz: int = 0
    subscription_id: str = TENANT.subscriptions[0]
    resource_group: str = TENANT.resource_groups[0]
    project: str = "web"
    role: str = "Contributor"
    role_principal_type: str = "User"  # Authorization.evidence.principalType: User, Group, ServicePrincipal
    role_principal_id: str = ""  # the assignment's principal (a group id for Group); object_id if empty
    azure_rate: float = 0.0  # chance per working day of an ARM session
    write_rate: float = 0.0  # chance that an ARM session writes
    browse_rate: float = 0.5  # chance that a portal session without writes opens blades that POST actions
    ropc: bool = False  # service accounts: password grant on every run instead of a refresh token
    cadence_min: int = 0  # automation: minutes between runs
    phase_min: int = 0  # automation: first run, minutes after midnight UTC
    mail: str | None = None  # guests: the e-mail address they were invited with, their Caller in ARM
    idtyp_claim: bool = False  # newer user tokens carry idtyp=user

    @property
    def is_user(self) -> bool:
        return self.kind not in WORKLOAD_KINDS

    @property
    def assignee(self) -> str:
        return self.role_principal_id or self.object_id


@dataclass(frozen=True, slots=True)
class Operation:
    """An ARM control-plane operation the Activity Log records."""

    action: str  # canonical, e.g. Microsoft.Web/sites/write
    name: str  # OperationName as the portal shows it
    noun: str  # how its resources are named: "st" storage, "app" web app, "guid" ...
    upper: bool = False  # logged upper-case, as many resource providers do
    accepted: bool = False  # long-running: Start, Accept, then Success
    template: str = ""  # the target's resource id, when it does not follow from the action
    burst: int = 1  # operations the portal issues at once, under one CorrelationId, on one target

    @property
    def value(self) -> str:
        """OperationNameValue."""
        return self.action.upper() if self.upper else self.action

    def target(self, subscription: str, resource_group: str, name: str) -> str:
        """The resource id the operation acts on: Microsoft.Web/sites/write and .../restart/action
        both act on /subscriptions/../resourceGroups/../providers/Microsoft.Web/sites/<name>."""
        rg = f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        if self.template:
            return self.template.format(sub=subscription, rg=rg, name=name)
        resource_type = self.action.rsplit("/", 2 if self.action.endswith("/action") else 1)[0]
        return f"{rg}/providers/{resource_type}/{name}"


STORAGE_WRITE = Operation("Microsoft.Storage/storageAccounts/write", "Create/Update Storage Account", "st")
STORAGE_LIST_KEYS = Operation(
    "Microsoft.Storage/storageAccounts/listKeys/action", "List Storage Account Keys", "st"
)
SITE_WRITE = Operation("Microsoft.Web/sites/write", "Create or Update Web App", "app", upper=True)
SITE_DELETE = Operation("Microsoft.Web/sites/delete", "Delete Web App", "app", upper=True)
SITE_RESTART = Operation("Microsoft.Web/sites/restart/action", "Restart Web App", "app", upper=True)
VAULT_WRITE = Operation("Microsoft.KeyVault/vaults/write", "Update Key Vault", "kv", upper=True)
VAULT_DELETE = Operation("Microsoft.KeyVault/vaults/delete", "Delete Key Vault", "kv", upper=True)
VM_WRITE = Operation(
    "Microsoft.Compute/virtualMachines/write", "Create or Update Virtual Machine", "vm", accepted=True
)
VM_DELETE = Operation(
    "Microsoft.Compute/virtualMachines/delete", "Delete Virtual Machine", "vm", upper=True, accepted=True
)
VM_START = Operation(
    "Microsoft.Compute/virtualMachines/start/action", "Start Virtual Machine", "vm", accepted=True
)
VM_DEALLOCATE = Operation(
    "Microsoft.Compute/virtualMachines/deallocate/action", "Deallocate Virtual Machine", "vm", accepted=True
)
DEPLOYMENT_WRITE = Operation("Microsoft.Resources/deployments/write", "Create Deployment", "deploy")
RG_WRITE = Operation(
    "Microsoft.Resources/subscriptions/resourceGroups/write", "Update resource group", "rg", template="{rg}"
)
RG_DELETE = Operation(
    "Microsoft.Resources/subscriptions/resourceGroups/delete",
    "Delete resource group",
    "rg",
    upper=True,
    accepted=True,
    template="{rg}",
)
NSG_RULE_WRITE = Operation(
    "Microsoft.Network/networkSecurityGroups/securityRules/write",
    "Create or Update Security Rule",
    "nsg",
    template="{rg}/providers/Microsoft.Network/networkSecurityGroups/{name}/securityRules/AllowHttps",
)
SQL_FIREWALL_WRITE = Operation(
    "Microsoft.Sql/servers/firewallRules/write",
    "Create/Update server firewall rule",
    "sql",
    template="{rg}/providers/Microsoft.Sql/servers/{name}/firewallRules/ClientIp",
)
AKS_WRITE = Operation(
    "Microsoft.ContainerService/managedClusters/write",
    "Create or Update Managed Cluster",
    "aks",
    accepted=True,
)
WORKSPACE_KEYS = Operation(
    "Microsoft.OperationalInsights/workspaces/sharedKeys/action",
    "Get Workspace Shared Keys",
    "law",
    upper=True,
)
DIAGNOSTIC_DELETE = Operation(  # the silent way to blind a monitor
    "Microsoft.Insights/diagnosticSettings/delete",
    "Delete diagnostic setting",
    "kv",
    template="{rg}/providers/Microsoft.KeyVault/vaults/{name}/providers/Microsoft.Insights/diagnosticSettings/to-la",
)
# What the portal POSTs when someone merely opens a blade: a Microsoft Sentinel page checks the
# user's authorization and licence ("Check user authorization and license", granted to the built-in
# Microsoft Sentinel Reader role: MicrosoftDocs/azure-docs role-based-access-control/built-in-roles).
# As real rows show it (tests/fixtures/real/msticnb-sentinel-portal-actions): nine checks per
# opening, within a second, under one CorrelationId, on the workspace's SecurityInsights provider.
DATA_CONNECTORS_CHECK = Operation(
    "Microsoft.SecurityInsights/dataConnectorsCheckRequirements/action",
    "Check user authorization and license",
    "law",
    template="{rg}/providers/Microsoft.OperationalInsights/workspaces/{name}"
    "/providers/Microsoft.SecurityInsights",
    burst=9,
)
ROLE_ASSIGNMENT_WRITE = Operation(
    "Microsoft.Authorization/roleAssignments/write",
    "Create role assignment",
    "guid",
    template="/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments/{name}",
)

# What each kind of caller tends to do (weighted by repetition).
HUMAN_OPERATIONS = (
    SITE_WRITE,
    SITE_WRITE,
    SITE_RESTART,
    STORAGE_WRITE,
    STORAGE_LIST_KEYS,
    VAULT_WRITE,
    VM_START,
    VM_DEALLOCATE,
    NSG_RULE_WRITE,
    RG_WRITE,
    SITE_DELETE,
    VM_WRITE,
)
ADMIN_OPERATIONS = (
    *HUMAN_OPERATIONS,
    ROLE_ASSIGNMENT_WRITE,
    RG_DELETE,
    VM_DELETE,
    VAULT_DELETE,
    SQL_FIREWALL_WRITE,
    DIAGNOSTIC_DELETE,
)
TERRAFORM_OPERATIONS = (
    STORAGE_WRITE,
    SITE_WRITE,
    NSG_RULE_WRITE,
    RG_WRITE,
    SQL_FIREWALL_WRITE,
    AKS_WRITE,
    STORAGE_LIST_KEYS,
    STORAGE_LIST_KEYS,
)
SCRIPT_OPERATIONS = (VM_START, VM_DEALLOCATE, SITE_RESTART, STORAGE_LIST_KEYS)
# Actions only, no writes: the blades a portal user opens to look (storage keys, Sentinel pages).
PORTAL_BLADE_ACTIONS = (STORAGE_LIST_KEYS, DATA_CONNECTORS_CHECK)
PIPELINE_OPERATIONS = (STORAGE_WRITE, SITE_WRITE, AKS_WRITE, STORAGE_LIST_KEYS, VAULT_WRITE)
IDENTITY_OPERATIONS = (SITE_RESTART, VM_START, VM_DEALLOCATE, STORAGE_LIST_KEYS, WORKSPACE_KEYS)


# --------------------------------------------------------------------------- small pure helpers

_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # ASCII lines: the fastest paths
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
_SYSTEM_RNG = random.Random()  # only when a caller passes no rng: ids then differ run to run


def guid(rng: random.Random) -> str:
    """A version-4 GUID drawn from rng (uuid.uuid4 would break determinism)."""
    h = rng.getrandbits(128).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def token_id(rng: random.Random) -> str:
    """A UniqueTokenIdentifier / uti: 16 random bytes, base64url without padding."""
    return base64.urlsafe_b64encode(rng.getrandbits(128).to_bytes(16, "little")).rstrip(b"=").decode()


def _b64(rng: random.Random, nbytes: int) -> str:
    return (
        base64.urlsafe_b64encode(rng.getrandbits(nbytes * 8).to_bytes(nbytes, "little")).decode().rstrip("=")
    )


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        return t.replace(tzinfo=UTC)
    return t.astimezone(UTC) if t.utcoffset() else t


def iso(t: datetime) -> str:
    """ISO 8601 UTC with microseconds and Z, as the query API returns datetimes."""
    return t.isoformat(timespec="microseconds")[:26] + "Z"


def _hex_id(*parts: str) -> str:
    """A stable 32-hex id (role assignment ids and the like) derived from its parts."""
    return hashlib.md5("/".join(parts).encode(), usedforsecurity=False).hexdigest()


_FLAT_ENCODERS = [
    json.JSONEncoder(separators=(",\n" + "  " * (level + 1), ": ")).encode for level in range(4)
]


def json_text(value: Any, level: int = 0) -> str:
    """JSON text laid out like Log Analytics shows string columns (json.dumps(indent=2)),
    built with the C encoder because indent= falls back to the slow pure-Python one."""
    if isinstance(value, dict):
        if any(isinstance(v, dict | list) and v for v in value.values()):
            pad = "\n" + "  " * (level + 1)
            body = ("," + pad).join(f"{_ENCODE(k)}: {json_text(v, level + 1)}" for k, v in value.items())
            return "{" + pad + body + "\n" + "  " * level + "}"
        return flat_json_text(value, level)
    if isinstance(value, list):
        if not value:
            return "[]"
        pad = "\n" + "  " * (level + 1)
        return (
            "[" + pad + ("," + pad).join(json_text(v, level + 1) for v in value) + "\n" + "  " * level + "]"
        )
    return _ENCODE(value)


def flat_json_text(value: Mapping[str, Any], level: int = 0) -> str:
    """json_text for a dict whose values are scalars (claims, properties): one C encoder call."""
    if not value:
        return "{}"
    return "{\n" + "  " * (level + 1) + _FLAT_ENCODERS[level](value)[1:-1] + "\n" + "  " * level + "}"


def _prefix(ip: str) -> str:
    """The range key of an address: first two octets (IPv4) or hextets (IPv6)."""
    sep = ":" if ":" in ip else "."
    return sep.join(ip.split(sep, 2)[:2])


# --------------------------------------------------------------------------- rows: own columns + shared parts

Row = Mapping[str, Any]  # a log row: a dict, or a Record


@dataclass(frozen=True, slots=True)
class Part:
    """Columns that many rows share (same table, principal, address, client, outcome or operation),
    with their JSON encoded once. Why: at several KB per row, the JSON encoder, not the row logic,
    is what limits throughput."""

    columns: Mapping[str, Any]
    json: str  # '"Column":value,...' without the braces

    @classmethod
    def of(cls, columns: dict[str, Any]) -> Part:
        return cls(columns, _ENCODE(columns)[1:-1])


@dataclass(frozen=True, slots=True, eq=False)
class Record(Mapping[str, Any]):
    """One log row as the generator passes it around: its own columns plus shared parts (no column in
    two places). Reads like a read-only mapping; `to_dict` gives an independent plain dict."""

    own: dict[str, Any]
    parts: tuple[Part, ...] = ()

    def __getitem__(self, column: str) -> Any:
        if column in self.own:
            return self.own[column]
        for part in self.parts:
            if column in part.columns:
                return part.columns[column]
        raise KeyError(column)

    def __iter__(self) -> Iterator[str]:
        yield from self.own
        for part in self.parts:
            yield from part.columns

    def __len__(self) -> int:
        return len(self.own) + sum(len(part.columns) for part in self.parts)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self))  # parts are shared with other rows: never hand them out

    def json_line(self, extra: str = "") -> str:
        """The row as one JSON object; `extra` is '"Column":value' text to append."""
        pieces = [_ENCODE(self.own)[1:-1], *(part.json for part in self.parts)]
        if extra:
            pieces.append(extra)
        return "{" + ",".join(p for p in pieces if p) + "}"


# --------------------------------------------------------------------------- sign-in rows

_PROCESSING_DETAILS = json_text(
    [{"key": "Login Hint Present", "value": "True"}, {"key": "IsCAEToken", "value": "False"}]
)
_PROCESSING_DETAILS_CAE = json_text([{"key": "IsCAEToken", "value": "True"}])
_REQUIREMENT_POLICIES = {
    "none": "[]",
    "user": json_text([{"requirementProvider": "user", "detail": "Per-user MFA"}]),
    "ca": json_text([{"requirementProvider": "multiConditionalAccess", "detail": "Conditional Access"}]),
}
_AT = "@@AT@@"  # where the step time goes in cached AuthenticationDetails text


def _ca_policies(admin_policy_result: str) -> list[dict[str, Any]]:
    return [
        {
            "id": "418c3474-1db6-44f6-b5eb-3d033ad5fb62",
            "displayName": "Require MFA for administrators",
            "enforcedGrantControls": ["Mfa"],
            "enforcedSessionControls": [],
            "result": admin_policy_result,
            "conditionsSatisfied": 3 if admin_policy_result == "success" else 0,
            "conditionsNotSatisfied": 0,
        },
        {
            "id": "f6c763e0-7ffe-43a4-8a7d-b10761aeef98",
            "displayName": "Block legacy authentication",
            "enforcedGrantControls": ["Block"],
            "enforcedSessionControls": [],
            "result": "notApplied",
            "conditionsSatisfied": 1,
            "conditionsNotSatisfied": 2,
        },
        {
            "id": "defb835a-eb9f-4346-a2ca-7a9184867bf1",
            "displayName": "Exchange Online Requires Compliant Device",
            "enforcedGrantControls": [],
            "enforcedSessionControls": [],
            "result": "notEnabled",
            "conditionsSatisfied": 0,
            "conditionsNotSatisfied": 0,
        },
    ]


@functools.cache
def _signin_table_part(interactive: bool, tenant: Tenant) -> Part:
    """Columns with one value for the whole table."""
    columns: dict[str, Any] = {
        "Type": SIGNIN if interactive else NONINTERACTIVE,
        "Category": "SignInLogs" if interactive else "NonInteractiveUserSignInLogs",
        "OperationName": "Sign-in activity",
        "OperationVersion": "1.0",
        "ResultSignature": "None",
        "DurationMs": 0,
        "Level": "4",
        "SourceSystem": "Azure AD",
        "ResourceGroup": "Microsoft.aadiam",
        "AADTenantId": tenant.tenant_id,
        "ResourceTenantId": tenant.tenant_id,
        "AppOwnerTenantId": MICROSOFT_SERVICES_TENANT,
        "ResourceOwnerTenantId": MICROSOFT_SERVICES_TENANT,
        "TokenIssuerType": "AzureAD",
        "ClientCredentialType": "none",
        "IncomingTokenType": "none" if interactive else "refreshToken",
        "IsInteractive": interactive,
        # no IsRisky: every real export leaves it empty (tests/fixtures, tests/unit/test_tenant_shapes.py)
        "IsTenantRestricted": False,
        "IsThroughGlobalSecureAccess": False,
        "AuthenticationContextClassReferences": "[]",
        "AuthenticationProcessingDetails": _PROCESSING_DETAILS if interactive else _PROCESSING_DETAILS_CAE,
        "NetworkLocationDetails": "[]",
        "RiskDetail": "none",
        "RiskEventTypes": "[]",
        "RiskEventTypes_V2": "[]",
        "RiskLevelAggregated": "none",
        "RiskLevelDuringSignIn": "none",
        "RiskState": "none",
    }
    if interactive:
        columns["Resource"] = "Microsoft.aadiam"
        columns["ResourceId"] = f"/tenants/{tenant.tenant_id}/providers/Microsoft.aadiam"
    else:
        columns["TenantId"] = tenant.workspace_id  # the workspace; SigninLogs documents no such column
        columns["SignInEventTypes"] = '["nonInteractiveUser"]'
    return Part.of(columns)


_PRINCIPAL_PARTS: dict[int, tuple[Principal, Tenant, tuple[Part, Part]]] = {}


def _signin_principal_part(who: Principal, interactive: bool, tenant: Tenant) -> Part:
    """Who signed in: identity, home tenant, device. Cached by identity (principals are frozen and the
    cache holds them, so an id is never reused while cached)."""
    entry = _PRINCIPAL_PARTS.get(id(who))
    if entry is None or entry[0] is not who or entry[1] is not tenant:
        if len(_PRINCIPAL_PARTS) >= 4096:  # rows come principal by principal: a small cache hits
            _PRINCIPAL_PARTS.clear()
        device: dict[str, Any] = {
            "deviceId": who.device_id,
            "operatingSystem": who.os,
            "browser": who.browser,
        }
        if who.device_id:
            device.update(
                displayName=f"LT-{who.device_id[:6].upper()}",
                isCompliant=True,
                isManaged=True,
                trustType="Azure AD joined",
            )
        columns = {
            "UserId": who.object_id,
            # sign-in logs lower-case the UPN; AzureActivity keeps the directory's case
            "UserPrincipalName": (who.upn or "").lower(),
            "UserDisplayName": who.display_name,
            "Identity": who.display_name,
            "UserType": who.user_type,
            "HomeTenantId": who.home_tenant_id,
            "CrossTenantAccessType": "none" if who.home_tenant_id == tenant.tenant_id else "b2bCollaboration",
        }
        parts = (
            Part.of({**columns, "DeviceDetail": _ENCODE(device)}),
            Part.of({**columns, "DeviceDetail": device}),
        )
        entry = (who, tenant, parts)
        _PRINCIPAL_PARTS[id(who)] = entry
    return entry[2][interactive]


@functools.lru_cache(maxsize=8192)
def _signin_network_part(ip: str, interactive: bool) -> Part:
    """Where the sign-in came from."""
    site = _SITES.get(_prefix(ip))
    location: dict[str, Any] = {"city": "", "state": "", "countryOrRegion": "", "geoCoordinates": {}}
    if site is not None:
        location = {
            "city": site.city,
            "state": site.state,
            "countryOrRegion": site.country,
            "geoCoordinates": {"latitude": site.lat, "longitude": site.lon},
        }
    return Part.of(
        {
            "IPAddress": ip,
            "Location": site.country if site else "",
            "LocationDetails": location if interactive else _ENCODE(location),
            "AutonomousSystemNumber": site.asn if site else "",
        }
    )


@functools.cache
def _signin_client_part(app: App, resource: Resource) -> Part:
    """Which client asked for a token to which resource."""
    return Part.of(
        {
            "AppId": app.app_id,
            "AppDisplayName": app.name,
            "ClientAppUsed": app.client,
            "ResourceIdentity": resource.resource_id,
            "ResourceDisplayName": resource.name,
        }
    )


def _step(method: str, ok: bool, detail: str, requirement: str, seq: int) -> dict[str, Any]:
    return {
        "authenticationStepDateTime": _AT,
        "authenticationMethod": method,
        "succeeded": ok,
        "authenticationStepResultDetail": detail,
        "authenticationStepRequirement": requirement,
        "StatusSequence": 0 if seq == 0 else 1,
        "RequestSequence": seq,
    }


@functools.cache
def _signin_outcome(
    auth: Auth,
    result: int,
    interactive: bool,
    resource_id: str,
    protocol: str,
    policy: Literal["member", "admin", "excluded"],
) -> tuple[Part, str]:
    """How the sign-in went, and its AuthenticationDetails text with _AT for the step time.
    `policy` is how Conditional Access treats the user (break-glass accounts are excluded)."""
    primary, second = "Primary authentication", "Multifactor authentication"
    if result == 50126:
        detail = "Invalid username or password or Invalid on-premise username or password."
        steps = [_step("Password", False, detail, primary, 0)]
    elif not interactive:  # a refresh token: the factors were proven when it was issued
        steps = [
            _step(
                "Previously satisfied",
                result == 0 or result in MFA_REQUIRED,
                "First factor requirement satisfied by claim in the token",
                primary,
                0,
            )
        ]
        if auth.mfa and result == 0:
            steps.append(
                _step(
                    "Previously satisfied", True, "MFA requirement satisfied by claim in the token", second, 0
                )
            )
    elif len(auth.methods) == 1 and auth.mfa:  # passwordless: one strong step is both factors
        steps = [_step(auth.methods[0], result == 0, "MFA successfully completed", primary, 1)]
    else:
        steps = [_step(auth.methods[0], True, "Correct password", primary, 0)]
        if len(auth.methods) > 1 and result not in MFA_REQUIRED:
            steps.append(_step(auth.methods[1], result == 0, "MFA successfully completed", second, 1))
    if result in MFA_REQUIRED:
        steps.append(_step("", False, "MFA required in Azure AD", second, 0))

    mfa = auth.mfa and result == 0
    description = ERRORS.get(result, "Other").format(resource=resource_id) if result else ""
    if result:
        status: dict[str, Any] = {"errorCode": result, "failureReason": description}
    elif mfa:
        status = {
            "errorCode": 0,
            "additionalDetails": "MFA completed in Azure AD"
            if interactive
            else "MFA requirement satisfied by claim in the token",
        }
    else:
        status = {"errorCode": 0}
    mfa_detail: dict[str, Any] = (
        {"authMethod": auth.methods[-1], "authDetail": None} if interactive and mfa else {}
    )
    ca_applied = policy == "admin" and mfa
    policies = _ca_policies("success" if ca_applied else "notApplied")
    requirement_policies = (
        "none" if not auth.mfa or policy == "excluded" else "ca" if policy == "admin" else "user"
    )
    columns = {
        "ResultType": str(result),
        "ResultDescription": description,
        "AuthenticationProtocol": protocol,
        "AuthenticationRequirement": "multiFactorAuthentication"
        if auth.mfa or result in MFA_REQUIRED
        else "singleFactorAuthentication",
        "AuthenticationRequirementPolicies": _REQUIREMENT_POLICIES[requirement_policies],
        "ConditionalAccessStatus": "success" if ca_applied else "notApplied",
        # dynamic in SigninLogs, JSON text in AADNonInteractiveUserSignInLogs
        "ConditionalAccessPolicies": policies if interactive else _ENCODE(policies),
        "Status": status if interactive else _ENCODE(status),
        "MfaDetail": mfa_detail if interactive else _ENCODE(mfa_detail),
    }
    return Part.of(columns), json_text(steps)


def signin_record(
    who: Principal,
    when: datetime,
    *,
    app: App = PORTAL,
    resource: Resource = ARM,
    interactive: bool = True,
    auth: Auth | None = None,
    result: int = 0,
    protocol: str = "none",
    ip: str | None = None,
    user_agent: str | None = None,
    uti: str | None = None,
    correlation_id: str | None = None,
    session_id: str | None = None,
    rng: random.Random | None = None,
    tenant: Tenant = TENANT,
) -> Record:
    """One user sign-in as Log Analytics stores it. `interactive` picks the table (SigninLogs, else
    AADNonInteractiveUserSignInLogs) and with it the column set and types: Status, LocationDetails,
    DeviceDetail, ConditionalAccessPolicies and MfaDetail are dynamic in the first, JSON text in the
    second. `result` is the error code (0 = success); `uti` the UniqueTokenIdentifier; rows of one
    browser or client session share `session_id`."""
    rng = rng or _SYSTEM_RNG
    when = _utc(when)
    auth = auth or who.auth
    policy: Literal["member", "admin", "excluded"] = (
        "excluded" if who.kind == "break-glass" else "admin" if who.kind == "admin" else "member"
    )
    outcome, details = _signin_outcome(auth, result, interactive, resource.resource_id, protocol, policy)
    ts = iso(when)
    row_id = guid(rng)
    own = {
        "TimeGenerated": ts,
        "CreatedDateTime": ts,
        "Id": row_id,
        "OriginalRequestId": row_id,
        "CorrelationId": correlation_id or guid(rng),
        "SessionId": session_id or guid(rng),
        "UniqueTokenIdentifier": uti or token_id(rng),
        "UserAgent": who.user_agent if user_agent is None else user_agent,
        "AuthenticationDetails": details.replace(_AT, ts[:-1] + "+00:00"),
    }
    if interactive:
        own["ProcessingTimeInMilliseconds"] = str(rng.randint(60, 3600))
    else:
        own["ProcessingTimeInMs"] = str(rng.randint(20, 400))
    return Record(
        own,
        (
            _signin_table_part(interactive, tenant),
            _signin_principal_part(who, interactive, tenant),
            _signin_network_part(ip or who.ip, interactive),
            _signin_client_part(app, resource),
            outcome,
        ),
    )


def signin_row(who: Principal, when: datetime, **options: Any) -> dict[str, Any]:
    """`signin_record` as a plain dict (same keyword options), for tests that craft or tweak rows."""
    return signin_record(who, when, **options).to_dict()


# --------------------------------------------------------------------------- activity rows


def resource_id(op: Operation, who: Principal, rng: random.Random) -> str:
    """A plausible target for `op` inside the principal's resource group."""
    env = "prod" if "prod" in who.resource_group.lower() else "dev"
    n = rng.randint(1, 3)
    if op.noun == "guid":
        name = guid(rng)
    elif op.noun == "st":
        name = f"st{who.project}{env}{n:02d}"[:24]
    else:
        name = f"{op.noun}-{who.project}-{env}-{n:02d}"
    return op.target(who.subscription_id, who.resource_group, name)


def _claims(
    who: Principal,
    *,
    app_id: str,
    amr: str,
    uti: str,
    ip: str,
    issued: datetime,
    rng: random.Random,
    tenant: Tenant,
) -> dict[str, str]:
    """The ARM access token's claims as AzureActivity records them (v1 token, string values). The
    Activity Log keeps most JWT claims under the long claim-type URIs (`idp` under
    http://schemas.microsoft.com/identity/claims/identityprovider, `upn`, `oid`, `email`...), as the
    real export in tests/fixtures and Microsoft's Activity Log samples show. A B2B guest's token
    (Microsoft's samples: "Monitoring Azure Monitor data reference", its Create/Delete Action Group
    events; "Understand user tokens in B2B collaboration") names its home tenant as identity
    provider, carries its e-mail and no upn claim."""
    iat = int(issued.timestamp())
    issuer = f"https://sts.windows.net/{tenant.tenant_id}/"
    claims = {
        "aud": ARM_AUDIENCE,
        "iss": issuer,
        "iat": str(iat),
        "nbf": str(iat),
        "exp": str(iat + rng.randint(3900, 5400)),
    }
    if not who.is_user:  # app-only token: no upn, no amr; managed identities add xms_mirid
        claims.update(
            {
                "aio": _b64(rng, 40),
                "appid": app_id,
                "appidacr": "2",
                IDENTITY_PROVIDER_CLAIM: issuer,
                "idtyp": "app",
                "http://schemas.microsoft.com/identity/claims/objectidentifier": who.object_id,
                "rh": f"0.A{_b64(rng, 36)}.",
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier": who.object_id,
                "http://schemas.microsoft.com/identity/claims/tenantid": tenant.tenant_id,
                "uti": uti,
                "ver": "1.0",
            }
        )
        if who.mi_resource_id:
            claims["xms_mirid"] = who.mi_resource_id
        claims["xms_tcdt"] = str(tenant.created_epoch)
        return claims
    first, _, last = who.display_name.partition(" ")
    guest = who.home_tenant_id != tenant.tenant_id  # authenticated by its home tenant
    claims.update(
        {
            "http://schemas.microsoft.com/claims/authnclassreference": "1",
            "aio": _b64(rng, 56),
            "http://schemas.microsoft.com/claims/authnmethodsreferences": amr,
            "appid": app_id,
            "appidacr": "2" if app_id == PORTAL.app_id else "0",
        }
    )
    if guest:
        claims[EMAIL_CLAIM] = who.mail or ""
    claims["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname"] = last
    claims["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"] = first
    if guest:
        claims[IDENTITY_PROVIDER_CLAIM] = f"https://sts.windows.net/{who.home_tenant_id}/"
    if who.idtyp_claim:
        claims["idtyp"] = "user"
    claims.update(
        {
            "ipaddr": ip,
            "name": who.display_name,
            "http://schemas.microsoft.com/identity/claims/objectidentifier": who.object_id,
            "puid": f"{rng.getrandbits(64):016X}",
            "rh": f"0.A{_b64(rng, 36)}.",
            "http://schemas.microsoft.com/identity/claims/scope": "user_impersonation",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier": _b64(rng, 32),
            "http://schemas.microsoft.com/identity/claims/tenantid": tenant.tenant_id,
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name": who.mail or who.upn or "",
        }
    )
    if not guest:  # a guest's token carries no upn claim
        claims[UPN_CLAIM] = who.upn or ""
    claims.update({"uti": uti, "ver": "1.0", "xms_tcdt": str(tenant.created_epoch)})
    return claims


def caller_of(who: Principal) -> str:
    """AzureActivity's Caller: the e-mail claim, else the upn, else the object id (workloads).
    A guest's token has no upn claim: its Caller is its e-mail (Microsoft's guest samples)."""
    if not who.is_user:
        return who.object_id
    return who.mail or who.upn or who.object_id


def _parse_resource_id(rid: str) -> tuple[str, str, str]:
    """(subscription, resource group, resource name as Properties.resource shows it)."""
    parts = rid.split("/")
    rg = parts[4] if len(parts) > 4 and parts[3].lower() == "resourcegroups" else ""
    tail = rid.rsplit("/providers/", 1)[1].split("/") if "/providers/" in rid else []
    return parts[2], rg, "/".join(tail[2::2]).lower()


_CONFLICT = _ENCODE(
    {
        "error": {
            "code": "Conflict",
            "message": "The operation could not be completed because "
            "another operation is in progress on the resource.",
        }
    }
)


def activity_records(
    who: Principal,
    when: datetime,
    operation: Operation,
    target: str,
    *,
    status: Literal["Success", "Failure"] = "Success",
    amr: str | None = None,
    uti: str | None = None,
    issued: datetime | None = None,
    app_id: str | None = None,
    ip: str | None = None,
    correlation_id: str | None = None,
    rng: random.Random | None = None,
    tenant: Tenant = TENANT,
) -> list[Record]:
    """The AzureActivity rows of one ARM operation on `target` (a resource id): Start, Accept for
    long-running operations, then Success or Failure. They share CorrelationId and OperationId and
    have distinct EventDataIds. `uti` links the token to the sign-in that issued it; `amr` is the
    token's methods (users only; defaults to the principal's interactive ones)."""
    rng = rng or _SYSTEM_RNG
    when = _utc(when)
    ip = ip or who.ip
    caller = caller_of(who)
    claims = _claims(
        who,
        app_id=app_id or who.app_id or PORTAL.app_id,
        amr=amr or who.auth.amr,
        uti=uti or token_id(rng),
        ip=ip,
        rng=rng,
        tenant=tenant,
        issued=_utc(issued) if issued else when - timedelta(minutes=5),
    )
    sub, rg, resource_name = _parse_resource_id(target)
    scope = f"/subscriptions/{sub}"
    authorization = {
        "scope": target,
        "action": operation.action,
        "evidence": {
            "role": who.role,
            "roleAssignmentScope": scope,
            "roleAssignmentId": _hex_id(who.assignee, scope, who.role),
            "roleDefinitionId": ROLE_DEFINITIONS[who.role],
            "principalId": who.assignee.replace("-", ""),
            "principalType": who.role_principal_type,  # of the role assignment, not of the caller
        },
    }
    provider = operation.value.split("/", 1)[0]
    hierarchy = f"{tenant.tenant_id}/{tenant.management_group}/{sub}"
    http_request = _ENCODE({"clientIpAddress": ip})
    shared = Part.of(
        {  # the same in every row of this operation
            "Type": ACTIVITY,
            "TenantId": tenant.workspace_id,
            "SourceSystem": "Azure",
            "CategoryValue": "Administrative",
            "CorrelationId": correlation_id or guid(rng),
            "OperationId": guid(rng),
            "OperationNameValue": operation.value,
            "OperationName": operation.name,
            "Caller": caller,
            "CallerIpAddress": ip,
            "HTTPRequest": http_request,
            "Claims": flat_json_text(claims),
            "Claims_d": claims,
            "Authorization": json_text(authorization),
            "Authorization_d": authorization,
            "SubscriptionId": sub,
            "ResourceGroup": rg.upper(),
            "ResourceProviderValue": provider,
            "Hierarchy": hierarchy,
            "_ResourceId": target.lower(),
        }
    )

    phases: list[tuple[str, str, str | None]] = [("Start", "Informational", None)]
    if operation.accepted:
        phases.append(("Accept", "Informational", "Accepted"))
    if status == "Success":
        phases.append(
            ("Success", "Informational", "Created" if operation.action.endswith("/write") else "OK")
        )
    else:
        phases.append(("Failure", "Error", "Conflict"))

    records = []
    at = when
    for value, level, substatus in phases:
        event_id = guid(rng)
        ts = iso(at)
        properties: dict[str, Any] = {}
        if substatus:
            properties["statusCode"] = substatus
            properties["serviceRequestId"] = guid(rng) if value != "Failure" else None
        if value == "Failure":
            properties["statusMessage"] = _CONFLICT
        properties.update(
            {
                "eventCategory": "Administrative",
                "entity": target,
                "message": operation.action,
                "hierarchy": hierarchy,
                "caller": caller,
                "eventDataId": event_id,
                "eventSubmissionTimestamp": ts,
                "httpRequest": http_request,
            }
        )
        if resource_name:
            properties["resource"] = resource_name
        properties.update(
            {
                "resourceGroup": rg.upper(),
                "resourceProviderValue": provider,
                "subscriptionId": sub,
                "activityStatusValue": value,
            }
        )
        if substatus:
            properties["activitySubstatusValue"] = substatus
        records.append(
            Record(
                {
                    "TimeGenerated": ts,
                    "EventSubmissionTimestamp": ts,
                    "EventDataId": event_id,
                    "Level": level,
                    "ActivityStatusValue": value,
                    "ActivitySubstatusValue": substatus or "",
                    "Properties": flat_json_text(properties),
                    "Properties_d": properties,
                },
                (shared,),
            )
        )
        at += timedelta(milliseconds=rng.randint(300, 15000))
    return records


def activity_rows(
    who: Principal, when: datetime, operation: Operation, target: str, **options: Any
) -> list[dict[str, Any]]:
    """`activity_records` as plain dicts (same keyword options), for tests that craft or tweak rows."""
    return [r.to_dict() for r in activity_records(who, when, operation, target, **options)]


def policy_audit_row(write: Row, *, rng: random.Random | None = None) -> dict[str, Any]:
    """The `Policy` event the built-in "MFA for write/delete" audit policies log next to a user's
    ARM write whose token lacks MFA: same caller, claims and CorrelationId, another category."""
    rng = rng or _SYSTEM_RNG
    action = str(write["Authorization_d"]["action"])
    definition = MFA_POLICY_DELETE if action.endswith("/delete") else MFA_POLICY_WRITE
    sub = str(write["SubscriptionId"])
    event_id = guid(rng)
    policies = [
        {
            "policyDefinitionId": f"/providers/Microsoft.Authorization/policyDefinitions/{definition}",
            "policyAssignmentId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/policyAssignments/"
            f"audit-user-mfa-{definition[:8]}",
            "policyAssignmentName": f"audit-user-mfa-{definition[:8]}",
            "policyAssignmentScope": f"/subscriptions/{sub}",
            "policyDefinitionName": definition,
            "policyDefinitionEffect": "Audit",
            "policySetDefinitionId": "",
        }
    ]
    properties = {
        "isComplianceCheck": "False",
        "resourceLocation": "westeurope",
        "ancestors": str(write["Hierarchy"]).split("/")[1],
        "policies": _ENCODE(policies),
        "eventCategory": "Policy",
        "entity": write["Properties_d"]["entity"],
        "message": "Microsoft.Authorization/policies/audit/action",
        "hierarchy": write["Hierarchy"],
        "caller": write["Caller"],
        "eventDataId": event_id,
        "eventSubmissionTimestamp": write["TimeGenerated"],
        "httpRequest": write["HTTPRequest"],
        "subscriptionId": sub,
        "activityStatusValue": "Success",
    }
    row = {column: write[column] for column in write if column != "_IngestionTime"}
    row.update(
        {
            "CategoryValue": "Policy",
            "EventDataId": event_id,
            "OperationId": guid(rng),
            "Level": "Warning",
            "OperationNameValue": "Microsoft.Authorization/policies/audit/action",
            "OperationName": "'audit' Policy action.",
            "Properties": json_text(properties),
            "Properties_d": properties,
            "ActivityStatusValue": "Success",
            "ActivitySubstatusValue": "",
        }
    )
    return row


def service_health_row(
    when: datetime, subscription_id: str, *, rng: random.Random | None = None, tenant: Tenant = TENANT
) -> dict[str, Any]:
    """A ServiceHealth notice: an `/action` row with no caller and no claims, which a monitor of
    user writes must ignore."""
    rng = rng or _SYSTEM_RNG
    ts = iso(_utc(when))
    tracking = (
        f"{rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}{rng.randint(1, 9)}{rng.choice('ABCDEFGHJKLMN')}-"
        f"{rng.choice('ABCDEFGHJKLMN')}{rng.randint(10, 99)}"
    )
    service = rng.choice(("App Service", "Virtual Machines", "Azure Key Vault", "Storage"))
    stage = rng.choice(("Active", "Resolved"))
    properties = {
        "title": f"Mitigated - {service} degradation in West Europe",
        "service": service,
        "region": "West Europe",
        "communication": f"Between 08:10 and 09:45 UTC a subset of customers using {service} may have "
        "experienced intermittent errors.",
        "incidentType": "Incident",
        "trackingId": tracking,
        "impactStartTime": ts,
        "impactedServices": _ENCODE(
            [{"ServiceName": service, "ImpactedRegions": [{"RegionName": "West Europe"}]}]
        ),
        "defaultLanguageTitle": f"{service} degradation in West Europe",
        "stage": stage,
        "eventCategory": "ServiceHealth",
        "eventDataId": guid(rng),
        "eventSubmissionTimestamp": ts,
        "subscriptionId": subscription_id,
        "activityStatusValue": stage,
    }
    return {
        "TenantId": tenant.workspace_id,
        "SourceSystem": "Azure",
        "TimeGenerated": ts,
        "EventSubmissionTimestamp": ts,
        "CategoryValue": "ServiceHealth",
        "CorrelationId": guid(rng),
        "OperationId": guid(rng),
        "EventDataId": properties["eventDataId"],
        "Level": "Warning" if stage == "Active" else "Informational",
        "OperationNameValue": "Microsoft.ServiceHealth/incident/action",
        "OperationName": "Service Health",
        "Properties": json_text(properties),
        "Properties_d": properties,
        "Caller": "",
        "ActivityStatusValue": stage,
        "SubscriptionId": subscription_id,
        "_ResourceId": f"/subscriptions/{subscription_id}",
        "Type": ACTIVITY,
    }


# --------------------------------------------------------------------------- the population

# fmt: off
_FIRST = (
    "Adele", "Alex", "Bianca", "Carlos", "Chen", "Dana", "Diego", "Elif", "Emma", "Fatima", "Finn",
    "Grace", "Hana", "Hiro", "Ingrid", "Isaac", "Jamal", "José", "Julia", "Kai", "Katarzyna", "Lars",
    "Leila", "Liam", "Lucía", "Maja", "Marek", "Maria", "Mateo", "Mei", "Nadia", "Noah", "Olga", "Omar",
    "Priya", "Quinn", "Rafael", "Renée", "Rohan", "Sara", "Sven", "Tariq", "Thandiwe", "Tomás", "Uma",
    "Valentina", "Viktor", "Wei", "Xavier", "Yara", "Yusuf", "Zoë", "Ahmed", "Beatriz", "Connor",
    "Daniela", "Erik", "Freya", "Gustavo", "Hannah",
)
_LAST = (
    "Vance", "Smith", "García", "Müller", "Nguyen", "Cohen", "Okafor", "Kowalski", "Rossi", "Svensson",
    "Tanaka", "Patel", "Haddad", "O'Brien", "Novak", "Larsen", "Silva", "Kim", "Dubois", "Yilmaz",
    "Andersen", "Bianchi", "Chowdhury", "Diaz", "Eriksson", "Fischer", "Gupta", "Horvat", "Ivanova",
    "Jensen", "Khan", "López", "Mensah", "Nakamura", "Olsen", "Petrov", "Quispe", "Reyes", "Schmidt",
    "Tremblay", "Ueda", "Varga", "Walsh", "Xu", "Yamamoto", "Zhang", "Abbott", "Brennan", "Castillo",
    "Dlamini", "Evans", "Ferreira", "Gallagher", "Hughes", "Ibrahim", "Jovanović", "Keller",
    "Lindqvist", "Moreau", "Núñez",
)
_PROJECTS = (
    "web", "data", "payroll", "crm", "billing", "search", "iot", "hr", "intranet", "ml", "edge", "api",
)
# fmt: on
_BROWSERS = (
    (
        "Windows 10",
        "Edge 128.0.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/128.0.0.0 Safari/537.36 Edg/128.0.0.0",
    ),
    (
        "Windows 10",
        "Chrome 129.0.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/129.0.0.0 Safari/537.36",
    ),
    (
        "MacOs",
        "Safari 17.6",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.6 Safari/605.1.15",
    ),
    ("Linux", "Firefox 130.0", "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"),
)
_TOOL_AGENTS = {  # (app, user agent, DeviceDetail.operatingSystem) of automation tools
    "cli": (
        AZURE_CLI,
        "python/3.11.9 (Linux-5.15.0-1073-azure-x86_64-with-glibc2.35) msal/1.31.0 azure-cli/2.64.0",
        "Linux",
    ),
    "terraform": (
        AZURE_CLI,
        "HashiCorp Terraform/1.9.5 (+https://www.terraform.io) Terraform Plugin SDK/2.10.1 "
        "terraform-provider-azurerm/3.116.0 pid-222c6c49-1b0a-5959-a213-6608f9eb8820",
        "Linux",
    ),
    "powershell": (AZURE_POWERSHELL, "AzurePowershell/v12.3.0 PSVersion/v7.4.5 Az.Accounts/3.0.4", "Windows"),
}
_DESKTOP_AGENTS = {  # the same tools on a person's laptop
    "cli": (AZURE_CLI, "python/3.11.9 (Windows-10-10.0.22631-SP0) msal/1.31.0 azure-cli/2.64.0"),
    "powershell": (AZURE_POWERSHELL, "AzurePowershell/v12.3.0 PSVersion/v7.4.5 Az.Accounts/3.0.4"),
}
_SERVICE_NAMES = ("terraform", "deploy", "backup", "sync", "reporting", "automation", "build", "monitoring")


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().replace("'", "")


def _name(i: int) -> tuple[str, str, str]:
    """Display name and UPN local part for user i; unique for every i."""
    n = len(_FIRST)
    first, last = _FIRST[i % n], _LAST[(i // n + i) % n]  # a bijection over the first n*n users
    suffix = "" if i < n * n else str(i // (n * n) + 1)
    return first, last, f"{_ascii(first)}.{_ascii(last)}{suffix}"  # directory UPNs keep their case


def _human(kind: Kind, i: int, rng: random.Random, tenant: Tenant) -> Principal:
    first, last, local = _name(i)
    os_name, browser, agent = rng.choice(_BROWSERS)
    if rng.random() < 0.6:
        site, ip = rng.choice(OFFICES)
    else:
        site = rng.choice(HOMES)
        ip = address(site, rng)
    writer = kind in ("human-no-mfa", "admin") or rng.random() < 0.15
    tool = "portal" if kind == "human-no-mfa" or rng.random() < 0.6 else rng.choice(("cli", "powershell"))
    common: dict[str, Any] = dict(
        kind=kind,
        object_id=guid(rng),
        display_name=f"{first} {last}",
        ip=ip,
        user_agent=agent,
        os=os_name,
        browser=browser,
        tz=site.tz,
        subscription_id=rng.choice(tenant.subscriptions),
        resource_group=rng.choice(tenant.resource_groups),
        project=rng.choice(_PROJECTS),
        tool=tool,
        device_id=guid(rng) if rng.random() < 0.5 else "",
        idtyp_claim=rng.random() < 0.5,
        role_principal_type="Group" if writer and rng.random() < 0.2 else "User",
    )
    if common["role_principal_type"] == "Group":
        common["role_principal_id"] = guid(rng)
    if kind == "guest":
        home_id, home_domain = rng.choice(PARTNERS)
        return Principal(
            **common,
            upn=f"{local.lower()}_{home_domain}#EXT#@{tenant.initial_domain}",
            user_type="Guest",
            home_tenant_id=home_id,
            auth=rng.choice((PASSWORD_APP, PASSWORD_APP, PASSWORD)),
            azure_rate=0.5,
            write_rate=0.5 if rng.random() < 0.5 else 0.0,
            mail=f"{local.lower()}@{home_domain}",
        )
    upn = f"{local}@{tenant.domain}"
    if kind == "admin":
        return Principal(
            **{**common, "tool": rng.choice(("portal", "cli", "powershell"))},
            upn=upn,
            auth=rng.choice((WHFB, PASSWORD_APP)),
            role=rng.choice(("Owner", "Contributor")),
            azure_rate=0.8,
            write_rate=0.6,
        )
    if kind == "human-no-mfa":
        return Principal(**common, upn=upn, auth=PASSWORD, azure_rate=0.7, write_rate=0.6)
    azure = rng.random() < 0.35
    return Principal(
        **common,
        upn=upn,
        auth=rng.choice((PASSWORD_APP, PASSWORD_APP, WHFB, PASSWORD_TOTP)),
        azure_rate=0.5 if azure else 0.0,
        write_rate=0.3 if azure and writer else 0.0,
    )


def _service_account(i: int, rng: random.Random, tenant: Tenant) -> Principal:
    tool = rng.choice(("terraform", "terraform", "cli", "powershell"))
    name = f"svc-{rng.choice(_SERVICE_NAMES)}-{i:03d}"
    site = rng.choice(DATACENTRES)
    _, agent, os_name = _TOOL_AGENTS[tool]
    return Principal(
        kind="service-account",
        object_id=guid(rng),
        display_name=name,
        upn=f"{name}@{tenant.domain}",
        auth=PASSWORD,
        tool=tool,
        ip=address(site, rng),
        user_agent=agent,
        os=os_name,
        browser="",
        tz=0,
        subscription_id=rng.choice(tenant.subscriptions),
        resource_group=rng.choice(tenant.resource_groups),
        project=rng.choice(_PROJECTS),
        role="Contributor",
        ropc=rng.random() < 0.4,
        cadence_min=rng.choice((30, 60, 60, 240, 1440)),
        phase_min=rng.randrange(0, 60),
    )


def _workload(kind: Kind, i: int, rng: random.Random, tenant: Tenant) -> Principal:
    project = rng.choice(_PROJECTS)
    sub, rg = rng.choice(tenant.subscriptions), rng.choice(tenant.resource_groups)
    common: dict[str, Any] = dict(
        kind=kind,
        object_id=guid(rng),
        app_id=guid(rng),
        user_type=None,
        auth=PASSWORD,
        ip=address(rng.choice(DATACENTRES), rng),
        user_agent="",
        os="",
        browser="",
        subscription_id=sub,
        resource_group=rg,
        project=project,
        role="Contributor",
        role_principal_type="ServicePrincipal",
        cadence_min=rng.choice((60, 240, 720, 1440)),
        phase_min=rng.randrange(0, 120),
    )
    if kind == "service-principal":
        return Principal(**common, display_name=f"sp-{project}-deploy-{i:02d}", tool="pipeline")
    if rng.random() < 0.5:
        name = f"id-{project}-{i:02d}"
        provider = "Microsoft.ManagedIdentity/userAssignedIdentities"
        mirid = f"/subscriptions/{sub}/resourcegroups/{rg}/providers/{provider}/{name}"
    else:
        name = f"func-{project}-{i:02d}"
        mirid = f"/subscriptions/{sub}/resourcegroups/{rg}/providers/Microsoft.Web/sites/{name}"
    return Principal(**common, display_name=name, mi_resource_id=mirid, tool="automation")


def _break_glass(n: int, rng: random.Random, tenant: Tenant) -> Principal:
    site, ip = OFFICES[0]
    return Principal(
        kind="break-glass",
        object_id=guid(rng),
        display_name=f"Break Glass Admin {n}",
        upn=f"bg-admin{n}@{tenant.initial_domain}",
        auth=FIDO2 if n == 1 else PASSWORD_SMS,
        ip=ip,
        user_agent=_BROWSERS[0][2],
        os="Windows 10",
        browser="Edge 128.0.0",
        device_id=guid(rng),
        tz=site.tz,
        subscription_id=tenant.subscriptions[0],
        resource_group=tenant.resource_groups[2],
        project="identity",
        role="Owner",
    )


# The first principals are a showcase, active on every working day, so that even a tiny tenant
# holds every case: Adele (no MFA, portal writes, like the fixture), an MFA user writing with the
# CLI, an admin whose role comes through a group, a service account refreshing a cached token
# (50074 after enforcement), a guest writing in Azure, a service account using ROPC (50076), then
# a person who only looks around the portal: its blades POST actions, it never writes.
_SHOWCASE: tuple[tuple[Kind, dict[str, Any]], ...] = (
    ("human-no-mfa", {"azure_rate": 1.0, "write_rate": 1.0, "tool": "portal"}),
    ("human-mfa", {"azure_rate": 1.0, "write_rate": 1.0, "tool": "cli"}),
    ("admin", {"azure_rate": 1.0, "write_rate": 1.0, "role_principal_type": "Group"}),
    ("service-account", {"cadence_min": 60, "ropc": False}),
    ("guest", {"azure_rate": 1.0, "write_rate": 1.0}),
    ("service-account", {"cadence_min": 60, "ropc": True}),
    ("human-mfa", {"azure_rate": 1.0, "write_rate": 0.0, "browse_rate": 1.0, "tool": "portal"}),
)


def population(users: int, seed: int, tenant: Tenant = TENANT) -> tuple[Principal, ...]:
    """Everyone in the tenant: `users` user accounts (the showcase first, so at least one of each
    user kind), about one service principal and one managed identity per hundred users (at least
    one each), and two break-glass accounts."""
    if users < len(USER_KINDS):
        raise ValueError(f"users must be at least {len(USER_KINDS)}: one of each of {', '.join(USER_KINDS)}")
    rng = random.Random(f"population:{seed}")
    weights = {"human-mfa": 78, "human-no-mfa": 8, "admin": 4, "service-account": 3, "guest": 7}
    showcase = _SHOWCASE[:users]
    kinds = [kind for kind, _ in showcase]
    kinds += rng.choices(list(weights), list(weights.values()), k=users - len(showcase))
    principals: list[Principal] = []
    for i, kind in enumerate(kinds):
        made = _service_account(i, rng, tenant) if kind == "service-account" else _human(kind, i, rng, tenant)
        if i < len(showcase):
            changes = dict(showcase[i][1])
            if changes.get("role_principal_type") == "Group":
                changes["role_principal_id"] = guid(rng)
            made = replace(made, **changes)
        principals.append(made)
    workloads = max(1, users // 100)
    for kind in WORKLOAD_KINDS:
        for i in range(workloads):
            made = _workload(kind, i, rng, tenant)
            principals.append(replace(made, cadence_min=60) if i == 0 else made)
    principals.extend(_break_glass(n, rng, tenant) for n in (1, 2))
    return tuple(principals)


# --------------------------------------------------------------------------- behaviour: a day of rows


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    """What every behaviour needs to know besides the principal."""

    tenant: Tenant
    start: datetime
    end: datetime
    enforcement: datetime  # from here on, user ARM writes need an MFA token (mandatory MFA phase 2)


def _operation(
    world: World,
    who: Principal,
    at: datetime,
    op: Operation,
    rng: random.Random,
    *,
    amr: str,
    uti: str,
    issued: datetime,
    app_id: str | None,
    correlation_id: str | None = None,
    target: str | None = None,
) -> Iterator[Row]:
    status: Literal["Success", "Failure"] = "Failure" if rng.random() < 0.04 else "Success"
    rows = activity_records(
        who,
        at,
        op,
        target or resource_id(op, who, rng),
        status=status,
        amr=amr,
        uti=uti,
        issued=issued,
        app_id=app_id,
        correlation_id=correlation_id,
        rng=rng,
        tenant=world.tenant,
    )
    yield from rows
    if who.is_user and not has_mfa(amr) and not op.action.endswith("/action"):
        yield policy_audit_row(rows[-1], rng=rng)


def _arm_session(
    world: World,
    who: Principal,
    t: datetime,
    rng: random.Random,
    *,
    writes: bool,
    operations: tuple[Operation, ...],
) -> Iterator[Row]:
    """A person working in Azure: an interactive sign-in for ARM, silent refreshes, maybe writes
    (each with the token current at that moment: its uti is the issuing sign-in's); a portal
    session without writes may still POST actions, from the blades it opens."""
    tool = who.tool if who.tool in ("portal", "cli", "powershell") else "portal"
    if who.kind == "admin" and rng.random() < 0.05:
        app, agent = AZURE_MOBILE, "Azure/2.6.1 (iPhone; iOS 17.6.1)"
    elif tool == "portal":
        app, agent = PORTAL, who.user_agent
    else:
        app, agent = _DESKTOP_AGENTS[tool]
    protocol = "deviceCode" if app is AZURE_CLI and rng.random() < 0.2 else "none"
    session = guid(rng)
    auth = who.auth  # becomes PASSWORD_SMS if mandatory MFA makes the person register

    def sign(at: datetime, **options: Any) -> Record:
        options.setdefault("app", app)
        return signin_record(
            who, at, auth=auth, user_agent=agent, session_id=session, rng=rng, tenant=world.tenant, **options
        )

    if not auth.mfa and t >= world.enforcement:
        # Mandatory MFA: the first attempt is refused, then the person registers and uses MFA.
        yield sign(t, result=50074, protocol=protocol)
        t += timedelta(seconds=rng.randint(40, 240))
        auth = PASSWORD_SMS
    first = sign(t, protocol=protocol)
    yield first
    tokens = [(t, first["UniqueTokenIdentifier"])]
    if app is PORTAL:
        yield sign(t + timedelta(seconds=rng.uniform(2, 9)), resource=GRAPH, interactive=False)
    elif rng.random() < 0.3:  # the same client id fetching Key Vault or Graph tokens: not ARM
        yield sign(
            t + timedelta(minutes=rng.uniform(1, 20)),
            resource=rng.choice((KEY_VAULT, GRAPH)),
            interactive=False,
        )
    length = timedelta(minutes=rng.randint(15, 180))
    refresh = t + timedelta(minutes=rng.uniform(55, 75))
    while refresh < t + length:
        row = sign(refresh, interactive=False)
        yield row
        tokens.append((refresh, row["UniqueTokenIdentifier"]))
        refresh += timedelta(minutes=rng.uniform(55, 75))
    if not writes:
        if app is PORTAL and rng.random() < who.browse_rate:  # looking around: actions, no writes
            for _ in range(rng.randint(1, 3)):
                at = t + timedelta(seconds=rng.uniform(30, length.total_seconds()))
                issued, uti = max((tok for tok in tokens if tok[0] <= at), key=lambda tok: tok[0])
                op = rng.choice(PORTAL_BLADE_ACTIONS)
                correlation, target = guid(rng), resource_id(op, who, rng)
                for n in range(op.burst):
                    yield from _operation(
                        world,
                        who,
                        at + timedelta(milliseconds=2 * n),
                        op,
                        rng,
                        amr=auth.amr,
                        uti=uti,
                        issued=issued,
                        app_id=app.app_id,
                        correlation_id=correlation,
                        target=target,
                    )
        return
    for _ in range(rng.randint(1, 4)):
        at = t + timedelta(seconds=rng.uniform(30, length.total_seconds()))
        issued, uti = max((tok for tok in tokens if tok[0] <= at), key=lambda tok: tok[0])
        yield from _operation(
            world,
            who,
            at,
            rng.choice(operations),
            rng,
            amr=auth.amr,
            uti=uti,
            issued=issued,
            app_id=app.app_id,
        )


def _person_day(world: World, who: Principal, day: datetime, rng: random.Random) -> Iterator[Row]:
    """Members, admins and guests: Microsoft 365 during working hours, sometimes Azure."""
    if day.weekday() >= 5 and rng.random() > 0.1:
        return
    t = day + timedelta(hours=8 - who.tz, seconds=rng.uniform(0, 5400))
    session = guid(rng)  # one browser session for the day's Microsoft 365 traffic

    def sign(at: datetime, traffic: tuple[App, Resource], **options: Any) -> Record:
        app, resource = traffic
        return signin_record(
            who, at, app=app, resource=resource, session_id=session, rng=rng, tenant=world.tenant, **options
        )

    if who.kind != "guest":  # guests come here for Azure only
        if rng.random() < 0.03:  # a mistyped password first
            yield sign(t, OFFICE_TRAFFIC[0], result=50126, auth=PASSWORD)
            t += timedelta(seconds=rng.uniform(10, 60))
        yield sign(t, rng.choice(OFFICE_TRAFFIC[:3]))
        if rng.random() < 0.05:  # failures seen in real exports: silent sign-in refused, "Other", KMSI
            at = t + timedelta(minutes=rng.uniform(5, 300))
            previously = Auth(("Previously satisfied",), who.auth.amr)
            yield sign(at, (TEAMS_WEB, GRAPH), result=rng.choice((50058, 16000, 50140)), auth=previously)
        for _ in range(rng.randint(2, 6)):
            yield sign(
                t + timedelta(seconds=rng.uniform(60, 8 * 3600)),
                rng.choice(OFFICE_TRAFFIC),
                interactive=False,
            )
    if rng.random() < who.azure_rate:
        operations = ADMIN_OPERATIONS if who.kind == "admin" else HUMAN_OPERATIONS
        at = t + timedelta(seconds=rng.uniform(1800, 6 * 3600))
        yield from _arm_session(
            world, who, at, rng, writes=rng.random() < who.write_rate, operations=operations
        )


def _automation_times(who: Principal, day: datetime, rng: random.Random) -> Iterator[datetime]:
    """Run times on a fixed cadence (with a little jitter), the same phase every day."""
    step = timedelta(minutes=who.cadence_min)
    t = day + timedelta(minutes=who.phase_min % who.cadence_min if who.cadence_min < 1440 else who.phase_min)
    end = day + timedelta(days=1)
    while t < end:
        yield t + timedelta(seconds=rng.uniform(0, 90))
        t += step


def _service_account_day(world: World, who: Principal, day: datetime, rng: random.Random) -> Iterator[Row]:
    """Automation signed in as a user: password only, regular cadence, from a data centre."""
    for run in _automation_times(who, day, rng):
        yield from _service_account_run(world, who, run, rng)


def _service_account_run(world: World, who: Principal, run: datetime, rng: random.Random) -> Iterator[Row]:
    """One run. ROPC accounts send the password every run (SigninLogs); the others refresh a cached
    token (AADNonInteractiveUserSignInLogs). After enforcement the write is refused with a claims
    challenge and the retry for an MFA token fails: 50076 (ROPC) or 50074 (refresh)."""
    app, agent, _ = _TOOL_AGENTS[who.tool]
    protocol = "ropc" if who.ropc else "none"
    session = guid(rng)

    def sign(at: datetime, **options: Any) -> Record:
        options.setdefault("interactive", who.ropc)
        return signin_record(
            who,
            at,
            app=app,
            auth=PASSWORD,
            protocol=protocol,
            user_agent=agent,
            session_id=session,
            rng=rng,
            tenant=world.tenant,
            **options,
        )

    token = sign(run)
    yield token
    if rng.random() < 0.2:  # reading a secret with the same client: not ARM
        yield sign(run + timedelta(seconds=rng.uniform(1, 5)), resource=KEY_VAULT, interactive=False)
    if run >= world.enforcement:
        yield sign(run + timedelta(seconds=rng.uniform(3, 20)), result=50076 if who.ropc else 50074)
        return
    if rng.random() < 0.5:  # nothing to change this run ("No changes. Your infrastructure matches.")
        return
    operations = TERRAFORM_OPERATIONS if who.tool in ("terraform", "cli") else SCRIPT_OPERATIONS
    at = run
    for _ in range(rng.randint(1, 3)):
        at += timedelta(seconds=rng.uniform(5, 60))
        yield from _operation(
            world,
            who,
            at,
            rng.choice(operations),
            rng,
            amr=PASSWORD.amr,
            uti=token["UniqueTokenIdentifier"],
            issued=run,
            app_id=app.app_id,
        )


def _workload_day(world: World, who: Principal, day: datetime, rng: random.Random) -> Iterator[Row]:
    """Service principals deploy, managed identities run housekeeping: ARM writes as apps (exempt)."""
    for run in _automation_times(who, day, rng):
        if rng.random() < 0.3:
            continue
        issued = run - timedelta(minutes=rng.randint(0, 50))
        uti = token_id(rng)
        if who.kind == "service-principal":  # one deployment: shared correlation id
            correlation = guid(rng)
            ops = [DEPLOYMENT_WRITE, *rng.sample(PIPELINE_OPERATIONS, rng.randint(0, 3))]
        else:
            correlation = None
            ops = [rng.choice(IDENTITY_OPERATIONS)]
        at = run
        for op in ops:
            yield from _operation(
                world,
                who,
                at,
                op,
                rng,
                amr="",
                uti=uti,
                issued=issued,
                app_id=who.app_id,
                correlation_id=correlation,
            )
            at += timedelta(seconds=rng.randint(5, 120))


def day_rows(world: World, who: Principal, day: datetime, rng: random.Random) -> Iterator[Row]:
    """Everything one principal logs on one day (break-glass accounts are scripted separately)."""
    if who.tool == POWER_AUTOMATE_TOOL:  # user-service-account
        return connection_owner_day(world, who, day, rng)
    if who.kind == "service-account":
        return _service_account_day(world, who, day, rng)
    if who.kind in WORKLOAD_KINDS:
        return _workload_day(world, who, day, rng)
    if who.kind == "break-glass":
        return iter(())
    return _person_day(world, who, day, rng)


@dataclass(frozen=True, slots=True)
class Scripted:
    """A hand-placed row with delivery forced: how late it arrives, and whether it comes twice."""

    who: Principal
    row: Row
    late: timedelta | None = None
    duplicate: Literal["exact", "redelivered"] | None = None


def break_glass_script(world: World, bg1: Principal, bg2: Principal, seed: int) -> list[Scripted]:
    """Rare, deliberate use of the emergency accounts, placed once in the window:
    bg1 signs in with FIDO2, gets a Graph token silently and grants a role (that write arrives
    hours late, twice); bg2 is password-sprayed (50126, in both tables, two rows late) and later
    signs in with password + SMS."""
    rng = random.Random(f"break-glass:{seed}")
    span = world.end - world.start

    def sign(who: Principal, at: datetime, **options: Any) -> Record:
        options.setdefault("app", PORTAL)
        return signin_record(who, at, rng=rng, tenant=world.tenant, **options)

    def at_fraction(fraction: float) -> datetime:
        return world.start + span * fraction + timedelta(seconds=rng.uniform(0, 600))

    t1 = at_fraction(0.37)
    fido = sign(bg1, t1, auth=FIDO2)
    script = [
        Scripted(bg1, fido),
        Scripted(bg1, sign(bg1, t1 + timedelta(seconds=4), resource=GRAPH, interactive=False, auth=FIDO2)),
    ]
    target = resource_id(ROLE_ASSIGNMENT_WRITE, bg1, rng)
    grant = activity_records(
        bg1, t1 + timedelta(minutes=7), ROLE_ASSIGNMENT_WRITE, target, amr=FIDO2.amr,
        uti=fido["UniqueTokenIdentifier"], issued=t1, app_id=PORTAL.app_id, rng=rng, tenant=world.tenant,
    )  # fmt: skip
    late = timedelta(hours=3, minutes=rng.randint(0, 59))
    script += [Scripted(bg1, row, late, "exact" if row is grant[-1] else None) for row in grant]

    t2 = at_fraction(0.21)
    for n in range(8):  # a spray from hosting ranges, against both endpoints
        at = t2 + timedelta(seconds=n * rng.uniform(120, 200))
        ip = address(SPRAY_SOURCES[n % len(SPRAY_SOURCES)], rng)
        if n % 2 == 0:
            options = {"app": AZURE_POWERSHELL, "protocol": "ropc", "user_agent": "python-requests/2.31.0"}
        else:
            options = {"app": MS_OFFICE, "resource": EXCHANGE, "interactive": False, "user_agent": "BAV2ROPC"}
        row = sign(bg2, at, result=50126, auth=PASSWORD, ip=ip, **options)
        script.append(Scripted(bg2, row, {0: timedelta(minutes=81), 3: timedelta(minutes=137)}.get(n)))

    t3 = at_fraction(0.63)
    script.append(Scripted(bg2, sign(bg2, t3, auth=PASSWORD_SMS), duplicate="redelivered"))
    graph = sign(bg2, t3 + timedelta(seconds=6), resource=GRAPH, interactive=False, auth=PASSWORD_SMS)
    script.append(Scripted(bg2, graph))
    return script


# --------------------------------------------------------------------------- watcher scenarios
# source-silent, break-glass-weak-method and user-service-account. Kept together so other
# scenarios merge beside them.

# source-silent alerts on deletes and on writes: a write can remove a category or move the destination.
DIAGNOSTIC_CHANGES = frozenset(
    {
        "microsoft.insights/diagnosticsettings/delete",
        "microsoft.aadiam/diagnosticsettings/delete",
        "microsoft.insights/diagnosticsettings/write",
        "microsoft.aadiam/diagnosticsettings/write",
    }
)
# What the generator writes for phishing-resistant (or inherited, "Previously satisfied") steps.
_NOT_WEAK = frozenset({*FIDO2.methods, *WHFB.methods, "Previously satisfied"})
ACTIVITY_LOG_EXPORT_DELETE = Operation(  # the subscription's Activity Log export to the workspace
    "Microsoft.Insights/diagnosticSettings/delete",
    "Delete diagnostic setting",
    "guid",
    template="/subscriptions/{sub}/providers/microsoft.insights/diagnosticSettings/activity-to-law",
)


def watcher_verdicts(who: Principal, row: Row) -> tuple[str, ...]:
    """source-silent: whoever deletes or writes a diagnostic setting; break-glass-weak-method: a break-glass
    sign-in with a step that succeeded using a method other than FIDO2 / Windows Hello;
    user-service-account: see automation_verdict; break-glass-account-changed: a directory change
    about a break-glass account."""
    if row["Type"] == AUDIT:
        return (BREAK_GLASS_ACCOUNT_CHANGED,) if who.kind == "break-glass" else ()
    found = automation_verdict(who, row)
    if row["Type"] == ACTIVITY:
        changed = str(row.get("OperationNameValue", "")).lower() in DIAGNOSTIC_CHANGES
        return found + ((SOURCE_SILENT,) if changed else ())
    if who.kind != "break-glass":
        return found
    steps = json.loads(row.get("AuthenticationDetails") or "[]")
    weak = any(s["succeeded"] and s["authenticationMethod"] not in _NOT_WEAK for s in steps)
    return (BREAK_GLASS_WEAK_METHOD,) if weak else ()


def dormant_break_glass(seed: int, tenant: Tenant) -> Principal:
    """A third emergency account that nobody has signed in to: its drill is overdue."""
    made = _break_glass(3, random.Random(f"dormant-break-glass:{seed}"), tenant)
    return replace(made, display_name="Break Glass Admin 3 (never drilled)", auth=FIDO2)


def watcher_principals(seed: int, tenant: Tenant) -> tuple[Principal, ...]:
    return (dormant_break_glass(seed, tenant), connection_owner(seed, tenant))


def watcher_script(world: World, principals: tuple[Principal, ...], seed: int) -> list[Scripted]:
    """The showcase admin deletes the subscription's Activity Log export late in the window."""
    rng = random.Random(f"det2:{seed}")
    admin = next(p for p in principals if p.kind == "admin")
    at = world.start + (world.end - world.start) * 0.8 + timedelta(seconds=rng.uniform(0, 600))
    target = ACTIVITY_LOG_EXPORT_DELETE.target(admin.subscription_id, admin.resource_group, "activity-to-law")
    issued = at - timedelta(minutes=4)
    token = signin_record(admin, issued, app=PORTAL, resource=ARM, rng=rng, tenant=world.tenant)
    rows = activity_records(
        admin, at, ACTIVITY_LOG_EXPORT_DELETE, target, uti=token["UniqueTokenIdentifier"], issued=issued,
        app_id=PORTAL.app_id, rng=rng, tenant=world.tenant,
    )  # fmt: skip
    return [Scripted(admin, token), *(Scripted(admin, row) for row in rows)]


# --------------------------------------------------------------------------- directory changes (AuditLogs)
# Row shape: AuditLogs columns of monitors/schema/tables.json. InitiatedBy and TargetResources as
# Microsoft Graph's directoryAudit resource documents them (learn.microsoft.com/graph/api/
# resources/directoryaudit): {"user": {id, displayName, userPrincipalName, ipAddress}} and
# [{id, displayName, type, userPrincipalName, modifiedProperties: [{displayName, oldValue,
# newValue}]}], the values JSON-encoded text; the ids look like the service's
# ("<service>_<correlation id>_<5 characters>_<number>"). Operation names, categories and
# services from Microsoft's "Microsoft Entra audit log activity reference"; role and group
# changes carry Role.* / Group.* properties and a policy change the whole policy before and
# after under "ConditionalAccessPolicy", as Microsoft Sentinel's AuditLogs rules read them.

GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"  # the role template id
MFA_POLICY = "5c4f0c3e-2a1b-4d8e-9f70-6a5b4c3d2e1f"
SALES_GROUP = "0d9c8b7a-6f5e-4d3c-8b2a-1f0e9d8c7b6a"


def _user_target(who: Principal, modified: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "id": who.object_id,
        "displayName": who.display_name,
        "type": "User",
        "userPrincipalName": who.upn,
        "modifiedProperties": modified or [],
        "administrativeUnits": [],
    }


def _changed(name: str, old: Any, new: Any) -> dict[str, Any]:
    return {"displayName": name, "oldValue": None if old is None else _ENCODE(old),
            "newValue": None if new is None else _ENCODE(new)}  # fmt: skip


def audit_record(
    by: Principal,
    when: datetime,
    operation: str,
    targets: list[dict[str, Any]],
    *,
    service: str = "Core Directory",
    category: str = "UserManagement",
    operation_type: str = "Update",
    reason: str = "",
    rng: random.Random,
    tenant: Tenant = TENANT,
) -> dict[str, Any]:
    """One AuditLogs row: `by` changed `targets` with `operation` at `when`."""
    ts = iso(_utc(when))
    correlation = guid(rng)
    prefix = "Directory" if service == "Core Directory" else service
    suffix = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(5))
    return {
        "SourceSystem": "Azure AD",
        "TimeGenerated": ts,
        "ResourceId": f"/tenants/{tenant.tenant_id}/providers/Microsoft.aadiam",
        "OperationName": operation,
        "OperationVersion": "1.0",
        "Category": category,
        "ResultType": "",
        "ResultSignature": "None",
        "ResultDescription": "",
        "DurationMs": 0,
        "CorrelationId": correlation,
        "Resource": "Microsoft.aadiam",
        "ResourceGroup": "Microsoft.aadiam",
        "ResourceProvider": "Microsoft.aadiam",
        "Identity": by.display_name,
        "Level": "4",
        "Location": "EU",
        "AdditionalDetails": [],
        "Id": f"{prefix}_{correlation}_{suffix}_{rng.randint(10_000_000, 999_999_999)}",
        "InitiatedBy": {
            "user": {
                "id": by.object_id,
                "displayName": None,
                "userPrincipalName": by.upn,
                "ipAddress": by.ip,
                "roles": [],
            }
        },
        "LoggedByService": service,
        "Result": "success",
        "ResultReason": reason,
        "TargetResources": targets,
        "AADTenantId": tenant.tenant_id,
        "ActivityDisplayName": operation,
        "ActivityDateTime": ts,
        "AADOperationType": operation_type,
        "Type": AUDIT,
    }


def _policy(excluded: list[str]) -> str:
    """A Conditional Access policy as the audit log records it (JSON text), excluding `excluded`."""
    return _ENCODE(
        {
            "id": MFA_POLICY,
            "displayName": "Require MFA for all users",
            "state": "enabled",
            "conditions": {
                "applications": {"includeApplications": ["All"], "excludeApplications": []},
                "users": {"includeUsers": ["All"], "excludeUsers": excluded, "includeGroups": [],
                          "excludeGroups": [], "includeRoles": [], "excludeRoles": []},
                "clientAppTypes": ["all"],
            },
            "grantControls": {"operator": "OR", "builtInControls": ["mfa"]},
        }
    )  # fmt: skip


def _policy_target(old: list[str], new: list[str]) -> dict[str, Any]:
    modified = [
        {"displayName": "ConditionalAccessPolicy", "oldValue": _policy(old), "newValue": _policy(new)}
    ]
    return {"id": MFA_POLICY, "displayName": "Require MFA for all users", "type": "Policy",
            "modifiedProperties": modified}  # fmt: skip


def directory_script(world: World, principals: tuple[Principal, ...], days: int, seed: int) -> list[Scripted]:
    """AuditLogs: every day people register security info, an admin resets a password and adds
    someone to a group; once, the admin excludes an ordinary user from the MFA policy (none of it
    fires). And once, mid-window, the admin tampers with the break-glass accounts: deletes bg1's
    FIDO2 key and registers a Temporary Access Pass for it, takes bg2 out of Global Administrator,
    and drops bg1 from the MFA policy's exclusions (bg2 stays excluded): each fires for its account."""
    rng = random.Random(f"directory:{seed}")
    admin = next(p for p in principals if p.kind == "admin")
    people = [p for p in principals if p.kind in ("human-mfa", "human-no-mfa")]
    bg1, bg2 = _first_two_break_glass(principals)
    script: list[Scripted] = []

    def add(who: Principal, by: Principal, at: datetime, operation: str, targets: list, **kw: Any) -> None:
        script.append(
            Scripted(who, audit_record(by, at, operation, targets, rng=rng, tenant=world.tenant, **kw))
        )

    for d in range(days):
        day = world.start + timedelta(days=d)
        for _ in range(3):
            who = rng.choice(people)
            add(who, who, day + timedelta(hours=rng.uniform(7, 18)), "User registered security info",
                [_user_target(who)], service="Authentication Methods",
                reason="User registered Authenticator App with Notification and Code")  # fmt: skip
        who = rng.choice(people)
        add(who, admin, day + timedelta(hours=rng.uniform(8, 17)), "Reset user password", [_user_target(who)])
        who = rng.choice(people)
        group = [_changed("Group.ObjectID", None, SALES_GROUP), _changed("Group.DisplayName", None, "Sales")]
        add(who, admin, day + timedelta(hours=rng.uniform(8, 17)), "Add member to group",
            [_user_target(who, group), {"id": SALES_GROUP, "displayName": "Sales", "type": "Group"}],
            category="GroupManagement", operation_type="Assign")  # fmt: skip
    span = world.end - world.start
    ordinary = rng.choice(people)
    add(ordinary, admin, world.start + span * 0.3, "Update conditional access policy",
        [_policy_target([bg1.object_id, bg2.object_id], [bg1.object_id, bg2.object_id, ordinary.object_id])],
        service="Conditional Access", category="Policy")  # fmt: skip

    at = world.start + span * 0.45 + timedelta(seconds=rng.uniform(0, 600))
    add(bg1, admin, at, "Admin deleted security info", [_user_target(bg1)], service="Authentication Methods",
        reason="Admin deleted Fido2 security key for user", operation_type="Delete")  # fmt: skip
    tap = [
        _changed("TemporaryAccessPass.Id", "", guid(rng)),
        _changed("TemporaryAccessPass.AccessPassUsage", "", "Multiple"),
    ]
    add(bg1, admin, at + timedelta(minutes=2), "Admin registered security info", [_user_target(bg1, tap)],
        service="Authentication Methods", reason="Admin registered temporary access pass method for user",
        operation_type="Add")  # fmt: skip
    role = [_changed("Role.ObjectID", GLOBAL_ADMINISTRATOR, None),
            _changed("Role.DisplayName", "Global Administrator", None),
            _changed("Role.WellKnownObjectName", "TenantAdmins", None)]  # fmt: skip
    add(bg2, admin, at + timedelta(minutes=5), "Remove member from role", [_user_target(bg2, role)],
        category="RoleManagement", operation_type="Unassign")  # fmt: skip
    add(bg1, admin, at + timedelta(minutes=9), "Update conditional access policy",
        [_policy_target([bg1.object_id, bg2.object_id], [bg2.object_id])],
        service="Conditional Access", category="Policy")  # fmt: skip
    # one change arrives hours late, as every table has a few rows that do
    script[-1] = replace(script[-1], late=timedelta(hours=2, minutes=rng.randint(0, 59)))
    return script


def watcher_expected_without_rows(
    principals: tuple[Principal, ...], script: list[Scripted]
) -> dict[str, set[str]]:
    """Verdicts no row carries: a break-glass account with no successful interactive sign-in in the
    window has an overdue drill (the drill interval is at least 7 days; the window holds all rows)."""
    drilled = {
        s.who.object_id for s in script
        if s.row["Type"] == SIGNIN and s.row["ResultType"] in ("0", 0)
    }  # fmt: skip
    return {
        p.object_id: {BREAK_GLASS_WEAK_METHOD}
        for p in principals
        if p.kind == "break-glass" and p.object_id not in drilled
    }


def _first_two_break_glass(principals: tuple[Principal, ...]) -> tuple[Principal, Principal]:
    bg1, bg2, *_ = (p for p in principals if p.kind == "break-glass")
    return bg1, bg2


# --------------------------------------------------------------------------- user-service-account
USER_SERVICE_ACCOUNT = "user-service-account"
POWER_AUTOMATE_TOOL = "power-automate"  # a user object whose Power Automate connections run flows
FLOW_SERVICE = Resource("7df0a125-d3be-4c96-aa54-591f83ff541c", "Microsoft Flow Service")
DATAVERSE = Resource("00000007-0000-0000-c000-000000000000", "Dataverse")
POWER_PLATFORM_RESOURCES = frozenset(
    {FLOW_SERVICE.resource_id, DATAVERSE.resource_id, "475226c6-020e-4fb2-8a90-7a972cbfc1d4"}
)
POWER_AUTOMATE = App(
    "7df0a125-d3be-4c96-aa54-591f83ff541c", "Microsoft Flow Service", "Mobile Apps and Desktop clients"
)


def automation_verdict(who: Principal, row: Row) -> tuple[str, ...]:
    """user-service-account: a service account's, or a connection owner's, sign-in to ARM or the
    Power Platform with the right password (first factor)."""
    if not (who.kind == "service-account" or who.tool == POWER_AUTOMATE_TOOL) or row["Type"] == ACTIVITY:
        return ()
    target = row["ResourceIdentity"] in (ARM.resource_id, *POWER_PLATFORM_RESOURCES)
    return (USER_SERVICE_ACCOUNT,) if target and str(row["ResultType"]) in FIRST_FACTOR_VERIFIED else ()


def connection_owner(seed: int, tenant: Tenant) -> Principal:
    """A maker's user account whose Power Automate connections run flows every 15 minutes from
    Microsoft's data centres; nobody signs in with it interactively any more."""
    rng = random.Random(f"connection-owner:{seed}")
    site = DATACENTRES[1]
    return Principal(
        kind="human-mfa", object_id=guid(rng), display_name="Flow Maker (connections)",
        upn=f"flow.maker@{tenant.domain}", auth=PASSWORD_APP, tool=POWER_AUTOMATE_TOOL,
        ip=address(site, rng), user_agent="", os="", browser="", tz=0,
        subscription_id=tenant.subscriptions[0], resource_group=tenant.resource_groups[0],
        project="flows", role="Reader", cadence_min=15, phase_min=rng.randrange(0, 15),
    )  # fmt: skip


def connection_owner_day(world: World, who: Principal, day: datetime, rng: random.Random) -> Iterator[Row]:
    """Each run refreshes the connections' tokens: Power Automate, then Dataverse."""
    for run in _automation_times(who, day, rng):
        for n, resource in enumerate((FLOW_SERVICE, DATAVERSE)):
            yield signin_record(
                who, run + timedelta(seconds=n * rng.uniform(1, 4)), app=POWER_AUTOMATE, resource=resource,
                interactive=False, rng=rng, tenant=world.tenant,
            )  # fmt: skip


# --------------------------------------------------------------------------- scenario: mandatory MFA


def _policy_denied(name: str) -> str:
    """Properties.statusMessage of a write refused by the built-in MFA policy in deny mode."""
    identifiers = _ENCODE(
        [{"policyAssignment": {"name": "deny-user-mfa"}, "policyDefinition": {"name": MFA_POLICY_WRITE}}]
    )
    reason = "Users must authenticate with multi-factor authentication to create or update resources"
    message = (
        f"Resource '{name}' was disallowed by policy. Reasons: '{reason}'. "
        f"Policy identifiers: '{identifiers}'."
    )
    return _ENCODE({"error": {"code": "RequestDisallowedByPolicy", "message": message}})


def mandatory_mfa_script(world: World, principals: tuple[Principal, ...], seed: int) -> list[Scripted]:
    """What mandatory MFA looks like whatever the day, placed once in the window (people rest at
    weekends; these do not): a partner's consultant, a B2B guest, deploys with the CLI and a
    password-only token (ARM writes by a guest, each audited by the built-in MFA policy); and a
    Terraform service account's write is refused by the MFA policy assigned in deny mode on one
    subscription (a rejected write: automation that mandatory MFA has broken)."""
    rng = random.Random(f"mandatory-mfa:{seed}")
    span = world.end - world.start
    script: list[Scripted] = []
    guest = next((p for p in principals if p.kind == "guest"), None)
    if guest is not None:
        t = world.start + span * 0.3 + timedelta(seconds=rng.uniform(0, 600))
        app, agent, _ = _TOOL_AGENTS["cli"]
        token = signin_record(
            guest, t, app=app, auth=PASSWORD, user_agent=agent, ip=address(HOMES[2], rng), rng=rng,
            tenant=world.tenant,
        )  # fmt: skip
        script.append(Scripted(guest, token))
        for n, op in enumerate((RG_WRITE, SITE_WRITE)):
            rows = activity_records(
                guest, t + timedelta(minutes=2 + n), op, resource_id(op, guest, rng), amr=PASSWORD.amr,
                uti=token["UniqueTokenIdentifier"], issued=t, app_id=app.app_id, ip=token["IPAddress"],
                rng=rng, tenant=world.tenant,
            )  # fmt: skip
            script += [Scripted(guest, row) for row in rows]
            script.append(Scripted(guest, policy_audit_row(rows[-1], rng=rng)))
    account = next((p for p in principals if p.kind == "service-account" and not p.ropc), None)
    if account is not None:
        t = world.start + span * 0.25 + timedelta(seconds=rng.uniform(0, 600))
        app, agent, _ = _TOOL_AGENTS[account.tool]
        token = signin_record(
            account, t, app=app, interactive=False, auth=PASSWORD, user_agent=agent, rng=rng,
            tenant=world.tenant,
        )  # fmt: skip
        script.append(Scripted(account, token))
        target = resource_id(STORAGE_WRITE, account, rng)
        rows = activity_rows(
            account, t + timedelta(seconds=20), STORAGE_WRITE, target, status="Failure", amr=PASSWORD.amr,
            uti=token["UniqueTokenIdentifier"], issued=t, app_id=app.app_id, rng=rng, tenant=world.tenant,
        )  # fmt: skip
        refused = rows[-1]  # the Failure row: Forbidden by policy, not a Conflict
        refused["ActivitySubstatusValue"] = "Forbidden"
        refused["Properties_d"].update(
            statusCode="Forbidden",
            statusMessage=_policy_denied(target.rsplit("/", 1)[-1]),
            activitySubstatusValue="Forbidden",
        )
        refused["Properties"] = flat_json_text(refused["Properties_d"])
        script += [Scripted(account, row) for row in rows]
    return script


def _mandatory_mfa_verdicts(who: Principal, row: Row) -> tuple[str, ...]:
    """The mandatory-MFA detections this row should raise for its principal (see the module docstring)."""
    if not who.is_user:
        return ()
    table = row["Type"]
    found: tuple[str, ...] = ()
    if table in (SIGNIN, NONINTERACTIVE):
        result, protocol = row["ResultType"], row["AuthenticationProtocol"]
        unattended = table == NONINTERACTIVE or protocol == "ropc"
        if unattended and row["ResourceIdentity"] == ARM.resource_id and int(result) in MFA_REQUIRED:
            found += (MFA_BLOCKED_AUTOMATION,)
        if protocol == "ropc" and str(result) in FIRST_FACTOR_VERIFIED:
            found += (ROPC_SIGN_IN,)  # the password was accepted: a wrong one (50126) is guessing
        return found
    category = row.get("CategoryValue")
    if is_write(row) and who.kind == "guest":
        found += (GUEST_ARM_WRITE,)
    if is_write(row) and row["ActivityStatusValue"] == "Failure":
        message = str(row["Properties_d"].get("statusMessage") or "")
        if "RequestDisallowedByPolicy" in message and MFA_POLICY_WRITE in message:
            found += (MFA_BLOCKED_AUTOMATION,)
    if category == "Policy" and row["OperationNameValue"] == "Microsoft.Authorization/policies/audit/action":
        found += (POLICY_MFA_AUDIT,)
    return found


def platform_day(world: World, day: datetime, rng: random.Random) -> Iterator[Row]:
    """Rows nobody in the directory caused: Service Health notices per subscription."""
    for sub in world.tenant.subscriptions:
        if rng.random() < 0.5:
            yield service_health_row(
                day + timedelta(seconds=rng.uniform(0, 86399)), sub, rng=rng, tenant=world.tenant
            )


# --------------------------------------------------------------------------- streaming writer

# Ingestion latency per table: (minimum seconds, mean extra seconds, cap seconds). Entra: P95 about
# 2 min, P99 about 5 (here: median 74 s, P95 2.6 min); Activity Log: 3 to 20 min (DOMAIN.md section 4).
LATENCY = {
    SIGNIN: (50, 35, 300),
    NONINTERACTIVE: (50, 35, 300),
    ACTIVITY: (180, 240, 1200),
    AUDIT: (50, 35, 300),  # the same Entra diagnostic pipeline as the sign-ins
}
LATE_CHANCE = 0.001  # a row hours late: a pipeline hiccup
DUPLICATE_CHANCE = 0.001  # the same row twice, as real exports have
_HOUR = timedelta(hours=1)
_REDELIVERY = timedelta(minutes=47)


class TableWriter:
    """Streams rows to `<out_dir>/<Table><suffix>.jsonl`, one JSON object per line, adding
    `_IngestionTime`; now and then a row arrives hours late or twice. The caller's rng decides, so
    output depends on the rows' own seeds only. Counts what it wrote, duplicates included."""

    def __init__(self, out_dir: Path, suffix: str = "") -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.paths = {t: out_dir / f"{t}{suffix}.jsonl" for t in TABLES}
        self._files: dict[str, TextIO] = {
            t: path.open("w", encoding="utf-8", newline="\n", buffering=1 << 20)
            for t, path in self.paths.items()
        }
        self.rows: Counter[str] = Counter()
        self.late: Counter[str] = Counter()
        self.duplicates: Counter[str] = Counter()

    def write(
        self,
        row: Row,
        rng: random.Random,
        *,
        late: timedelta | None = None,
        duplicate: Literal["exact", "redelivered"] | None = None,
    ) -> None:
        table = row["Type"]
        if late is None:
            if rng.random() < LATE_CHANCE:
                late = timedelta(seconds=rng.uniform(3600, 6 * 3600))
            else:
                low, mean, cap = LATENCY[table]
                late = timedelta(seconds=min(cap, low + rng.expovariate(1 / mean)))
        if duplicate is None and rng.random() < DUPLICATE_CHANCE:
            duplicate = "exact" if rng.random() < 0.5 else "redelivered"
        generated = datetime.fromisoformat(row["TimeGenerated"])
        record = row if isinstance(row, Record) else Record(dict(row))
        line = record.json_line(f'"_IngestionTime":"{iso(generated + late)}"') + "\n"
        self._emit(table, line, late)
        if duplicate == "exact":
            self._emit(table, line, late)
        elif duplicate == "redelivered":  # the same row delivered again, later
            again = late + _REDELIVERY
            self._emit(table, record.json_line(f'"_IngestionTime":"{iso(generated + again)}"') + "\n", again)
        if duplicate:
            self.duplicates[table] += 1

    def _emit(self, table: str, line: str, delay: timedelta) -> None:
        self._files[table].write(line)
        self.rows[table] += 1
        if delay >= _HOUR:
            self.late[table] += 1

    def close(self) -> None:
        for f in self._files.values():
            f.close()


# --------------------------------------------------------------------------- generate + manifest


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """What was generated, and the ground truth: what each principal must trigger.

    tenant.json holds: generator, version, seed, users, days, start, end, enforcement (ISO 8601 Z);
    tenant {tenant_id, workspace_id, domain, initial_domain, subscriptions}; files, rows,
    late_rows (ingested > 1 h after TimeGenerated) and duplicate_rows per table, counting lines as
    they are in the files; kinds (principals per kind); break_glass [{object_id,
    user_principal_name, display_name}]; principals [{kind, object_id, user_principal_name,
    mail (guests: their Caller in AzureActivity), display_name, user_type, home_tenant_id, app_id,
    mi_resource_id, tool, mfa, role_assignment {role, principal_type, principal_id}, expected:
    ["user-arm-write", "break-glass-use"] or a subset, expected_events: {detection: [the event ids
    (Id, EventDataId) its alerts must cover; none for a detection no row carries]}}]."""

    seed: int
    users: int
    days: int
    start: datetime
    end: datetime
    enforcement: datetime
    tenant: Tenant
    principals: tuple[Principal, ...]
    # object id -> detection -> the event ids its alerts must cover, for principals that trigger any
    expected: Mapping[str, Mapping[str, tuple[str, ...]]]
    rows: Mapping[str, int]  # lines per table file, duplicates included
    late_rows: Mapping[str, int]  # rows ingested more than an hour after TimeGenerated
    duplicate_rows: Mapping[str, int]

    @property
    def break_glass(self) -> tuple[Principal, ...]:
        return tuple(p for p in self.principals if p.kind == "break-glass")

    def to_json(self) -> dict[str, Any]:
        return {
            "generator": "devstack.tenant",
            "version": 1,
            "seed": self.seed,
            "users": self.users,
            "days": self.days,
            "start": iso(self.start),
            "end": iso(self.end),
            "enforcement": iso(self.enforcement),
            "tenant": {
                "tenant_id": self.tenant.tenant_id,
                "workspace_id": self.tenant.workspace_id,
                "domain": self.tenant.domain,
                "initial_domain": self.tenant.initial_domain,
                "subscriptions": list(self.tenant.subscriptions),
            },
            "files": {t: f"{t}.jsonl" for t in TABLES},
            "rows": dict(self.rows),
            "late_rows": dict(self.late_rows),
            "duplicate_rows": dict(self.duplicate_rows),
            "kinds": dict(Counter(p.kind for p in self.principals)),
            "break_glass": [_account(p) for p in self.break_glass],
            "principals": [self._entry(p) for p in self.principals],
        }

    def _entry(self, p: Principal) -> dict[str, Any]:
        return {
            "kind": p.kind,
            "object_id": p.object_id,
            "user_principal_name": p.upn,
            "mail": p.mail,
            "display_name": p.display_name,
            "user_type": p.user_type,
            "home_tenant_id": p.home_tenant_id,
            "app_id": p.app_id,
            "mi_resource_id": p.mi_resource_id,
            "tool": p.tool,
            "mfa": p.auth.mfa if p.is_user else None,
            "role_assignment": {
                "role": p.role,
                "principal_type": p.role_principal_type,
                "principal_id": p.assignee,
            },
            "expected": list(self.expected.get(p.object_id, {})),
            "expected_events": {d: list(ids) for d, ids in self.expected.get(p.object_id, {}).items()},
        }

    def write(self, path: Path) -> None:
        """tenant.json: one principal per line, so a 50,000-user manifest stays greppable."""
        doc = self.to_json()
        principals = doc.pop("principals")
        head = json.dumps(doc, indent=2)[:-2]
        body = ",\n".join("    " + _ENCODE(p) for p in principals)
        path.write_text(f'{head},\n  "principals": [\n{body}\n  ]\n}}\n', encoding="utf-8")


def _account(p: Principal) -> dict[str, Any]:
    return {"object_id": p.object_id, "user_principal_name": p.upn, "display_name": p.display_name}


def is_write(row: Row) -> bool:
    """An Administrative AzureActivity row of a create, update or delete; actions are no writes."""
    operation = str(row.get("OperationNameValue", "")).lower()
    return row.get("CategoryValue") == "Administrative" and operation.endswith(("/write", "/delete"))


def _verdicts(who: Principal, row: Row) -> tuple[str, ...]:
    """Which detections this row should raise for its principal (see the module docstring)."""
    # A change to a break-glass account (AuditLogs) is not a use of it.
    found: tuple[str, ...] = (BREAK_GLASS_USE,) if who.kind == "break-glass" and row["Type"] != AUDIT else ()
    if who.is_user and row["Type"] == ACTIVITY and is_write(row):
        found += (USER_ARM_WRITE,)
    found += watcher_verdicts(who, row)
    return found + _mandatory_mfa_verdicts(who, row)


def event_id(row: Row) -> str:
    """The row's own id, as the detections report it: `Id` in the sign-in tables, `EventDataId` in
    AzureActivity."""
    return str(row["EventDataId"] if row["Type"] == ACTIVITY else row["Id"])


class AnswerKey:
    """The ground truth as rows are written: per principal, each detection its rows must raise and
    exactly which rows (event ids) its alerts must cover.

    mfa-blocked-automation leaves out a silent refresh refused for a step-up (entra.STEP_UP_RESULTS)
    that the same user answers within entra.STEP_UP_WITHIN with an interactive sign-in that
    satisfied MFA: such refusals wait in `step_ups` until every row is in (`settle`)."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, set[str]]] = {}
        self.step_ups: dict[str, list[tuple[datetime, str]]] = {}
        self.mfa_sign_ins: dict[str, list[datetime]] = {}

    def add(self, who: Principal, row: Row) -> None:
        at = datetime.fromisoformat(row["TimeGenerated"])
        for detection in _verdicts(who, row):
            if detection == MFA_BLOCKED_AUTOMATION and _silent_step_up(row):
                self.step_ups.setdefault(who.object_id, []).append((at, event_id(row)))
            else:
                self.expect(who.object_id, detection, (event_id(row),))
        if _interactive_mfa(row):
            self.mfa_sign_ins.setdefault(who.object_id, []).append(at)

    def expect(self, object_id: str, detection: str, event_ids: Iterable[str] = ()) -> None:
        self.events.setdefault(object_id, {}).setdefault(detection, set()).update(event_ids)

    def merge(self, other: AnswerKey) -> None:
        for object_id, found in other.events.items():
            for detection, ids in found.items():
                self.expect(object_id, detection, ids)
        for object_id, refusals in other.step_ups.items():
            self.step_ups.setdefault(object_id, []).extend(refusals)
        for object_id, times in other.mfa_sign_ins.items():
            self.mfa_sign_ins.setdefault(object_id, []).extend(times)

    def settle(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """Every row is in: the step-up refusals nobody answered join the key; the key, sorted."""
        for object_id, refusals in self.step_ups.items():
            answers = self.mfa_sign_ins.get(object_id, [])
            unanswered = [
                rid
                for at, rid in refusals
                if not any(timedelta(0) <= t - at <= entra.STEP_UP_WITHIN for t in answers)
            ]
            if unanswered:
                self.expect(object_id, MFA_BLOCKED_AUTOMATION, unanswered)
        self.step_ups.clear()
        return {
            object_id: {detection: tuple(sorted(ids)) for detection, ids in sorted(found.items())}
            for object_id, found in self.events.items()
        }


def _silent_step_up(row: Row) -> bool:
    return row["Type"] == NONINTERACTIVE and str(row["ResultType"]) in entra.STEP_UP_RESULTS


def _interactive_mfa(row: Row) -> bool:
    """An interactive sign-in that satisfied MFA, as mfa_blocked_automation.kql reads one."""
    return (
        row["Type"] == SIGNIN
        and str(row["ResultType"]) == "0"
        and row.get("AuthenticationRequirement") == "multiFactorAuthentication"
    )


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One worker's share: principals[first:first+len(principals)], every day, into part files."""

    index: int
    first: int
    principals: tuple[Principal, ...]
    world: World
    days: int
    seed: int
    part_dir: Path


@dataclass(frozen=True, slots=True)
class _Written:
    paths: dict[str, Path]
    rows: Counter[str]
    late: Counter[str]
    duplicates: Counter[str]
    answers: AnswerKey


def _write_chunk(chunk: _Chunk) -> _Written:
    """Principal by principal, day by day; each principal-day has its own seed, so the bytes do not
    depend on how principals are split between workers. Rows past the window's end (an evening in
    Seattle is the next day in UTC) are cut, as an export of the window would cut them."""
    writer = TableWriter(chunk.part_dir, suffix=f".{chunk.index:04d}")
    answers = AnswerKey()
    end = iso(chunk.world.end)  # same format in every row: strings compare like times
    try:
        for i, who in enumerate(chunk.principals, chunk.first):
            for d in range(chunk.days):
                rng = random.Random(f"{chunk.seed}:{i}:{d}")
                for row in day_rows(chunk.world, who, chunk.world.start + timedelta(days=d), rng):
                    if row["TimeGenerated"] >= end:
                        continue
                    answers.add(who, row)
                    writer.write(row, rng)
    finally:
        writer.close()
    return _Written(writer.paths, writer.rows, writer.late, writer.duplicates, answers)


def _write_script(chunk: _Chunk, script: list[Scripted]) -> _Written:
    """The hand-placed break-glass rows and the platform noise, after everyone else."""
    writer = TableWriter(chunk.part_dir, suffix=f".{chunk.index:04d}")
    answers = AnswerKey()
    rng = random.Random(f"{chunk.seed}:script")
    try:
        for item in script:
            answers.add(item.who, item.row)
            writer.write(item.row, rng, late=item.late, duplicate=item.duplicate)
        for d in range(chunk.days):
            for row in platform_day(chunk.world, chunk.world.start + timedelta(days=d), rng):
                writer.write(row, rng)
    finally:
        writer.close()
    return _Written(writer.paths, writer.rows, writer.late, writer.duplicates, answers)


def _concatenate(parts: list[Path], target: Path) -> None:
    """Join part files in order: the first is renamed, the rest appended (in the kernel where it can)."""
    parts[0].replace(target)
    with target.open("r+b") as out:  # not "ab": copy_file_range refuses O_APPEND
        out.seek(0, os.SEEK_END)
        for part in parts[1:]:
            with part.open("rb") as src:
                size, done = part.stat().st_size, 0
                while hasattr(os, "copy_file_range") and done < size:
                    copied = os.copy_file_range(src.fileno(), out.fileno(), size - done)
                    if not copied:
                        break
                    done += copied
                src.seek(done)
                shutil.copyfileobj(src, out, 1 << 24)  # whatever the kernel did not copy
            part.unlink()


def generate(
    out_dir: str | Path,
    users: int,
    days: int,
    seed: int,
    start: datetime | None = None,
    *,
    enforcement: datetime | None = None,
    workers: int | None = None,
    tenant: Tenant = TENANT,
) -> Manifest:
    """Write the three table files and tenant.json into out_dir; return the manifest. Streams: only
    the population and per-principal verdicts stay in memory, never the rows. Mandatory MFA is
    enforced from `enforcement` (default: the middle of the window, on the hour). `workers`
    processes share the principals (default: one per CPU for big tenants); the bytes are the same
    whatever their number."""
    if days < 1:
        raise ValueError("days must be at least 1")
    out = Path(out_dir)
    start = _utc(start or DEFAULT_START)
    end = start + timedelta(days=days)
    if enforcement is None:
        enforcement = (start + (end - start) / 2).replace(minute=0, second=0, microsecond=0)
    world = World(tenant=tenant, start=start, end=end, enforcement=_utc(enforcement))
    principals = population(users, seed, tenant) + watcher_principals(seed, tenant)
    bg1, bg2 = _first_two_break_glass(principals)
    script = break_glass_script(world, bg1, bg2, seed) + watcher_script(world, principals, seed)
    script += mandatory_mfa_script(world, principals, seed) + directory_script(world, principals, days, seed)

    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if users * days >= 5000 else 1
    workers = max(1, workers)
    out.mkdir(parents=True, exist_ok=True)
    part_dir = Path(tempfile.mkdtemp(prefix=".parts-", dir=out))
    size = -(-len(principals) // (workers * 2))  # two chunks per worker evens out the load
    chunks = [
        _Chunk(n, first, principals[first : first + size], world, days, seed, part_dir)
        for n, first in enumerate(range(0, len(principals), size))
    ]
    try:
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                written = list(pool.map(_write_chunk, chunks))
        else:
            written = [_write_chunk(c) for c in chunks]
        written.append(
            _write_script(_Chunk(len(chunks), len(principals), (), world, days, seed, part_dir), script)
        )
        for table in TABLES:
            _concatenate([w.paths[table] for w in written], out / f"{table}.jsonl")
    finally:
        shutil.rmtree(part_dir, ignore_errors=True)

    answers = AnswerKey()
    for w in written:
        answers.merge(w.answers)
    for object_id, found in watcher_expected_without_rows(principals, script).items():
        for detection in found:
            answers.expect(object_id, detection)  # no row: the detection names its own event
    expected = answers.settle()
    manifest = Manifest(
        seed=seed,
        users=users,
        days=days,
        start=start,
        end=end,
        enforcement=world.enforcement,
        tenant=tenant,
        principals=principals,
        expected=expected,
        rows={t: sum(w.rows[t] for w in written) for t in TABLES},
        late_rows={t: sum(w.late[t] for w in written) for t in TABLES},
        duplicate_rows={t: sum(w.duplicates[t] for w in written) for t in TABLES},
    )
    manifest.write(out / "tenant.json")
    return manifest


def write_break_glass(manifest: Manifest, path: str | Path) -> None:
    """The break-glass list the monitor is configured with: object ids (the key) and UPNs."""
    accounts = [_account(p) for p in manifest.break_glass]
    Path(path).write_text(json.dumps(accounts, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- CLI


def _parse_start(text: str) -> datetime:
    try:
        return _utc(datetime.fromisoformat(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 datetime: {text!r}") from exc


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.tenant", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", required=True, type=Path, help="directory for the .jsonl files and tenant.json"
    )
    parser.add_argument("--users", type=int, default=200, help="user accounts (at least 5)")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--start",
        type=_parse_start,
        default=DEFAULT_START,
        help=f"window start, ISO 8601 (default {iso(DEFAULT_START)})",
    )
    parser.add_argument(
        "--break-glass-out", type=Path, help="also write the break-glass accounts here (JSON)"
    )
    parser.add_argument("--workers", type=int, help="processes (default: one per CPU for big tenants)")
    args = parser.parse_args(None if argv is None else list(argv))
    if args.users < len(USER_KINDS) or args.days < 1 or (args.workers is not None and args.workers < 1):
        parser.error(f"--users must be >= {len(USER_KINDS)}, --days and --workers >= 1")
    began = time.perf_counter()
    manifest = generate(args.out, args.users, args.days, args.seed, args.start, workers=args.workers)
    elapsed = time.perf_counter() - began
    if args.break_glass_out:
        write_break_glass(manifest, args.break_glass_out)
    total = sum(manifest.rows.values())
    counts = ", ".join(f"{t} {n}" for t, n in manifest.rows.items())
    print(
        f"{total} rows ({counts}) in {elapsed:.1f}s, {total / elapsed:,.0f} rows/s -> {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
