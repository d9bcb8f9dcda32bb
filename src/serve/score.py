"""`reportguard score INPUT... --output OUT`: the batch scorer.

Per chunk of input rows (chunk boundaries depend only on the input):
1. read and validate rows (core.records): bad rows become rejects with reasons;
2. normalise title and description once, keeping offsets for evidence;
3. deduplicate by normalised text across the whole run: a text seen before reuses its scores;
4. route new texts (serve/tiers.py, `--route`): under `auto` the bundle's student tiers settle the
   texts far from every decision cut and the teacher the rest; the models run in batches sorted
   by length to minimise padding (tokenised for the transformers, onnxruntime);
5. calibrated probabilities -> labels (thresholds from the bundle), credential_missing by rule,
   decision (block / review / pass), evidence (lexicon hits + occlusion of clauses, through the
   cheapest tier that reproduces the text's decision);
6. write the chunk as a part file: temp file, then rename. The rename is the commit.

A rerun of the same command skips committed chunks and rebuilds the dedup cache from them, so the
result after `kill -9` and a rerun is identical to an uninterrupted run. When every chunk is
done, the parts are assembled into OUT (temp file + rename), with OUT.rejects.jsonl and
OUT.manifest.json beside it (with the rows, texts and evidence settled per tier); a rerun of a
finished run is a no-op. The run state (inputs' paths,
sizes and modification times, the bundle's content hash, the options) is recorded; a rerun with anything else starts over and
says what changed. Inputs are checked (they exist, have a known format and the required columns,
and OUT is none of them) before the bundle loads; each input's SHA-256 is computed while it is
read (InputTap), not in a pass before, and goes into the manifest's `inputs`; the progress bar
starts at once, in bytes read for text input. No torch or transformers is imported on this path.

Refusals and failures: an OUT that is (or would overwrite) an input file is refused; a second
scorer on the same OUT is refused by an advisory lock (OUT.lock, fcntl) naming the holder's PID;
a truncated archive, an unwritable or full output folder or an unloadable graph stops the run
with one line naming the file and the cause (`ScoreError`, exit 1), leaving no partial OUT and no
temp files (committed chunks stay in OUT.parts, so that a rerun resumes). Memory stays flat: the
dedup cache (`TextCache`) and the duplicate-id index (core.records.IdIndex) keep a fixed number
of entries in memory and spill the rest to SQLite under OUT.parts.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from reportguard.core.atomic import atomic_path, temp_path, write_text_atomic
from reportguard.core.calibration import sigmoid
from reportguard.core.columns import load_column_map
from reportguard.core.errors import ReportguardError, UsageError
from reportguard.core.credentials import with_derived_labels
from reportguard.core.labels import MODEL_LABELS, PROB_COLUMNS, TESTING_SERVICE
from reportguard.core.normalize import NORMALIZER_VERSION
from reportguard.core.records import (Chunk, ReadOptions, SpillStore, check_headers, iter_chunks, list_input_files,
                                      read_failure)

from .bundle import Bundle, load_bundle, sha256_file
from .evidence import clauses, lexicon_evidence, occluded_texts, prepare, span_evidence
from .outputs import SCORE_COLUMNS, assemble, iter_run, output_format, rows_to_table
from .tiers import AUTO, Routed, describe_route, evidence_tiers, resolve_route, route_texts, tier_names, tier_proba

INTERNAL = ("_file", "_line")


@dataclass
class ScoreOptions:
    model: str = "models/current"
    threads: int | None = None
    batch_size: int = 32
    chunk_size: int = 5000
    columns: str | None = None
    encoding: str | None = None
    attribution: str = "occlusion"  # or "none"
    route: str = "auto"  # serve/tiers.py: auto (the bundle's cascade), teacher, or one tier alone (tier1, tier2)
    occlusion_clauses: int = 4
    min_drop: float = 0.1
    progress: bool = True
    memory_texts: int = 100_000  # dedup cache entries kept in memory; older texts spill to disk
    memory_ids: int = 250_000  # listing ids kept in memory by the duplicate check; then it spills


class ScoreError(ReportguardError):
    """The run was refused or stopped; the message is one line naming the file and the cause.
    `reportguard score` prints it and exits 1."""
    exit_code = 1


@dataclass
class ChunkStats:
    index: int
    rows_in: int = 0
    accepted: int = 0
    rejected: int = 0
    new_texts: int = 0
    truncated: int = 0
    seconds: dict = field(default_factory=dict)
    encodings: dict = field(default_factory=dict)  # rows per input encoding
    warnings: list = field(default_factory=list)  # encoding switches first seen in this chunk
    ids_trimmed: int = 0
    rows_by_tier: list = field(default_factory=list)  # by tier index (serve.tiers.tier_names): rows whose text it settled
    texts_by_tier: list = field(default_factory=list)  # new texts settled per tier
    evidence_by_tier: list = field(default_factory=list)  # new flagged texts whose clauses were occluded through each tier


class TextCache:
    """Normalised-text key -> (probabilities, occlusion spans, index of the tier that settled it):
    each unique text is scored once.

    Memory is bounded: the `capacity` most recently used texts stay in memory (an LRU); older ones
    move to a SpillStore on disk (SQLite behind a fixed-size Bloom filter), so a repost of any
    earlier text still reuses its scores, exactly, at any scale. `len(cache)` is the number of
    distinct texts seen."""

    def __init__(self, capacity: int = 100_000, spill_dir: str | Path | None = None):
        self.capacity = max(1, capacity)
        self.spill_dir = spill_dir
        self.hot: OrderedDict[str, tuple[np.ndarray, list, int]] = OrderedDict()
        self.cold: SpillStore | None = None
        self.size = 0

    @staticmethod
    def key(model_text: str) -> str:
        return hashlib.blake2b(model_text.encode("utf-8"), digest_size=12).hexdigest()

    def __len__(self) -> int:
        return self.size

    def get_many(self, keys: list[str]) -> dict[str, tuple[np.ndarray, list, int]]:
        """The cached entries among `keys` (distinct); a hit becomes the most recently used."""
        found: dict[str, tuple[np.ndarray, list, int]] = {}
        missing = []
        hot = self.hot
        for k in keys:
            entry = hot.get(k)
            if entry is None:
                missing.append(k)
            else:
                hot.move_to_end(k)
                found[k] = entry
        if missing and self.cold is not None:
            for k, blob in self.cold.get_many(missing).items():
                entry = (np.frombuffer(blob[:12], dtype=np.float32).copy(), json.loads(blob[13:]), blob[12])
                found[k] = hot[k] = entry  # used again: back in memory (it stays on disk too)
            self._evict()
        return found

    def put_many(self, entries: dict[str, tuple[np.ndarray, list, int]]) -> None:
        """Add texts not cached yet."""
        self.hot.update(entries)
        self.size += len(entries)
        self._evict()

    def _evict(self) -> None:
        excess = len(self.hot) - self.capacity
        if excess <= 0:
            return
        excess = min(len(self.hot), max(excess, self.capacity // 10))  # in batches: one transaction each
        batch = [self.hot.popitem(last=False) for _ in range(excess)]
        if self.cold is None:
            self.cold = SpillStore(self.spill_dir)
        self.cold.put_many([(k, np.asarray(p, dtype=np.float32).tobytes() + bytes([tier]) + json.dumps(occ).encode("utf-8"))
                            for k, (p, occ, tier) in batch])

    def load_part(self, part: Path) -> None:
        table = pq.read_table(part, columns=["_key", *PROB_COLUMNS, "_occlusion", "_tier"])
        cols = table.to_pydict()
        known = self.get_many(list(dict.fromkeys(cols["_key"])))
        new: dict[str, tuple[np.ndarray, list, int]] = {}
        for i, (k, occ, tier) in enumerate(zip(cols["_key"], cols["_occlusion"], cols["_tier"])):
            if k not in known and k not in new:
                new[k] = (np.array([cols[c][i] for c in PROB_COLUMNS], dtype=np.float32), json.loads(occ), tier)
        self.put_many(new)

    def close(self) -> None:
        if self.cold is not None:
            self.cold.close()
            self.cold = None


def decide(labels: list[str], probs: np.ndarray, bundle: Bundle) -> str:
    """block: a violation above its block threshold; review: anything else worth a look; pass."""
    for k, name in enumerate(MODEL_LABELS):
        if name in bundle.block_thresholds and probs[k] >= bundle.block_thresholds[name]:
            return "block"
    if [x for x in labels if x != TESTING_SERVICE.name]:
        return "review"  # a violation label, or a testing service that shows no credential
    return "pass"


def run_state(files: list[Path], bundle: Bundle, options: ScoreOptions) -> dict:
    """What a run depends on: a resumed run must match it exactly. Inputs by path, size and
    modification time (their SHA-256 is computed while they are read and goes into the manifest's
    `inputs`: hashing them here would be a full pass over every input before the first row). The
    bundle's content hash covers bundle.json (thresholds included) and every file it lists."""
    inputs = []
    for f in files:
        try:
            st = f.stat()
        except OSError as exc:
            raise read_failure(f, exc) from exc
        inputs.append({"path": str(f), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    return {"inputs": inputs,
            "model_version": bundle.model_version, "bundle_sha256": bundle.content_sha256, "model_files": bundle.meta["files"],
            "normalizer_version": NORMALIZER_VERSION,
            "options": {k: v for k, v in asdict(options).items() if k in ("chunk_size", "columns", "encoding", "attribution",
                                                                             "occlusion_clauses", "min_drop", "route")}}


def what_changed(previous: dict | None, state: dict) -> str:
    """Why a previous run's state differs from this one's, in words."""
    if not previous:
        return "an unfinished run whose state is unknown"
    reasons = []
    if previous.get("inputs") != state["inputs"]:
        reasons.append("other or edited inputs")
    if (previous.get("bundle_sha256"), previous.get("model_version"), previous.get("model_files")) != \
            (state["bundle_sha256"], state["model_version"], state["model_files"]):
        before = f"{previous.get('model_version')} sha256 {str(previous.get('bundle_sha256') or 'unrecorded')[:12]}"
        reasons.append(f"another model bundle ({before}; now {state['model_version']} sha256 {state['bundle_sha256'][:12]})")
    if previous.get("normalizer_version") != state["normalizer_version"]:
        reasons.append("another normaliser")
    before, now = previous.get("options") or {}, state["options"]
    if before.get("route") != now.get("route"):
        reasons.append(f"another --route ({before.get('route') or 'teacher, before routes existed'}; now {now.get('route')})")
    if {k: v for k, v in before.items() if k != "route"} != {k: v for k, v in now.items() if k != "route"}:
        reasons.append("other options")
    return "a run with " + (", ".join(reasons) or "another reportguard version")


class InputTap:
    """Hashes and counts each input's bytes as the reader takes them (ReadOptions.on_bytes): no
    pass over the inputs before the first row is scored. Parquet files are read by pyarrow, not
    through the tap; they, and any file the tap did not see whole, are hashed after reading.

    The progress bar's unit comes from here too: bytes read (compressed bytes for .gz) when any
    input is CSV or JSONL, so the bar starts at once and needs no row count; rows from the
    Parquet metadata when every input is Parquet."""

    def __init__(self, files: list[Path]):
        self.files = files
        self.hashers: dict[str, "hashlib._Hash"] = {}
        self.seen: dict[str, int] = {}
        self.total = 0  # bytes read so far, all files
        self.taken = 0  # bytes already handed to a chunk's progress weight
        self.parquet_rows: dict[str, int] = {}
        for f in files:
            if _is_parquet(f):
                try:
                    self.parquet_rows[str(f)] = pq.ParquetFile(f).metadata.num_rows
                except Exception as exc:  # a corrupt footer: the header check already named the file
                    raise read_failure(f, exc) from exc
        self.unit = "rows" if len(self.parquet_rows) == len(files) else "bytes"

    def __call__(self, path: Path, block: bytes) -> None:
        key = str(path)
        hasher = self.hashers.get(key)
        if hasher is None:
            hasher = self.hashers[key] = hashlib.sha256()
        hasher.update(block)
        self.seen[key] = self.seen.get(key, 0) + len(block)
        self.total += len(block)

    def progress_total(self) -> int:
        if self.unit == "rows":
            return sum(self.parquet_rows.values())
        return sum(f.stat().st_size for f in self.files)

    def chunk_weight(self, chunk: Chunk) -> float:
        """The chunk's share of the bar: its rows, or the bytes read for it (for a Parquet file
        among text files: its size in proportion to the chunk's rows)."""
        if self.unit == "rows":
            return chunk.rows_in
        rows = self.parquet_rows.get(chunk.file)
        if rows is not None:
            return Path(chunk.file).stat().st_size * chunk.rows_in / max(rows, 1)
        weight, self.taken = self.total - self.taken, self.total
        return weight

    def digests(self) -> list[dict]:
        """Per input: path, bytes and SHA-256 (from the bytes read, or hashed now if not seen whole)."""
        out = []
        for f in self.files:
            size = f.stat().st_size
            key = str(f)
            if key in self.hashers and self.seen.get(key) == size:
                digest = self.hashers[key].hexdigest()
            else:
                try:
                    digest = sha256_file(f)
                except OSError as exc:
                    raise read_failure(f, exc) from exc
            out.append({"path": key, "bytes": size, "sha256": digest})
        return out


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith(".parquet")


def check_inputs(inputs: list[str], out: Path, options: ScoreOptions) -> tuple[list[Path], ReadOptions]:
    """Everything about the command line and the inputs that can be checked before the bundle
    loads: OUT's extension, that every input exists and has a known format (a missing file is
    named as such), OUT is no input, and every file has the required columns."""
    try:
        output_format(out)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    files = list_input_files(inputs)
    check_output_path(out, inputs, files)
    read_options = ReadOptions(chunk_size=options.chunk_size, encoding=options.encoding,
                               column_map=load_column_map(options.columns), memory_ids=options.memory_ids)
    check_headers(files, read_options)  # a missing required column stops the run before any work
    return files, read_options


def summary(manifest: dict) -> str:
    """The end of a run in words: counts, decisions, time, and where the output, the rejects and
    the manifest are."""
    rows, seconds = manifest["rows"], manifest["seconds"]["total"]
    decisions = manifest.get("decisions") or {}
    shown = ", ".join(f"{decisions[d]:,} {d}" for d in ("block", "review", "pass") if d in decisions) or "none"
    out = manifest["output"]
    lines = [f"scored {rows['accepted']:,} of {rows['in']:,} rows ({rows['rejected']:,} rejected, {rows['unique']:,} unique "
             f"texts) in {seconds:.1f} s with model {manifest['model_version']}",
             f"  decisions: {shown}",
             f"  output:    {out}",
             f"  rejects:   {manifest.get('rejects') or f'{out}.rejects.jsonl'} ({rows['rejected']:,} rows)",
             f"  manifest:  {out}.manifest.json"]
    return "\n".join(lines)


def output_paths(out: Path) -> list[Path]:
    """Everything a run writes for OUT: the output, its rejects, manifest, parts folder and lock."""
    return [out, Path(f"{out}.rejects.jsonl"), Path(f"{out}.manifest.json"), Path(f"{out}.parts"), Path(f"{out}.lock")]


def check_output_path(out: Path, inputs: list[str], files: list[Path]) -> None:
    """Refuse an OUT that would overwrite an input file, or that lies in an input folder (a rerun
    would read it, and its rejects, as input)."""
    for target in output_paths(out):
        resolved = target.resolve()
        for f in files:
            if f.resolve() == resolved or (target.exists() and os.path.samefile(f, target)):
                raise ScoreError(f"{target}: is the input file {f}; refusing to overwrite an input (choose another --output)")
    where = out.resolve()
    for p in map(Path, inputs):
        if p.is_dir() and p.resolve() in where.parents:
            raise ScoreError(f"{out}: lies inside the input folder {p}, whose files are all read as input; "
                             f"write the output outside it")


class OutputLock:
    """An advisory lock (fcntl.flock) on OUT.lock, holding the PID of the scorer that writes OUT.
    A second scorer is refused with that PID; the kernel drops the lock if the holder dies."""

    def __init__(self, out: Path):
        self.out = out
        self.path = Path(f"{out}.lock")
        self.fd: int | None = None

    def __enter__(self) -> "OutputLock":
        import fcntl
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise ScoreError(f"{self.out}: another `reportguard score` (PID {holder}) is writing this output "
                                 f"(lock {self.path}); wait for it to finish, or stop it") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the previous holder removed the file between our open and our lock
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        except OSError:
            self._release(fd)
            raise
        self.fd = fd
        return self

    def _release(self, fd: int) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            self._release(self.fd)
            self.fd = None


def score(inputs: list[str], output: str | Path, options: ScoreOptions | None = None) -> dict:
    options = options or ScoreOptions()
    out = Path(output)
    files, read_options = check_inputs(inputs, out, options)  # before the bundle loads
    bundle = load_bundle(options.model, threads=options.threads)
    resolve_route(bundle, options.route)  # --route tier2 on a bundle without one: a usage error, before any work
    bundle.check_loadable()  # an unloadable graph or tokenizer fails here, naming the file
    state = run_state(files, bundle, options)
    manifest_path = Path(f"{out}.manifest.json")
    if out.exists() and manifest_path.exists():
        try:
            previous = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = {}
        if previous.get("state") == state:
            print(f"{out}: already complete for these inputs and this model; nothing to do")
            return previous
        print(f"{out}: written by {what_changed(previous.get('state'), state)}; scoring again")
    parts_dir = Path(f"{out}.parts")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with OutputLock(out):
            try:
                return _run(files, out, parts_dir, manifest_path, state, bundle, read_options, options)
            except BaseException:
                _clean_up_after_failure(out, parts_dir)
                raise
    except (OSError, sqlite3.Error) as exc:
        raise _write_failure(exc, out, parts_dir) from exc


# Long: a run's lifecycle in order (resume check, chunks, assembly, manifest) around one cache that must close.
def _run(files: list[Path], out: Path, parts_dir: Path, manifest_path: Path, state: dict,
         bundle: Bundle, read_options: ReadOptions, options: ScoreOptions) -> dict:
    state_path = parts_dir / "state.json"
    if parts_dir.exists():
        try:
            previous = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else None
        except ValueError:
            previous = None
        if previous != state:
            print(f"{parts_dir}: left by {what_changed(previous, state)}; starting over")
            shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    for stale in list(parts_dir.glob("rg-spill-*")) + list(parts_dir.glob(".*.tmp")):  # left by a killed run
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    _write_atomic(state_path, _json_text(state))
    read_options.spill_dir = str(parts_dir)

    cache = TextCache(options.memory_texts, spill_dir=parts_dir)
    try:
        done = sorted(parts_dir.glob("chunk-*.parquet"))
        for part in done:
            cache.load_part(part)
        if done:
            print(f"resuming: {len(done)} chunk(s) already committed, {len(cache)} unique texts cached")

        started = time.perf_counter()
        tap = InputTap(files)
        read_options.on_bytes = tap  # inputs are hashed, and the bar moves, as they are read
        progress = _Progress(tap.progress_total(), options.progress, tap.unit)
        passthrough: list[str] = []
        stats: list[ChunkStats] = []
        for index, chunk in enumerate(iter_chunks(files, read_options)):
            for warning in chunk.warnings:
                progress.write(f"warning: {warning}")
            part = parts_dir / f"chunk-{index:06d}.parquet"
            if part.exists():
                st = ChunkStats(**json.loads((parts_dir / f"chunk-{index:06d}.json").read_text(encoding="utf-8")))
                if st.rows_in != chunk.rows_in or st.accepted != len(chunk.records):
                    raise ScoreError(f"{part}: holds {st.rows_in} rows, but the input's chunk {index} has {chunk.rows_in}; "
                                     f"delete {parts_dir} and score again")
                st.encodings, st.warnings, st.ids_trimmed = chunk.encodings, chunk.warnings, chunk.ids_trimmed
                stats.append(st)
                progress.start_chunk(tap.chunk_weight(chunk))
                progress.finish_chunk()
                continue
            progress.start_chunk(tap.chunk_weight(chunk))
            stats.append(_score_chunk(index, chunk, bundle, cache, options, parts_dir, passthrough, progress))
        progress.close()
        inputs = tap.digests()

        parts = [parts_dir / f"chunk-{s.index:06d}.parquet" for s in stats] or [_empty_part(parts_dir)]
        t0 = time.perf_counter()
        manifest_path.unlink(missing_ok=True)  # a manifest marks a complete OUT: none until this one is
        rows_out = assemble(parts, out)
        _assemble_rejects(parts_dir, stats, Path(f"{out}.rejects.jsonl"))
        manifest = _manifest(state, stats, cache, bundle, out, rows_out, time.perf_counter() - started, time.perf_counter() - t0, len(done))
        manifest = {"inputs": inputs, **manifest}
    finally:
        cache.close()
    _write_atomic(manifest_path, _json_text(manifest))
    shutil.rmtree(parts_dir)
    for warning in manifest["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return manifest


def _clean_up_after_failure(out: Path, parts_dir: Path) -> None:
    """No partial output: temp files go; committed chunks stay (a rerun resumes from them) unless
    there are none, in which case OUT.parts goes too."""
    for tmp in map(temp_path, output_paths(out)):
        tmp.unlink(missing_ok=True)
    if parts_dir.is_dir():
        for stale in list(parts_dir.glob("rg-spill-*")) + list(parts_dir.glob(".*.tmp")):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        if not any(parts_dir.glob("chunk-*.parquet")):
            shutil.rmtree(parts_dir, ignore_errors=True)


def _write_failure(exc: BaseException, out: Path, parts_dir: Path) -> ScoreError:
    """One line naming the file and the cause of a failed write."""
    if isinstance(exc, OSError) and exc.strerror:
        where, cause = exc.filename or out.parent, exc.strerror
    else:
        where, cause = out, " ".join(str(exc).split())[:300] or type(exc).__name__
    kept = len(list(parts_dir.glob("chunk-*.parquet"))) if parts_dir.is_dir() else 0
    resume = f"; {kept} committed chunk(s) kept in {parts_dir}: rerun the same command to resume" if kept else ""
    return ScoreError(f"{where}: cannot write the output: {cause}{resume}")


def _json_text(obj) -> str:
    """JSON as UTF-8 text; lone surrogates (undecodable file names) escaped, so the write can't fail."""
    text = json.dumps(obj, ensure_ascii=False, indent=1)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return json.dumps(obj, indent=1)


def model_input(record: dict) -> tuple[str, str, str]:
    """(first field's text, description, first field's name) that the model reads for a record:
    the title and description, or, for a listing with neither, its shop name."""
    title, description = record["title"], record.get("description") or ""
    if not title.strip() and not description.strip():
        shop = record.get("shop_name") or ""
        if isinstance(shop, str) and shop.strip():
            return shop, "", "shop_name"
    return title, description, "title"


def _prepare(record: dict):
    first, description, name = model_input(record)
    text, fields = prepare(first, description)
    if name != "title":
        fields[0].field = name
    return text, fields


def score_records(records: list[dict], bundle: Bundle, cache: TextCache, options: ScoreOptions,
                  passthrough: list[str] | None = None, on_batch=None) -> tuple[list[dict], dict]:
    """Score accepted records (core.records dicts), in order: the scorer's whole per-row logic.

    Used by the local scorer per chunk and by the Spark engine per partition, so both produce the
    same columns from the same code. `cache` deduplicates by normalised text and is filled with
    every new text. New texts go through `options.route` (serve/tiers.py); with route teacher the
    probabilities are `Bundle.predict_proba`'s, bit for bit. Returns the output rows (with the
    "_key"/"_occlusion" resume columns) and counts/timings, with per row the index of the tier
    that settled its text (`info["row_tiers"]`, the "_tier" resume column) and per tier index the
    rows, new texts and evidence it settled.
    """
    passthrough = [] if passthrough is None else passthrough
    t0 = time.perf_counter()
    prepared = [_prepare(r) for r in records]
    keys = [TextCache.key(text) for text, _ in prepared]
    t1 = time.perf_counter()
    known = cache.get_many(list(dict.fromkeys(keys)))
    new: dict[str, str] = {}
    for (text, _), key in zip(prepared, keys):
        if key not in known and key not in new:
            new[key] = text
    fresh, counts = _score_new(new, bundle, options, on_batch)
    cache.put_many(fresh)
    known.update(fresh)
    t2 = time.perf_counter()
    rows = []
    row_tiers = []
    for record, (text, fields), key in zip(records, prepared, keys):
        probs, occl, tier = known[key]
        row_tiers.append(tier)
        labels = with_derived_labels([x for x, p, t in zip(MODEL_LABELS, probs, bundle.thresholds) if p >= t],
                                     record["title"], record.get("description"), record.get("qualification"))
        evidence = lexicon_evidence(text, fields, set(labels))
        for label, s, e in occl:
            if label in labels:
                ev = span_evidence(label, "occlusion", fields, s, e)
                if ev:
                    evidence.append(ev)
        row = {"listing_id": record["listing_id"], **{c: float(p) for c, p in zip(PROB_COLUMNS, probs)},
               "labels": labels, "decision": decide(labels, probs, bundle),
               "evidence": json.dumps(evidence, ensure_ascii=False), "model_version": bundle.model_version,
               "_key": key, "_occlusion": json.dumps(occl)}
        for column, value in record.items():
            name = passthrough_name(column)
            if name is None:
                continue
            if name not in passthrough:
                passthrough.append(name)
            row[name] = value
        rows.append(row)
    t3 = time.perf_counter()
    info = {"new_texts": len(new), **counts, "row_tiers": row_tiers,
            "rows_by_tier": np.bincount(np.asarray(row_tiers, dtype=np.int64), minlength=len(bundle.tiers) + 1).tolist(),
            "seconds": {"normalise": t1 - t0, "inference": t2 - t1, "labels_and_evidence": t3 - t2}}
    return rows, info


def _score_new(new: dict[str, str], bundle: Bundle, options: ScoreOptions, on_batch) -> tuple[dict, dict]:
    """Cache entries (probabilities, occlusion spans, settling tier) for texts not seen before,
    keyed as `new`, and their counts: truncated texts, new texts and evidence per tier index."""
    n_tiers = len(bundle.tiers) + 1  # the students, then the teacher
    if not new:
        return {}, {"truncated": 0, "texts_by_tier": [0] * n_tiers, "evidence_by_tier": [0] * n_tiers}
    texts = list(new.values())
    routed = route_texts(bundle, texts, options.route, options.batch_size, on_batch=on_batch)
    probs = sigmoid(routed.logits)  # Bundle.predict_proba's own float path: route teacher gives its numbers
    occlusion, via = _occlusion(texts, probs, bundle, options, routed)
    fresh = {key: (probs[k], occlusion[k], int(routed.tier[k])) for k, key in enumerate(new)}
    return fresh, {"truncated": int(sum(routed.truncated)),
                   "texts_by_tier": np.bincount(routed.tier, minlength=n_tiers).tolist(),
                   "evidence_by_tier": np.bincount(via[via >= 0], minlength=n_tiers).tolist()}


def passthrough_name(column: str) -> str | None:
    """The output column that carries input `column`: None for listing_id and the reader's own
    columns; prefixed "input_" where it would clash with a score column or an "_" resume column.

    >>> [passthrough_name(c) for c in ("listing_id", "_line", "title", "labels", "_key")]
    [None, None, 'title', 'input_labels', 'input__key']
    """
    if column in INTERNAL or column == "listing_id":
        return None
    return f"input_{column}" if column in SCORE_COLUMNS or column.startswith("_") else column


def _score_chunk(index: int, chunk: Chunk, bundle: Bundle, cache: TextCache, options: ScoreOptions,
                 parts_dir: Path, passthrough: list[str], progress) -> ChunkStats:
    st = ChunkStats(index, rows_in=chunk.rows_in, accepted=len(chunk.records), rejected=len(chunk.rejects),
                    encodings=chunk.encodings, warnings=chunk.warnings, ids_trimmed=chunk.ids_trimmed)
    # Progress moves by texts scored, as a share of the chunk's weight (rows or bytes read);
    # approximate, and finish_chunk makes it exact.
    per_text = 1 / max(len(chunk.records), 1)
    rows, info = score_records(chunk.records, bundle, cache, options, passthrough,
                               on_batch=lambda n: progress.update(n * per_text))
    st.new_texts, st.truncated = info["new_texts"], info["truncated"]
    st.rows_by_tier, st.texts_by_tier, st.evidence_by_tier = info["rows_by_tier"], info["texts_by_tier"], info["evidence_by_tier"]
    t3 = time.perf_counter()
    # Rejects and stats first, the part file last: its rename commits the chunk.
    _write_atomic(parts_dir / f"chunk-{index:06d}.rejects.jsonl",
                  "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in chunk.rejects))
    table = rows_to_table(rows, [c for c in passthrough if any(c in r for r in rows)] + ["_key", "_occlusion"])
    table = table.append_column("_tier", pa.array(info["row_tiers"], pa.int8()))  # resume: the cache entry's tier
    with atomic_path(parts_dir / f"chunk-{index:06d}.parquet") as tmp:
        pq.write_table(table, tmp)
        st.seconds = dict(info["seconds"], write=time.perf_counter() - t3)
        _write_atomic(parts_dir / f"chunk-{index:06d}.json", json.dumps(asdict(st)))
    progress.finish_chunk()
    return st


def _occlusion(texts: list[str], probs: np.ndarray, bundle: Bundle, options: ScoreOptions,
               routed: Routed | None = None) -> tuple[list[list], np.ndarray]:
    """Per text, [(label, start, end)] of the clause whose removal drops that label most, and the
    index of the tier the occlusion ran through (-1: none).

    Each flagged text's variants go through the cheapest tier whose labels and decision for it
    equal the final ones (serve.tiers.evidence_tiers; the teacher alone under route teacher, or
    without `routed`), all variants of one tier in one batched call; the drop is measured on that
    tier's probabilities."""
    result: list[list] = [[] for _ in texts]
    via = np.full(len(texts), -1, dtype=np.int8)
    if options.attribution != "occlusion":
        return result, via
    teacher = len(bundle.tiers)
    tiers, base = evidence_tiers(bundle, routed, probs) if routed is not None else (np.full(len(texts), teacher), probs)
    jobs: dict[int, list[tuple[int, tuple[int, int]]]] = {}  # tier index -> [(text index, span)]
    variants: dict[int, list[str]] = {}
    for i, text in enumerate(texts):
        if not (probs[i] >= bundle.thresholds).any():
            continue
        spans = clauses(text, options.occlusion_clauses)
        if len(spans) < 2:
            continue  # one clause: removing it removes the listing, which says nothing
        t = int(tiers[i])
        via[i] = t
        jobs.setdefault(t, []).extend((i, s) for s in spans)
        variants.setdefault(t, []).extend(occluded_texts(text, spans))
    best: dict[tuple[int, int], tuple[float, tuple[int, int]]] = {}
    # Under the tiered route the teacher scores its occlusion variants int8 only: the fp32 pass
    # keeps int8 noise from moving a *decision*, and a variant decides nothing, it only ranks a
    # clause. `--route teacher` keeps the fallback, so its evidence stays today's, byte for byte.
    fallback = resolve_route(bundle, options.route) != AUTO
    for t in sorted(jobs):
        occluded = tier_proba(bundle, t, variants[t], options.batch_size, fallback=fallback)
        for (i, span), p in zip(jobs[t], occluded):
            for k in range(len(MODEL_LABELS)):
                if probs[i][k] < bundle.thresholds[k]:
                    continue
                drop = float(base[i][k] - p[k])
                if drop >= options.min_drop and drop > best.get((i, k), (0.0, None))[0]:
                    best[(i, k)] = (drop, span)
    for (i, k), (_, (s, e)) in sorted(best.items()):
        result[i].append([MODEL_LABELS[k], s, e])
    return result, via


def _assemble_rejects(parts_dir: Path, stats: list[ChunkStats], path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", errors="backslashreplace") as out:
            for s in stats:
                out.write((parts_dir / f"chunk-{s.index:06d}.rejects.jsonl").read_text(encoding="utf-8"))


def _manifest(state: dict, stats: list[ChunkStats], cache: TextCache, bundle: Bundle, out: Path, rows_out: int,
              total_seconds: float, assemble_seconds: float, resumed_chunks: int) -> dict:
    rows_in = sum(s.rows_in for s in stats)
    accepted = sum(s.accepted for s in stats)
    rejected = sum(s.rejected for s in stats)
    if rows_in != accepted + rejected or rows_out != accepted:
        raise RuntimeError(f"row counts do not reconcile: in {rows_in}, accepted {accepted}, rejected {rejected}, written {rows_out}")
    route = describe_route(bundle, state["options"]["route"])
    names = tier_names(bundle)
    for what in ("rows_by_tier", "texts_by_tier", "evidence_by_tier"):
        route[what] = {name: sum((getattr(s, what) or [0] * len(names))[k] for s in stats) for k, name in enumerate(names)}
    if sum(route["rows_by_tier"].values()) != accepted:
        raise RuntimeError(f"rows per tier do not reconcile: {route['rows_by_tier']} against {accepted} accepted")
    decisions: dict[str, int] = {}
    labels: dict[str, int] = {}
    for r in iter_run(out, columns=["decision", "labels"]):
        decisions[r["decision"]] = decisions.get(r["decision"], 0) + 1
        for x in r["labels"]:
            labels[x] = labels.get(x, 0) + 1
    encodings: dict[str, int] = {}
    for s in stats:
        for name, n in (s.encodings or {}).items():
            encodings[name] = encodings.get(name, 0) + n
    seconds = {k: sum(s.seconds.get(k, 0.0) for s in stats) for k in ("normalise", "inference", "labels_and_evidence", "write")}
    seconds.update(assemble=assemble_seconds, total=total_seconds)
    return {
        "output": str(out), "rejects": f"{out}.rejects.jsonl",
        "rows": {"in": rows_in, "accepted": accepted, "rejected": rejected, "unique": len(cache),
                 "truncated_texts": sum(s.truncated for s in stats)},
        # rows per input encoding (each line is decoded on its own; "ascii" rows are valid in both)
        "encodings": dict(sorted(encodings.items())),
        "listing_ids_trimmed": sum(s.ids_trimmed for s in stats),
        "warnings": [w for s in stats for w in (s.warnings or [])],
        "decisions": decisions, "labels": labels,
        "model_version": bundle.model_version, "bundle_sha256": bundle.content_sha256,
        "model_path": str(bundle.path.resolve()), "precision": bundle.meta.get("precision"),
        # int8 with fp32 fallback: model passes (texts and occlusion variants) this process re-ran in fp32
        **({"fp32_fallback_passes": bundle.fallback_rows} if bundle.fallback_margin is not None else {}),
        # the route (serve/tiers.py): rows and new texts settled per tier, and the tiers the evidence ran through
        "route": route,
        "normalizer_version": NORMALIZER_VERSION, "threads": bundle.threads,
        "chunks": len(stats), "resumed_chunks": resumed_chunks,
        "seconds": seconds, "rows_per_second": round(rows_in / max(total_seconds, 1e-9), 1),
        "state": state,
    }


def _empty_part(parts_dir: Path) -> Path:
    """A part with the score columns and no rows, for a run with no rows: OUT is then a valid
    empty file (Parquet with the schema, CSV with the header, empty JSONL)."""
    part = parts_dir / "empty.parquet"
    pq.write_table(rows_to_table([], []), part)
    return part


def _write_atomic(path: Path, text: str) -> None:
    # backslashreplace: a stray surrogate must never make a reject unwritable
    write_text_atomic(path, text, errors="backslashreplace")


class _Progress:
    """tqdm with rate and ETA, in rows (all-Parquet input) or bytes read (InputTap.unit); it
    starts at once, before any row is scored. Each chunk has a weight (its rows, or the bytes read
    for it); inference reports fractions of the chunk as batches finish, and finish_chunk tops the
    bar up to the chunk's exact weight."""

    def __init__(self, total: int, enabled: bool, unit: str = "rows"):
        from tqdm import tqdm
        in_bytes = unit == "bytes"
        self.bar = tqdm(total=total, unit="B" if in_bytes else "rows", unit_scale=True, unit_divisor=1024 if in_bytes else 1000,
                        disable=not enabled, dynamic_ncols=True, smoothing=0.1)
        self.bar.refresh()  # shown now, not when the first chunk is done
        self._weight = 0.0  # the chunk in progress
        self._partial = 0.0  # its share reported so far
        self._shown = 0

    def start_chunk(self, weight: float) -> None:
        self._weight, self._partial, self._shown = weight, 0.0, 0

    def update(self, fraction: float) -> None:
        self._partial += fraction * self._weight
        step = int(min(self._partial, self._weight)) - self._shown
        if step > 0:
            self.bar.update(step)
            self._shown += step

    def finish_chunk(self) -> None:
        rest = int(round(self._weight)) - self._shown
        if rest > 0:
            self.bar.update(rest)
        self._weight, self._partial, self._shown = 0.0, 0.0, 0

    def write(self, message: str) -> None:
        """A line on stderr that does not break the bar."""
        self.bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()

