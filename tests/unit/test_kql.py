from datetime import UTC, datetime, timedelta, timezone

import pytest

from monitors import kql

TEMPLATE = """declare query_parameters(Since:datetime, Accounts:dynamic, Name:string);
SigninLogs | where TimeGenerated > Since and UserPrincipalName in~ (Accounts) | where AppDisplayName == Name
"""


def test_render_replaces_the_declaration_with_typed_lets() -> None:
    since = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    text = kql.render(TEMPLATE, {"Since": since, "Accounts": ["b@x.com", "a@x.com"], "Name": "Azure CLI"})
    assert text.splitlines()[:3] == [
        "let Since = datetime(2026-01-02T01:04:05.000000Z);",
        'let Accounts = dynamic(["a@x.com", "b@x.com"]);',
        'let Name = "Azure CLI";',
    ]
    assert "declare" not in text


@pytest.mark.parametrize(
    "payload",
    ['x" | take 1 //', 'x\\" or 1==1 or "', "x\\", '"); SigninLogs | project * //', 'a" | union *'],
)
def test_a_hostile_string_stays_one_literal(payload: str) -> None:
    literal = kql.string(payload)
    # Undo the two escapes KQL defines; what is left must be exactly the payload, and no
    # unescaped quote may appear inside the literal.
    inner = literal[1:-1]
    assert literal[0] == literal[-1] == '"'
    assert inner.replace('\\"', "").replace("\\\\", "").count('"') == 0
    assert inner.replace("\\\\", "\0").replace('\\"', '"').replace("\0", "\\") == payload


@pytest.mark.parametrize("payload", ["line\nbreak", "tab\there", "nul\0", "é", "\u202e"])
def test_non_printable_or_non_ascii_values_are_refused(payload: str) -> None:
    with pytest.raises(kql.KqlError):
        kql.string(payload)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(kql.KqlError):
        kql.timestamp(datetime(2026, 1, 1))


def test_parameters_must_match_the_declaration() -> None:
    with pytest.raises(kql.KqlError, match="declares"):
        kql.render(TEMPLATE, {"Since": datetime.now(UTC)})


def test_bool_is_not_a_long() -> None:
    with pytest.raises(kql.KqlError):
        kql.long(True)
