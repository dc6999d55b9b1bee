"""Typed load of one landing table into DuckDB, with every bad row quarantined with its reason.

Pure DuckDB + Python (no Dagster), so it is tested directly. The steps, all set-based SQL so that
tens of millions of rows load without passing through Python:

1. read every file of the table as text, with its file name and 1-based row number;
2. trim, type and classify each row (the first failing row-level check names the reason);
3. among the remaining rows, later duplicates of a key and references to unloaded parents;
4. write the good rows to ``raw.<table>`` and the bad ones to ``raw.quarantine``.
"""

from __future__ import annotations

import csv
import dataclasses
import mmap
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from acrm_pipelines.ingest.contract import (
    BAD_CUSTOM_NAME,
    CUSTOM_NAME,
    FALSE_WORDS,
    STATUSES,
    TRUE_WORDS,
    Column,
    TableSpec,
)
from acrm_pipelines.ingest.phones import normalise_phones
from acrm_pipelines.settings import Settings
from acrm_pipelines.sql import ident, lit, table

RAW_SCHEMA = "raw"
SUFFIXES = (".csv", ".parquet")
# A time followed by a zone suffix (Z, +03:00, -0500): the suffix is dropped, times are shop-local.
_TZ_SUFFIX = r"(\d\d:\d\d(:\d\d(\.\d+)?)?)(Z|[+-]\d\d(:?\d\d)?)$"
# custom_* names reach SQL in dbt and segments: only these are loaded (64 characters at most, ASCII).
# DuckDB's reject error types -> the malformed_row:<problem> reason; the first listed wins on a row with several.
MALFORMED = {
    "INVALID ENCODING": "invalid_unicode",
    "UNQUOTED VALUE": "bad_quote",
    "TOO MANY COLUMNS": "too_many_columns",
    "MISSING COLUMNS": "too_few_columns",
    "LINE SIZE OVER MAXIMUM": "line_too_long",
}
# DuckDB reads a path as a glob pattern, so files are read through plainly named links.
_GLOB_CHARS = re.compile(r"[*?\[\]{}]")


class LoadError(Exception):
    """A landing file that cannot be loaded at all (unreadable, missing a required column)."""


@dataclass
class LoadResult:
    table: str
    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    rejected_columns: list[str] = field(default_factory=list)  # custom_* headers with an unsafe name, not loaded
    custom_columns: dict[str, str] = field(default_factory=dict)
    reused: bool = False  # the files had not changed since the last load: raw.<table> was kept as it was
    skipped_files: list[str] = field(default_factory=list)  # files with nothing to read (0 bytes), not loaded
    appended_files: list[str] = field(default_factory=list)  # this load appended these files; [] if full or reused
    full_reason: str = ""  # why this load read every file, not just the new ones (docs/operations.md)


QUARANTINE_DDL = f"""
CREATE TABLE IF NOT EXISTS {table(RAW_SCHEMA, "quarantine")} (
    table_name VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    row_number BIGINT NOT NULL,
    reason VARCHAR NOT NULL,
    raw_row JSON,
    loaded_at TIMESTAMP NOT NULL
)"""


def discover_files(landing_dir: Path, name: str) -> list[Path]:
    """`<name>.csv`, `<name>.parquet`, or every CSV/Parquet file in the folder `<name>/`, by name."""
    files = [landing_dir / f"{name}{suffix}" for suffix in SUFFIXES if (landing_dir / f"{name}{suffix}").is_file()]
    folder = landing_dir / name
    if folder.is_dir():
        files += sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    return files


# --- typing: one SQL expression per column kind, over the trimmed text value -----------------------


def _words(words: tuple[str, ...]) -> str:
    return ", ".join(lit(w) for w in words)


def _parsed(col: Column) -> str:
    v = ident(col.name)
    if col.kind in ("id", "text"):
        return v
    if col.kind == "lower":
        return f"lower({v})"
    if col.kind in ("timestamp", "date"):
        ts = f"try_cast(regexp_replace({v}, {lit(_TZ_SUFFIX)}, '\\1') AS TIMESTAMP)"
        return ts if col.kind == "timestamp" else f"try_cast({ts} AS DATE)"
    if col.kind in ("amount", "points"):
        return f"try_cast({v} AS DECIMAL(18, 2))"
    if col.kind == "quantity":
        # try_cast: a 20-digit quantity passes the pattern but not BIGINT; it quarantines the row, not the run.
        digits = f"regexp_full_match({v}, '[+-]?[0-9]+')"
        return f"CASE WHEN {v} IS NULL THEN 1 WHEN {digits} THEN try_cast({v} AS BIGINT) END"
    if col.kind == "boolean":
        return (
            f"CASE WHEN lower({v}) IN ({_words(TRUE_WORDS)}) THEN true "
            f"WHEN lower({v}) IN ({_words(FALSE_WORDS)}) THEN false END"
        )
    if col.kind == "status":
        return f"coalesce(lower({v}), 'completed')"
    if col.kind == "tags":
        return f"list_filter(list_transform(string_split({v}, ';'), lambda x: trim(x)), lambda x: x <> '')"
    raise ValueError(f"unknown column kind {col.kind}")


def _row_checks(spec: TableSpec, present: set[str]) -> list[tuple[str, str]]:
    """(condition, reason) pairs in the documented order; the first true one quarantines the row."""
    cols = [c for c in spec.columns if c.name in present]
    checks: list[tuple[str, str]] = []
    for c in cols:
        if c.kind == "id":
            checks.append((f"{ident(c.name)} IS NULL", f"missing_key:{c.name}"))
    groups = (
        (("timestamp", "date"), "unparseable_date"),
        (("amount", "points", "quantity"), "unparseable_number"),
        (("boolean",), "unparseable_boolean"),
    )
    for kinds, reason in groups:
        for c in cols:
            if c.kind in kinds:
                bad = f"({ident(c.name)} IS NOT NULL AND {_parsed(c)} IS NULL)"
                if c.must_parse:
                    bad = f"({ident(c.name)} IS NULL OR {bad})"
                checks.append((bad, f"{reason}:{c.name}"))
    for c in cols:
        if c.kind in ("amount", "quantity"):
            checks.append((f"{_parsed(c)} < 0", f"negative_amount:{c.name}"))
    for c in cols:
        if c.kind == "status":
            checks.append((f"{_parsed(c)} NOT IN ({', '.join(lit(s) for s in STATUSES)})", "unknown_status"))
    return checks


def _case(checks: list[tuple[str, str]], otherwise: str = "NULL") -> str:
    if not checks:
        return otherwise
    whens = " ".join(f"WHEN {cond} THEN {lit(reason)}" for cond, reason in checks)
    return f"CASE {whens} ELSE {otherwise} END"


# --- reading ------------------------------------------------------------------------------------
#
# Header names are untrusted text and never become DuckDB names: each file's literal header is read here
# (CSV: its first record, same dialect as DuckDB's; Parquet: its schema) and DuckDB reads the data under
# positional names t.c0, t.c1, ..., so no header can shadow rowid or our own columns, and DuckDB can't
# silently rename a duplicated one.

_CSV_DIALECT = {"delimiter": ",", "quotechar": '"', "doublequote": True, "strict": False}
# No sniffing: the dialect is fixed, and a sniffer can give up on (or guess a comment character from) a
# file with a few broken rows. store_rejects turns a row-local problem into a reject row instead of an error.
# strict_mode stays at its default: in DuckDB 2.0 an explicit strict_mode = true with new_line = '\r\n'
# reads a plain CRLF file as no rows at all.
_CSV_OPTIONS = (
    "header = true, auto_detect = false, delim = ',', quote = '\"', escape = '\"', hive_partitioning = false, "
    "store_rejects = true"
)


@dataclass
class _File:
    """One landing file as read: its literal header and the SQL that yields its rows and their numbers."""

    path: Path
    source: str
    header: list[str]
    from_sql: str = ""  # FROM clause of the rows it loaded, columns t.c0, t.c1, ...
    row_expr: str = "t.rowid + 1"  # the 1-based data row number of such a row
    malformed: str | None = None  # temp table (r, reason) of the rows DuckDB could not split into columns
    duplicate: str | None = None  # the first name (trimmed, lower-cased) that the header has twice

    @property
    def keys(self) -> list[str]:
        return [h.strip().lower() for h in self.header]


@dataclass
class _CsvHead:
    header: list[str]
    skip: int  # blank lines before the header
    new_line: str  # the header's line end, as DuckDB's new_line option spells it
    has_rows: bool  # something other than line ends follows the header


_NEW_LINES = {"\r\n": "\\r\\n", "\n": "\\n", "\r": "\\r"}


def _csv_header(path: Path) -> _CsvHead:
    """The first non-blank record (DuckDB skips blank lines too), with the line end that closes it.

    DuckDB 2.0 takes the line end from the first line-end byte of the file even inside a quoted header
    name, and with the wrong one it silently reads no rows: so it is told the header's own line end.
    """
    problem, record, skip, last = None, [], 0, [""]
    has_rows = False

    def track(line: str) -> str:  # the csv reader consumes lines: keep the last one for its line end
        last[0] = line
        return line

    try:
        # surrogateescape: a bad byte in a data row of the first buffer must not fail the header.
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
            for record in csv.reader(map(track, f), **_CSV_DIALECT):
                if record:
                    break
                skip += 1
            while not has_rows and (chunk := f.read(1 << 16)):  # up to the first row, in chunks: lines can be long
                has_rows = bool(chunk.strip("\r\n"))
    except OSError as err:
        problem = f"cannot open the file ({err.strerror})"
    except csv.Error:
        problem = "the header row is not valid CSV"
    if problem is None and not record:
        problem = "the file is empty (a CSV file starts with a header row)"
    if problem is None and any("\udc80" <= ch <= "\udcff" for name in record for ch in name):
        problem = "the header row is not valid UTF-8"
    if problem:  # raised outside the except blocks: no chained exception in the traceback
        raise LoadError(f"{path}: {problem}")
    new_line = _NEW_LINES.get(last[0][len(last[0].rstrip("\r\n")) :], "\\n")
    return _CsvHead(record, skip, new_line, has_rows)


def _parquet_header(path: Path) -> list[str]:
    try:
        return pq.read_schema(path).names
    except (OSError, ValueError, pa.ArrowException):
        pass
    raise LoadError(f"{path}: not a readable Parquet file")


def _has_blank_line(path: Path) -> bool:
    """Whether the file has an empty line anywhere, quoted or not (a C-speed search, no parsing)."""
    if path.stat().st_size == 0:
        return False
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        return any(mm.find(sep) >= 0 for sep in (b"\n\n", b"\n\r\n", b"\r\r"))


def _blank_lines(path: Path, skip: int, before: int) -> list[int]:
    """The blank lines before data position `before`, numbered as DuckDB's reject `line` counts (records
    and blank lines after the header). Parsed with the same dialect, so a blank line in a quoted value is no
    blank line. Only run for a file with both rejected rows and an empty line, and only up to the last reject."""
    blanks: list[int] = []
    limit = csv.field_size_limit(2**31 - 1)  # DuckDB accepts long values (up to max_line_size); so must we
    failed = False
    try:
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
            records = csv.reader(f, **_CSV_DIALECT)
            for _ in range(skip + 1):
                next(records, None)
            for i in range(1, before):  # stops before the last reject: an unclosed quote runs to the end
                record = next(records, None)
                if record is None:
                    break
                if not record:
                    blanks.append(i)
    except csv.Error:
        failed = True
    finally:
        csv.field_size_limit(limit)
    if failed:
        raise LoadError(f"{path}: cannot number its rows (a record is not valid CSV)")
    return blanks


def _read_csv(con: duckdb.DuckDBPyConnection, f: _File, link: Path, head: _CsvHead, tmp: str) -> str | None:
    """Read into `tmp`; returns a problem (in our words) when the file can't be read row by row."""
    cols = ", ".join(f"{lit(f'c{i}')}: 'VARCHAR'" for i in range(len(f.header)))
    rejects, bad, malformed, adj = (f"{tmp}{s}" for s in ("_rejects", "_bad", "_malformed", "_adj"))
    skip = head.skip
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {tmp} AS SELECT * FROM read_csv({lit(str(link))}, columns = {{{cols}}}, "
        f"skip = {skip}, new_line = '{head.new_line}', {_CSV_OPTIONS}, rejects_table = {lit(rejects)}, "
        f"rejects_scan = {lit(tmp + '_scans')})"
    )
    f.from_sql = f"{tmp} t"
    last = con.execute(f"SELECT max(line) FROM {rejects}").fetchone()[0]
    if last is None:
        # A misread line end makes DuckDB read nothing, silently: never take that for an empty file.
        if head.has_rows and con.execute(f"SELECT count(*) FROM {tmp}").fetchone()[0] == 0:
            return "DuckDB read no rows from it (are its line ends mixed?)"
        return None
    # A reject's `line` counts records (a quoted newline does not start one) and blank lines from the top.
    priority = " ".join(f"WHEN {lit(k)} THEN {i}" for i, k in enumerate(MALFORMED))
    reason = " ".join(f"WHEN {lit(k)} THEN {lit('malformed_row:' + v)}" for k, v in MALFORMED.items())
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {bad} AS SELECT line - {skip + 1} AS d, arg_min(CASE error_type {reason} "
        "ELSE 'malformed_row:' || lower(replace(error_type, ' ', '_')) END, "
        f"CASE error_type {priority} ELSE 99 END) AS reason "
        f"FROM (SELECT line, CAST(error_type AS VARCHAR) AS error_type FROM {rejects}) GROUP BY line"
    )
    # With one column DuckDB reads a blank line as a row (an empty value): it is numbered like any other.
    several = len(f.header) > 1
    blanks = _blank_lines(f.path, skip, last - skip - 1) if several and _has_blank_line(f.path) else []
    if blanks:  # a blank line is not a data row: take those above a rejected row off its number
        con.register("_acrm_blanks", pa.table({"b": blanks, "n": list(range(1, len(blanks) + 1))}))
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {malformed} AS SELECT x.d - coalesce(k.n, 0) AS r, x.reason "
            f"FROM {bad} x ASOF LEFT JOIN _acrm_blanks k ON x.d > k.b"
        )
        con.unregister("_acrm_blanks")
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {malformed} AS SELECT d AS r, reason FROM {bad}")
    # The loaded rows keep file order in rowid, with the rejected ones left out. The j-th rejected row (by
    # number r) has s = r - j loaded rows before it, so loaded row k (0-based) follows those with s <= k.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {adj} AS SELECT s, max(j) AS j FROM (SELECT r - row_number() OVER "
        f"(ORDER BY r) AS s, row_number() OVER (ORDER BY r) AS j FROM {malformed}) GROUP BY s"
    )
    f.from_sql = f"{tmp} t ASOF LEFT JOIN {adj} a ON t.rowid >= a.s"
    f.row_expr = "t.rowid + 1 + coalesce(a.j, 0)"
    f.malformed = malformed
    return None


def _read_parquet(con: duckdb.DuckDBPyConnection, f: _File, link: Path, tmp: str) -> str | None:
    """Read by position; returns a problem (ours, not DuckDB's words) when the file doesn't match its schema."""
    src = f"read_parquet({lit(str(link))}, hive_partitioning = false)"
    if len(con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()) != len(f.header):
        return "its columns do not match its schema"
    cols = ", ".join(f"CAST(#{i + 1} AS VARCHAR) AS c{i}" for i in range(len(f.header)))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {tmp} AS SELECT {cols} FROM {src}")
    f.from_sql = f"{tmp} t"
    return None


def _parquet_bad_column(con: duckdb.DuckDBPyConnection, link: Path, header: list[str]) -> str | None:
    """The first column that fails to read (a column at a time; only run after the file failed)."""
    for i, name in enumerate(header):
        try:
            # length(), not count(): DuckDB answers a count without decoding the values
            con.execute(f"SELECT max(length(CAST(#{i + 1} AS VARCHAR))) FROM read_parquet({lit(str(link))})").fetchone()
        except duckdb.Error:
            return name
    return None


def _describe(err: duckdb.Error) -> str:
    """Our own words for a DuckDB read error: its text can quote the row, and so personal data, into logs."""
    text = str(err)
    line = re.search(r"CSV Error on Line: (\d+)", text)
    where = f" (near line {line.group(1)})" if line else ""
    if "Invalid string encoding" in text or "not valid UTF8" in text:
        return f"a text value is not valid UTF-8{where}"
    if "state machine reached an invalid state" in text:
        return f"its rows cannot be split, are its line ends mixed?{where}"
    return f"DuckDB {type(err).__name__}{where}; its message is left out as it can hold row content"


def _read_file(
    con: duckdb.DuckDBPyConnection, path: Path, source: str, spec: TableSpec, idx: int, link_dir: Path
) -> _File:
    """Read one file into the temp table _acrm_read_<idx> (and, for malformed CSV rows, its companions)."""
    is_csv = path.suffix.lower() == ".csv"
    head = _csv_header(path) if is_csv else None
    header = head.header if head else _parquet_header(path)
    f = _File(path, source, header)
    keys = f.keys
    missing = [c for c in spec.required_columns if c not in keys]
    if missing:
        raise LoadError(
            f"{path}: missing required column {', '.join(repr(m) for m in missing)} "
            f"(table {spec.name} needs {', '.join(spec.required_columns)})"
        )
    seen: set[str] = set()
    for key in keys:
        if key and key in seen:
            f.duplicate = key
            break
        seen.add(key)
    link = link_dir / f"{idx}{'.csv' if is_csv else '.parquet'}"
    os.symlink(path.absolute(), link)
    tmp = f"_acrm_read_{idx}"
    problem = None
    try:
        problem = _read_csv(con, f, link, head, tmp) if head else _read_parquet(con, f, link, tmp)
    except duckdb.Error as err:
        problem = _describe(err)
        if not is_csv and "UTF-8" in problem:
            column = _parquet_bad_column(con, link, header)
            problem += f" in column {column!r}" if column is not None else ""  # a header name: no row content
    if problem:  # raised outside the except block: DuckDB's message must not ride along as the context
        raise LoadError(f"{path}: cannot read the {spec.name} file: {problem}")
    return f


def _columns_of(header: list[str], spec: TableSpec) -> tuple[list[str], list[str], list[str]]:
    """(ignored header names, rejected custom_* header names, custom keys to load) of one header."""
    known = set(spec.column_names)
    ignored, rejected, custom = [], [], []
    for name in header:
        key = name.strip().lower()
        if key in known:
            continue
        if spec.keep_custom and CUSTOM_NAME.fullmatch(key):
            custom.append(key)
        elif spec.keep_custom and key.startswith("custom_"):
            rejected.append(name)
        else:
            ignored.append(name)
    return ignored, rejected, custom


def _raw_keys(header: list[str]) -> list[str]:
    """The JSON keys of the raw row: the literal names, a repeated one suffixed with its column number."""
    keys: list[str] = []
    for i, name in enumerate(header):
        key = name
        while key in keys:
            key = f"{key}#{i + 1}"
        keys.append(key)
    return keys


def _stage_selects(f: _File, spec: TableSpec) -> list[str]:
    """Trimmed text of every contract column (NULL when absent), the custom columns, the raw row and a
    reason already known (`_pre`: file-level or malformed), as SELECTs to UNION ALL BY NAME."""
    first: dict[str, int] = {}
    for i, key in enumerate(f.keys):
        first.setdefault(key, i)
    pre = lit(f"duplicate_column:{f.duplicate}") if f.duplicate else "CAST(NULL AS VARCHAR)"
    usable = f.duplicate is None  # a file with a duplicated column loads nothing: no value is staged
    parts = [f"{lit(f.source)} AS _file", f"{f.row_expr} AS _row", f"{pre} AS _pre"]
    for name in spec.column_names:
        value = f"nullif(trim(t.c{first[name]}), '')" if usable and name in first else "CAST(NULL AS VARCHAR)"
        parts.append(f"{value} AS {ident(name)}")
    if usable:
        parts += [f"nullif(trim(t.c{first[key]}), '') AS {ident(key)}" for key in _columns_of(f.header, spec)[2]]
    raw = ", ".join(f"{lit(k)}, t.c{i}" for i, k in enumerate(_raw_keys(f.header)))
    parts.append(f"json_object({raw}) AS _raw")
    selects = [f"SELECT {', '.join(parts)} FROM {f.from_sql}"]
    if f.malformed:  # no raw row: the row could not be split into columns
        selects.append(
            f"SELECT {lit(f.source)} AS _file, r AS _row, reason AS _pre, CAST(NULL AS JSON) AS _raw FROM {f.malformed}"
        )
    return selects


def _empty_select(spec: TableSpec, custom: list[str] = ()) -> str:
    """No rows, every contract column (and `custom`): an absent optional table loads as an empty table."""
    cols = ", ".join(f"CAST(NULL AS VARCHAR) AS {ident(n)}" for n in [*spec.column_names, *custom])
    return (
        "SELECT '' AS _file, CAST(0 AS BIGINT) AS _row, CAST(NULL AS VARCHAR) AS _pre, "
        f"CAST(NULL AS JSON) AS _raw, {cols} WHERE false"
    )


# The custom column types, narrowest first, and what a value must match to be one.
_CUSTOM_TESTS = {
    "BIGINT": "regexp_full_match({v}, '[+-]?[0-9]+') AND try_cast({v} AS BIGINT) IS NOT NULL",
    "DOUBLE": "try_cast({v} AS DOUBLE) IS NOT NULL",
    "DATE": "regexp_full_match({v}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}') AND try_cast({v} AS DATE) IS NOT NULL",
    "BOOLEAN": "lower({v}) IN ({bools})",
}


def custom_fails(con: duckdb.DuckDBPyConnection, stage: str, col: str) -> list[int]:
    """Per type of _CUSTOM_TESTS, how many non-empty values don't parse as it; then how many are non-empty.
    Counts, not a type, so that the type of more files is the sum of their counts (an append needs it)."""
    v = ident(col)
    bools = _words(TRUE_WORDS + FALSE_WORDS)
    tests = [t.format(v=v, bools=bools) for t in _CUSTOM_TESTS.values()]
    aggs = ", ".join(f"count(*) FILTER (WHERE {v} IS NOT NULL AND NOT ({t}))" for t in tests)
    return list(con.execute(f"SELECT {aggs}, count({v}) FROM {stage}").fetchone())


def custom_type(fails: list[int]) -> str:
    """The narrowest of BIGINT, DOUBLE, DATE, BOOLEAN that every non-empty value parses as; else VARCHAR."""
    if fails[-1] == 0:
        return "VARCHAR"
    return next((t for t, n in zip(_CUSTOM_TESTS, fails[:-1], strict=True) if n == 0), "VARCHAR")


def _custom_expr(col: str, sql_type: str) -> str:
    v = ident(col)
    if sql_type == "BOOLEAN":
        return f"lower({v}) IN ({_words(TRUE_WORDS)})"
    if sql_type == "VARCHAR":
        return v
    return f"try_cast({v} AS {sql_type})"


# --- the load -----------------------------------------------------------------------------------


def _phone_map(con: duckdb.DuckDBPyConnection, classified: str, default_region: str) -> None:
    pairs = con.execute(
        f"SELECT DISTINCT phone, coalesce(upper(country), {lit(default_region)}) FROM {classified} "
        "WHERE _reason IS NULL AND phone IS NOT NULL"
    ).fetchall()
    names = ("phone", "region", "phone_e164", "phone_region", "phone_timezone", "phone_carrier")
    rows = [(raw, region, *phone) for (raw, region), phone in zip(pairs, normalise_phones(pairs), strict=True)]
    # An Arrow table, not executemany: that took ~0.9 ms a row (15 minutes for a million phones).
    phones = pa.table({n: pa.array([r[i] for r in rows], pa.string()) for i, n in enumerate(names)})  # noqa: F841
    con.execute("CREATE OR REPLACE TEMP TABLE _acrm_phones AS SELECT * FROM phones")


class AppendRefused(Exception):
    """New files that can't be appended to what is loaded (the caller reloads the table in full)."""


@dataclass
class Previous:
    """What an append builds on: the last load's result and its custom columns' parse counts."""

    result: LoadResult
    custom_fails: dict[str, list[int]]


def _stage(
    con: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    landing_dir: Path,
    paths: list[Path],
    result: LoadResult,
    custom_fill: list[str],
) -> set[str]:
    """Read `paths` into the temp view _acrm_stage, noting their columns in `result`; the custom columns
    they hold. `custom_fill`: custom columns the stage has even when no file holds them (an append's)."""
    selects: list[str] = []
    present: set[str] = set()
    link_dir = Path(tempfile.mkdtemp(prefix="acrm_read_"))
    keep_order = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    con.execute("SET preserve_insertion_order = true")  # a read table's rowid must be file order: it numbers rows
    try:
        if _GLOB_CHARS.search(str(link_dir)):
            raise LoadError(f"{link_dir}: the temporary folder's path has glob characters; set TMPDIR to a plain path")
        for idx, path in enumerate(paths):
            source = path.relative_to(landing_dir).as_posix()
            f = _read_file(con, path, source, spec, idx, link_dir)
            ignored, rejected, custom = _columns_of(f.header, spec)
            result.files.append(source)
            result.ignored_columns += [f"{source}:{c}" for c in ignored]
            result.rejected_columns += [f"{source}:{c} ({BAD_CUSTOM_NAME})" for c in rejected]
            if f.duplicate is None:
                present |= set(custom)
            selects += _stage_selects(f, spec)
        union = " UNION ALL BY NAME ".join(
            [*selects, _empty_select(spec, custom_fill)] if custom_fill or not selects else selects
        )
        # A view over the files' read tables, not one more copy of every row (dropped once classified).
        con.execute(f"CREATE OR REPLACE TEMP VIEW _acrm_stage AS {union}")
    except BaseException:
        _drop_reads(con)
        raise
    finally:
        con.execute(f"SET preserve_insertion_order = {str(bool(keep_order)).lower()}")
        shutil.rmtree(link_dir, ignore_errors=True)
    return present


def _drop_reads(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the staged rows: the view, the files' read tables and their companions (rejects, row numbers)."""
    con.execute("DROP VIEW IF EXISTS _acrm_stage")
    reads = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary AND starts_with(table_name, '_acrm_read_')"
    ).fetchall()
    for (name,) in reads:
        con.execute(f"DROP TABLE IF EXISTS {ident(name)}")


def checked_parents(spec: TableSpec, landing_dir: Path) -> list[tuple[int, str, str, str]]:
    """(index, column, parent, parent column) of the parent references a load checks."""
    return [
        (i, col, parent, parent_col)
        for i, (col, parent, parent_col) in enumerate(spec.parents)
        # products are optional: without them a product_id can't be checked
        if not (parent == "products" and not discover_files(landing_dir, "products"))
    ]


def _classify(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, landing_dir: Path, custom: dict[str, str], append: bool
) -> None:
    """_acrm_stage -> _acrm_classified: typed values and `_reason` (NULL: loads), plus `_miss<i>` per
    parent reference (the row's value is not in the parent table)."""
    # Row-level reasons, then duplicates among the rest (first in file order wins), then orphans.
    typed_cols = [f"{_parsed(c)} AS {ident(c.name)}" for c in spec.columns]
    typed_cols += [f"{_custom_expr(c, t)} AS {ident(c)}" for c, t in custom.items()]
    reason = _case(_row_checks(spec, set(spec.column_names)))
    # A view, not a table: at 10M customers every copy of the staged rows is tens of GB of DuckDB's spill.
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW _acrm_typed AS SELECT _file, _row, _raw, coalesce(_pre, {reason}) AS _reason, "
        f"{', '.join(typed_cols)} FROM _acrm_stage"
    )
    later: list[tuple[str, str]] = []
    if spec.unique_key:
        k = ident(spec.unique_key)
        if append:  # a key loaded (or quarantined as an orphan) before wins over the new rows: it came first
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _acrm_old_keys AS "
                f"SELECT CAST({k} AS VARCHAR) AS k FROM {table(RAW_SCHEMA, spec.name)} "
                f"WHERE {k} IN (SELECT {k} FROM _acrm_typed WHERE _reason IS NULL) "
                f"UNION SELECT key FROM {table(RAW_SCHEMA, 'load_orphans')} WHERE table_name = {lit(spec.name)}"
            )
            later.append((f"CAST(t.{k} AS VARCHAR) IN (SELECT k FROM _acrm_old_keys)", "duplicate_key"))
        # The repeats, found on the key and row number alone: a window over whole rows holds them all.
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _acrm_repeats AS SELECT _file, _row FROM (SELECT _file, _row, "
            f"row_number() OVER (PARTITION BY {k}, _reason IS NULL ORDER BY _file, _row) AS n FROM _acrm_typed "
            f"WHERE {k} IS NOT NULL) WHERE n > 1"
        )
        later.append(("_r._row IS NOT NULL", "duplicate_key"))
    joins, misses = [], []
    if spec.unique_key:
        joins.append("LEFT JOIN _acrm_repeats _r ON _r._file = t._file AND _r._row = t._row")
    for i, col, parent, parent_col in checked_parents(spec, landing_dir):
        alias = f"_p{i}"
        pc = ident(parent_col)
        # An append checks a few new rows against a big parent: read only the parent keys they name.
        only = f" WHERE {pc} IN (SELECT {ident(col)} FROM _acrm_typed)" if append else ""
        joins.append(
            f"LEFT JOIN (SELECT DISTINCT {pc} AS k FROM {table(RAW_SCHEMA, parent)}{only}) {alias} "
            f"ON {alias}.k = t.{ident(col)}"
        )
        later.append((f"{alias}.k IS NULL", f"orphan:{col}"))
        misses.append(f"{alias}.k IS NULL AS _miss{i}")
    final_reason = _case(later, otherwise="NULL")
    # The raw row is kept for the quarantine only: the rows that load leave it behind.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _acrm_classified AS SELECT * REPLACE "
        "(CASE WHEN _reason IS NOT NULL THEN _raw END AS _raw) FROM (SELECT t.* REPLACE "
        f"(coalesce(t._reason, {final_reason}) AS _reason){''.join(', ' + m for m in misses)} "
        f"FROM _acrm_typed t {' '.join(joins)})"
    )
    con.execute("DROP VIEW _acrm_typed")
    con.execute("DROP TABLE IF EXISTS _acrm_repeats")
    _drop_reads(con)  # classified holds every staged row: its count is rows_read


ORPHANS_DDL = f"""
CREATE TABLE IF NOT EXISTS {table(RAW_SCHEMA, "load_orphans")} (
    table_name VARCHAR NOT NULL,
    key VARCHAR,
    column_name VARCHAR NOT NULL,
    value VARCHAR
)"""


def _write(
    con: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    landing_dir: Path,
    default_region: str,
    custom: dict[str, str],
    append: bool,
) -> None:
    """_acrm_classified -> raw.<table> (replaced, or appended to) and raw.quarantine, raw.load_orphans."""
    out_cols = [ident(c.name) for c in spec.columns] + [ident(c) for c in custom]
    target = table(RAW_SCHEMA, spec.name)
    into = f"INSERT INTO {target} BY NAME" if append else f"CREATE OR REPLACE TABLE {target} AS"
    if spec.name == "customers":
        _phone_map(con, "_acrm_classified", default_region)
        phone_cols = "p.phone_e164, p.phone_region, p.phone_timezone, p.phone_carrier"
        con.execute(
            f"{into} SELECT {', '.join('c.' + c for c in out_cols)}, {phone_cols} "
            f"FROM _acrm_classified c LEFT JOIN _acrm_phones p ON p.phone = c.phone "
            f"AND p.region = coalesce(upper(c.country), {lit(default_region)}) WHERE c._reason IS NULL"
        )
    else:
        con.execute(f"{into} SELECT {', '.join(out_cols)} FROM _acrm_classified WHERE _reason IS NULL")
    con.execute(ORPHANS_DDL)
    if not append:
        con.execute(f"DELETE FROM {table(RAW_SCHEMA, 'quarantine')} WHERE table_name = ?", [spec.name])
        con.execute(f"DELETE FROM {table(RAW_SCHEMA, 'load_orphans')} WHERE table_name = ?", [spec.name])
    con.execute(
        f"INSERT INTO {table(RAW_SCHEMA, 'quarantine')} SELECT {lit(spec.name)}, _file, _row, _reason, _raw, "
        "now()::TIMESTAMP FROM _acrm_classified WHERE _reason IS NOT NULL"
    )
    # Which parent values each orphan missed: a later append is only right while none of them arrived.
    key = f"CAST({ident(spec.unique_key)} AS VARCHAR)" if spec.unique_key else "CAST(NULL AS VARCHAR)"
    for i, col, _, _ in checked_parents(spec, landing_dir):
        con.execute(
            f"INSERT INTO {table(RAW_SCHEMA, 'load_orphans')} SELECT {lit(spec.name)}, {key}, {lit(col)}, "
            f"CAST({ident(col)} AS VARCHAR) FROM _acrm_classified WHERE _reason LIKE 'orphan:%' AND _miss{i}"
        )


@dataclass
class Staged:
    """Files read and classified into the temp table _acrm_classified, waiting to be written (`write_staged`)."""

    result: LoadResult  # of the files read: their names, columns and empty ones; no counts yet
    custom_fails: dict[str, list[int]]  # of the whole table once written (an append's: old + new)
    previous: Previous | None


def stage_files(
    con: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    landing_dir: Path,
    previous: Previous | None = None,
    paths: list[Path] | None = None,
) -> Staged:
    """Read every file of `spec` in `landing_dir` (a full load), or with `previous` the new `paths` that
    sort after the loaded files (an append). Writes nothing lasting, so it runs before the write's
    transaction (a temp table made inside one numbers its rows from 2^55: row numbers come from rowid).
    An append raises AppendRefused when the new files add a custom column or change one's type."""
    result = LoadResult(spec.name)
    files = discover_files(landing_dir, spec.name) if paths is None else paths
    # A 0-byte file holds no rows and not even a header (an exporter's empty part): skipped, and said so.
    empty = [p for p in files if p.stat().st_size == 0]
    result.skipped_files = [f"{p.relative_to(landing_dir).as_posix()} (empty)" for p in empty]
    files = [p for p in files if p not in empty]
    if previous is None and not files and empty and spec.required_table:
        raise LoadError(f"{empty[0]}: the file is empty (0 bytes), and there is no other {spec.name} data")
    if previous is None and not files and spec.required_table:
        raise LoadError(
            f"{landing_dir}: no {spec.name} data (expected {spec.name}.csv, {spec.name}.parquet "
            f"or a folder {spec.name}/ of such files)"
        )

    old_custom = previous.result.custom_columns if previous else {}
    present = _stage(con, spec, landing_dir, files, result, sorted(old_custom))
    fails = {c: custom_fails(con, "_acrm_stage", c) for c in sorted(present)}
    if previous:
        if new := sorted(present - set(old_custom)):
            raise AppendRefused(f"the new files add custom column {new[0]}")
        fails = {
            c: [a + b for a, b in zip(n, fails.get(c, [0] * len(n)), strict=True)]
            for c, n in previous.custom_fails.items()
        }
        for c, t in old_custom.items():
            if custom_type(fails[c]) != t:
                raise AppendRefused(f"custom column {c} no longer parses as {t} with the new files")
    result.custom_columns = old_custom or {c: custom_type(n) for c, n in fails.items()}
    # Classified here, outside the write's transaction, so that the staged copy is freed before it begins.
    _classify(con, spec, landing_dir, result.custom_columns, previous is not None)
    return Staged(result, fails, previous)


def write_staged(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, landing_dir: Path, default_region: str, staged: Staged
) -> LoadResult:
    """Write the classified rows: raw.<table> replaced (or appended to), bad rows into raw.quarantine. The
    result is the whole table's."""
    result, append = staged.result, staged.previous is not None
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(RAW_SCHEMA)}")
    con.execute(QUARANTINE_DDL)
    con.execute(ORPHANS_DDL)
    _write(con, spec, landing_dir, default_region, result.custom_columns, append)

    result.rows_read = con.execute("SELECT count(*) FROM _acrm_classified").fetchone()[0]
    result.rows_loaded = con.execute(f"SELECT count(*) FROM {table(RAW_SCHEMA, spec.name)}").fetchone()[0]
    result.reasons = dict(
        con.execute(
            "SELECT _reason, count(*) FROM _acrm_classified WHERE _reason IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    for tmp in ("_acrm_classified", "_acrm_phones", "_acrm_old_keys"):
        con.execute(f"DROP TABLE IF EXISTS {tmp}")
    if staged.previous:
        result = _merged(staged.previous.result, result)
    result.rows_quarantined = sum(result.reasons.values())
    return result


def _merged(old: LoadResult, new: LoadResult) -> LoadResult:
    """The result of the whole table after `new`'s files were appended to `old`'s."""
    reasons = dict(old.reasons)
    for reason, n in new.reasons.items():
        reasons[reason] = reasons.get(reason, 0) + n
    return dataclasses.replace(
        old,
        files=old.files + new.files,
        rows_read=old.rows_read + new.rows_read,
        rows_loaded=new.rows_loaded,
        reasons=dict(sorted(reasons.items())),
        ignored_columns=old.ignored_columns + new.ignored_columns,
        rejected_columns=old.rejected_columns + new.rejected_columns,
        skipped_files=old.skipped_files + new.skipped_files,
        reused=False,
        appended_files=new.files + [s.removesuffix(" (empty)") for s in new.skipped_files],
    )


def load_table(
    con: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    landing_dir: Path,
    default_region: str = "RU",
) -> LoadResult:
    """Load `spec`'s files from `landing_dir` into raw.<table>; bad rows into raw.quarantine."""
    return write_staged(con, spec, landing_dir, default_region, stage_files(con, spec, landing_dir))


def load_all(db_path: Path, landing_dir: Path, default_region: str = "RU") -> list[LoadResult]:
    """Load every contract table in dependency order (used by tests and benchmarks)."""
    from acrm_pipelines.ingest.contract import TABLES

    db_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(db_path), config=Settings.from_env().duckdb_config()) as con:
        return [load_table(con, spec, landing_dir, default_region) for spec in TABLES]
