"""Streaming record I/O for listings: CSV, JSONL and Parquet, optionally gzipped.

Every input row ends up either *accepted* (a dict with reportguard's column names) or *rejected*
(a `Reject` naming the file, line or row, column and reason). Nothing is dropped silently: for each
file, rows in = accepted + rejected. Blank lines are not rows. Problems that make a whole file
unusable (unknown format, a required column missing from the header) raise `InputError` before any
row is read, naming the file and the column.

Encodings: a BOM means UTF-8-with-BOM; otherwise UTF-8 is tried on the first MiB and GB18030 is
used only if that fails. GB18030 decodes almost any byte sequence, so trying it first would turn
UTF-8 files into silent mojibake.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_COLUMNS = ("listing_id", "title")
# Known text columns: values must be strings (ids may also be integers).
TEXT_COLUMNS = ("listing_id", "title", "description", "platform", "shop_id", "shop_name", "qualification")
SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet")
_SNIFF_BYTES = 1 << 20


class InputError(Exception):
    """A file cannot be read at all; the message names the file (and line and column if known)."""


@dataclass
class Reject:
    file: str
    line: int  # physical line for CSV/JSONL (the record's first line), 1-based row for Parquet
    reason: str
    column: str | None = None
    listing_id: str | None = None
    raw: str = ""

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "column": self.column,
                "listing_id": self.listing_id, "reason": self.reason, "raw": self.raw[:1000]}


@dataclass
class ReadOptions:
    chunk_size: int = 10_000
    encoding: str | None = None  # None: BOM, then UTF-8, then GB18030
    column_map: dict[str, str] = field(default_factory=dict)  # header alias -> canonical name
    max_field_chars: int = 100_000  # a longer field is a broken export, not a listing
    max_record_lines: int = 200  # an open quote spanning more lines than this is broken quoting
    required: tuple[str, ...] = REQUIRED_COLUMNS
    reject_duplicate_ids: bool = True


@dataclass
class Chunk:
    records: list[dict]
    rejects: list[Reject]
    file: str

    @property
    def rows_in(self) -> int:
        return len(self.records) + len(self.rejects)


def list_input_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories into their data files (sorted, recursively; _SUCCESS and dot files skipped)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            shards = sorted(f for f in p.rglob("*") if f.is_file() and _format_of(f) and not f.name.startswith(("_", ".")))
            if not shards:
                raise InputError(f"{p}: directory holds no CSV, JSONL or Parquet files")
            files += shards
        elif p.exists():
            if not _format_of(p):
                raise InputError(f"{p}: unknown format; expected one of {', '.join(SUFFIXES)} (optionally .gz)")
            files.append(p)
        else:
            raise InputError(f"{p}: no such file or directory")
    return files


def iter_chunks(paths: Iterable[str | Path], options: ReadOptions | None = None) -> Iterator[Chunk]:
    """Read listings from files or directories in chunks of at most `options.chunk_size` rows.

    Chunks follow the input order, and their boundaries depend only on the input, so a resumed
    run sees the same chunks again.
    """
    options = options or ReadOptions()
    files = list_input_files(paths)
    check_headers(files, options)
    seen_ids: dict[str, str] = {}
    for f in files:
        yield from _chunks_of_file(f, options, seen_ids)


def check_headers(files: list[Path], options: ReadOptions) -> None:
    """Raise InputError if any file lacks a required column: before a single row is read."""
    for f in files:
        _check_header(f, options)


def read_records(path: str | Path, options: ReadOptions | None = None) -> tuple[list[dict], list[Reject]]:
    """Read a whole (small) file: accepted records and rejects."""
    records: list[dict] = []
    rejects: list[Reject] = []
    for chunk in iter_chunks([path], options):
        records += chunk.records
        rejects += chunk.rejects
    return records, rejects


# --- formats -----------------------------------------------------------------------------------

def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return {".ndjson": "jsonl", ".json": "jsonl", ".tsv": "csv"}.get(suffix, suffix[1:])
    return None


# Public names for the Spark engine, which lists, maps and reads files with these same functions.
def format_of(path: Path) -> str | None:
    """'csv', 'jsonl' or 'parquet' from the file name (.gz allowed), else None."""
    return _format_of(path)


def canonical_column(name: str, column_map: dict[str, str]) -> str:
    """A header or key as reportguard's column name (configs/columns.yaml aliases)."""
    return _canonical(name, column_map)


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def detect_encoding(path: Path) -> str:
    """'utf-8-sig' for a BOM, else 'utf-8' if the first MiB decodes as UTF-8, else 'gb18030'."""
    with _open_binary(path) as fh:
        head = fh.read(_SNIFF_BYTES)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return "gb18030"


def _text_stream(path: Path, options: ReadOptions) -> io.TextIOWrapper:
    encoding = options.encoding or detect_encoding(path)
    # surrogateescape keeps undecodable bytes visible, so the row holding them is rejected with a
    # reason instead of the whole file failing or the bytes vanishing.
    return io.TextIOWrapper(_open_binary(path), encoding=encoding, errors="surrogateescape", newline="")


def _canonical(name: str, column_map: dict[str, str]) -> str:
    name = name.strip().lstrip("\ufeff")
    return column_map.get(name, column_map.get(name.lower(), name))


def _check_header(path: Path, options: ReadOptions) -> None:
    fmt = _format_of(path)
    if fmt == "csv":
        columns = _csv_header(path, options)[0]
    elif fmt == "parquet":
        import pyarrow.parquet as pq
        try:
            names = pq.ParquetFile(path).schema_arrow.names
        except Exception as exc:  # pyarrow raises several types for a corrupt footer
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
        columns = [_canonical(n, options.column_map) for n in names]
    else:
        return  # JSONL has no header: a missing field is a per-row reject
    missing = [c for c in options.required if c not in columns]
    if missing:
        raise InputError(f"{path}: line 1: required column {missing[0]!r} is missing "
                         f"(columns found: {', '.join(columns) or 'none'}; map other names in configs/columns.yaml)")
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise InputError(f"{path}: line 1: column {dupes[0]!r} appears more than once after mapping")


def _csv_header(path: Path, options: ReadOptions) -> tuple[list[str], str]:
    delimiter = "\t" if ".tsv" in path.name.lower() else ","
    with _text_stream(path, options) as fh:
        first = fh.readline()
    if not first.strip():
        raise InputError(f"{path}: line 1: empty file or blank header")
    header = next(csv.reader([first], delimiter=delimiter))
    return [_canonical(h, options.column_map) for h in header], delimiter


def _chunks_of_file(path: Path, options: ReadOptions, seen_ids: dict[str, str]) -> Iterator[Chunk]:
    rows = iter_rows(path, options)
    records: list[dict] = []
    rejects: list[Reject] = []
    for line, row, reject in rows:
        if reject is None:
            reject = validate_row(row, path, line, options, seen_ids)
        if reject is None:
            records.append(row)
        else:
            rejects.append(reject)
        if len(records) + len(rejects) >= options.chunk_size:
            yield Chunk(records, rejects, str(path))
            records, rejects = [], []
    if records or rejects:
        yield Chunk(records, rejects, str(path))


RowEvent = tuple[int, dict, "Reject | None"]


def iter_rows(path: Path, options: ReadOptions) -> Iterator[RowEvent]:
    """One file's rows before validation, as (line, row, parse reject or None); used by
    iter_chunks and by the Spark engine's readers."""
    return {"csv": _csv_rows, "jsonl": _jsonl_rows, "parquet": _parquet_rows}[_format_of(path)](path, options)


def _jsonl_rows(path: Path, options: ReadOptions) -> Iterator[RowEvent]:
    with _text_stream(path, options) as fh:
        for lineno, line in enumerate(_physical_lines(fh), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, {}, Reject(str(path), lineno, f"invalid JSON: {exc.msg} at column {exc.colno}",
                                         column=f"char {exc.colno}", raw=line)
                continue
            if not isinstance(obj, dict):
                yield lineno, {}, Reject(str(path), lineno, f"expected a JSON object, got {type(obj).__name__}", raw=line)
                continue
            row = {_canonical(k, options.column_map): v for k, v in obj.items()}
            row["_file"], row["_line"] = str(path), lineno
            yield lineno, row, None


def _physical_lines(fh: io.TextIOWrapper) -> Iterator[str]:
    # With newline="" a lone \r would split lines; JSONL lines end at \n only.
    buf = ""
    for piece in fh:
        buf += piece
        if buf.endswith("\n"):
            yield buf
            buf = ""
    if buf:
        yield buf


class _LineFeeder:
    """Feeds physical lines to csv.reader, counting them and allowing lines to be pushed back."""

    def __init__(self, lines: Iterator[str], first_lineno: int):
        self._lines = lines
        self._pushed: list[tuple[int, str]] = []
        self.next_lineno = first_lineno
        self.taken: list[tuple[int, str]] = []  # lines handed out for the current record
        self.limit = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.limit and len(self.taken) >= self.limit:
            raise _RecordTooLong()
        if self._pushed:
            lineno, line = self._pushed.pop()
        else:
            line = next(self._lines)
            lineno = self.next_lineno
            self.next_lineno += 1
        self.taken.append((lineno, line))
        return line

    def push_back(self, lines: list[tuple[int, str]]) -> None:
        self._pushed.extend(reversed(lines))


class _RecordTooLong(Exception):
    pass


def _csv_rows(path: Path, options: ReadOptions) -> Iterator[RowEvent]:
    header, delimiter = _csv_header(path, options)
    # Let the csv module read an oversized field so that the row is rejected with its real
    # length, instead of failing as a quoting error.
    csv.field_size_limit(max(csv.field_size_limit(), 64 * options.max_field_chars, 1 << 26))
    with _text_stream(path, options) as fh:
        fh.readline()
        feeder = _LineFeeder(iter(fh), first_lineno=2)
        feeder.limit = options.max_record_lines
        reader = csv.reader(feeder, delimiter=delimiter, strict=True)
        while True:
            feeder.taken = []
            try:
                fields = next(reader)
            except StopIteration:
                return
            except (csv.Error, _RecordTooLong) as exc:
                taken = feeder.taken
                if not taken:
                    return
                first_no, first_line = taken[0]
                col = _quote_problem_column(first_line, delimiter)
                column = header[col] if col is not None and col < len(header) else None
                if isinstance(exc, _RecordTooLong) or "end of data" in str(exc) or "EOF" in str(exc):
                    # An unterminated quote swallowed the lines after it: reject its first line
                    # only and read the rest again, so one bad quote costs one row.
                    feeder.push_back(taken[1:])
                    reason = "broken CSV quoting: a quoted field is never closed"
                else:
                    reason = f"broken CSV quoting: {exc}"
                yield first_no, {}, Reject(str(path), first_no, reason, column=column, raw="".join(l for _, l in taken))
                reader = csv.reader(feeder, delimiter=delimiter, strict=True)
                continue
            lineno = feeder.taken[0][0] if feeder.taken else feeder.next_lineno
            if not fields or fields == [""]:
                continue  # blank line
            if len(fields) != len(header):
                raw = "".join(l for _, l in feeder.taken)
                extra = len(fields) > len(header)
                yield lineno, {}, Reject(str(path), lineno,
                                         f"expected {len(header)} fields, found {len(fields)}",
                                         column=f"field {len(header) + 1}" if extra else header[len(fields)],
                                         listing_id=fields[header.index("listing_id")] if "listing_id" in header and header.index("listing_id") < len(fields) else None,
                                         raw=raw)
                continue
            row = dict(zip(header, fields))
            row["_file"], row["_line"] = str(path), lineno
            yield lineno, row, None


def _quote_problem_column(line: str, delimiter: str) -> int | None:
    """Index of the field in which quoting goes wrong on `line`, if it can be found."""
    field_index, in_quotes, at_field_start = 0, False, True
    open_field = None
    i = 0
    while i < len(line):
        ch = line[i]
        if in_quotes:
            if ch == '"':
                if i + 1 < len(line) and line[i + 1] == '"':
                    i += 1
                else:
                    in_quotes = False
                    nxt = line[i + 1] if i + 1 < len(line) else "\n"
                    if nxt not in (delimiter, "\r", "\n"):
                        return field_index  # text after a closing quote
        elif ch == '"' and at_field_start:
            in_quotes, open_field = True, field_index
        elif ch == delimiter:
            field_index += 1
            at_field_start = True
            i += 1
            continue
        at_field_start = False
        i += 1
    return open_field if in_quotes else None


def _parquet_rows(path: Path, options: ReadOptions) -> Iterator[RowEvent]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = [_canonical(n, options.column_map) for n in pf.schema_arrow.names]
    rowno = 0
    for batch in pf.iter_batches(batch_size=options.chunk_size):
        for values in zip(*(col.to_pylist() for col in batch.columns)):
            rowno += 1
            row = dict(zip(names, values))
            row["_file"], row["_line"] = str(path), rowno
            yield rowno, row, None


# --- row validation ----------------------------------------------------------------------------

def validate_row(row: dict, path: Path, line: int, options: ReadOptions, seen_ids: dict[str, str]) -> Reject | None:
    """Check one row in place (ids become strings, None becomes ""); return a Reject or None.

    `seen_ids` maps each accepted listing_id to where it was first seen ("file:line"); the Spark
    engine (serve/spark_engine.py) calls this per row and checks duplicates across the dataset.
    """
    def reject(reason: str, column: str | None = None) -> Reject:
        ident = row.get("listing_id")
        return Reject(str(path), line, reason, column=column,
                      listing_id=str(ident) if isinstance(ident, (str, int)) and not isinstance(ident, bool) else None,
                      raw=json.dumps({k: v for k, v in row.items() if not k.startswith("_")}, ensure_ascii=False, default=str)[:1000])

    for column in options.required:
        if column not in row:
            return reject(f"required field {column!r} is missing", column)
    for column in TEXT_COLUMNS:
        if column not in row:
            continue
        value = row[column]
        if value is None:
            value = ""
        elif isinstance(value, int) and not isinstance(value, bool) and column in ("listing_id", "shop_id"):
            value = str(value)
        elif not isinstance(value, str):
            return reject(f"field {column!r} must be a string, got {type(value).__name__}", column)
        if "\x00" in value:
            return reject(f"NUL byte in field {column!r}", column)
        if len(value) > options.max_field_chars:
            return reject(f"field {column!r} is {len(value):,} characters, over the limit of {options.max_field_chars:,}", column)
        if any("\udc80" <= ch <= "\udcff" for ch in value):
            return reject(f"field {column!r} holds bytes that are not valid in the file's encoding", column)
        row[column] = value
    listing_id = row["listing_id"].strip()
    if not listing_id:
        return reject("empty listing_id", "listing_id")
    row["listing_id"] = listing_id
    row.setdefault("description", "")
    row.setdefault("qualification", "")
    if not row["title"].strip():
        return reject("empty title", "title")
    if options.reject_duplicate_ids:
        first = seen_ids.get(listing_id)
        if first is not None:
            return reject(f"duplicate listing_id {listing_id!r} (first seen at {first})", "listing_id")
        seen_ids[listing_id] = f"{Path(path).name}:{line}"
    return None
