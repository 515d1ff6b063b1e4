"""`python -m monitors alerts list|show|ack|resolve` against the devstack (Azurite, real clients)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitors import alerts, history
from monitors.adapters.table_store import pack
from monitors.bootstrap import services_from_environment
from monitors.cli import main
from monitors.history_store import TABLE, HistoryStore, alert_entities
from monitors.model import Alert, EventLine, Finding, Principal, Severity

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(microsecond=0)


def alert(
    n: int,
    *,
    detection: str = "user-arm-write",
    upn: str = "adele@contoso.com",
    flagged: bool = False,
    value: str = "Azure CLI",
) -> Alert:
    created = NOW - timedelta(hours=n)
    event = EventLine(
        event_id=f"ev-{n}", time=created, source="AzureActivity", fields=(("App", value),), flagged=flagged
    )
    finding = Finding(
        detection=detection,
        severity=Severity.CRITICAL if detection == "break-glass-use" else Severity.HIGH,
        principal=Principal(user_id=None, user_principal_name=upn),
        headline=f"ARM writes by {upn}",
        facts=(("Account", upn),),
        events=(event,),
        event_ids=(event.event_id,),
        first_time=created,
        last_time=created,
    )
    (made,) = alerts.make_alerts([finding], created)
    return made


def seed(made: list[Alert]) -> HistoryStore:
    store = services_from_environment().store
    store.upsert_many(
        TABLE,
        [
            e
            for m in made
            for e in alert_entities(m, status="new", delivery="delivered", payload=pack(alerts.to_json(m)))
        ],
    )
    return HistoryStore(store)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["alerts", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_filters_and_pages(app_env: dict, capsys: pytest.CaptureFixture[str]) -> None:
    made = [alert(n) for n in range(5)] + [alert(9, detection="break-glass-use", upn="bg@contoso.com")]
    seed(made)
    code, out, _ = run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["RAISED", "(UTC)", "SEVERITY"]
    assert [line.split()[7] for line in lines[1:]] == [m.alert_id for m in made]  # newest first

    code, out, _ = run(capsys, "list", "--detection", "break-glass-use", "--format", "json")
    payload = json.loads(out)
    assert [a["principal"] for a in payload["alerts"]] == ["bg@contoso.com"]
    assert payload["filters"]["detection"] == "break-glass-use"

    code, out, _ = run(capsys, "list", "--limit", "2", "--format", "json")
    first = json.loads(out)
    code, out, _ = run(capsys, "list", "--limit", "2", "--after", first["next"], "--format", "json")
    assert [a["alert_id"] for a in json.loads(out)["alerts"]] == [made[2].alert_id, made[3].alert_id]

    since = (NOW - timedelta(hours=2, minutes=30)).isoformat()
    code, out, _ = run(
        capsys, "list", "--since", since, "--principal", "ADELE@contoso.com", "--format", "json"
    )
    assert [a["alert_id"] for a in json.loads(out)["alerts"]] == [
        made[0].alert_id,
        made[1].alert_id,
        made[2].alert_id,
    ]

    code, out, _ = run(capsys, "list", "--limit", "2")
    assert f"More: --after {made[1].alert_id}" in out


def test_list_refuses_bad_filters(app_env: dict, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "list", "--detection", "nope", "--since", "tomorrow")
    assert code == 2
    assert "detection must be one of user-arm-write, break-glass-use" in err
    assert "since must be an ISO 8601 date" in err
    with pytest.raises(SystemExit) as caught:
        main(["alerts", "list", "--status", "open"])
    assert caught.value.code == 2


def test_show_ack_resolve(app_env: dict, capsys: pytest.CaptureFixture[str]) -> None:
    evil = "\x1b[2J\x1b[31mpwned <script>"
    made = alert(1, flagged=True, value=evil)
    history_store = seed([made])

    code, out, _ = run(capsys, "show", made.alert_id)
    assert code == 0
    assert "What to do" in out
    assert "Events (1 listed of 1" in out
    assert "\x1b" not in out
    assert "\\u001b[2J" in out
    assert " ! " in out  # the flagged event is marked

    with pytest.raises(SystemExit):  # --by is required
        main(["alerts", "ack", made.alert_id])
    capsys.readouterr()
    code, out, _ = run(capsys, "ack", made.alert_id, "--by", "Kari", "--note", "looking")
    assert (code, out) == (0, f"{made.alert_id} acknowledged by Kari\n")
    code, _, err = run(capsys, "ack", made.alert_id, "--by", "Kari")
    assert code == 1
    assert "the alert is acknowledged; it cannot be acknowledged now" in err
    code, _, err = run(capsys, "resolve", made.alert_id, "--by", "Ola")
    assert code == 2
    assert "a note is required to resolve" in err
    code, out, _ = run(
        capsys, "resolve", made.alert_id, "--by", "Ola", "--note", "drill INC-9", "--format", "json"
    )
    assert code == 0
    assert json.loads(out)["status"] == "resolved"

    changes = history.status_history(history_store.get(made.alert_id)[0])
    assert [(c["by"], c["to"], c["note"], c["via"]) for c in changes] == [
        ("Kari", "acknowledged", "looking", "cli"),
        ("Ola", "resolved", "drill INC-9", "cli"),
    ]
    code, out, _ = run(capsys, "show", made.alert_id, "--format", "json")
    assert json.loads(out)["status_history"][1]["note"] == "drill INC-9"

    missing = "9" * 13 + "-" + "a" * 12
    assert run(capsys, "show", missing)[0] == 1
    assert run(capsys, "ack", missing, "--by", "Kari")[0] == 1
    code, _, err = run(capsys, "show", "../etc/passwd")
    assert code == 2
    assert "an alert id looks like" in err


def test_runs_as_a_module_in_a_subprocess(app_env: dict) -> None:
    made = alert(1)
    seed([made])
    result = subprocess.run(
        [sys.executable, "-m", "monitors", "alerts", "list", "--format", "json"],
        cwd=REPO,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert [a["alert_id"] for a in json.loads(result.stdout)["alerts"]] == [made.alert_id]


def test_principal_pages_stay_within_the_principal(app_env: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """The principal index is one partition; a principal's rows are a row-key range in it."""
    adele = [alert(n) for n in range(4)]
    # Its key starts with adele's: its alerts must not leak into her pages, nor hers into its.
    longer = [alert(n, upn="adele@contoso.com.evil") for n in (1, 5)]
    seed(adele + longer)

    def listed(*argv: str) -> dict:
        code, out, err = run(capsys, "list", "--format", "json", *argv)
        assert code == 0, err
        return json.loads(out)

    first = listed("--principal", "Adele@Contoso.com", "--limit", "3")
    assert [a["alert_id"] for a in first["alerts"]] == [m.alert_id for m in adele[:3]]
    rest = listed("--principal", "adele@contoso.com", "--limit", "3", "--after", first["next"])
    assert ([a["alert_id"] for a in rest["alerts"]], rest["next"]) == ([adele[3].alert_id], None)
    until = (NOW - timedelta(hours=1)).isoformat()
    assert [
        a["alert_id"] for a in listed("--principal", "adele@contoso.com", "--until", until)["alerts"]
    ] == [m.alert_id for m in adele[1:]]
    assert [a["alert_id"] for a in listed("--principal", "adele@contoso.com.evil")["alerts"]] == [
        m.alert_id for m in longer
    ]

    assert run(capsys, "ack", adele[2].alert_id, "--by", "Kari")[0] == 0  # changes the copies too
    acknowledged = listed("--principal", "adele@contoso.com", "--status", "acknowledged")
    assert [a["alert_id"] for a in acknowledged["alerts"]] == [adele[2].alert_id]


def test_reindex_rebuilds_the_index_copies(app_env: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """Alerts stored before the principal index was one partition have no copy there: reindex
    writes them from the main entities."""
    made = [alert(n) for n in range(3)]
    store = services_from_environment().store
    entities = [
        e
        for m in made
        for e in alert_entities(m, status="new", delivery="delivered", payload=pack(alerts.to_json(m)))
    ]
    store.upsert_many(TABLE, [e for e in entities if e["PartitionKey"] == "alert"])  # main entities only
    assert (
        json.loads(run(capsys, "list", "--principal", "adele@contoso.com", "--format", "json")[1])["alerts"]
        == []
    )

    assert run(capsys, "reindex") == (0, "3 alerts indexed\n", "")
    for argv in (["--principal", "adele@contoso.com"], ["--detection", "user-arm-write"]):
        code, out, _ = run(capsys, "list", "--format", "json", *argv)
        assert (code, [a["alert_id"] for a in json.loads(out)["alerts"]]) == (0, [m.alert_id for m in made])
    copies = list(store.query(TABLE, "PartitionKey eq @pk", {"pk": "principal"}))
    assert not any(k.startswith("Payload") for c in copies for k in c)  # summaries, not payloads
    assert run(capsys, "reindex")[1] == "3 alerts indexed\n"  # idempotent
