"""Every value that reaches KQL stays one literal, proven by a real KQL parser and engine.

duckdb-kql parses with a grammar generated from Microsoft's KQL grammar, then evaluates; if a
payload could end its literal early, the printed value would differ or the query would fail.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb_kql
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitors import kql
from monitors.detections import DETECTIONS
from monitors.detections.base import Context
from monitors.pipeline import query_values, render_query
from monitors.settings import BreakGlassAccounts, parse_break_glass
from monitors.watermark import Window

PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
PAYLOADS = [
    '" | take 1 //',
    '\\" or 1==1 or "',
    "x\\",
    '"); SigninLogs | project * //',
    "a' | union *",
    '\\\\" | where true //',
    "//",
    "| summarize count()",
    "\\u0022 | take 1",
    "${jndi:ldap://x}",
    'h@"verbatim"',
]
CON = duckdb_kql.connect()


def printed(expression: str) -> object:
    return duckdb_kql.query(CON, f"print x = {expression}").fetchall()[0][0]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_known_payloads_stay_one_string_literal(payload: str) -> None:
    assert printed(kql.string(payload)) == payload


@settings(max_examples=800, deadline=None)
@given(PRINTABLE)
def test_any_printable_string_stays_one_literal(payload: str) -> None:
    assert printed(kql.string(payload)) == payload


@settings(max_examples=300, deadline=None)
@given(st.lists(PRINTABLE, max_size=6))
def test_string_lists_stay_one_dynamic_literal(values: list[str]) -> None:
    assert json.loads(printed(kql.literal("dynamic", values))) == sorted(values)


@pytest.mark.parametrize("payload", ["line\nbreak", "carriage\rreturn", "nul\0", "é", "\u202e", "\t"])
def test_values_outside_printable_ascii_are_refused_not_escaped(payload: str) -> None:
    with pytest.raises(kql.KqlError):
        kql.string(payload)


@pytest.mark.parametrize("payload", [p for p in PAYLOADS if "@" not in p] + ['a"b@x.com', 'x@y.com" or 1==1'])
def test_break_glass_setting_refuses_what_is_not_an_id_or_upn(payload: str) -> None:
    with pytest.raises(ValueError, match="neither an object id"):
        parse_break_glass(payload)


def test_rendered_detection_queries_keep_hostile_upns_inside_their_literal() -> None:
    """Even a UPN-shaped value with quotes (were validation bypassed) cannot change the query."""
    hostile = 'bg"|take 1//@contoso.com'
    accounts = BreakGlassAccounts(upns=frozenset({hostile}))
    window = Window(start=datetime(2026, 1, 1, tzinfo=UTC), end=datetime(2026, 1, 2, tzinfo=UTC),
                    earliest_time=datetime(2025, 12, 30, tzinfo=UTC))  # fmt: skip
    for detection in DETECTIONS:
        text = render_query(detection, query_values(window, Context(break_glass=accounts)))
        assert duckdb_kql.validate(text) == [], detection.id
        if "BreakGlassUpns" in kql.parameters(detection.query):
            (line,) = [line for line in text.splitlines() if line.startswith("let BreakGlassUpns")]
            assert json.loads(printed(line.split("=", 1)[1].rstrip(";"))) == [hostile]
