"""Scoring output: per-chunk part files during a run, one assembled file at the end, and the one
reader that every consumer of a scored run (the scorer's manifest, `sellers`, `report`, the
review tool) goes through.

Parts are Parquet (typed, fast, appendable as row groups) whatever the final format. The final
file's format follows OUT's extension: .parquet, .jsonl or .csv (optionally .gz). In CSV the
`labels` list is pipe-separated; in Parquet and JSONL it is a list. `evidence` is a JSON string
in every format.

Reading streams: Parquet row groups via iter_batches (reading only the columns asked for), JSONL
and CSV line by line, so a caller that aggregates needs memory in proportion to its aggregates,
not to the run. pyarrow is imported only when a Parquet file is read or written: the `sellers`
and `report` commands and the review tool import this module without it.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from reportguard.core.atomic import atomic_path
from reportguard.core.errors import InputError
from reportguard.core.labels import BY_NAME, PROB_COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa

#: The scored output's own columns, in order (pass-through columns follow). PROB_COLUMNS (one per
#: model label, from core.labels) stays importable from here.
SCORE_COLUMNS = ["listing_id", *PROB_COLUMNS, "labels", "decision", "evidence", "model_version"]
#: What makes a file a scored run for `iter_run`; readers that need more pass their own `required`.
REQUIRED_COLUMNS: tuple[str, ...] = ("listing_id", "labels", "decision")
FORMATS: tuple[str, ...] = ("parquet", "jsonl", "csv")


def _format_of(path: Path, what: str) -> str:
    name = path.name.lower().removesuffix(".gz")
    for fmt in FORMATS:
        if name.endswith("." + fmt):
            return fmt
    raise InputError(f"{path}: {what} must end in .parquet, .jsonl or .csv (optionally .gz)")


def output_format(path: Path) -> str:
    """The format `assemble` writes to `path`: 'parquet', 'jsonl' or 'csv'."""
    return _format_of(path, "output")


def run_format(path: Path) -> str:
    """'parquet', 'jsonl' or 'csv', from the name (a trailing .gz is allowed for the text formats)."""
    return _format_of(path, "a scored run")


# --- writing -------------------------------------------------------------------------------------

def rows_to_table(rows: list[dict], passthrough: list[str]) -> pa.Table:
    """Scored rows -> an Arrow table: score columns first, then pass-through columns as strings."""
    import pyarrow as pa

    columns = {c: [r[c] for r in rows] for c in SCORE_COLUMNS}
    for c in passthrough:
        columns[c] = [_as_text(r.get(c)) for r in rows]
    schema = pa.schema([("listing_id", pa.string()), *[(c, pa.float32()) for c in PROB_COLUMNS],
                        ("labels", pa.list_(pa.string())), ("decision", pa.string()),
                        ("evidence", pa.string()), ("model_version", pa.string())]
                       + [(c, pa.string()) for c in passthrough])
    return pa.table(columns, schema=schema)


def _as_text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def assemble(parts: list[Path], out: Path) -> int:
    """Concatenate part files in order into `out` (written to a temp file, then renamed)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    fmt = output_format(out)
    schemas = [pq.read_schema(p) for p in parts]
    names: list[str] = []
    for s in schemas:
        # "_" columns (dedup keys, cached attributions) serve resumption only; they are not output.
        names += [n for n in s.names if n not in names and not n.startswith("_")]
    unified = pa.schema([next(s.field(n) for s in schemas if n in s.names) for n in names])
    rows = 0
    opener = gzip.open if out.name.lower().endswith(".gz") else open
    with atomic_path(out) as tmp:  # no partial output: after a failure (a full disk) the temp file goes
        if fmt == "parquet":
            writer = pq.ParquetWriter(str(tmp), unified, compression="zstd")
            try:
                for p in parts:
                    table = _conform(pq.read_table(p), unified)
                    writer.write_table(table)
                    rows += table.num_rows
            finally:
                writer.close()
        else:
            with opener(tmp, "wb") as fh:
                for k, p in enumerate(parts):
                    table = _conform(pq.read_table(p), unified)
                    rows += table.num_rows
                    if fmt == "csv":
                        flat = table.set_column(table.schema.get_field_index("labels"), "labels",
                                                pa.array(["|".join(x or []) for x in table.column("labels").to_pylist()], pa.string()))
                        buf = pa.BufferOutputStream()
                        pacsv.write_csv(flat, buf, pacsv.WriteOptions(include_header=(k == 0)))
                        fh.write(buf.getvalue().to_pybytes())
                    else:
                        for row in table.to_pylist():
                            fh.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    return rows


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    import pyarrow as pa

    for field in schema:
        if field.name not in table.schema.names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table.select(schema.names)


# --- reading a run, one row at a time ------------------------------------------------------------

def read_run(path: str | Path) -> list[dict]:
    """A scored run as a list of dicts (labels as lists, p_* as floats), whatever its format."""
    return list(iter_run(path))


def iter_run(path: str | Path, columns: Iterable[str] | None = None, batch_size: int = 8192) -> Iterator[dict]:
    """Rows of a scored run, streamed, with `labels` as a list and the p_* columns as floats.

    `columns` limits what is read from Parquet (the text formats are parsed whole per line anyway);
    columns the run lacks are simply absent from the rows.
    """
    for row in iter_rows(path, columns, batch_size):
        yield _typed(row)


def iter_rows(path: str | Path, columns: Iterable[str] | None = None, batch_size: int = 8192,
              required: Iterable[str] = REQUIRED_COLUMNS) -> Iterator[dict]:
    """Rows of a scored run as stored, untyped: `labels` is still a pipe-separated string in CSV.

    For readers that type and validate rows themselves (the review tool). Raises InputError (a
    ValueError; core/errors.py) naming the file for a bad name, no such file, a missing `required`
    column (checked on the header, or on the first JSONL row) or a line that is not a JSON object.
    """
    path = Path(path)
    fmt = run_format(path)
    if not path.exists():
        raise InputError(f"{path}: no such scored run")
    reader = {"parquet": _parquet_rows, "jsonl": _jsonl_rows, "csv": _csv_rows}[fmt]
    return reader(path, None if columns is None else list(columns), batch_size, tuple(required))


def _parquet_rows(path: Path, columns, batch_size: int, required) -> Iterator[dict]:
    """One Parquet file, or a directory of them as `reportguard score --engine spark` writes it:
    part files under hive partitions (decision=block/...), whose values come back as the
    `decision` column; Spark's _SUCCESS and .crc files are skipped (pyarrow ignores names starting
    with _ or .). A directory's rows come in file order, not input order: a Spark run has none."""
    if path.is_dir():
        import pyarrow.dataset as ds
        dataset = ds.dataset(path, format="parquet", partitioning="hive")
        if not dataset.files:
            raise InputError(f"{path}: a directory with no Parquet files; is this a `reportguard score` output?")
        names = dataset.schema.names
        batches = lambda wanted: dataset.to_batches(columns=wanted, batch_size=batch_size)  # noqa: E731
    else:
        import pyarrow.parquet as pq
        parquet = pq.ParquetFile(path, pre_buffer=False)  # pre-buffering keeps every row group read: memory grows with the run
        names = parquet.schema_arrow.names
        batches = lambda wanted: parquet.iter_batches(batch_size=batch_size, columns=wanted)  # noqa: E731
    _check_columns(path, names, required)
    for batch in batches([c for c in columns if c in names] if columns is not None else None):
        yield from batch.to_pylist()


def open_text(path: Path) -> io.TextIOBase:
    """A text run for reading, gunzipped when it ends in .gz; utf-8-sig, as a run that went through
    Excel comes back with a BOM."""
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _jsonl_rows(path: Path, columns, batch_size: int, required) -> Iterator[dict]:
    checked = False
    with open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: line {line_no}: invalid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise InputError(f"{path}: line {line_no}: a row must be a JSON object")
            if not checked:
                _check_columns(path, row, required)
                checked = True
            yield row


def _csv_rows(path: Path, columns, batch_size: int, required) -> Iterator[dict]:
    # Listing descriptions can be far longer than the csv module's 128 KiB default field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open_text(path) as fh:
        reader = csv.DictReader(fh)
        _check_columns(path, reader.fieldnames or [], required)
        yield from reader


def _check_columns(path: Path, columns, required) -> None:
    present = set(columns)
    missing = [c for c in required if c not in present]
    if missing:
        raise InputError(f"{path}: required column(s) {missing} missing; is this a `reportguard score` output?")


def split_labels(value: str) -> list[str]:
    """A CSV run's pipe-separated labels as a list: 'report_sale|false_ad' -> two, '' -> none."""
    return [x.strip() for x in value.split("|") if x.strip()]


def _typed(row: dict) -> dict:
    """Labels as a list (a CSV run pipe-separates them), probabilities as floats, ids as strings."""
    labels = row.get("labels")
    if isinstance(labels, str):
        labels = split_labels(labels)
    row["labels"] = list(labels or [])
    unknown = [x for x in row["labels"] if x not in BY_NAME]
    if unknown:
        raise InputError(f"listing {row.get('listing_id')!r}: unknown label(s) {unknown}")
    for column in PROB_COLUMNS:
        value = row.get(column)
        value = float(value) if value not in (None, "") else 0.0
        if not 0.0 <= value <= 1.0:  # also false for NaN
            raise InputError(f"listing {row.get('listing_id')!r}: {column} = {value} is not a probability")
        row[column] = value
    row["listing_id"] = "" if row.get("listing_id") is None else str(row["listing_id"])
    return row
