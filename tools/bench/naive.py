"""The naive design, for comparison: pull every candidate row, filter and summarize in Python.

`NaiveReader` wraps the app's LogsReader. When the tick asks it to run a detection's KQL, it
runs a *naive* query instead: only the window (TimeGenerated bound and ingestion-time window)
and, for user-arm-write, the `Administrative` category; the columns the detection needs are
projected (so the comparison isolates "filter and summarize in KQL" from "pull and do it in
Python", not column pruning). Then it does in Python what the KQL does and returns rows of the
same shape as the real query, so everything downstream (parse, evaluate, state, Teams) is the
app's own code. A result at or over the split threshold, or partial, is split by ingestion time
like monitors.pipeline does. Each complete chunk is filtered as it arrives and dropped, so the
naive reader holds one chunk (< 250,000 rows) at a time, not the whole window: kinder to the
naive design than concatenating every chunk first, as monitors.pipeline._fetch does.

The comparison is made on the two core detections (user-arm-write, break-glass-use), which read
the most rows; the other detections' queries, and the tick's latest-ingestion query, pass
through unchanged in both designs, so their cost appears on both sides and the ratios understate
the difference rather than overstate it.

Only the harness uses this; monitors/ is untouched.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from monitors import kql
from monitors.adapters.log_analytics import LogsReader, QueryIncomplete
from monitors.detections import DETECTIONS
from monitors.pipeline import SPLIT_AT_ROWS

Row = dict[str, Any]

_LET = re.compile(r"^let (?P<name>[A-Za-z]+) = (?P<value>.*);$", re.MULTILINE)
_MFA = re.compile(r"(?<![A-Za-z0-9])mfa(?![A-Za-z0-9])", re.IGNORECASE)
OID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
UPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
AMR = "http://schemas.microsoft.com/claims/authnmethodsreferences"
WINDOW = """| where TimeGenerated > {earliest}
| where ingestion_time() > {start} and ingestion_time() <= {end}
"""
ARM_ADMIN = (
    "AzureActivity\n"
    + WINDOW
    + """| where CategoryValue == "Administrative"
| project EventDataId, TimeGenerated, Caller, CallerIpAddress, CorrelationId, OperationNameValue,
    ActivityStatusValue, SubscriptionId, Claims, Claims_d"""
)
ARM_ALL = (
    "AzureActivity\n"
    + WINDOW
    + """| project EventDataId, TimeGenerated, Caller, CallerIpAddress,
    OperationNameValue, ActivityStatusValue, Claims, Claims_d"""
)
SIGN_INS = (
    """union (SigninLogs | extend Source = "SigninLogs"),
    (AADNonInteractiveUserSignInLogs | extend Source = "AADNonInteractiveUserSignInLogs")
"""
    + WINDOW
    + """| project Source, Id, TimeGenerated, UserId, UserPrincipalName, AppDisplayName, AppId, IPAddress,
    LocationDetails = tostring(LocationDetails), ResultType, ResultDescription, AuthenticationDetails,
    UserAgent"""
)


def _values(rendered: str) -> dict[str, Any]:
    """The typed values kql.render put in the `let` lines of a detection query."""
    values: dict[str, Any] = {}
    for match in _LET.finditer(rendered):
        text = match["value"]
        if text.startswith("datetime("):
            values[match["name"]] = datetime.fromisoformat(text[9:-1].replace("Z", "+00:00"))
        elif text.startswith("dynamic("):
            values[match["name"]] = json.loads(text[8:-1])  # string literals here are JSON-compatible
    return values


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _claims(row: Row) -> dict[str, Any] | None:
    """coalesce(Claims_d, todynamic(Claims)): the token's claims, or None."""
    for column in ("Claims_d", "Claims"):
        value = row.get(column)
        if isinstance(value, dict):
            return value
        if isinstance(value, str) and value.strip():
            try:
                parsed = json.loads(value)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                return parsed
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class NaiveReader:
    """A LogsReader that answers detection queries the naive way (see the module docstring)."""

    def __init__(self, inner: LogsReader) -> None:
        self.inner = inner
        self.requests = 0
        self.rows_pulled = 0

    def query(self, kql_text: str, start: datetime, end: datetime) -> list[Row]:
        detection = detection_of(kql_text)
        if detection == "break-glass-use":
            return self._break_glass(_values(kql_text), start, end)
        if detection == "user-arm-write":
            return self._user_arm_write(_values(kql_text), start, end)
        self.requests += 1
        rows = self.inner.query(kql_text, start, end)
        self.rows_pulled += len(rows)
        return rows

    # --- pulling

    def _pull(
        self, template: str, values: dict[str, Any], start: datetime, end: datetime, consume: Any
    ) -> None:
        """Run the naive query over the window; each complete chunk goes to `consume`, then is dropped."""
        low, high = values["WatermarkStart"], values["WatermarkEnd"]
        text = template.format(
            earliest=kql.timestamp(values["EarliestTime"]), start=kql.timestamp(low), end=kql.timestamp(high)
        )
        self.requests += 1
        try:
            rows = self.inner.query(text, start, end)
            if len(rows) < SPLIT_AT_ROWS:
                self.rows_pulled += len(rows)
                consume(rows)
                return
        except QueryIncomplete:
            pass
        rows = []  # a result this big is split by ingestion time, as monitors.pipeline does
        middle = low + (high - low) / 2
        self._pull(template, {**values, "WatermarkEnd": middle}, start, end, consume)
        self._pull(template, {**values, "WatermarkStart": middle}, start, end, consume)

    # --- user-arm-write in Python

    def _user_arm_write(self, values: dict[str, Any], start: datetime, end: datetime) -> list[Row]:
        latest: dict[str, Row] = {}  # arg_max(TimeGenerated, *) by EventDataId

        def consume(rows: list[Row]) -> None:
            for row in rows:
                operation = (row.get("OperationNameValue") or "").lower()
                if not operation.endswith(("/write", "/delete", "/action")):
                    continue
                when = _when(row["TimeGenerated"])
                event = row.get("EventDataId") or ""
                if event not in latest or when > latest[event]["_t"]:
                    latest[event] = {**row, "_t": when}

        self._pull(ARM_ADMIN, values, start, end, consume)
        groups: dict[str, dict[str, Any]] = {}
        actions: dict[str, dict[str, Any]] = {}
        for row in latest.values():
            parsed = _claims(row)
            has_claims = parsed is not None  # isnotempty(tostring(TokenClaims))
            claims = parsed or {}
            if _text(claims.get("idtyp")) == "app" or _text(claims.get("xms_mirid")):
                continue
            upn = _text(claims.get(UPN))
            caller = row.get("Caller") or ""
            methods = _text(claims.get(AMR))
            # a guest's user token has no upn: its Caller (its e-mail) names the guest, its amr is there
            if not upn and ("@" not in caller or (has_claims and not methods)):
                continue
            user = (upn or caller).lower()
            object_id = _text(claims.get(OID))
            key = object_id or user
            operation = (row.get("OperationNameValue") or "").lower()
            if operation.endswith("/action"):  # no write: counted apart, for users who wrote
                acted = actions.setdefault(key, {"corr": set(), "names": {}})
                acted["corr"].add(row.get("CorrelationId") or "")
                _add(acted["names"], operation, 20)
                continue
            status = (row.get("ActivityStatusValue") or "").lower()
            group = groups.setdefault(
                key,
                {
                    "rows": 0,
                    "corr": set(),
                    "ops": {},
                    "ok": 0,
                    "failed": 0,
                    "mfa": 0,
                    "no_mfa": 0,
                    "apps": {},
                    "ips": {},
                    "subs": {},
                    "events": {},
                    "first": row["_t"],
                    "last": row["_t"],
                    "user_id": object_id,
                    "upn": user,
                },
            )
            group["rows"] += 1
            group["corr"].add(row.get("CorrelationId") or "")
            _add(group["ops"], (row.get("OperationNameValue") or "").lower(), 20)
            group["ok"] += status in ("success", "succeeded")
            group["failed"] += status in ("failure", "failed")
            with_mfa = bool(_MFA.search(methods))
            group["mfa"] += with_mfa
            group["no_mfa"] += has_claims and not with_mfa
            _add(group["apps"], _text(claims.get("appid")), 20)
            _add(group["ips"], row.get("CallerIpAddress") or "", 20)
            _add(group["subs"], row.get("SubscriptionId") or "", 20)
            _add(group["events"], row.get("EventDataId") or "", 1000)
            group["first"] = min(group["first"], row["_t"])
            group["last"] = max(group["last"], row["_t"])
        return [
            {
                "PrincipalKey": key,
                "Rows": g["rows"],
                "Operations": len(g["corr"]),
                "OperationNames": json.dumps(list(g["ops"])),
                "Succeeded": g["ok"],
                "Failed": g["failed"],
                "WithMfa": g["mfa"],
                "WithoutMfa": g["no_mfa"],
                "ClientAppIds": json.dumps(list(g["apps"])),
                "IpAddresses": json.dumps(list(g["ips"])),
                "Subscriptions": json.dumps(list(g["subs"])),
                "EventIds": json.dumps(list(g["events"])),
                "FirstTime": g["first"],
                "LastTime": g["last"],
                "UserId": g["user_id"],
                "UserPrincipalName": g["upn"],
                "Actions": len(actions[key]["corr"]) if key in actions else 0,
                "ActionNames": json.dumps(list(actions[key]["names"])) if key in actions else None,
            }
            for key, g in groups.items()
        ]

    # --- break-glass-use in Python

    def _break_glass(self, values: dict[str, Any], start: datetime, end: datetime) -> list[Row]:
        ids = set(values.get("BreakGlassObjectIds") or ())
        upns = set(values.get("BreakGlassUpns") or ())
        found: dict[tuple[str, str], Row] = {}

        def keep(row: Row) -> None:  # arg_max(TimeGenerated, *) by Source, EventId
            key = (row["Source"], row["EventId"])
            if key not in found or _when(row["TimeGenerated"]) > _when(found[key]["TimeGenerated"]):
                found[key] = row

        def sign_ins(rows: list[Row]) -> None:
            for row in rows:
                upn = (row.get("UserPrincipalName") or "").lower()
                if row.get("UserId") not in ids and upn not in upns:
                    continue
                keep(
                    {
                        "EventId": row.get("Id") or "",
                        "Source": row["Source"],
                        "TimeGenerated": row["TimeGenerated"],
                        "UserId": row.get("UserId") or "",
                        "UserPrincipalName": upn,
                        "App": row.get("AppDisplayName") or "",
                        "AppId": row.get("AppId") or "",
                        "IPAddress": row.get("IPAddress") or "",
                        "Location": _location(row.get("LocationDetails")),
                        "ResultType": row.get("ResultType") or "",
                        "ResultDescription": row.get("ResultDescription") or "",
                        "AuthenticationDetails": row.get("AuthenticationDetails") or "",
                        "UserAgent": row.get("UserAgent") or "",
                        "Operation": "",
                    }
                )

        def operations(rows: list[Row]) -> None:
            for row in rows:
                claims = _claims(row) or {}
                object_id = _text(claims.get(OID))
                caller = row.get("Caller") or ""
                if object_id not in ids and caller not in ids and caller.lower() not in upns:
                    continue
                keep(
                    {
                        "EventId": row.get("EventDataId") or "",
                        "Source": "AzureActivity",
                        "TimeGenerated": row["TimeGenerated"],
                        "UserId": object_id,
                        "UserPrincipalName": caller.lower(),
                        "App": _text(claims.get("appid")),
                        "AppId": _text(claims.get("appid")),
                        "IPAddress": row.get("CallerIpAddress") or "",
                        "Location": "",
                        "ResultType": row.get("ActivityStatusValue") or "",
                        "ResultDescription": "",
                        "AuthenticationDetails": "",
                        "UserAgent": "",
                        "Operation": row.get("OperationNameValue") or "",
                    }
                )

        self._pull(SIGN_INS, values, start, end, sign_ins)
        self._pull(ARM_ALL, values, start, end, operations)
        return list(found.values())


def _add(bag: dict[str, None], value: str, limit: int) -> None:
    """make_set(value, limit): distinct values in first-seen order, at most `limit`."""
    if len(bag) < limit:
        bag.setdefault(value, None)


def _location(value: Any) -> str:
    """strcat(tostring(LocationDetails.city), ", ", tostring(LocationDetails.countryOrRegion))."""
    details = value
    if isinstance(value, str):
        try:
            details = json.loads(value) if value else {}
        except ValueError:
            details = {}
    if not isinstance(details, dict):
        details = {}
    return f"{_text(details.get('city'))}, {_text(details.get('countryOrRegion'))}"


def detection_of(kql_text: str) -> str:
    """Which detection a rendered query belongs to (its template's body ends the text), or "other"
    (the tick's latest-ingestion query)."""
    for detection in DETECTIONS:
        if kql_text.endswith(kql.body(detection.query)):
            return detection.id
    return "other"


def result_digest(detection: str, rows: list[Row]) -> tuple[int, str]:
    """What must agree between the real and the naive design, hashed: per principal its counts
    (user-arm-write), or the set of events (break-glass-use); make_set order is not compared.
    Other queries run the same KQL in both designs: their row counts (their rows carry the
    moment of the run, e.g. source-silent's AsOf)."""
    import hashlib

    if detection == "user-arm-write":
        keys = sorted(
            f"{r['PrincipalKey']}|{r['Rows']}|{r['Operations']}|{r['Succeeded']}|{r['Failed']}|"
            f"{r['WithMfa']}|{r['WithoutMfa']}|{len(_list(r['EventIds']))}"
            for r in rows
        )
    elif detection == "break-glass-use":
        keys = sorted(f"{r['Source']}|{r['EventId']}" for r in rows)
    else:
        return len(rows), "same query"
    return len(keys), hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def _list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    try:
        parsed = json.loads(value) if value else []
    except ValueError:
        return []
    return parsed if isinstance(parsed, list) else []
