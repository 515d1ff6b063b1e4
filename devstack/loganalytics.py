"""A local Log Analytics query API: `POST /v1/workspaces/{id}/query`, answered by duckdb-kql.

The app talks to it with the real `LogsQueryClient` and a real token credential, so what this
server checks is what the service checks: the bearer token (signature, audience, expiry), the
workspace id, the KQL. Answers have the service's shape: typed columns, ISO 8601 datetimes,
dynamic values as JSON text, errors as `{"error": {"code": ..., "innererror": ...}}`, and a
`PartialError` next to truncated tables, which the SDK turns into a `LogsQueryPartialResult`.

Tables and column types come from `monitors/schema/tables.json`. Each table also has a hidden
`_IngestionTime` column, which is what `ingestion_time()` reads (duckdb-kql has no such
function; the query is rewritten token by token, so string literals and comments are never
touched). Keys of loaded rows that the schema does not document are dropped with a warning: a
query naming such a column fails here as it would in Azure, instead of passing locally only.

Faults on demand, for reliability tests: `set_fault(mode, count=...)` (or `POST /admin/faults`
with `{"mode", "count", "retry_after", "delay", "match"}`, `DELETE /admin/faults` to clear) makes
the next `count` queries (only those containing `match`, when given) answer 429 with
Retry-After, 500, 503, a 504 after `delay` seconds (the server timeout), a query that runs
`delay` seconds (a 504 at the request's own server timeout, `Prefer: wait`, if that is shorter,
as the service answers a slow query), a dropped connection,
a partial result (half the rows and a `PartialError`) or a 400 `BadArgumentError`, each in the
service's own shape.

Deliberate differences from the service, all on the side of "fail loudly or stay simple":
`ago()`/`now()` are measured from the end of the request's timespan (so a replay over past
data behaves as it did live); the timespan is inclusive at both ends; KQL constructs that
duckdb-kql cannot translate are a 400 `SemanticError` naming the construct.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote, urlparse

import duckdb
import duckdb_kql
from antlr4 import InputStream, Token
from duckdb_kql._antlr.KqlLexer import KqlLexer
from duckdb_kql.errors import KqlError, KqlSyntaxError
from duckdb_kql.types import kusto_type

from devstack import kql_aggregates, kql_arg_max
from devstack.httpserver import HttpsService, JsonHandler
from devstack.identity import TokenError, TokenIssuer, verify_token
from monitors import schema

kql_aggregates.install()  # make_set/make_list as Log Analytics answers them (see that module)
kql_arg_max.install()  # the Activity Log dedupe in bounded memory (see that module)

AUDIENCE = "https://api.loganalytics.io"
DEFAULT_MAX_ROWS = 500_000  # the service's per-result record limit
DEFAULT_WAIT_S = 180  # the service's default server timeout; `Prefer: wait=N` overrides it
INGESTION_COLUMN = "_IngestionTime"
# Injectable query faults: status codes, a server timeout, a dropped connection, a partial
# result, a query the service rejects; "none" clears.
FAULT_MODES = frozenset({"429", "500", "503", "timeout", "slow", "drop", "partial", "invalid", "none"})

SQL_TYPES = {
    "string": "VARCHAR",
    "datetime": "TIMESTAMP",
    "bool": "BOOLEAN",
    "int": "INTEGER",
    "long": "BIGINT",
    "real": "DOUBLE",
    "dynamic": "JSON",
}

_QUERY_PATH = re.compile(r"/v1/workspaces/(?P<workspace>[^/]+)/query")
_ROWS_PATH = re.compile(r"/admin/tables/(?P<table>[^/]+)/rows")
# `_IngestionTime` as the tables hold it, and as a join renames the right side's copy.
_HIDDEN_COLUMN = re.compile(re.escape(INGESTION_COLUMN) + r"\d*")
_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)
_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


# --- errors in the service's shape


class ApiError(Exception):
    """An answer in Log Analytics' error shape: `{"error": {"code", "message", "innererror"?}}`."""

    def __init__(self, status: int, code: str, message: str, innererror: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.innererror = innererror

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "code": self.code,
            "correlationId": str(uuid.uuid4()),
        }
        if self.innererror:
            error["innererror"] = self.innererror
        return {"error": error}


def bad_argument(message: str, inner_code: str | None = None) -> ApiError:
    """The service's 400: a fixed top-level message, the specifics in `innererror`."""
    if inner_code is None:
        return ApiError(400, "BadArgumentError", message)
    inner = {"code": inner_code, "message": message}
    return ApiError(400, "BadArgumentError", "The request had some invalid properties", inner)


class RowError(ValueError):
    """A log row that cannot be stored in its table; names the column so the fix is obvious."""

    def __init__(self, table: str, column: str, reason: str, index: int | None = None):
        where = f"row {index}: " if index is not None else ""
        super().__init__(f"{table}: {where}column {column!r}: {reason}")
        self.table = table
        self.column = column


# --- query text


def rewrite_ingestion_time(kql: str) -> str:
    """Replace each `ingestion_time()` call with the hidden `_IngestionTime` column.

    Works on the ANTLR lexer's tokens, so `"ingestion_time()"` in a string literal or a
    `// comment` stays as written. A query the lexer chokes on is returned unchanged and fails
    in duckdb-kql with its own syntax error.
    """
    lexer = KqlLexer(InputStream(kql))
    lexer.removeErrorListeners()
    tokens = [token for token in lexer.getAllTokens() if token.channel == Token.DEFAULT_CHANNEL]
    parts: list[str] = []
    copied_to = 0
    for i, token in enumerate(tokens[:-2]):
        if (
            token.type == KqlLexer.IDENTIFIER
            and token.text == "ingestion_time"
            and tokens[i + 1].type == KqlLexer.OPENPAREN
            and tokens[i + 2].type == KqlLexer.CLOSEPAREN
        ):
            parts += [kql[copied_to : token.start], INGESTION_COLUMN]
            copied_to = tokens[i + 2].stop + 1
    parts.append(kql[copied_to:])
    return "".join(parts)


def parse_duration(text: str) -> timedelta:
    """ISO 8601 duration as the SDK writes it (`PT3600.0S`), plus days and weeks."""
    match = _DURATION.fullmatch(text.strip())
    if not match or not any(match.groupdict().values()):
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    parts = {name: float(value) for name, value in match.groupdict().items() if value}
    return timedelta(**parts)


def parse_instant(text: str) -> datetime:
    """ISO 8601 datetime; no offset means UTC, as in Kusto."""
    value = datetime.fromisoformat(text.strip())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_timespan(text: str | None, now: datetime) -> tuple[datetime, datetime] | None:
    """The request's `timespan`: `start/end`, `start/duration`, `duration/end` or `duration` (to now)."""
    if not text:
        return None
    if "/" not in text:
        return now - parse_duration(text), now
    first, second = text.split("/", 1)
    if first.strip().upper().startswith("P"):
        end = parse_instant(second)
        return end - parse_duration(first), end
    start = parse_instant(first)
    end = start + parse_duration(second) if second.strip().upper().startswith("P") else parse_instant(second)
    if end < start:
        raise ValueError(f"timespan ends before it starts: {text!r}")
    return start, end


# --- values in: JSON row -> DuckDB parameter


def to_utc_naive(value: datetime) -> datetime:
    """DuckDB TIMESTAMP holds UTC without a zone, like Kusto's datetime."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def convert_value(kql_type: str, value: Any) -> Any:
    """One JSON value -> what DuckDB stores for the KQL type; ValueError says what is wrong."""
    if value is None:
        return "" if kql_type == "string" else None  # Kusto strings are never null
    if kql_type == "string":
        if isinstance(value, str):
            return value
        return _compact_json(value)  # numbers, bools, objects (JSON text, as exports have it)
    if kql_type == "datetime":
        if isinstance(value, datetime):
            return to_utc_naive(value)
        if isinstance(value, str):
            return to_utc_naive(parse_instant(value))
        raise ValueError(f"expected an ISO 8601 datetime, got {value!r}")
    if kql_type == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"expected true or false, got {value!r}")
    if kql_type in _INT_RANGE:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"expected an integer, got {value!r}")
        number = int(value)
        low, high = _INT_RANGE[kql_type]
        if not low <= number <= high:
            raise ValueError(f"{number} is out of range for {kql_type}")
        return number
    if kql_type == "real":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if kql_type == "dynamic":
        if isinstance(value, str):
            try:
                return _compact_json(json.loads(value))  # JSON text, as exports carry it
            except json.JSONDecodeError:
                return _compact_json(value)  # a plain string is a dynamic string
        return _compact_json(value)
    raise ValueError(f"unknown KQL type {kql_type!r}")


# JSON text -> the dynamic value convert_value would store: the value itself if it is valid JSON
# (compact), else the text as a dynamic string.
_DYNAMIC_FROM_TEXT = "CASE WHEN json_valid({0}) THEN json({0}) ELSE to_json({0}) END"


class _ColumnError(Exception):
    def __init__(self, index: int) -> None:
        self.index = index


def _typed_column(kql_type: str, values: list[Any]) -> list[Any]:
    """convert_value over one column, with shortcuts for the types exports' rows already have.
    Dynamic text stays text (see _DYNAMIC_FROM_TEXT). Raises _ColumnError from the ValueError."""
    if kql_type == "string":
        fast = [value if type(value) is str else None for value in values]
    elif kql_type == "datetime":
        fast = [
            value.replace(tzinfo=None) if type(value) is datetime and value.tzinfo is UTC else None
            for value in values
        ]
    elif kql_type == "dynamic":
        fast = [value if type(value) is str else None for value in values]
    else:
        fast = [None] * len(values)
    if None not in fast:
        return fast
    for index, value in enumerate(fast):
        if value is None and (original := values[index]) is not None:
            try:
                fast[index] = (
                    _compact_json(original) if kql_type == "dynamic" else convert_value(kql_type, original)
                )
            except ValueError as error:
                raise _ColumnError(index) from error
        elif value is None and kql_type == "string":
            fast[index] = ""
    return fast


def _by_column(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(values) for values in zip(*rows, strict=True)]


# --- values out: DuckDB value -> the service's JSON


def format_timespan(value: timedelta) -> str:
    """Kusto's timespan text: `[-][d.]hh:mm:ss[.fffffff]`."""
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    if value.days:
        text = f"{value.days}.{text}"
    if value.microseconds:
        text += f".{value.microseconds:06d}0"
    return sign + text


def format_datetime(value: datetime | date) -> str:
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    value = to_utc_naive(value)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def format_value(kql_type: str, value: Any) -> Any:
    """One cell as Log Analytics writes it in a v1 query response."""
    if value is None:
        return "" if kql_type == "string" else None
    if kql_type == "datetime":
        return format_datetime(value)
    if kql_type == "timespan":
        return format_timespan(value) if isinstance(value, timedelta) else str(value)
    if kql_type == "dynamic":
        if not isinstance(value, str):  # LIST/STRUCT/MAP results: a nested document
            return json.dumps(value, separators=(",", ":"), default=str)
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        return parsed if isinstance(parsed, str) else value  # a dynamic string reads as the string
    if kql_type == "real":
        number = float(value)
        if math.isnan(number):
            return "NaN"
        return number if math.isfinite(number) else ("Infinity" if number > 0 else "-Infinity")
    if kql_type in ("guid", "decimal", "string"):
        return str(value) if not isinstance(value, bytes) else value.decode(errors="replace")
    if kql_type in ("int", "long"):
        return int(value)
    return value


# --- the server


@dataclass(frozen=True, slots=True)
class QueryRequest:
    query: str
    timespan: str | None
    wait_s: float
    include_statistics: bool


@dataclass(slots=True)
class QueryFault:
    """What the next `count` queries get instead of their answer (count None: until cleared)."""

    mode: str
    count: int | None = None
    retry_after: float = 1.0
    delay: float = 0.0
    match: str | None = None  # only queries whose text contains this


class LogAnalyticsServer(HttpsService):
    """The query API plus admin endpoints to load rows; one in-memory DuckDB, thread-safe."""

    def __init__(
        self,
        workspace_id: str,
        state_dir: Path | str,
        data_dir: Path | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        public_key_pem: bytes | None = None,
        schema_path: Path | str = schema.TABLES_JSON,
        max_rows: int = DEFAULT_MAX_ROWS,
        database: Path | None = None,
        memory_limit: str | None = None,
        temp_directory: Path | None = None,
        threads: int | None = None,
    ) -> None:
        """`database`: a file for the rows (default: memory); with `memory_limit` (e.g. "512MB")
        DuckDB keeps at most that much in memory and pages the rest to disk (the file, and
        `temp_directory`, where an in-memory database spills its rows and queries their state),
        as replay needs for exports larger than the machine's memory. `threads`: DuckDB's worker
        threads (default: one per core); each keeps its own aggregation state, so fewer need
        less memory."""
        self.workspace_id = workspace_id
        self.state_dir = Path(state_dir)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.host = host
        self.port = port
        # Default: the devstack identity's key, the one that signs the app's tokens.
        self.public_key_pem = public_key_pem or TokenIssuer(self.state_dir).public_key_pem
        self.schema = schema.load(Path(schema_path))
        self.max_rows = max_rows
        self.ca_path = self.state_dir / "certs" / "ca.pem"
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()
        self._fault: QueryFault | None = None
        self.fault_log: list[str] = []  # the mode of every fault answered, oldest first
        self.query_count = 0  # query requests that reached the workspace (faulted or not)
        config: dict[str, Any] = {"memory_limit": memory_limit} if memory_limit else {}
        if temp_directory is not None:
            config["temp_directory"] = str(temp_directory)
        if threads is not None:
            config["threads"] = threads
        self._con = duckdb_kql.connect(str(database) if database else ":memory:", config=config)
        self._catalog = self._con.sql("SELECT current_database()").fetchall()[0][0]
        for table, columns in self.schema.items():
            # A string column left out of an insert is "" (Kusto strings are never null).
            defs = [
                f'"{name}" {SQL_TYPES[kql_type]}' + (" DEFAULT ''" if kql_type == "string" else "")
                for name, kql_type in columns.items()
            ]
            self._con.execute(f'CREATE TABLE "{table}" ({", ".join(defs)}, "{INGESTION_COLUMN}" TIMESTAMP)')

    # lifecycle

    def start(self) -> Self:
        """Load `<data_dir>/<Table>.jsonl`, then listen; `.url` is set once this returns."""
        if self.data_dir is not None:
            self.load_dir(self.data_dir)
        self._listen(type("LogAnalyticsHandler", (_Handler,), {"api": self}))
        return self

    def stop(self) -> None:
        """Stop serving and drop the database: a stopped server is done, rows and all."""
        super().stop()
        self._con.close()

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection of its own per request: temp views and results never cross requests."""
        with self._lock:
            cursor = self._con.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    # loading rows

    def ingest(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Store rows (all or none); a row without `_IngestionTime` is ingested now."""
        columns = self._columns(table)
        now = datetime.now(UTC)
        converted = [self._convert_row(table, columns, row, now, index) for index, row in enumerate(rows)]
        self._insert(table, columns, _by_column(converted))
        return len(converted)

    def ingest_typed(self, table: str, rows: Sequence[Mapping[str, Any]], ingested_at: datetime) -> int:
        """Store rows already typed as monitors.exports reads them (all or none), as `ingest` would
        with `_IngestionTime` = `ingested_at`, at a fraction of its cost: values are checked and
        converted a column at a time, and dynamic values that are JSON text (read_export's
        `dynamic_text`) are normalised by DuckDB instead of Python, with convert_value's outcome:
        text that is valid JSON is stored as that value, compact; any other text is a dynamic
        string. A value of any other type goes through convert_value. Columns no row has are
        left to the table's defaults ("" for strings, null otherwise)."""
        columns = self._columns(table)
        if not rows:
            return 0
        present = set().union(*rows)
        self._warn_unknown(table, present - columns.keys())
        # What the service fills in itself: the ingestion time, TimeGenerated from it, the Type.
        present |= {INGESTION_COLUMN, "TimeGenerated", "Type"} & columns.keys()
        names = [name for name in columns if name in present]
        values: list[list[Any]] = []
        for name in names:
            kql_type = columns[name]
            if name in (INGESTION_COLUMN, "TimeGenerated"):
                given = [row.get(name) for row in rows]
                if name == "TimeGenerated" and None in given:
                    stamps = [row.get(INGESTION_COLUMN) for row in rows]
                    given = [
                        v if v is not None else s if s is not None else ingested_at
                        for v, s in zip(given, stamps, strict=True)
                    ]
                else:
                    given = [ingested_at if value is None else value for value in given]
            elif name == "Type":
                given = [row.get(name) or table for row in rows]
            else:
                given = [row.get(name) for row in rows]
            try:
                values.append(_typed_column(kql_type, given))
            except _ColumnError as error:
                raise RowError(table, name, str(error.__cause__), error.index) from error.__cause__
        self._insert(table, {name: columns[name] for name in names}, values, dynamic_text=True)
        return len(rows)

    def load_dir(self, data_dir: Path) -> int:
        """Load every `<Table>.jsonl`; a bad line is skipped with a warning, never fatal."""
        total = 0
        for path in sorted(data_dir.glob("*.jsonl")):
            if path.stem not in self.schema:
                _warn(f"{path}: no table {path.stem!r} in the schema; file skipped")
                continue
            total += self.load_file(path.stem, path)
        return total

    def load_file(self, table: str, path: Path) -> int:
        columns = self._columns(table)
        now = datetime.now(UTC)
        good: list[tuple[Any, ...]] = []
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ValueError("not a JSON object")
                    good.append(self._convert_row(table, columns, row, now))
                except ValueError as error:  # JSONDecodeError and RowError included
                    _warn(f"{path}:{number}: row skipped: {error}")
        self._insert(table, columns, _by_column(good))
        return len(good)

    def clear(self) -> int:
        """Empty every table; returns how many rows went."""
        deleted = 0
        with self._cursor() as cursor:
            for table in self.schema:
                deleted += cursor.execute(f'DELETE FROM "{table}"').fetchall()[0][0]  # noqa: S608 - schema names
        return deleted

    def _columns(self, table: str) -> dict[str, str]:
        if table not in self.schema:
            raise KeyError(f"unknown table {table!r}; known: {', '.join(sorted(self.schema))}")
        return {**self.schema[table], INGESTION_COLUMN: "datetime"}

    def _warn_unknown(self, table: str, names: Iterable[str]) -> None:
        """Once per table and column: a column the schema lacks is dropped, as the service does."""
        for extra in sorted(names):
            if (table, extra) not in self._warned:
                self._warned.add((table, extra))
                _warn(f"{table}: column {extra!r} is not in the schema; its values are dropped")

    def _convert_row(
        self,
        table: str,
        columns: dict[str, str],
        row: Mapping[str, Any],
        now: datetime,
        index: int | None = None,
    ) -> tuple[Any, ...]:
        self._warn_unknown(table, row.keys() - columns.keys())
        values = dict(row)
        # What the service fills in itself.
        if values.get(INGESTION_COLUMN) is None:
            values[INGESTION_COLUMN] = now
        if values.get("TimeGenerated") is None and "TimeGenerated" in columns:
            values["TimeGenerated"] = values[INGESTION_COLUMN]
        if not values.get("Type") and "Type" in columns:
            values["Type"] = table
        converted = []
        for name, kql_type in columns.items():
            try:
                converted.append(convert_value(kql_type, values.get(name)))
            except ValueError as error:
                raise RowError(table, name, str(error), index) from error
        return tuple(converted)

    def _insert(
        self, table: str, columns: dict[str, str], values: list[list[Any]], *, dynamic_text: bool = False
    ) -> None:
        """Column-wise `unnest` of typed lists, one per column: ~100x faster than executemany for
        big files. `dynamic_text`: dynamic columns hold text for DuckDB to normalise
        (_DYNAMIC_FROM_TEXT), not convert_value's JSON."""
        if not values:  # no rows
            return
        selects, outputs = [], []
        for i, kql_type in enumerate(columns.values()):
            sql_type = "VARCHAR" if kql_type == "dynamic" else SQL_TYPES[kql_type]
            selects.append(f"unnest(?::{sql_type}[]) AS c{i}")
            dynamic = dynamic_text and kql_type == "dynamic"
            outputs.append(_DYNAMIC_FROM_TEXT.format(f"c{i}") if dynamic else f"c{i}")
        names = ", ".join(f'"{name}"' for name in columns)
        source = f"SELECT {', '.join(selects)}"
        sql = f'INSERT INTO "{table}" ({names}) SELECT {", ".join(outputs)} FROM ({source})'  # noqa: S608 - schema names
        with self._cursor() as cursor:
            cursor.execute(sql, values)

    # faults

    def set_fault(
        self,
        mode: str,
        count: int | None = None,
        retry_after: float = 1.0,
        delay: float = 0.0,
        match: str | None = None,
    ) -> None:
        """Fail the next `count` queries (None: until cleared) the way `mode` says; "none" clears.
        With `match`, only queries whose text contains it fail (and count down)."""
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {sorted(FAULT_MODES)}")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1 (omit it for 'until cleared')")
        if retry_after < 0 or delay < 0:
            raise ValueError("retry_after and delay must not be negative")
        with self._lock:
            self._fault = None if mode == "none" else QueryFault(mode, count, retry_after, delay, match)

    def clear_faults(self) -> None:
        self.set_fault("none")

    def faults(self) -> dict[str, Any] | None:
        with self._lock:
            return None if self._fault is None else asdict(self._fault)

    def take_fault(self, query: str = "") -> QueryFault | None:
        """The fault for this query, counted down; every query is counted."""
        with self._lock:
            self.query_count += 1
            fault = self._fault
            if fault is None or (fault.match is not None and fault.match not in query):
                return None
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self._fault = None
            self.fault_log.append(fault.mode)
            return QueryFault(fault.mode, fault.count, fault.retry_after, fault.delay, fault.match)

    # queries

    def authorize(self, header: str | None) -> dict[str, Any]:
        """401 without a bearer token, 403 for one this workspace would not accept."""
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "AuthorizationRequiredError", "Valid authentication was not provided")
        try:
            return verify_token(token.strip(), public_key_pem=self.public_key_pem, audience=AUDIENCE)
        except TokenError as error:
            raise ApiError(
                403,
                "InvalidTokenError",
                "The provided authentication is not valid for this resource",
                {"code": "TokenValidationFailed", "message": str(error)},
            ) from error

    def check_workspace(self, workspace_id: str) -> None:
        if workspace_id.lower() != self.workspace_id.lower():
            raise ApiError(404, "WorkspaceNotFoundError", f"Workspace '{workspace_id}' could not be found")

    def query(self, request: QueryRequest) -> dict[str, Any]:
        """Run one query the way the service does; raises ApiError for anything but 200."""
        started = time.monotonic()
        now = datetime.now(UTC)
        try:
            window = parse_timespan(request.timespan, now)
        except ValueError as error:
            raise bad_argument(f"Invalid timespan: {error}") from error
        kql = rewrite_ingestion_time(request.query)
        with self._cursor() as cursor:
            if window is not None:
                self._restrict(cursor, *window)
            timer = threading.Timer(request.wait_s, cursor.interrupt)
            timer.start()
            try:
                result = duckdb_kql.execute(
                    cursor, kql, allow_write=False, query_now=window[1] if window else now
                )
                description = result.description or []
                rows = result.fetchmany(self.max_rows + 1)
            except KqlSyntaxError as error:
                raise bad_argument(str(error), "SyntaxError") from error
            except KqlError as error:
                raise bad_argument(str(error), "SemanticError") from error
            except duckdb.InterruptException as error:
                message = f"The query exceeded the server timeout of {request.wait_s:g} seconds"
                raise ApiError(504, "GatewayTimeout", message) from error
            except duckdb.Error as error:
                raise bad_argument(str(error), "SemanticError") from error
            finally:
                timer.cancel()
        keep = [i for i, column in enumerate(description) if not _HIDDEN_COLUMN.fullmatch(column[0])]
        types = [kusto_type(description[i][1]) for i in keep]
        truncated = len(rows) > self.max_rows
        table = {
            "name": "PrimaryResult",
            "columns": [{"name": description[i][0], "type": t} for i, t in zip(keep, types, strict=True)],
            "rows": [
                [format_value(t, row[i]) for i, t in zip(keep, types, strict=True)]
                for row in rows[: self.max_rows]
            ],
        }
        response: dict[str, Any] = {"tables": [table]}
        if request.include_statistics:
            elapsed = round(time.monotonic() - started, 3)
            stats = [{"tableRowCount": len(table["rows"]), "tableSize": 0}]
            response["statistics"] = {"query": {"executionTime": elapsed, "datasetStatistics": stats}}
        if truncated:
            response["error"] = self._partial_error()
        return response

    def _restrict(self, cursor: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> None:
        """Shadow each table with a temp view of the timespan, as the service filters TimeGenerated."""
        low, high = (to_utc_naive(moment).isoformat(sep=" ") for moment in (start, end))
        source = f'"{self._catalog}".main'  # the base tables; a bare name would find the view itself
        window = f"\"TimeGenerated\" BETWEEN TIMESTAMP '{low}' AND TIMESTAMP '{high}'"
        for table, columns in self.schema.items():
            if "TimeGenerated" in columns:
                sql = f'CREATE TEMP VIEW "{table}" AS SELECT * FROM {source}."{table}" WHERE {window}'  # noqa: S608
                cursor.execute(sql)

    def _partial_error(self, detail: str | None = None) -> dict[str, Any]:
        limit = f"Query result set has exceeded the internal record count limit {self.max_rows}"
        detail = detail or f"{limit} (E_QUERY_RESULT_SET_TOO_LARGE; see https://aka.ms/kustoquerylimits)"
        return {
            "code": "PartialError",
            "message": "There were some errors when processing your query.",
            "details": [
                {
                    "code": "EngineError",
                    "message": "Something went wrong processing your query on the server.",
                    "innererror": {
                        "code": "-2133196797",
                        "message": detail,
                        "severity": 2,
                        "severityName": "Error",
                    },
                }
            ],
        }


def parse_prefer(header: str | None) -> tuple[float, bool]:
    """`Prefer: wait=600,include-statistics=true` -> (timeout seconds, statistics wanted)."""
    wait_s: float = DEFAULT_WAIT_S
    statistics = False
    for item in (header or "").split(","):
        name, _, value = item.strip().partition("=")
        if name == "wait" and value.strip().isdigit():
            wait_s = float(value)
        elif name == "include-statistics":
            statistics = value.strip().lower() == "true"
    return wait_s, statistics


class _Handler(JsonHandler):
    api: LogAnalyticsServer

    def do_POST(self) -> None:
        body = self.read_body()  # always drained, so a keep-alive connection stays in sync
        path = urlparse(self.path).path
        try:
            if path == "/admin/faults":
                self._set_fault(body)
            elif (match := _ROWS_PATH.fullmatch(path)) is not None:
                self._ingest(unquote(match["table"]), body)
            elif (match := _QUERY_PATH.fullmatch(path)) is not None:
                self._query(unquote(match["workspace"]), body)
            else:
                raise ApiError(404, "PathNotFoundError", f"The requested path does not exist: {path}")
        except ApiError as error:
            self.send_json(error.status, error.body())

    def do_DELETE(self) -> None:
        self.read_body()
        path = urlparse(self.path).path
        try:
            if path not in ("/admin/tables", "/admin/faults"):
                raise ApiError(404, "PathNotFoundError", "The requested path does not exist")
            self._loopback_only()
            if path == "/admin/faults":
                self.api.clear_faults()
                self.send_json(200, {"fault": None})
            else:
                self.send_json(200, {"deleted": self.api.clear()})
        except ApiError as error:
            self.send_json(error.status, error.body())

    def do_GET(self) -> None:
        try:
            if urlparse(self.path).path != "/admin/faults":
                raise ApiError(404, "PathNotFoundError", "The requested path does not exist")
            self._loopback_only()
            self.send_json(200, {"fault": self.api.faults(), "answered": list(self.api.fault_log)})
        except ApiError as error:
            self.send_json(error.status, error.body())

    def _set_fault(self, body: bytes) -> None:
        self._loopback_only()
        try:
            spec = json.loads(body or b"null")
            if not isinstance(spec, dict):
                raise ValueError('need a JSON object like {"mode": "429", "count": 2}')
            count = spec.get("count")
            self.api.set_fault(
                str(spec.get("mode")),
                count=None if count is None else int(count),
                retry_after=float(spec.get("retry_after", 1.0)),
                delay=float(spec.get("delay", 0.0)),
                match=None if spec.get("match") is None else str(spec["match"]),
            )
        except (TypeError, ValueError) as error:
            raise bad_argument(f"bad fault: {error}") from error
        self.send_json(200, {"fault": self.api.faults()})

    def _query(self, workspace_id: str, body: bytes) -> None:
        # The service's order: who are you, then which workspace, then what you asked.
        self.api.authorize(self.headers.get("Authorization"))
        self.api.check_workspace(workspace_id)
        try:
            payload = json.loads(body or b"null")
        except json.JSONDecodeError as error:
            raise bad_argument(f"The request body is not valid JSON: {error}") from error
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            raise bad_argument("The request body must be an object with a 'query' string")
        for other in payload.get("workspaces") or []:
            self.api.check_workspace(str(other))
        timespan = payload.get("timespan")
        wait_s, statistics = parse_prefer(self.headers.get("Prefer"))
        request = QueryRequest(payload["query"], str(timespan) if timespan else None, wait_s, statistics)
        fault = self.api.take_fault(request.query)
        if fault is not None and fault.mode == "slow":
            if fault.delay >= request.wait_s:
                time.sleep(request.wait_s)
                message = f"The query exceeded the server timeout of {request.wait_s:g} seconds (slow query)"
                self.send_json(504, ApiError(504, "GatewayTimeout", message).body())
                return
            time.sleep(fault.delay)
            fault = None
        if fault is not None and fault.mode != "partial":
            self._answer_fault(fault)
            return
        response = self.api.query(request)
        if fault is not None:  # partial: half the rows, and the block that says so
            table = response["tables"][0]
            total = len(table["rows"])
            table["rows"] = table["rows"][: total // 2]
            detail = f"Query aborted after {total // 2} of {total} rows (injected fault; E_RUNAWAY_QUERY)"
            response["error"] = self.api._partial_error(detail)
        self.send_json(200, response)

    def _answer_fault(self, fault: QueryFault) -> None:
        """A failure in the service's shape; `delay` first for the slow ones."""
        if fault.mode == "429":
            error = ApiError(429, "ThrottledError", "Too many requests; retry after the time in Retry-After")
            self.send_json(429, error.body(), {"Retry-After": f"{fault.retry_after:g}"})
        elif fault.mode in ("500", "503"):
            code = "InternalServerError" if fault.mode == "500" else "ServiceUnavailable"
            error = ApiError(int(fault.mode), code, f"Injected fault {fault.mode}")
            self.send_json(error.status, error.body())
        elif fault.mode == "timeout":
            time.sleep(fault.delay)
            message = f"The query exceeded the server timeout of {fault.delay:g} seconds (injected fault)"
            self.send_json(504, ApiError(504, "GatewayTimeout", message).body())
        elif fault.mode == "drop":
            time.sleep(fault.delay)
            self._reset_connection()
        else:  # invalid
            error = bad_argument("Query could not be parsed at 'injected' (injected fault)", "SyntaxError")
            self.send_json(error.status, error.body())

    def _reset_connection(self) -> None:
        """Close with RST (SO_LINGER 0): the client sees the connection reset with no answer."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _ingest(self, table: str, body: bytes) -> None:
        self._loopback_only()
        try:
            rows = json.loads(body or b"null")
        except json.JSONDecodeError as error:
            raise bad_argument(f"The request body is not valid JSON: {error}") from error
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise bad_argument("The request body must be a JSON list of row objects")
        try:
            self.send_json(200, {"ingested": self.api.ingest(table, rows)})
        except KeyError as error:
            raise bad_argument(str(error.args[0])) from error
        except RowError as error:
            raise bad_argument(str(error)) from error

    def _loopback_only(self) -> None:
        if self.client_address[0] not in ("127.0.0.1", "::1"):
            raise ApiError(403, "Forbidden", "Admin endpoints answer loopback clients only")


def _warn(message: str) -> None:
    print(f"loganalytics: warning: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local Log Analytics query API (duckdb-kql)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--workspace-id", required=True, help="the only workspace id the API accepts")
    parser.add_argument(
        "--state-dir", type=Path, default=Path(".devstack"), help="where certs/ and identity/ live"
    )
    parser.add_argument("--data-dir", type=Path, help="folder of <Table>.jsonl files loaded at start")
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS, help="rows before a PartialError")
    parser.add_argument("--schema", type=Path, default=schema.TABLES_JSON, help="tables.json")
    args = parser.parse_args(argv)
    server = LogAnalyticsServer(
        args.workspace_id,
        args.state_dir,
        args.data_dir,
        port=args.port,
        schema_path=args.schema,
        max_rows=args.max_rows,
    )
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"ready {server.url}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
