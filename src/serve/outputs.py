"""Scoring output: per-chunk part files during a run, one assembled file at the end.

Parts are Parquet (typed, fast, appendable as row groups) whatever the final format. The final
file's format follows OUT's extension: .parquet, .jsonl or .csv (optionally .gz). In CSV the
`labels` list is pipe-separated; in Parquet and JSONL it is a list. `evidence` is a JSON string
in every format.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

SCORE_COLUMNS = ["listing_id", "p_report_sale", "p_false_ad", "p_testing_service", "labels", "decision", "evidence", "model_version"]


def output_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    for fmt in ("parquet", "jsonl", "csv"):
        if name.endswith("." + fmt):
            return fmt
    raise ValueError(f"{path}: output must end in .parquet, .jsonl or .csv (optionally .gz)")


def rows_to_table(rows: list[dict], passthrough: list[str]) -> pa.Table:
    """Scored rows -> an Arrow table: score columns first, then pass-through columns as strings."""
    columns = {c: [r[c] for r in rows] for c in SCORE_COLUMNS}
    for c in passthrough:
        columns[c] = [_as_text(r.get(c)) for r in rows]
    schema = pa.schema([("listing_id", pa.string()), ("p_report_sale", pa.float32()), ("p_false_ad", pa.float32()),
                        ("p_testing_service", pa.float32()), ("labels", pa.list_(pa.string())), ("decision", pa.string()),
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
    fmt = output_format(out)
    schemas = [pq.read_schema(p) for p in parts]
    names: list[str] = []
    for s in schemas:
        # "_" columns (dedup keys, cached attributions) serve resumption only; they are not output.
        names += [n for n in s.names if n not in names and not n.startswith("_")]
    unified = pa.schema([next(s.field(n) for s in schemas if n in s.names) for n in names])
    tmp = out.with_name(f".{out.name}.tmp")
    rows = 0
    opener = gzip.open if out.name.lower().endswith(".gz") else open
    if fmt == "parquet":
        writer = pq.ParquetWriter(str(tmp), unified, compression="zstd")
        for p in parts:
            table = _conform(pq.read_table(p), unified)
            writer.write_table(table)
            rows += table.num_rows
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
    tmp.replace(out)
    return rows


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    for field in schema:
        if field.name not in table.schema.names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table.select(schema.names)


def read_run(path: str | Path) -> list[dict]:
    """A scored run as a list of dicts (labels as lists), whatever its format."""
    path = Path(path)
    fmt = output_format(path)
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        if fmt == "jsonl":
            return [json.loads(line) for line in fh if line.strip()]
        import csv
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["labels"] = [x for x in (r.get("labels") or "").split("|") if x]
        for c in ("p_report_sale", "p_false_ad", "p_testing_service"):
            r[c] = float(r[c])
    return rows
