"""Read log exports from a folder, for `python -m monitors replay LOGDIR`.

People bring what the Azure tools give them: the Log Analytics portal's "Export to CSV", or
`az monitor log-analytics query -o json` (an array of objects whose values are all strings).
Both are turned into the rows a query would return: dicts keyed by the documented column names
of the table, values typed by the documented KQL type, so replay runs the same detections as a
live tick.

Decisions, each for a reason:
- Every documented column is in every row. One the export lacks is the KQL null of its type
  ("" for string, None otherwise): detections read rows the same way whatever the export held.
- Undocumented columns are dropped and named in the report: a detection must not come to rely on
  a column a live query never returns. `$table` (the portal's union marker) is checked, then dropped.
- The portal writes `X [UTC]` for datetimes; `X [Local Time]` (or any other zone) is refused:
  the values carry no offset, so any instant read from them would be a guess.
- `X_dynamic` / `X_string` / `X_d` (what a union of differently typed columns exports as) stand in
  for a documented `X` the export lacks; per row the first non-empty one wins, dynamic first.
- Sign-in exports made without TimeGenerated (like the real one in tests/fixtures) get it
  from CreatedDateTime: a sign-in reaches Log Analytics as a diagnostic record whose `time`, which
  becomes TimeGenerated, is the sign-in's createdDateTime. The report notes when this happened.
- A bad row is skipped and counted (with a few examples naming row and column); a bad file
  raises ExportError naming the file. A row whose value does not fit its documented type is bad:
  Log Analytics guarantees the types, so such a value means the file was edited or damaged.
- Streaming, constant memory: CSV is read in chunks, JSON is decoded item by item with
  `JSONDecoder.raw_decode` over chunks. A CSV record or JSON item longer than MAX_RECORD_CHARS is
  not a log row: the CSV record is read through in pieces, skipped and counted; the JSON array
  cannot be resynchronised, so its rows stop there (as with a broken array). A JSON item nested
  deeper than the decoder can follow ends the read with ExportError naming the file.
- A caller that reads only some columns names them (`columns`): the others are neither parsed nor
  put in the rows. Replay asks for the columns the detections' KQL names; the portal's AzureActivity
  rows are ~7 KB, mostly JSON (Claims, Properties, Authorization) that no detection reads twice.
- CSV records are matched by one regular expression per header (capturing only the wanted fields),
  not split field by field: about three times the csv module's pace on portal exports. Anything it
  does not match (a blank line, a quote inside a bare field, a broken record) hands the rest of the
  file to the csv module, which reads and reports it exactly as before.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO, cast

from monitors import schema

TABLES = ("SigninLogs", "AADNonInteractiveUserSignInLogs", "AzureActivity", "AuditLogs")
# A CSV record or JSON item longer than this is not a log row (a portal AzureActivity row is ~7 KB):
# memory stays bounded by a few times this, whatever a file holds.
MAX_RECORD_CHARS = 16 << 20
MAX_EXAMPLES = 5  # skip reasons kept per file: enough to find the problem, bounded for huge files
PROGRESS_EVERY = 1 << 20  # bytes between progress callbacks
ProgressCallback = Callable[[int, int], None]  # (bytes_read, total_bytes)

# A sign-in row's TimeGenerated is its CreatedDateTime (see the module docstring).
_TIME_SOURCE = {"SigninLogs": "CreatedDateTime", "AADNonInteractiveUserSignInLogs": "CreatedDateTime"}

# Documented columns and types of the tables replay reads (monitors/schema/tables.json).
_DOCUMENTED = schema.load()
SCHEMA: dict[str, dict[str, str]] = {table: _DOCUMENTED[table] for table in TABLES}


# --- results


class ExportError(Exception):
    """A folder or file that cannot be read as an export; the message names it and the problem."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Discovery:
    files: dict[str, Path]  # table -> its export, in TABLES order
    ignored: tuple[Path, ...]  # everything else in the folder, so the user sees what was not read


@dataclass(slots=True, kw_only=True)
class FileReport:
    """What reading one export found. Mutable: filled in while the rows stream."""

    path: Path
    table: str
    format: str  # "csv" or "json"
    rows_read: int = 0
    rows_skipped: int = 0
    skip_examples: list[str] = field(default_factory=list)  # the first MAX_EXAMPLES reasons
    undocumented_columns: list[str] = field(default_factory=list)  # dropped, as named in the export
    # Documented columns the export holds (of those asked for), TimeGenerated when derived too.
    columns: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)  # things done on the user's behalf

    def skip(self, reason: str) -> None:
        self.rows_skipped += 1
        if len(self.skip_examples) < MAX_EXAMPLES:
            self.skip_examples.append(reason)

    def summary(self) -> str:
        text = f"{self.path.name} ({self.table}, {self.format}): {self.rows_read} rows read"
        if self.rows_skipped:
            text += f", {self.rows_skipped} skipped"
        if self.undocumented_columns:
            text += f", {len(self.undocumented_columns)} undocumented columns dropped"
        return text


@dataclass(slots=True)
class ReadReport:
    """One FileReport per read_export call, in call order."""

    files: list[FileReport] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def rows_skipped(self) -> int:
        return sum(f.rows_skipped for f in self.files)

    def skip(self, path: Path, reason: str) -> None:
        """Count a row of `path` that a later stage refused: it was yielded and counted read, and
        now counts as skipped instead, so "N rows read, M skipped" adds up to the file's rows."""
        for report in self.files:
            if report.path == path:
                report.rows_read -= 1
                report.skip(reason)
                return
        raise ValueError(f"{path} has not been read")

    def examples(self) -> list[str]:
        """Every file's skip examples, each prefixed with its file name."""
        return [f"{report.path.name}: {reason}" for report in self.files for reason in report.skip_examples]

    def lines(self) -> list[str]:
        """Human-readable, for the CLI: a summary per file, then its notes and skip examples."""
        out: list[str] = []
        for report in self.files:
            out.append(report.summary())
            out += [f"  note: {note}" for note in report.notes]
            out += [f"  skipped {reason}" for reason in report.skip_examples]
            if report.undocumented_columns:
                out.append("  undocumented: " + ", ".join(report.undocumented_columns))
        return out


# --- public API


def discover(logdir: Path) -> Discovery:
    """Find `<Table>.csv` / `<Table>.json` exports (table names matched case-insensitively)."""
    if not logdir.exists():
        raise ExportError(f"{logdir}: no such folder")
    if not logdir.is_dir():
        raise ExportError(f"{logdir}: not a folder")
    try:
        entries = sorted(logdir.iterdir())
    except OSError as exc:
        raise ExportError(f"{logdir}: cannot list the folder: {exc.strerror or exc}") from exc
    found: dict[str, Path] = {}
    ignored: list[Path] = []
    for entry in entries:
        table = _TABLE_BY_LOWER.get(entry.stem.lower())
        if table is None or entry.suffix.lower() not in (".csv", ".json") or not entry.is_file():
            ignored.append(entry)
        elif table in found:
            raise ExportError(f"{logdir}: both {found[table].name} and {entry.name} hold {table}; keep one")
        else:
            found[table] = entry
    if not found:
        seen = ", ".join(e.name for e in entries[:10]) or "nothing"
        raise ExportError(
            f"{logdir}: no export found (expected <Table>.csv or <Table>.json, Table one of "
            f"{', '.join(TABLES)}); the folder holds: {seen}"
        )
    return Discovery(files={t: found[t] for t in TABLES if t in found}, ignored=tuple(ignored))


def read_export(
    path: Path,
    table: str,
    report: ReadReport,
    on_progress: ProgressCallback | None = None,
    columns: Collection[str] | None = None,
    *,
    dynamic_text: bool = False,
) -> Iterator[dict[str, Any]]:
    """Rows of one export of `table`, whatever the file is called; its FileReport joins `report`.

    Opening the file and checking its header happen now, so a bad file raises ExportError here;
    a bad row is skipped and counted while iterating. A file with rows but none readable raises
    ExportError when the iteration ends.

    `columns`: the documented columns the caller reads (default: all). Rows hold only these, plus
    TimeGenerated, the column it may be taken from, and Type (which keeps other tables' rows of a
    union export out); the export's other columns are not parsed, checked or reported.

    `dynamic_text`: dynamic values are handed on as the export's text (a JSON export's non-string
    values as compact JSON text), not parsed, for a consumer that parses JSON itself: replay's
    engine does, in DuckDB, with the same outcome (valid JSON is the value, anything else a string).
    """
    canonical = _TABLE_BY_LOWER.get(table.lower())
    if canonical is None:
        raise ValueError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    keep: frozenset[str] | None = None
    if columns is not None:
        unknown = sorted(set(columns) - SCHEMA[canonical].keys())
        if unknown:
            raise ValueError(f"not documented {canonical} columns: {', '.join(unknown)}")
        always = {"TimeGenerated", "Type", _TIME_SOURCE.get(canonical, "TimeGenerated")}
        keep = frozenset(columns) | always
    rows = _read(path, canonical, report, on_progress, keep, dynamic_text)
    next(rows)  # run the generator up to its first row: open, sniff and check the header now
    return cast(Iterator[dict[str, Any]], rows)  # the one None (header checked) has been consumed


_TABLE_BY_LOWER = {t.lower(): t for t in TABLES}


# --- opening a file


def _read(
    path: Path,
    table: str,
    report: ReadReport,
    on_progress: ProgressCallback | None,
    keep: frozenset[str] | None = None,
    dynamic_text: bool = False,
) -> Iterator[dict[str, Any] | None]:
    try:
        binary = open(path, "rb")  # noqa: SIM115  # closed by the finally below, when iteration ends
    except OSError as exc:
        raise ExportError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        total = os.fstat(binary.fileno()).st_size
        head = _sniff(path, binary)
        fmt = _format(path, head)
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        file_report = FileReport(path=path, table=table, format=fmt)
        progress = _Progress(binary, total, on_progress)
        rows = (_csv_rows if fmt == "csv" else _json_rows)(
            path, text, table, file_report, progress, keep, dynamic_text
        )
        try:
            next(rows)  # header checked
            report.files.append(file_report)
            yield None
            yield from rows
        except UnicodeDecodeError as exc:
            raise ExportError(f"{path}: not UTF-8 text (after row {file_report.rows_read})") from exc
        progress.done()
        if file_report.rows_read == 0 and file_report.rows_skipped:
            raise ExportError(f"{path}: no row could be read; first problem: {file_report.skip_examples[0]}")
    finally:
        binary.close()


def _sniff(path: Path, binary: BinaryIO) -> str:
    """Refuse what is plainly not a text export before parsing it: a clear message beats a parse error."""
    try:
        raw = binary.read(1 << 16)
    except OSError as exc:
        raise ExportError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    binary.seek(0)
    if not raw.strip():
        raise ExportError(f"{path}: the file is empty")
    if b"\x00" in raw:
        raise ExportError(
            f"{path}: binary data (NUL bytes), not a CSV or JSON export; UTF-16 text? save as UTF-8"
        )
    try:
        head = codecs.getincrementaldecoder("utf-8-sig")().decode(raw, final=False)
    except UnicodeDecodeError as exc:
        raise ExportError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    return head


def _format(path: Path, head: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".json"):
        return suffix[1:]
    return "json" if head.lstrip()[:1] in ("[", "{") else "csv"


class _Progress:
    """Calls back every PROGRESS_EVERY bytes; bytes are counted below the text decoder."""

    def __init__(self, binary: BinaryIO, total: int, callback: ProgressCallback | None) -> None:
        self._binary, self._total, self._callback = binary, total, callback
        self._last = 0
        if callback:
            callback(0, total)

    def tick(self) -> None:
        if self._callback:
            position = self._binary.tell()
            if position - self._last >= PROGRESS_EVERY:
                self._last = position
                self._callback(position, self._total)

    def done(self) -> None:
        if self._callback:
            self._callback(self._total, self._total)


# --- columns: export names -> documented names


_ZONE_SUFFIX = re.compile(r"^(?P<base>.*\S) \[(?P<zone>[^\]]*)\]$")
# What a union of differently typed same-named columns exports as; preferred first.
_VARIANT_SUFFIXES = ("_dynamic", "_d", "_datetime", "_bool", "_long", "_int", "_real", "_string")
_UNION_MARKER = "$table"


@dataclass(frozen=True, slots=True)
class _Column:
    kind: str  # "documented", "variant" (of a documented column), "table" ($table) or "undocumented"
    target: str  # the documented name, or the export's name when undocumented
    rank: int = 0  # among variants of one column, lower wins


def _resolve(path: Path, name: str, table: str) -> _Column:
    name = name.strip()
    if name == _UNION_MARKER:
        return _Column("table", name)
    base, zone = name, "UTC"
    match = _ZONE_SUFFIX.match(name)
    if match:
        base, zone = match["base"], match["zone"]
    column = _documented(base, table)
    if column.kind != "undocumented" and zone.upper() != "UTC":
        raise ExportError(
            f"{path}: column {name!r} is shown in {zone}, not UTC, and its values carry no offset, "
            "so the instants they mean cannot be known; export again with the portal's display "
            "time zone set to UTC"
        )
    return column if column.kind != "undocumented" else _Column("undocumented", name)


def _documented(name: str, table: str) -> _Column:
    lower = _LOWER_COLUMNS[table]
    if name.lower() in lower:
        return _Column("documented", lower[name.lower()])
    for rank, suffix in enumerate(_VARIANT_SUFFIXES, start=1):
        if name.lower().endswith(suffix) and name[: -len(suffix)].lower() in lower:
            return _Column("variant", lower[name[: -len(suffix)].lower()], rank)
    return _Column("undocumented", name)


_LOWER_COLUMNS = {table: {c.lower(): c for c in columns} for table, columns in SCHEMA.items()}


class _BadRow(Exception):
    """One row cannot be used; the message says where and why."""


class _Plan:
    """How to turn the fields of one header's rows into a documented-column dict, fast."""

    def __init__(
        self,
        path: Path,
        names: Sequence[str],
        table: str,
        keep: frozenset[str] | None = None,
        dynamic_text: bool = False,
    ) -> None:
        self.dynamic_text = dynamic_text
        self.table, self.lower = table, table.lower()
        self.types = SCHEMA[table]
        self.width = len(names)
        self.undocumented: list[str] = []
        self.union_index: int | None = None
        direct: dict[str, int] = {}
        variants: dict[str, list[tuple[int, int, str]]] = {}  # target -> [(rank, index, export name)]
        for index, name in enumerate(names):
            column = _resolve(path, name, table)
            if keep is not None and column.kind in ("documented", "variant") and column.target not in keep:
                continue  # documented, but not asked for: not read at all
            if column.kind == "table":
                self.union_index = index
            elif column.kind == "undocumented":
                self.undocumented.append(column.target)
            elif column.kind == "documented":
                if column.target in direct:
                    raise ExportError(
                        f"{path}: two columns mean {column.target}: {names[direct[column.target]]!r}"
                        f" and {name!r}"
                    )
                direct[column.target] = index
            else:
                variants.setdefault(column.target, []).append((column.rank, index, name))
        self.strings: list[tuple[str, int]] = []
        self.typed: list[tuple[str, int, Callable[[Any], Any]]] = []
        self.coalesced: list[tuple[str, tuple[int, ...], Callable[[Any], Any] | None]] = []
        for target, index in direct.items():
            self._add(target, (index,))
        for target, candidates in variants.items():
            if target in direct:  # the documented column itself is there: its variants are extra
                self.undocumented += [name for _, _, name in candidates]
            else:
                self._add(target, tuple(index for _, index, _ in sorted(candidates)))
        self.columns = frozenset(direct) | frozenset(variants)
        self.template = {
            c: ("" if t == "string" else None) for c, t in self.types.items() if keep is None or c in keep
        }
        used = [i for _, i in self.strings] + [i for _, i, _ in self.typed]
        used += [i for _, indexes, _ in self.coalesced for i in indexes]
        self.needed = frozenset(used + ([] if self.union_index is None else [self.union_index]))

    def _add(self, target: str, indexes: tuple[int, ...]) -> None:
        kql_type = self.types[target]
        convert = _dynamic_text if kql_type == "dynamic" and self.dynamic_text else _CONVERTERS[kql_type]
        if len(indexes) > 1:
            self.coalesced.append((target, indexes, convert))
        elif convert is None:
            self.strings.append((target, indexes[0]))
        else:
            self.typed.append((target, indexes[0], convert))

    def build(self, fields: Sequence[Any], *, text_only: bool) -> dict[str, Any]:
        """fields: all str (CSV, text_only) or JSON values ("" for null). Raises _BadRow."""
        row = self.template.copy()
        name = ""
        try:
            if text_only:
                for name, index in self.strings:
                    row[name] = fields[index]
            else:
                for name, index in self.strings:
                    if (value := fields[index]) != "":
                        row[name] = _to_str(value)
            for name, index, convert in self.typed:
                if (value := fields[index]) != "":
                    row[name] = convert(value)
            for name, indexes, maybe_convert in self.coalesced:
                for index in indexes:
                    if (value := fields[index]) != "":
                        if maybe_convert is not None:
                            row[name] = maybe_convert(value)
                        else:
                            row[name] = value if text_only else _to_str(value)
                        break
        except (ValueError, TypeError) as exc:
            raise _BadRow(f"{name}: {exc}") from None
        self._check_table(fields, row)
        if row["TimeGenerated"] is None:
            source = _TIME_SOURCE.get(self.table)
            if source is None or row[source] is None:
                raise _BadRow("TimeGenerated is empty")
            row["TimeGenerated"] = row[source]
        return row

    def _check_table(self, fields: Sequence[Any], row: dict[str, Any]) -> None:
        """A union export holds rows of several tables: keep only this table's."""
        for column, value in (
            ("$table", "" if self.union_index is None else fields[self.union_index]),
            ("Type", row.get("Type", "")),
        ):
            if value and value != self.table and (not isinstance(value, str) or value.lower() != self.lower):
                raise _BadRow(f"{column} is {_show(value)}, not {self.table}")


# --- values: export text -> Python values of the documented KQL type


_PORTAL_TIME = re.compile(
    r"(\d{1,2})/(\d{1,2})/(\d{4}),? +(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)? *([AaPp][Mm])"
)


def _to_datetime(value: Any) -> datetime:
    """The portal's en-US '4/28/2021, 2:32:14.029 PM' (UTC, given the ` [UTC]` header) or ISO 8601.

    An ISO value without an offset is UTC, as every KQL datetime is.
    """
    if not isinstance(value, str):
        raise TypeError(f"not a datetime: {_show(value)}")
    text = value.strip()
    match = _PORTAL_TIME.fullmatch(text)
    if match:
        month, day, year, hour, minute, second, fraction, half = match.groups()
        hour_24 = int(hour) % 12 + (12 if half.upper() == "PM" else 0)  # 12 AM is 0 h, 12 PM is 12 h
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        try:
            if not 1 <= int(hour) <= 12:
                raise ValueError(f"hour {hour} on a 12-hour clock")
            return datetime(
                int(year), int(month), int(day), hour_24, int(minute), int(second or 0), micro, UTC
            )
        except ValueError as exc:
            raise ValueError(f"not a datetime: {_show(value)} ({exc})") from None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a datetime: {_show(value)} (expected M/D/YYYY, h:mm:ss.fff AM/PM or ISO 8601)"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


_BOOLS = {"true": True, "false": False, "1": True, "0": False}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOLS:
        return _BOOLS[value.strip().lower()]
    raise ValueError(f"not a bool: {_show(value)}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"not an integer: {_show(value)}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"not an integer: {_show(value)}") from None


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"not a number: {_show(value)}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"not a number: {_show(value)}") from None


_DECODER = json.JSONDecoder()


def _to_dynamic(value: Any) -> Any:
    """JSON text of an object or array is parsed; anything else is kept as it is."""
    if not isinstance(value, str):
        return value
    text = value if value[:1] in ("{", "[") else value.lstrip()
    if text[:1] not in ("{", "["):
        return value
    try:
        parsed, end = _DECODER.raw_decode(text)  # json.loads without its two extra layers: rows are many
    except ValueError:
        return value
    except RecursionError:  # no log value nests this deep: a damaged or crafted row, skipped
        raise ValueError(f"JSON nested too deeply to read: {_show(value)}") from None
    return parsed if end == len(text) or not text[end:].strip() else value


def _dynamic_text(value: Any) -> str:
    """A dynamic value left as JSON text for the consumer to parse (read_export's `dynamic_text`)."""
    return value if isinstance(value, str) else _to_str(value)


def _to_str(value: Any) -> str:
    """Only JSON exports reach this with non-strings; render them as KQL's tostring() would."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


_CONVERTERS: dict[str, Callable[[Any], Any] | None] = {
    "string": None,  # kept as it is: JSON-looking text in a string column stays text
    "datetime": _to_datetime,
    "bool": _to_bool,
    "int": _to_int,
    "long": _to_int,
    "real": _to_float,
    "dynamic": _to_dynamic,
}


def _show(value: Any, limit: int = 60) -> str:
    """A log value in a message: repr() neutralises control characters; long values are cut."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- CSV (the portal's "Export to CSV")


def _csv_rows(
    path: Path,
    text: TextIO,
    table: str,
    report: FileReport,
    progress: _Progress,
    keep: frozenset[str] | None = None,
    dynamic_text: bool = False,
) -> Iterator[dict[str, Any] | None]:
    """Yields None once the header is checked, then rows."""
    csv.field_size_limit(MAX_RECORD_CHARS)  # JSON columns can exceed the 128 KiB default
    lines = _Lines(text)
    reader = csv.reader(lines, strict=True)  # strict: a quote left open at the end is an error, not data
    try:
        header = next(reader)
    except (csv.Error, StopIteration, _TooLong) as exc:
        raise ExportError(f"{path}: no readable CSV header ({exc or 'no data'})") from None
    lines.record_ended()
    plan = _Plan(path, header, table, keep, dynamic_text)
    if not plan.columns:
        raise ExportError(
            f"{path}: no documented {table} column in the header (first columns: "
            f"{', '.join(_show(h, 30) for h in header[:5])})"
        )
    if "TimeGenerated" not in plan.columns:
        source = _TIME_SOURCE.get(table)
        if source is None or source not in plan.columns:
            raise ExportError(f"{path}: no TimeGenerated column")
        report.notes.append(f"TimeGenerated taken from {source} (a sign-in's TimeGenerated is its {source})")
    report.undocumented_columns = plan.undocumented
    report.columns = set(plan.columns) | {"TimeGenerated"}
    yield None
    number = 0
    for line, fields in _csv_records(text, lines, reader, plan, progress):
        number += 1
        if isinstance(fields, str):
            report.skip(f"row {number} (line {line}): not valid CSV: {fields}")
            continue
        if len(fields) != plan.width:
            report.skip(f"row {number} (line {line}): {len(fields)} fields, the header has {plan.width}")
            continue
        try:
            row = plan.build(fields, text_only=True)
        except _BadRow as exc:
            report.skip(f"row {number} (line {line}): {exc}")
            continue
        report.rows_read += 1
        yield row


_CSV_CHUNK = 1 << 17  # characters per read on the fast path (memory: a few times this)
_FAST_RECORD_CHARS = 8 * _CSV_CHUNK  # a longer record goes to the csv module's path, bounded per record
_QUOTED = r'"[^"]*+(?:""[^"]*+)*+"'  # a quoted field, quotes inside doubled; may span lines
_BARE = r'[^,"\r\n]*+'  # an unquoted field: no quote in it (else the csv module decides)
# Possessive (*+): a field, once matched, is never re-split, so a record that does not match fails
# in time linear in its length.


def _record_pattern(width: int, wanted: Collection[int]) -> re.Pattern[str]:
    """A whole record of `width` fields, as the csv module reads the portal's CSV; each wanted
    field is captured as (quoted body, bare text), the others only skipped over."""
    skip, take = f"(?:{_QUOTED}|{_BARE})", f'(?:"([^"]*+(?:""[^"]*+)*+)"|({_BARE}))'
    fields = ",".join(take if index in wanted else skip for index in range(width))
    return re.compile(fields + r"(?:\r?\n|\Z)")


def _csv_records(
    text: TextIO, lines: _Lines, reader: Any, plan: _Plan, progress: _Progress
) -> Iterator[tuple[int, list[str] | str]]:
    """(first line, fields) per record after the header, or (first line, reason) for one that is not
    valid CSV. Fields the plan does not use are "". Fast path first; the csv module for the rest."""
    line = lines.count + 1
    if plan.width > 1:
        record = _record_pattern(plan.width, plan.needed)
        wanted = tuple(enumerate(sorted(plan.needed)))
        buffer, pos, eof, misses = "", 0, False, 0
        while True:
            match = record.match(buffer, pos)
            if match is None or (match.end() == len(buffer) and not eof):  # none, or it may go on
                if match is None and pos < len(buffer):
                    misses += 1  # a record longer than what is read, or one for the csv module
                if eof or misses > 2 or len(buffer) - pos > _FAST_RECORD_CHARS:
                    break  # the csv module's path takes a long record, and skips an over-long one
                size = min(max(_CSV_CHUNK, 2 * (len(buffer) - pos)), _FAST_RECORD_CHARS)
                chunk = text.read(size)
                progress.tick()
                eof = not chunk
                buffer, pos = buffer[pos:] + chunk, 0
                continue
            misses = 0
            start, pos = pos, match.end()
            groups = match.groups()
            fields = [""] * plan.width
            for k, index in wanted:
                quoted = groups[2 * k]
                fields[index] = groups[2 * k + 1] if quoted is None else quoted.replace('""', '"')
            yield line, fields
            line += buffer.count("\n", start, pos)
        rest, buffer = buffer[pos:], ""
        if eof and not rest.strip("\r\n"):
            return  # the end, perhaps after blank lines (which the csv module skips too)
        # The csv module takes its input line by line: _Lines goes on with a line `rest` cuts.
        lines = _Lines(text, head=rest)
        reader = csv.reader(lines, strict=True)
    base = line - 1 - lines.count
    while True:
        line = base + lines.count + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except (csv.Error, _TooLong) as exc:
            lines.record_ended()  # the csv module starts afresh at the next line
            yield line, str(exc)
            continue
        lines.record_ended()
        if not fields:
            continue  # a blank line
        if lines.count % 256 == 0:
            progress.tick()
        yield line, fields


class _TooLong(Exception):
    """A CSV record longer than MAX_RECORD_CHARS; it has been read through, not kept."""


_LINE_END = re.compile(r"\r\n?|\n")


class _Lines:
    """The lines of `head`, then of `text`, for the csv module, in bounded memory: a record longer
    than MAX_RECORD_CHARS (on one line, or over many inside a quoted field) is read through in
    pieces and dropped, and raises _TooLong instead; the csv module then starts on the next record.

    The caller says where records end (`record_ended`, after each record the csv module returns or
    refuses), so a record is what the csv module makes of the lines. `head` is text already read
    from `text`, starting at a record; it may end inside a line, which goes on in `text`.
    `count`: lines handed out or dropped, for line numbers in messages.
    """

    def __init__(self, text: TextIO, head: str = "") -> None:
        self._text, self._head, self._at = text, head, 0
        self.count = 0
        self._record: list[str] = []  # the current record's lines: at most MAX_RECORD_CHARS
        self._size = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._read(MAX_RECORD_CHARS + 1 - self._size)
        if not line:
            raise StopIteration
        self.count += 1
        self._record.append(line)
        self._size += len(line)
        if self._size > MAX_RECORD_CHARS:
            self._read_through()
            raise _TooLong(f"a record longer than {MAX_RECORD_CHARS:,} characters, not read (not a log row)")
        return line

    def record_ended(self) -> None:
        self._record, self._size = [], 0

    def _read_through(self) -> None:
        """Read to the end of the current record, as the csv module would find it, keeping nothing."""
        quoting = _Quoting()
        ended = any(quoting.ends(line) for line in self._record)  # False: it is longer
        line_ended = self._record[-1][-1] in "\r\n"
        self.record_ended()
        while not ended and (piece := self._read(_CSV_CHUNK)):
            if line_ended:
                self.count += 1  # the piece starts a line
            line_ended = piece[-1] in "\r\n"
            ended = quoting.ends(piece)

    def _read(self, size: int) -> str:
        """The rest of the current line, at most `size` characters, from the head and then the text."""
        line = ""
        if self._at < len(self._head):
            end = _LINE_END.search(self._head, self._at, self._at + size)
            stop = end.end() if end else min(len(self._head), self._at + size)
            line, self._at = self._head[self._at : stop], stop
            if self._at == len(self._head):
                self._head, self._at = "", 0  # used up: free it
            if end or len(line) == size:
                return line
        return line + self._text.readline(size - len(line))


class _Quoting:
    """Where the csv module (excel dialect) ends a record, fed a piece at a time: at a line end
    outside a quoted field. A quote opens a quoted field only at a field's start ('a"b' is text),
    and "" inside one is a quote. Used only to read an over-long record through."""

    _FIELD_START, _BARE, _QUOTED, _QUOTE = range(4)
    _BARE_END = re.compile(r"[,\r\n]")

    def __init__(self) -> None:
        self._state = self._FIELD_START

    def ends(self, piece: str) -> bool:
        """Whether the record ends in `piece` (a line, or part of one: it ends at the piece's end)."""
        at = 0
        while at < len(piece):
            if self._state == self._QUOTED:
                at = piece.find('"', at)
                if at < 0:
                    return False
                self._state, at = self._QUOTE, at + 1
            elif self._state == self._QUOTE:  # a quote inside a quoted field: "" or its end
                if piece[at] == '"':
                    self._state, at = self._QUOTED, at + 1
                else:
                    self._state = self._BARE
            elif self._state == self._FIELD_START and piece[at] == '"':
                self._state, at = self._QUOTED, at + 1
            else:
                found = self._BARE_END.search(piece, at)
                if found is None:
                    self._state = self._BARE
                    return False
                self._state, at = self._FIELD_START, found.end()
                if found.group() != ",":
                    return True
        return False


# --- JSON (`az monitor log-analytics query -o json`)


_JSON_CHUNK = 1 << 16  # characters per read
_NON_BLANK = re.compile(r"[^ \t\n\r]")  # JSON's whitespace is these four


def _json_rows(
    path: Path,
    text: TextIO,
    table: str,
    report: FileReport,
    progress: _Progress,
    keep: frozenset[str] | None = None,
    dynamic_text: bool = False,
) -> Iterator[dict[str, Any] | None]:
    """Yields None once the opening '[' is seen, then rows."""
    items = _json_array(path, text, progress)
    next(items)
    yield None
    plans: dict[tuple[str, ...], _Plan] = {}
    undocumented: set[str] = set()
    derived = False
    try:
        for number, item in items:
            where = f"row {number}"
            if not isinstance(item, dict):
                report.skip(f"{where}: a JSON {type(item).__name__}, not an object")
                continue
            keys = tuple(item)
            plan = plans.get(keys)
            if plan is None:
                plan = _Plan(path, keys, table, keep, dynamic_text)
                if len(plans) < 64:  # az prints the same keys for every row: one plan serves all
                    plans[keys] = plan
                if not undocumented.issuperset(plan.undocumented):
                    undocumented.update(plan.undocumented)
                    report.undocumented_columns = sorted(undocumented)
                report.columns.update(plan.columns)
            if not plan.columns:
                report.skip(f"{where}: no documented {table} column")
                continue
            fields = ["" if v is None else v for v in item.values()]
            try:
                row = plan.build(fields, text_only=False)
            except _BadRow as exc:
                report.skip(f"{where}: {exc}")
                continue
            if not derived and "TimeGenerated" not in plan.columns:
                derived = True
                report.columns.add("TimeGenerated")
                report.notes.append(
                    "TimeGenerated taken from CreatedDateTime where absent "
                    "(a sign-in's TimeGenerated is its CreatedDateTime)"
                )
            report.rows_read += 1
            yield row
    except _BadRow as exc:  # the array itself is broken: nothing after this point can be trusted
        report.skip(str(exc))


def _json_array(path: Path, text: TextIO, progress: _Progress) -> Iterator[tuple[int, Any]]:
    """Items of a top-level JSON array, decoded one at a time from chunks (constant memory).

    Yields a placeholder once the '[' is found (a file that is not an array raises ExportError
    then); raises _BadRow for a truncated or broken array, after yielding the items before it.
    """
    decoder = json.JSONDecoder()
    buffer, pos, eof = "", 0, False

    def more() -> bool:
        nonlocal buffer, pos, eof
        chunk = text.read(max(_JSON_CHUNK, len(buffer) - pos))  # doubles while one item spans chunks
        progress.tick()
        if not chunk:
            eof = True
            return False
        buffer, pos = buffer[pos:] + chunk, 0
        return True

    def skip_whitespace() -> bool:
        """Moves to the next non-blank character; False at the end of the file."""
        nonlocal pos
        while True:
            found = _NON_BLANK.search(buffer, pos)
            if found:
                pos = found.start()
                return True
            pos = len(buffer)
            if not more():
                return False

    if not skip_whitespace() or buffer[pos] != "[":
        kind = "a JSON object" if buffer[pos : pos + 1] == "{" else "not JSON"
        raise ExportError(
            f"{path}: {kind}; expected an array of row objects as `az monitor "
            "log-analytics query -o json` prints"
        )
    pos += 1
    yield 0, None
    number = 0
    while True:
        if not skip_whitespace():
            raise _BadRow(f"row {number + 1}: the file ends inside the array (truncated?)")
        if buffer[pos] == "]":
            break
        number += 1
        while True:
            end: int | None = None
            try:
                item, end = decoder.raw_decode(buffer, pos)
                if end < len(buffer) or eof:  # a value ending at the buffer's end may go on
                    break
            except json.JSONDecodeError as exc:
                if eof:
                    raise _BadRow(
                        f"row {number}: invalid or truncated JSON ({exc.msg}); "
                        "the rest of the file is not read"
                    ) from None
            except RecursionError:
                # Where the item ends cannot be found without following it: nothing after it is read.
                raise ExportError(
                    f"{path}: row {number} is JSON nested too deeply to read, and where it ends "
                    "cannot be found without reading it (no log row nests like this: a damaged or "
                    "crafted file)"
                ) from None
            if len(buffer) - pos > MAX_RECORD_CHARS:
                break  # no end within the limit
            more()
        if end is None or end - pos > MAX_RECORD_CHARS:  # not a log row; where it ends is unknown
            raise _BadRow(
                f"row {number}: larger than {MAX_RECORD_CHARS:,} characters or not valid JSON; "
                "the rest of the file is not read"
            )
        pos = end
        yield number, item
        if not skip_whitespace():
            raise _BadRow(f"after row {number}: the file ends without ']' (truncated?)")
        if buffer[pos] == ",":
            pos += 1
        elif buffer[pos] == "]":
            break
        else:
            raise _BadRow(f"after row {number}: expected ',' or ']', found {_show(buffer[pos])}")
    pos += 1  # the closing ']'
    if skip_whitespace():  # e.g. two outputs appended to one file: the second one's rows are not read
        raise _BadRow(f"after the closing ']': more data ({_show(buffer[pos : pos + 20])}), not read")
