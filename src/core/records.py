"""Streaming record I/O for listings: CSV, JSONL and Parquet, optionally gzipped.

Every input row ends up either *accepted* (a dict with reportguard's column names) or *rejected*
(a `Reject` naming the file, line or row, column and reason). Nothing is dropped silently: for each
file, rows in = accepted + rejected. Blank lines are not rows. Problems that make a whole file
unusable (unknown format, a required column missing from the header) raise `InputError` before any
row is read, naming the file and the column; a file that breaks while it is read (a truncated or
corrupt .gz, an I/O error) raises `ReadError`, naming the file and the cause.

Encodings are decided per physical line, not per file: platform exports are concatenated from
shards, so one file can hold UTF-8 and GB18030 lines. A BOM at the start of the file is dropped;
then each line is decoded as UTF-8 if it is valid UTF-8, else as GB18030 if it is valid GB18030
(GB18030 decodes almost any byte sequence, so trying it first would turn UTF-8 into silent
mojibake). A line valid in neither becomes a reject whose raw bytes are escaped (``\\xff``) in the
rejects file. `Chunk.encodings` counts rows per encoding ("ascii" for rows that are ASCII only and
so valid in both), and `Chunk.warnings` names the first line of every switch between UTF-8 and
GB18030. Line breaks are LF, CRLF or a lone CR, in CSV and JSONL alike.

Listing ids: ids holding a control character (a newline, a tab, U+0000-U+001F, U+007F-U+009F,
U+2028/U+2029) are rejected with a reason; leading and trailing spaces (U+0020, no-break and other
Unicode space separators, U+3000) are trimmed and counted (`Chunk.ids_trimmed`). Duplicate ids are
found with a fixed memory budget (`IdIndex`): an exact in-memory map up to `ReadOptions.memory_ids`
ids, then an on-disk SQLite index behind a fixed-size Bloom filter.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import json
import re
import shutil
import sqlite3
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import errors

REQUIRED_COLUMNS = ("listing_id", "title")
# Known text columns: values must be strings (ids may also be integers).
TEXT_COLUMNS = ("listing_id", "title", "description", "platform", "shop_id", "shop_name", "qualification")
#: A row is scored when one of these holds text; a row where none does is rejected as "no text".
CONTENT_COLUMNS = ("title", "description", "shop_name")
SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet")
_SNIFF_BYTES = 1 << 20
_BLOCK = 1 << 20

ASCII, UTF8, GB18030, UNDECODABLE, PARQUET = "ascii", "utf-8", "gb18030", "undecodable", "parquet"
_LABEL = {UTF8: "UTF-8", GB18030: "GB18030"}

#: Trimmed from both ends of a listing_id (and counted): the Unicode space separators (Zs).
ID_TRIM = " \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
_ID_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class InputError(errors.InputError):
    """A file cannot be read at all; the message names the file (and line and column if known).
    The CLI prints it on one line and exits 1 (core/errors.py)."""


class ReadError(InputError):
    """A file broke while it was read (a truncated or corrupt archive, an I/O error); the message
    names the file and the cause. `reportguard score` exits 1 on it."""
    exit_code = 1


def escape_surrogates(text: str) -> str:
    """Undecodable bytes (kept as lone surrogates by surrogateescape) as ``\\xNN``, other lone
    surrogates (a JSON ``\\ud800``) as ``\\udNNN``, so that the text can always be written as UTF-8."""
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub(lambda m: (f"\\x{ord(m.group()) - 0xDC00:02x}" if 0xDC80 <= ord(m.group()) <= 0xDCFF
                                     else f"\\u{ord(m.group()):04x}"), text)


@dataclass
class Reject:
    file: str
    line: int  # physical line for CSV/JSONL (the record's first line), 1-based row for Parquet
    reason: str
    column: str | None = None
    listing_id: str | None = None
    raw: str = ""

    def to_dict(self) -> dict:
        # Escaped here, so that writing a reject can never fail on undecodable input.
        return {"file": escape_surrogates(self.file), "line": self.line, "column": self.column,
                "listing_id": None if self.listing_id is None else escape_surrogates(self.listing_id),
                "reason": escape_surrogates(self.reason), "raw": escape_surrogates(self.raw[:1000])}


@dataclass
class ReadOptions:
    chunk_size: int = 10_000
    encoding: str | None = None  # None: per line, UTF-8 then GB18030; else every line in this encoding
    column_map: dict[str, str] = field(default_factory=dict)  # header alias -> canonical name
    max_field_chars: int = 100_000  # a longer field is a broken export, not a listing
    max_record_lines: int = 200  # an open quote spanning more lines than this is broken quoting
    required: tuple[str, ...] = REQUIRED_COLUMNS
    reject_duplicate_ids: bool = True
    memory_ids: int = 250_000  # ids kept in an exact in-memory map before the index spills to disk
    spill_dir: str | None = None  # where the duplicate-id index spills (default: the temp folder)
    # Called as on_bytes(path, block) with every block of a CSV/JSONL file's bytes as the rows are
    # read (the compressed bytes of a .gz): the scorer hashes inputs and shows progress with it
    # while it reads, instead of in a pass before. Header checks do not call it.
    on_bytes: Callable[[Path, bytes], None] | None = None


@dataclass
class Chunk:
    records: list[dict]
    rejects: list[Reject]
    file: str
    encodings: dict[str, int] = field(default_factory=dict)  # rows per encoding
    warnings: list[str] = field(default_factory=list)  # encoding switches first seen in this chunk
    ids_trimmed: int = 0  # rows whose listing_id lost leading/trailing spaces

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
    index = IdIndex(options.memory_ids, options.spill_dir) if options.reject_duplicate_ids else None
    try:
        for f in files:
            yield from _chunks_of_file(f, options, index)
    finally:
        if index is not None:
            index.close()


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


class _Tap:
    """A file opened for binary reading that hands every block it reads to `on_bytes(path, block)`."""

    def __init__(self, path: Path, on_bytes: Callable[[Path, bytes], None]):
        self.path, self.on_bytes = path, on_bytes
        self.raw = open(path, "rb")
        self.mode = "rb"

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if data:
            self.on_bytes(self.path, data)
        return data

    def close(self) -> None:
        self.raw.close()


@contextmanager
def _open_binary(path: Path, on_bytes: Callable[[Path, bytes], None] | None = None):
    """The file's bytes (decompressed for .gz); with `on_bytes`, each block read from disk goes to it too."""
    gz = path.name.lower().endswith(".gz")
    if on_bytes is None:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            yield fh
        return
    tap = _Tap(path, on_bytes)
    try:
        if gz:
            with gzip.GzipFile(fileobj=tap, mode="rb") as fh:
                yield fh
        else:
            yield tap
    finally:
        tap.close()


def read_failure(path: Path, exc: BaseException) -> ReadError:
    """A ReadError naming the file for an exception raised while reading it."""
    if isinstance(exc, EOFError):
        cause = "truncated gzip archive (it ends before its end-of-stream marker)"
    elif isinstance(exc, (gzip.BadGzipFile, zlib.error)):
        cause = f"corrupt gzip archive ({exc})"
    elif isinstance(exc, OSError) and exc.strerror:
        cause = exc.strerror
    else:
        cause = str(exc) or type(exc).__name__
    return ReadError(f"{path}: cannot be read: {cause}")


_READ_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, OSError)


def detect_encoding(path: Path) -> str:
    """The file's dominant encoding, from its first MiB: 'utf-8-sig' for a BOM, else 'utf-8' if it
    decodes as UTF-8, else 'gb18030'. Informational: rows are decoded line by line."""
    with _open_binary(path) as fh:
        head = fh.read(_SNIFF_BYTES)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return "gb18030"


def _byte_lines(fh) -> Iterator[bytes]:
    """Physical lines with their terminators; LF, CRLF and a lone CR all end a line (bytes.splitlines).
    A CR at the end of a block waits for the next block, which may start with its LF."""
    pending: list[bytes] = []
    while True:
        data = fh.read(_BLOCK)
        if not data:
            break
        if b"\n" not in data and b"\r" not in data:
            pending.append(data)  # a line longer than a block: joined once its end comes
            continue
        if pending:
            pending.append(data)
            data = b"".join(pending)
            pending = []
        lines = data.splitlines(keepends=True)
        if not lines[-1].endswith(b"\n"):
            pending.append(lines.pop())
        yield from lines
    if pending:
        yield from b"".join(pending).splitlines(keepends=True)


@dataclass
class FileStats:
    """Filled while one file is read: the encoding of the row last yielded, and encoding switches."""
    row_encoding: str = ASCII
    switches: list[str] = field(default_factory=list)
    taken_switches: int = 0


class _Lines:
    """A file's physical lines, each decoded on its own: (line number, text, encoding)."""

    def __init__(self, path: Path, options: ReadOptions, stats: FileStats | None, tap: bool = False):
        self.path = path
        self.forced = options.encoding
        self.stats = stats
        self.on_bytes = options.on_bytes if tap else None  # rows are read (not just a header checked)
        self.last: str | None = None  # the encoding of the last non-ASCII line

    def __iter__(self) -> Iterator[tuple[int, str, str]]:
        try:
            with _open_binary(self.path, self.on_bytes) as fh:
                for lineno, raw in enumerate(_byte_lines(fh), 1):
                    if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                        raw = raw[len(codecs.BOM_UTF8):]
                    yield (lineno, *self.decode(lineno, raw))
        except _READ_ERRORS as exc:
            raise read_failure(self.path, exc) from exc

    def decode(self, lineno: int, raw: bytes) -> tuple[str, str]:
        if self.forced:
            try:
                return raw.decode(self.forced), self.forced
            except UnicodeDecodeError:
                return raw.decode("utf-8", "surrogateescape"), UNDECODABLE
        if raw.isascii():
            return raw.decode("ascii"), ASCII
        try:
            text, encoding = raw.decode("utf-8"), UTF8
        except UnicodeDecodeError:
            try:
                text, encoding = raw.decode("gb18030"), GB18030
            except UnicodeDecodeError:
                # Kept as surrogates so that the row can be parsed and rejected with its bytes.
                return raw.decode("utf-8", "surrogateescape"), UNDECODABLE
        if encoding != self.last:
            if self.last is not None and self.stats is not None:
                self.stats.switches.append(f"{self.path}: line {lineno}: encoding switches from {_LABEL[self.last]} "
                                           f"to {_LABEL[encoding]} (each line is decoded on its own)")
            self.last = encoding
        return text, encoding

    def undecodable_reason(self) -> str:
        return (f"bytes not valid in the file's encoding ({self.forced})" if self.forced
                else "bytes not valid in the file's encoding (neither UTF-8 nor GB18030)")


def _row_encoding(encodings: Iterable[str]) -> str:
    """A multi-line record's encoding: undecodable if any line is, else its non-ASCII encoding."""
    found = set(encodings)
    if UNDECODABLE in found:
        return UNDECODABLE
    found.discard(ASCII)
    if not found:
        return ASCII
    return GB18030 if GB18030 in found else found.pop()


def _canonical(name: str, column_map: dict[str, str]) -> str:
    name = name.strip().lstrip("\ufeff")
    return column_map.get(name, column_map.get(name.lower(), name))


def _check_header(path: Path, options: ReadOptions) -> None:
    fmt = _format_of(path)
    if fmt == "csv":
        header = _csv_header(path, options)
        if header is None:
            return  # an empty file: no rows, nothing to require
        columns = header[0]
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


def _csv_header(path: Path, options: ReadOptions) -> tuple[list[str], str] | None:
    """(columns, delimiter) from the first line; None for a file with no content at all."""
    delimiter = "\t" if ".tsv" in path.name.lower() else ","
    lines = iter(_Lines(path, options, None))
    try:
        first = next(lines, None)
        if first is None or not first[1].strip():
            if first is None or all(not text.strip() for _, text, _ in lines):
                return None
            raise InputError(f"{path}: line 1: blank header")
    finally:
        lines.close()
    lineno, text, encoding = first
    if encoding == UNDECODABLE:
        raise InputError(f"{path}: line 1: the header holds bytes that are neither UTF-8 nor GB18030")
    header = next(csv.reader([text], delimiter=delimiter))
    return [_canonical(h, options.column_map) for h in header], delimiter


def _chunks_of_file(path: Path, options: ReadOptions, index: IdIndex | None) -> Iterator[Chunk]:
    stats = FileStats()
    counts = {"ids_trimmed": 0}
    records: list[dict] = []
    rejects: list[Reject] = []
    encodings: Counter = Counter()
    for line, row, reject in iter_rows(path, options, stats):
        encodings[stats.row_encoding] += 1
        if reject is None:
            reject = validate_row(row, path, line, options, None, counts)
        if reject is None:
            records.append(row)
        else:
            rejects.append(reject)
        if len(records) + len(rejects) >= options.chunk_size:
            yield _finish_chunk(path, records, rejects, encodings, stats, counts, index)
            records, rejects, encodings = [], [], Counter()
    if records or rejects:
        yield _finish_chunk(path, records, rejects, encodings, stats, counts, index)


def _finish_chunk(path: Path, records: list[dict], rejects: list[Reject], encodings: Counter, stats: FileStats,
                  counts: dict, index: IdIndex | None) -> Chunk:
    """The chunk with its duplicate ids moved to the rejects (in line order) and its counts."""
    if index is not None and records:
        firsts = index.check_and_add([r["listing_id"] for r in records], path.name, [r["_line"] for r in records])
        duplicates = [(record, first) for record, first in zip(records, firsts) if first is not None]
        if duplicates:
            records = [record for record, first in zip(records, firsts) if first is None]
            rejects = sorted(rejects + [duplicate_reject(record, path, record["_line"], first) for record, first in duplicates],
                             key=lambda r: r.line)
    warnings = stats.switches[stats.taken_switches:]
    stats.taken_switches = len(stats.switches)
    chunk = Chunk(records, rejects, str(path), dict(encodings), warnings, counts["ids_trimmed"])
    counts["ids_trimmed"] = 0
    return chunk


RowEvent = tuple[int, dict, "Reject | None"]


def iter_rows(path: Path, options: ReadOptions, stats: FileStats | None = None) -> Iterator[RowEvent]:
    """One file's rows before validation, as (line, row, parse reject or None); used by
    iter_chunks and by the Spark engine's readers. With `stats`, the encoding of each row is in
    `stats.row_encoding` when it is yielded, and encoding switches are appended to `stats.switches`."""
    return {"csv": _csv_rows, "jsonl": _jsonl_rows, "parquet": _parquet_rows}[_format_of(path)](path, options, stats)


def _undecodable_column(values: dict) -> str | None:
    for key, value in values.items():
        if isinstance(value, str) and _SURROGATE.search(value):
            return key
        if isinstance(key, str) and _SURROGATE.search(key):
            return key
    return None


def _jsonl_rows(path: Path, options: ReadOptions, stats: FileStats | None) -> Iterator[RowEvent]:
    stats = stats or FileStats()
    lines = _Lines(path, options, stats, tap=True)
    for lineno, line, encoding in lines:
        if not line.strip():
            continue
        stats.row_encoding = encoding
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            if encoding == UNDECODABLE:
                yield lineno, {}, Reject(str(path), lineno, lines.undecodable_reason(), raw=line)
            else:
                yield lineno, {}, Reject(str(path), lineno, f"invalid JSON: {exc.msg} at column {exc.colno}",
                                         column=f"char {exc.colno}", raw=line)
            continue
        if not isinstance(obj, dict):
            reason = lines.undecodable_reason() if encoding == UNDECODABLE else f"expected a JSON object, got {type(obj).__name__}"
            yield lineno, {}, Reject(str(path), lineno, reason, raw=line)
            continue
        if encoding == UNDECODABLE:
            column = _undecodable_column(obj)
            yield lineno, {}, Reject(str(path), lineno, lines.undecodable_reason() + (f" in field {column!r}" if column else ""),
                                     column=column, listing_id=obj.get("listing_id") if isinstance(obj.get("listing_id"), str) else None,
                                     raw=line)
            continue
        if ("\\ud" in line or "\\uD" in line) and _SURROGATE.search(json.dumps(obj, ensure_ascii=False)):
            # "\ud800" escapes decode to lone surrogates, which no UTF-8 output can hold.
            yield lineno, {}, Reject(str(path), lineno, "a JSON string holds a lone surrogate escape (\\ud800-\\udfff)",
                                     column=_undecodable_column(obj), raw=line)
            continue
        row = {_canonical(k, options.column_map): v for k, v in obj.items()}
        row["_file"], row["_line"] = str(path), lineno
        yield lineno, row, None


class _LineFeeder:
    """Feeds physical lines to csv.reader, counting them and allowing lines to be pushed back."""

    def __init__(self, lines: Iterator[tuple[int, str, str]]):
        self._lines = lines
        self._pushed: list[tuple[int, str, str]] = []
        self.next_lineno = 2
        self.taken: list[tuple[int, str, str]] = []  # lines handed out for the current record
        self.limit = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.limit and len(self.taken) >= self.limit:
            raise _RecordTooLong()
        item = self._pushed.pop() if self._pushed else next(self._lines)
        self.next_lineno = item[0] + 1
        self.taken.append(item)
        return item[1]

    def push_back(self, lines: list[tuple[int, str, str]]) -> None:
        self._pushed.extend(reversed(lines))


class _RecordTooLong(Exception):
    pass


# Long: one generator; every branch shares the feeder and the reader restarted after a broken quote.
def _csv_rows(path: Path, options: ReadOptions, stats: FileStats | None) -> Iterator[RowEvent]:
    stats = stats or FileStats()
    found = _csv_header(path, options)
    if found is None:
        return
    header, delimiter = found
    # Let the csv module read an oversized field so that the row is rejected with its real
    # length, instead of failing as a quoting error.
    csv.field_size_limit(max(csv.field_size_limit(), 64 * options.max_field_chars, 1 << 26))
    lines = _Lines(path, options, stats, tap=True)
    physical = iter(lines)
    for _, text, _ in physical:
        if text.strip():
            break  # the header (blank lines before it are not allowed: _csv_header)
    feeder = _LineFeeder(physical)
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
            first_no, first_line, first_encoding = taken[0]
            col = _quote_problem_column(first_line, delimiter)
            column = header[col] if col is not None and col < len(header) else None
            if isinstance(exc, _RecordTooLong) or "end of data" in str(exc) or "EOF" in str(exc):
                # An unterminated quote swallowed the lines after it: reject its first line
                # only and read the rest again, so one bad quote costs one row.
                feeder.push_back(taken[1:])
                raw = first_line
                reason = "broken CSV quoting: a quoted field is never closed"
            else:
                raw = "".join(l for _, l, _ in taken)
                reason = f"broken CSV quoting: {exc}"
            stats.row_encoding = first_encoding
            if first_encoding == UNDECODABLE:
                reason = f"{lines.undecodable_reason()}; {reason}"
            yield first_no, {}, Reject(str(path), first_no, reason, column=column, raw=raw)
            reader = csv.reader(feeder, delimiter=delimiter, strict=True)
            continue
        lineno = feeder.taken[0][0] if feeder.taken else feeder.next_lineno
        if not fields or fields == [""]:
            continue  # blank line
        encoding = feeder.taken[0][2] if len(feeder.taken) == 1 else _row_encoding(e for _, _, e in feeder.taken)
        stats.row_encoding = encoding
        ident = fields[header.index("listing_id")] if "listing_id" in header and header.index("listing_id") < len(fields) else None
        if encoding == UNDECODABLE:
            raw = "".join(l for _, l, _ in feeder.taken)
            bad = next((header[i] if i < len(header) else f"field {i + 1}" for i, f in enumerate(fields) if _SURROGATE.search(f)), None)
            yield lineno, {}, Reject(str(path), lineno, lines.undecodable_reason() + (f" in field {bad!r}" if bad else ""),
                                     column=bad, listing_id=ident, raw=raw)
            continue
        if len(fields) != len(header):
            raw = "".join(l for _, l, _ in feeder.taken)
            extra = len(fields) > len(header)
            yield lineno, {}, Reject(str(path), lineno,
                                     f"expected {len(header)} fields, found {len(fields)}",
                                     column=f"field {len(header) + 1}" if extra else header[len(fields)],
                                     listing_id=ident, raw=raw)
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


def _parquet_rows(path: Path, options: ReadOptions, stats: FileStats | None) -> Iterator[RowEvent]:
    import pyarrow.parquet as pq

    if stats is not None:
        stats.row_encoding = PARQUET
    # pre_buffer=False: with pre-buffering, the reader keeps every row group it has read until it is
    # closed, so memory grows with the file (~0.2 KB per row: 2.8 GB for a 12M-row file).
    pf = pq.ParquetFile(path, pre_buffer=False)
    names = [_canonical(n, options.column_map) for n in pf.schema_arrow.names]
    rowno = 0
    try:
        for batch in pf.iter_batches(batch_size=options.chunk_size):
            for values in zip(*(col.to_pylist() for col in batch.columns)):
                rowno += 1
                row = dict(zip(names, values))
                row["_file"], row["_line"] = str(path), rowno
                yield rowno, row, None
    except OSError as exc:  # pyarrow's ArrowIOError / ArrowInvalid on a damaged file
        raise read_failure(path, exc) from exc


# --- row validation ----------------------------------------------------------------------------

def _row_reject(row: dict, path, line: int, reason: str, column: str | None) -> Reject:
    ident = row.get("listing_id")
    return Reject(str(path), line, reason, column=column,
                  listing_id=str(ident) if isinstance(ident, (str, int)) and not isinstance(ident, bool) else None,
                  raw=json.dumps({k: v for k, v in row.items() if not k.startswith("_")}, ensure_ascii=False, default=str)[:1000])


def duplicate_reject(row: dict, path, line: int, first: str) -> Reject:
    """The reject for a later copy of a listing_id first seen at `first` ("file:line")."""
    return _row_reject(row, path, line, f"duplicate listing_id {row['listing_id']!r} (first seen at {first})", "listing_id")


def validate_row(row: dict, path: Path, line: int, options: ReadOptions, seen_ids: dict[str, str] | None,
                 counts: dict | None = None) -> Reject | None:
    """Check one row in place (ids become strings, None becomes ""); return a Reject or None.

    A row is accepted when its title, description or shop name holds text; a row with none is
    rejected as "no text". `seen_ids` maps each accepted listing_id to where it was first seen
    ("file:line"); the Spark engine (serve/spark_engine.py) calls this per row and checks
    duplicates across the dataset. None: the caller checks duplicates itself (iter_chunks does,
    per chunk, through an IdIndex). `counts["ids_trimmed"]` counts ids that lost spaces.
    """
    def reject(reason: str, column: str | None = None) -> Reject:
        return _row_reject(row, path, line, reason, column)

    for column in options.required:
        if column not in row:
            if column in CONTENT_COLUMNS:
                row[column] = ""  # decided by content below: a post with no title is still a listing
                continue
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
        if not value.isascii() and _SURROGATE.search(value):
            return reject(f"field {column!r} holds bytes that are not valid in the file's encoding", column)
        row[column] = value
    raw_id = row["listing_id"]
    control = _ID_CONTROL.search(raw_id)
    if control:
        return reject(f"listing_id holds a control character (U+{ord(control.group()):04X} at position {control.start() + 1})",
                      "listing_id")
    listing_id = raw_id.strip(ID_TRIM)
    if not listing_id:
        return reject("empty listing_id", "listing_id")
    if listing_id != raw_id:
        row["listing_id"] = listing_id
        if counts is not None:
            counts["ids_trimmed"] = counts.get("ids_trimmed", 0) + 1
    row.setdefault("description", "")
    row.setdefault("qualification", "")
    if not any(isinstance(row.get(c), str) and row[c].strip() for c in CONTENT_COLUMNS):
        return reject("no text", None)
    if options.reject_duplicate_ids and seen_ids is not None:
        first = seen_ids.get(listing_id)
        if first is not None:
            return reject(f"duplicate listing_id {listing_id!r} (first seen at {first})", "listing_id")
        seen_ids[listing_id] = f"{Path(path).name}:{line}"
    return None


# --- bounded memory: duplicate ids ---------------------------------------------------------------

class BloomFilter:
    """A fixed-size Bloom filter over byte keys (numpy bit array, double hashing, vectorised)."""

    def __init__(self, bits: int = 1 << 28, hashes: int = 6):
        self.bits = bits
        self.hashes = hashes
        self.array = np.zeros(bits // 8, dtype=np.uint8)
        self._steps = np.arange(hashes, dtype=np.uint64)

    def _positions(self, digests: list[bytes]) -> np.ndarray:
        h = np.frombuffer(b"".join(digests), dtype=np.uint64).reshape(-1, 2)
        with np.errstate(over="ignore"):
            return (h[:, :1] + self._steps[None, :] * (h[:, 1:] | np.uint64(1))) % np.uint64(self.bits)

    def add(self, digests: list[bytes]) -> None:
        if digests:
            pos = self._positions(digests).ravel()
            np.bitwise_or.at(self.array, (pos >> np.uint64(3)).astype(np.int64), (np.uint8(1) << (pos & np.uint64(7)).astype(np.uint8)))

    def may_contain(self, digests: list[bytes]) -> np.ndarray:
        if not digests:
            return np.zeros(0, dtype=bool)
        pos = self._positions(digests)
        bits = self.array[(pos >> np.uint64(3)).astype(np.int64)] & (np.uint8(1) << (pos & np.uint64(7)).astype(np.uint8))
        return (bits != 0).all(axis=1)


def key_digest(key: str) -> bytes:
    """16 bytes of BLAKE2b: the Bloom filter's two 64-bit hashes."""
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class SpillStore:
    """An exact key -> value map on disk (SQLite, no journal, a bounded page cache) with a
    fixed-size Bloom filter in front, so that looking up a key never seen costs no disk access
    (but for the filter's false positives). Values: int, str or bytes. Deleted on close()."""

    def __init__(self, directory: str | Path | None = None, bloom_bits: int = 1 << 27, cache_mb: int = 16):
        self.dir = Path(tempfile.mkdtemp(prefix="rg-spill-", dir=directory))
        self.db = sqlite3.connect(self.dir / "store.sqlite", isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{cache_mb * 1024}", "temp_store=MEMORY",
                       "locking_mode=EXCLUSIVE"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v) WITHOUT ROWID")
        self.bloom = BloomFilter(bloom_bits)
        self.size = 0

    def get_many(self, keys: list[str], digests: list[bytes] | None = None) -> dict:
        digests = digests if digests is not None else [key_digest(k) for k in keys]
        maybe = [k for k, m in zip(keys, self.bloom.may_contain(digests)) if m]
        found = {}
        for start in range(0, len(maybe), 500):
            part = maybe[start:start + 500]
            found.update(self.db.execute(f"SELECT k, v FROM kv WHERE k IN ({','.join('?' * len(part))})", part).fetchall())
        return found

    def put_many(self, items: list[tuple[str, object]], digests: list[bytes] | None = None) -> None:
        """Insert keys (a key already present keeps its first value)."""
        if not items:
            return
        digests = digests if digests is not None else [key_digest(k) for k, _ in items]
        self.db.execute("BEGIN")
        before = self.db.total_changes
        self.db.executemany("INSERT OR IGNORE INTO kv VALUES (?, ?)", items)
        self.db.execute("COMMIT")
        self.size += self.db.total_changes - before
        self.bloom.add(digests)

    def close(self) -> None:
        try:
            self.db.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class IdIndex:
    """Where each listing_id was first seen, in a fixed memory budget: an exact dict up to
    `memory_limit` ids, then everything moves to a SpillStore (SQLite behind a Bloom filter).
    Locations are packed as file number << 40 | line."""

    def __init__(self, memory_limit: int = 250_000, spill_dir: str | Path | None = None):
        self.memory_limit = memory_limit
        self.spill_dir = spill_dir
        self.memory: dict[str, int] | None = {}
        self.store: SpillStore | None = None
        self.files: list[str] = []
        self._file_no: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.memory) if self.memory is not None else self.store.size

    def _where(self, packed: int) -> str:
        return f"{self.files[packed >> 40]}:{packed & ((1 << 40) - 1)}"

    def check_and_add(self, ids: list[str], file: str, lines: list[int]) -> list[str | None]:
        """For each id in order: None if it is new (it is recorded), else where it was first seen,
        earlier in this batch or in an earlier one."""
        if file not in self._file_no:
            self._file_no[file] = len(self.files)
            self.files.append(file)
        base = self._file_no[file] << 40
        first: dict[str, int] = {}
        for i, listing_id in enumerate(ids):
            first.setdefault(listing_id, i)
        unique = list(first)
        if self.memory is not None:
            memory = self.memory
            found = {k: memory[k] for k in unique if k in memory}
        else:
            found = self.store.get_many(unique)
        result: list[str | None] = [None] * len(ids)
        for i, listing_id in enumerate(ids):
            earlier = found.get(listing_id)
            if earlier is not None:
                result[i] = self._where(earlier)
            elif first[listing_id] != i:
                result[i] = f"{file}:{lines[first[listing_id]]}"
        new = [(k, base | lines[first[k]]) for k in unique if k not in found]
        if self.memory is not None:
            self.memory.update(new)
            if len(self.memory) > self.memory_limit:
                self.store = SpillStore(self.spill_dir)
                self.store.put_many(list(self.memory.items()))
                self.memory = None
        else:
            self.store.put_many(new)
        return result

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
