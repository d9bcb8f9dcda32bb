"""`reportguard score --engine spark`: the batch scorer on Apache Spark, for inputs one machine
cannot score in time (docs/spark.md shows how to run it; reports/spark.md what it costs).

The per-row logic is the local scorer's own: `score_records` (serve/score.py) normalises,
deduplicates, runs the model, labels, decides and finds evidence; `validate_row` and `iter_rows`
(core/records.py) read and check rows. Spark only moves rows between them:

1. read: Parquet with Spark's reader (splittable, any Hadoop path: hdfs://, s3a://, ...); CSV and
   JSONL with reportguard's reader, one task per file, for the same encodings, quoting
   recovery, line numbers and rejects as the local scorer;
2. validate every row with `validate_row`; compute its normalised-text key (`prepare` +
   `TextCache.key`);
3. duplicate listing_ids across the whole dataset: a window per listing_id in input order
   (file, line); later copies are rejected by `validate_row` itself, told where the first was;
4. dedup="global" (default): rows are hash-partitioned by their text key, so all copies of a
   text meet in one task; dedup="partition": rows are spread round-robin, and each task
   deduplicates only the copies it happens to hold (reports/spark.md measures both);
5. per task: `score_records` with one text cache for the task, as the local scorer keeps one
   for its run: each distinct text is scored once, and labels, credential rule, decision,
   evidence and pass-through columns come from the same code. Spark's pandas batches are the
   local scorer's chunks. (Hash-partitioning is one shuffle of the rows; dropDuplicates on the
   key, scoring, and a join back would be three, for the same result.)
6. write OUT, a directory of partitioned Parquet, through Spark's output commit protocol (a
   retried task's partial files are discarded); the rejects as JSON lines in OUT.rejects/; and
   OUT.manifest.json last, with counts that reconcile (rows in = accepted + rejected). The names
   follow the local scorer's (OUT.rejects.jsonl, OUT.manifest.json), so a run named
   `scored.parquet` reads like a local one with pyarrow and the review tools.

The bundle is loaded once per Python worker (a module-level cache keyed by path and threads),
from a path or from files shipped with --files/--archives (SparkFiles); an InferenceSession
cannot be pickled (onnxruntime#643) and is never shipped: Bundle pickles without it and creates
it lazily, with onnxruntime's threads set to the task's cores (spark.task.cpus).

Output partitioning: `decision=block|review|pass`. It is never null, has three values safe in
any path, and matches how the output is consumed (takedowns read block, the review queue reads
review). `platform` was the alternative: it may be missing, null or empty (Spark writes both as
one null partition, so "" would read back as null), and is free text.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa

from reportguard.core.atomic import write_text_atomic
from reportguard.core.columns import load_column_map
from reportguard.core.errors import UsageError
from reportguard.core.labels import PROB_COLUMNS
from reportguard.core.normalize import NORMALIZER_VERSION
from reportguard.core.records import (InputError, ReadOptions, canonical_column, check_headers, format_of, iter_rows,
                                      list_input_files, validate_row)
from reportguard.serve.bundle import BundleError, load_bundle
from reportguard.serve.evidence import prepare
from reportguard.serve.outputs import SCORE_COLUMNS, rows_to_table
from reportguard.serve.score import INTERNAL, ScoreOptions, TextCache, model_input, passthrough_name, score_records
from reportguard.serve.tiers import ROUTES, describe_route

REJECT_COLUMNS = ("file", "line", "column", "listing_id", "reason", "raw")
_READ_BATCH = 1000  # rows per Arrow batch from the readers

# One row of step 1-2: an accepted row (reason null) or a reject.
ROWS = pa.schema([("_fi", pa.int32()), ("_pos", pa.int64()), ("_file", pa.string()), ("listing_id", pa.string()),
                  ("_key", pa.string()), ("_loc", pa.string()), ("_record", pa.string()), ("_cols", pa.list_(pa.string())),
                  ("reason", pa.string()), ("column", pa.string()), ("raw", pa.string())])
ROWS_DDL = ("_fi int, _pos long, _file string, listing_id string, _key string, _loc string, _record string, "
            "_cols array<string>, reason string, column string, raw string")
REJECTS_DDL = "_fi int, _pos long, file string, line long, column string, listing_id string, reason string, raw string"

# pyspark 4.3 warns on pandas 3; the parity tests (tests/test_spark.py) run on pandas 3.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")


class SparkEngineError(InputError):
    """Spark cannot run this job (no pyspark, no Java, an input it cannot read); an InputError
    (core/errors.py) so that the CLI prints it as one error line."""


@dataclass(frozen=True)
class _Job:
    """What the Python workers need; small and picklable (no bundle, no session)."""
    model: str
    options: ScoreOptions
    passthrough: tuple[str, ...] = ()
    fail: tuple | None = None  # (partition, marker_dir): fault injection for tests


# --- the session and the bundle -----------------------------------------------------------------

def spark_session(master: str | None = None, conf: dict[str, str] | None = None):
    """getOrCreate a SparkSession (`master` None: spark-submit's, else local[*])."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkEngineError("the Spark engine needs pyspark: pip install 'reportguard[spark]'") from exc
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # under spark-submit the JVM already runs
        check_java()
    if "PYSPARK_GATEWAY_PORT" not in os.environ and (master is None or master.startswith("local")):
        # Local mode started from Python: workers run this interpreter (its venv), not whatever
        # `python3` is first on PATH. On a cluster, spark.pyspark.python decides (docs/spark.md).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("reportguard-score")
    if master:
        builder = builder.master(master)
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if not spark.sparkContext.getConf().contains("spark.log.level"):
        spark.sparkContext.setLogLevel("WARN")
    return spark


def check_java() -> None:
    """Spark 4 needs Java 17 or newer; say so before the JVM fails to start."""
    java = Path(os.environ["JAVA_HOME"]) / "bin" / "java" if os.environ.get("JAVA_HOME") else shutil.which("java")
    if not java or not Path(java).exists():
        raise SparkEngineError("the Spark engine needs Java 17+: apt-get install openjdk-17-jre-headless "
                               "(.ci/install-java.sh) or set JAVA_HOME")
    out = subprocess.run([str(java), "-version"], capture_output=True, text=True).stderr
    version = out.split('"')[1] if '"' in out else ""
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major < 17:
        raise SparkEngineError(f"{java}: Java {version or '?'}; Spark 4 needs Java 17 or newer")


def resolve_model(ref: str) -> Path:
    """The bundle directory for `ref`: a path, else a file or archive shipped with --files or
    --archives (`--archives bundle.tar.gz#bundle` -> `--model bundle`), looked up in SparkFiles
    and in the working directory (YARN unpacks archives there)."""
    candidates = [Path(ref)]
    try:
        from pyspark import SparkFiles
        shipped = Path(SparkFiles.get(ref))
        if shipped != candidates[0]:
            candidates.append(shipped)
    except Exception:  # no SparkContext or worker yet: plain paths only
        pass
    for c in candidates:
        if (c / "bundle.json").exists():
            return c
        if c.is_dir():  # an archive packed with its folder inside
            inner = [d for d in c.iterdir() if (d / "bundle.json").exists()]
            if len(inner) == 1:
                return inner[0]
    raise BundleError(f"{ref}: not a model bundle here, nor shipped with --files/--archives "
                      f"(looked in {', '.join(str(c) for c in candidates)})")


_BUNDLES: dict = {}  # (model ref, threads) -> Bundle, one per Python worker process


def worker_bundle(model: str, threads: int | None):
    """The bundle, loaded (and hash-checked) once per worker; onnxruntime gets the task's cores."""
    from pyspark import TaskContext
    ctx = TaskContext.get()
    threads = threads or (ctx.cpus() if ctx else 1)
    key = (model, threads)
    if key not in _BUNDLES:
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))  # the tokenizer's pool, too
        _BUNDLES[key] = load_bundle(resolve_model(model), threads=threads)
    return _BUNDLES[key]


# --- steps 1-2: read and validate --------------------------------------------------------------

def _event(fi: int, display: str, line: int, row: dict, reject, read: ReadOptions) -> dict:
    """One input row -> a ROWS dict: validated by validate_row, keyed by its normalised text."""
    seen: dict[str, str] = {}
    if reject is None:
        reject = validate_row(row, display, line, read, seen)
    if reject is not None:
        r = reject.to_dict()
        return {"_fi": fi, "_pos": line, "_file": r["file"], "listing_id": r["listing_id"], "reason": r["reason"],
                "column": r["column"], "raw": _utf8(r["raw"])}
    record = {k: v for k, v in row.items() if k not in INTERNAL}
    text, _ = prepare(*model_input(record)[:2])  # the text score_records keys it by (a shop name if nothing else)
    return {"_fi": fi, "_pos": line, "_file": display, "listing_id": record["listing_id"], "_key": TextCache.key(text),
            "_loc": seen[record["listing_id"]], "_record": _utf8(json.dumps(record, ensure_ascii=False, default=str)),
            "_cols": list(record)}


def _utf8(text: str) -> str:
    # Undecodable input bytes survive as lone surrogates, which Arrow cannot carry.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _batches(events, schema: pa.Schema = ROWS):
    buf = []
    for e in events:
        buf.append(e)
        if len(buf) >= _READ_BATCH:
            yield pa.RecordBatch.from_pylist(buf, schema)
            buf = []
    if buf:
        yield pa.RecordBatch.from_pylist(buf, schema)


def _read_text_files(files: list[tuple[int, str]], read: ReadOptions, batches):
    """mapInArrow over file numbers: each file read and validated by core.records."""
    for batch in batches:
        for i in batch.column("id").to_pylist():
            fi, display = files[i]
            yield from _batches(_event(fi, display, line, row, reject, read)
                                for line, row, reject in iter_rows(Path(display), read))


def _read_parquet_rows(files: dict[str, tuple[int, str]], columns: dict[int, list[str]], read: ReadOptions,
                       names: list[str], batches):
    """mapInArrow over Spark's Parquet rows: each made into the dict core.records would make."""
    for batch in batches:
        values = {n: batch.column(n).to_pylist() for n in names}
        paths, rows = batch.column("__path").to_pylist(), batch.column("__row").to_pylist()

        def events():
            for i, (path, rowno) in enumerate(zip(paths, rows)):
                fi, display = files[_path_key(path)]
                row = {canonical_column(n, read.column_map): values[n][i] for n in columns.get(fi, names)}
                row["_file"], row["_line"] = display, rowno + 1
                yield _event(fi, display, rowno + 1, row, None, read)
        yield from _batches(events())


def _path_key(path: str) -> str:
    """A file path as the driver lists it and as Spark reports it (file:/a%20b.parquet), alike."""
    parsed = urlparse(path)
    if parsed.scheme == "file":
        return os.path.abspath(unquote(parsed.path))
    return os.path.abspath(path) if not parsed.scheme else unquote(path)


def _list_inputs(spark, inputs: list[str]) -> list[tuple[str, str]]:
    """(display path, format) per file, in the local scorer's order. Local paths are listed as
    the local scorer lists them; URIs (hdfs://, s3a://) must hold Parquet."""
    files: list[tuple[str, str]] = []
    for p in inputs:
        if not urlparse(p).scheme:
            files += [(str(f), format_of(f)) for f in list_input_files([p])]
        else:
            found = sorted(spark.read.parquet(p).inputFiles())
            if not found:
                raise InputError(f"{p}: holds no Parquet files")
            files += [(f, "parquet") for f in found]
    return files


def read_rows(spark, files: list[tuple[str, str]], read: ReadOptions):
    """Steps 1-2: every input row as a ROWS row, accepted or rejected, in one DataFrame."""
    from pyspark.sql import functions as F
    parts = []
    text = [(fi, path) for fi, (path, fmt) in enumerate(files) if fmt != "parquet"]
    if text:
        parts.append(spark.range(0, len(text), 1, len(text)).mapInArrow(partial(_read_text_files, text, read), ROWS_DDL))
    parquet = {fi: path for fi, (path, fmt) in enumerate(files) if fmt == "parquet"}
    if parquet:
        df = spark.read.option("mergeSchema", "true").parquet(*parquet.values())
        names = df.columns
        _check_parquet_columns(names, read, list(parquet.values()))
        df = df.select(*[F.col(_quoted(n)) for n in names], F.col("_metadata.file_path").alias("__path"),
                       F.col("_metadata.row_index").alias("__row"))
        index = {_path_key(path): (fi, path) for fi, path in parquet.items()}
        columns = {fi: _parquet_columns(path) for fi, path in parquet.items()}
        columns = {fi: c for fi, c in columns.items() if c is not None}
        parts.append(df.mapInArrow(partial(_read_parquet_rows, index, columns, read, names), ROWS_DDL))
    rows = parts[0]
    for p in parts[1:]:
        rows = rows.unionByName(p)
    return rows


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _parquet_columns(path: str) -> list[str] | None:
    """A local file's own columns (Spark's merged schema has every file's); None for URIs."""
    if urlparse(path).scheme:
        return None
    import pyarrow.parquet as pq
    return pq.ParquetFile(path).schema_arrow.names


def _check_parquet_columns(names: list[str], read: ReadOptions, paths: list[str]) -> None:
    columns = [canonical_column(n, read.column_map) for n in names]
    missing = [c for c in read.required if c not in columns]
    if missing:  # local files were checked one by one already; this catches URIs
        raise InputError(f"{paths[0]}: line 1: required column {missing[0]!r} is missing "
                         f"(columns found: {', '.join(columns) or 'none'}; map other names in configs/columns.yaml)")


# --- step 3: duplicate listing_ids across the dataset ------------------------------------------

def rank_rows(rows):
    """Number each accepted row within its listing_id in input order; keep where the first was."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    valid = F.col("reason").isNull()
    # Rejects get a group of their own: many rejects without an id must not pile into one group.
    group = F.when(valid, F.col("listing_id")).otherwise(F.concat(F.lit("\u0000"), F.col("_fi"), F.lit(":"), F.col("_pos")))
    w = Window.partitionBy(group).orderBy("_fi", "_pos")
    return rows.withColumn("_rn", F.row_number().over(w)).withColumn("_first", F.first("_loc").over(w))


def _reject_duplicates(read: ReadOptions, batches):
    """mapInArrow: a later copy of a listing_id, rejected by validate_row as the local scorer would."""
    schema = pa.schema([("_fi", pa.int32()), ("_pos", pa.int64())] + [(c, pa.int64() if c == "line" else pa.string())
                                                                      for c in REJECT_COLUMNS])
    for batch in batches:
        out = []
        for fi, pos, display, record, first in zip(*(batch.column(c).to_pylist() for c in ("_fi", "_pos", "_file", "_record", "_first"))):
            row = json.loads(record)
            reject = validate_row(row, display, pos, read, {row["listing_id"]: first})
            assert reject is not None, "a ranked duplicate passed validation"
            r = reject.to_dict()
            out.append({"_fi": fi, "_pos": pos, **r, "raw": _utf8(r["raw"])})
        if out:
            yield pa.RecordBatch.from_pylist(out, schema)


# --- steps 4-5: score ---------------------------------------------------------------------------

def _records(pdf) -> list[dict]:
    return [json.loads(r) for r in pdf["_record"].tolist()]


def _score_rows(job: _Job, counters: tuple, batches):
    """mapInPandas: score_records over one task's rows, with one text cache for the task, as the
    local scorer keeps one for its run. With dedup="global" the rows arrive hash-partitioned by
    their text key, so every copy of a text is in this task and each distinct text of the whole
    dataset is scored once."""
    bundle = worker_bundle(job.model, job.options.threads)
    cache = TextCache()
    new_texts, truncated = counters
    for k, pdf in enumerate(batches):
        rows, info = score_records(_records(pdf), bundle, cache, job.options, list(job.passthrough))
        new_texts.add(info["new_texts"])
        truncated.add(info["truncated"])
        yield _output_frame(rows, job)
        _maybe_fail(job, k)


def _output_frame(rows: list[dict], job: _Job):
    # rows_to_table is the local scorer's: same column types, pass-through values as text.
    return rows_to_table(rows, list(job.passthrough)).to_pandas()


def _maybe_fail(job: _Job, batches_done: int) -> None:
    """Fault injection for tests: the first attempt of one task dies after its first batch, when
    some of its rows have already gone to the writer."""
    if job.fail is None:
        return
    from pyspark import TaskContext
    ctx = TaskContext.get()
    partition, marker_dir = job.fail
    if ctx.partitionId() == partition and ctx.attemptNumber() == 0 and batches_done == 0:
        Path(marker_dir, f"failed-p{partition}-a0").touch()
        raise RuntimeError(f"injected failure: partition {partition}, attempt 0")


def _output_schema(passthrough: list[str]):
    from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType
    types = {**{c: FloatType() for c in PROB_COLUMNS}, "labels": ArrayType(StringType())}
    return StructType([StructField(c, types.get(c, StringType())) for c in SCORE_COLUMNS + passthrough])


def _passthrough(accepted) -> list[str]:
    """Pass-through columns in the order the local scorer meets them (first row that has each)."""
    from pyspark.sql import functions as F
    firsts = accepted.groupBy("_cols").agg(F.min(F.struct("_fi", "_pos")).alias("first")).collect()
    names: list[str] = []
    for r in sorted(firsts, key=lambda r: (r["first"]["_fi"], r["first"]["_pos"])):
        for column in r["_cols"]:
            name = passthrough_name(column)
            if name is not None and name not in names:
                names.append(name)
    return names


# --- the job ------------------------------------------------------------------------------------

# Long: the job's stages (checks before Spark starts, read, dedup, score, commit, manifest) in the order Spark runs them.
def score_spark(inputs: list[str], output_dir: str, options: ScoreOptions | None = None, spark=None,
                dedup: str = "global", partition_by: str | None = "decision", partitions: int | None = None,
                master: str | None = None, conf: dict[str, str] | None = None, inject_failure: tuple | None = None) -> dict:
    """Score `inputs` on Spark into `output_dir` (partitioned Parquet); return the manifest.

    `spark`: a session, else one is made from `master` and `conf` once the inputs and the bundle
    have passed their checks. `partitions`: scoring tasks (default 4 x Spark's default
    parallelism, for balance); each writes one file per output partition. `inject_failure`:
    (partition, marker_dir), for tests: that scoring task fails once, after its first batch.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    options = options or ScoreOptions()
    if dedup not in ("global", "partition"):
        raise UsageError(f"dedup must be 'global' or 'partition', not {dedup!r}")
    partition_by = None if partition_by in (None, "none") else partition_by
    started = time.perf_counter()
    read = ReadOptions(chunk_size=options.chunk_size, encoding=options.encoding, column_map=load_column_map(options.columns))
    local_inputs = [p for p in inputs if not urlparse(p).scheme]
    if local_inputs:  # same errors, before any Spark work, as the local scorer
        check_headers(list_input_files(local_inputs), read)
    bundle, spark = _driver_bundle(str(options.model), spark, master, conf)
    route = describe_route(bundle, options.route)  # a tier the bundle lacks: a usage error before any Spark work
    spark = spark or spark_session(master, conf)
    out = str(output_dir).rstrip("/")
    _check_output(spark, out)
    _delete(spark, f"{out}.manifest.json")  # a manifest marks a complete run: none until this one is
    files = _list_inputs(spark, inputs)
    text_inputs = [path for path, fmt in files if fmt != "parquet" and urlparse(path).scheme]
    if text_inputs:
        raise SparkEngineError(f"{text_inputs[0]}: CSV and JSONL are read by reportguard's own reader and must be on "
                               f"a path every executor can open; convert to Parquet for hdfs:// or s3a://")
    seconds: dict[str, float] = {}

    # Steps 1-3, kept: the rows feed the counts, the rejects, the dedup and the scoring.
    t = time.perf_counter()
    ranked = rank_rows(read_rows(spark, files, read)).persist(StorageLevel.MEMORY_AND_DISK)
    valid = F.col("reason").isNull()
    status = F.when(~valid, "invalid").when(F.col("_rn") == 1, "accepted").otherwise("duplicate")
    counts = {r["s"]: r["count"] for r in ranked.select(status.alias("s")).groupBy("s").count().collect()}
    accepted = ranked.where(valid & (F.col("_rn") == 1)).select("listing_id", "_key", "_record", "_cols", "_fi", "_pos")
    passthrough = _passthrough(accepted)
    seconds["read_validate"] = time.perf_counter() - t
    if partition_by and partition_by not in SCORE_COLUMNS + passthrough:
        raise InputError(f"--partition-by {partition_by}: not an output column ({', '.join(SCORE_COLUMNS + passthrough)})")
    job = _Job(str(options.model), options, tuple(passthrough), inject_failure)
    schema = _output_schema(passthrough)

    # Steps 4-6. One shuffle does the global dedup: by text key, all copies of a text meet in
    # one task. Round-robin (dedup="partition") leaves each task its own duplicates only.
    t = time.perf_counter()
    n = partitions or 4 * spark.sparkContext.defaultParallelism
    texts = accepted.select("_key", "_record")
    spread = (texts.repartition(n, "_key") if dedup == "global" else texts.repartition(n)).select("_record")
    counters = (spark.sparkContext.accumulator(0), spark.sparkContext.accumulator(0))  # texts inferred, truncated
    scored = spread.mapInPandas(partial(_score_rows, job, counters), schema)
    writer = scored.write.mode("overwrite").option("compression", "zstd")
    (writer.partitionBy(partition_by) if partition_by else writer).parquet(out)
    seconds["score_and_write"] = time.perf_counter() - t
    unique = accepted.select("_key").distinct().count()
    inferred, truncated = counters[0].value, counters[1].value
    t = time.perf_counter()
    rejects = ranked.where(~valid).select("_fi", "_pos", F.col("_file").alias("file"), F.col("_pos").alias("line"),
                                          "column", "listing_id", "reason", "raw")
    duplicates = ranked.where(valid & (F.col("_rn") > 1)).select("_fi", "_pos", "_file", "_record", "_first")
    rejects = rejects.unionByName(duplicates.mapInArrow(partial(_reject_duplicates, read), REJECTS_DDL))
    (rejects.orderBy("_fi", "_pos").drop("_fi", "_pos").write.mode("overwrite")
     .option("ignoreNullFields", "false").json(f"{out}.rejects"))
    seconds["rejects"] = time.perf_counter() - t

    written = spark.read.parquet(out)
    manifest = _manifest(spark, written, out, counts, unique, inferred, truncated, passthrough, bundle, options,
                         dedup, partition_by, seconds, time.perf_counter() - started)
    manifest["route"] = route
    _write_text(spark, f"{out}.manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1))
    ranked.unpersist()
    return manifest


def _driver_bundle(model: str, spark, master: str | None, conf: dict | None):
    """Load the bundle on the driver to fail fast (the driver never runs it). A bundle shipped with
    --archives/--files is only found once a session exists, so look again with one."""
    try:
        return load_bundle(resolve_model(model), threads=1), spark
    except BundleError:
        shipped = spark is not None or "PYSPARK_GATEWAY_PORT" in os.environ or \
            any(k in (conf or {}) for k in ("spark.archives", "spark.files"))  # spark-submit, or --conf
        if not shipped or spark is not None:
            raise
    spark = spark_session(master, conf)
    return load_bundle(resolve_model(model), threads=1), spark


def _manifest(spark, written, out: str, counts: dict, unique: int, inferred: int, truncated: int, passthrough: list[str],
              bundle, options: ScoreOptions, dedup: str, partition_by: str | None, seconds: dict, total: float) -> dict:
    from pyspark.sql import functions as F
    rows_in = sum(counts.values())
    accepted = counts.get("accepted", 0)
    rejected = counts.get("invalid", 0) + counts.get("duplicate", 0)
    rows_out = written.count()
    rejects_out = spark.read.schema("reason string").json(f"{out}.rejects").count()
    if rows_in != accepted + rejected or rows_out != accepted or rejects_out != rejected:
        raise RuntimeError(f"row counts do not reconcile: in {rows_in}, accepted {accepted}, rejected {rejected}, "
                           f"written {rows_out}, rejects written {rejects_out}")
    decisions = {r["decision"]: r["count"] for r in written.groupBy("decision").count().collect()}
    labels = {r["label"]: r["count"] for r in written.select(F.explode("labels").alias("label")).groupBy("label").count().collect()}
    seconds["total"] = total
    sc = spark.sparkContext
    return {
        "output": out, "rejects": f"{out}.rejects", "format": "parquet", "partition_by": partition_by,
        "columns": SCORE_COLUMNS + passthrough,
        "rows": {"in": rows_in, "accepted": accepted, "rejected": rejected, "unique": unique, "inferred": inferred,
                 "truncated_texts": truncated},
        "decisions": dict(sorted(decisions.items())), "labels": dict(sorted(labels.items())),
        "model_version": bundle.model_version, "model_path": str(options.model), "precision": bundle.meta.get("precision"),
        "normalizer_version": NORMALIZER_VERSION,
        "engine": {"name": "spark", "spark_version": spark.version, "master": sc.master, "dedup": dedup,
                   "default_parallelism": sc.defaultParallelism, "task_cpus": int(sc.getConf().get("spark.task.cpus", "1")),
                   "onnxruntime_threads": options.threads or "spark.task.cpus"},
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "rows_per_second": round(rows_in / max(total, 1e-9), 1),
    }


def _hadoop_path(spark, path: str):
    jvm = spark.sparkContext._jvm
    p = jvm.org.apache.hadoop.fs.Path(path)
    return p.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), p


def _check_output(spark, out: str) -> None:
    """Overwrite only an earlier output of this engine, never a folder that happens to be there."""
    fs, p = _hadoop_path(spark, out)
    if not fs.exists(p):
        return
    if not fs.getFileStatus(p).isDirectory():
        raise InputError(f"{out}: exists and is not a directory; the Spark engine writes a directory of Parquet")
    names = [s.getPath().getName() for s in fs.listStatus(p)]
    if names and "_SUCCESS" not in names and not fs.exists(_hadoop_path(spark, f"{out}.manifest.json")[1]):
        raise InputError(f"{out}: exists and is not an output of the Spark engine (no _SUCCESS, no {out}.manifest.json); "
                         f"refusing to replace it")


def _delete(spark, path: str) -> None:
    fs, p = _hadoop_path(spark, path)
    if fs.exists(p):
        fs.delete(p, False)


def _write_text(spark, path: str, text: str) -> None:
    if not urlparse(path).scheme:
        write_text_atomic(Path(path), text)
        return
    fs, p = _hadoop_path(spark, path)
    stream = fs.create(p, True)
    stream.write(bytearray(text.encode("utf-8")))
    stream.close()


def read_spark_run(output_dir: str | Path) -> list[dict]:
    """The rows of a Spark run (local path), columns in the local scorer's order; row order is
    not the input's: join on listing_id."""
    import pyarrow.dataset as ds
    out = Path(output_dir)
    manifest = json.loads(Path(f"{out}.manifest.json").read_text(encoding="utf-8"))
    partitioning = ds.partitioning(pa.schema([(manifest["partition_by"], pa.string())]), flavor="hive") \
        if manifest["partition_by"] else None
    table = ds.dataset(out, format="parquet", partitioning=partitioning).to_table()
    return table.select(manifest["columns"]).to_pylist()


def read_spark_rejects(output_dir: str | Path) -> list[dict]:
    """The rejects of a Spark run (local path), in input order."""
    rows = []
    for part in sorted(Path(f"{output_dir}.rejects").glob("part-*.json")):
        rows += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows


# --- command line ---------------------------------------------------------------------------------

from .spark_options import add_spark_options  # noqa: E402  (argparse only: the CLI shares it)


def score_from_args(args: argparse.Namespace, options: ScoreOptions) -> dict:
    """`reportguard score --engine spark ...` after argparse: session, job, one summary line."""
    conf = {}
    for item in args.conf:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--conf {item}: expected KEY=VALUE")
        conf[key] = value
    if not options.progress:  # --quiet: no Spark progress bars either
        conf.setdefault("spark.ui.showConsoleProgress", "false")
    manifest = score_spark(args.inputs, args.output, options, dedup=args.dedup, partition_by=args.partition_by,
                           partitions=args.partitions, master=args.master, conf=conf)
    rows = manifest["rows"]
    print(f"{args.output}: {rows['in']} rows in, {rows['accepted']} scored, {rows['rejected']} rejected "
          f"({rows['unique']} unique texts, {rows['inferred']} sent to the model); decisions {manifest['decisions']}; "
          f"{manifest['seconds']['total']:.1f}s; rejects in {manifest['rejects']}")
    return manifest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reportguard.serve.spark_engine",
        description="Score listings on Apache Spark (the spark-submit application; see docs/spark.md).")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="CSV/JSONL/Parquet files or folders; Parquet may be hdfs:// or s3a://")
    parser.add_argument("--output", required=True, help="output directory OUT (partitioned Parquet); OUT.rejects/ and "
                        "OUT.manifest.json go beside it")
    parser.add_argument("--model", default="models/current",
                        help="bundle directory, or the name it was shipped under (--archives bundle.tar.gz#bundle -> bundle)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads per task (default spark.task.cpus)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--columns", default=None, help="column mapping YAML (default configs/columns.yaml)")
    parser.add_argument("--encoding", default=None, help="force an input encoding (default: BOM, UTF-8, then GB18030)")
    parser.add_argument("--attribution", choices=["occlusion", "none"], default="occlusion")
    parser.add_argument("--route", choices=list(ROUTES), default="auto",
                        help="auto: the bundle's student tiers, then the teacher (default); teacher; tier1/tier2 alone")
    add_spark_options(parser)
    parser.set_defaults(engine="spark")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = ScoreOptions(model=args.model, threads=args.threads, batch_size=args.batch_size, columns=args.columns,
                           encoding=args.encoding, attribution=args.attribution, route=args.route, progress=False)
    try:
        score_from_args(args, options)
    except (InputError, BundleError, ValueError, FileNotFoundError) as exc:
        print(f"reportguard: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    # Run as a script (spark-submit .../spark_engine.py): call the installed module's main, so
    # that the functions shipped to workers are importable by name and share its bundle cache.
    from reportguard.serve import spark_engine
    sys.exit(spark_engine.main())
