"""`reportguard score INPUT... --output OUT`: the batch scorer.

Per chunk of input rows (chunk boundaries depend only on the input):
1. read and validate rows (core.records): bad rows become rejects with reasons;
2. normalise title and description once, keeping offsets for evidence;
3. deduplicate by normalised text across the whole run: a text seen before reuses its scores;
4. tokenise new texts in batches, sorted by length to minimise padding, and run onnxruntime;
5. calibrated probabilities -> labels (thresholds from the bundle), credential_missing by rule,
   decision (block / review / pass), evidence (lexicon hits + occlusion of clauses);
6. write the chunk as a part file: temp file, then rename. The rename is the commit.

A rerun of the same command skips committed chunks and rebuilds the dedup cache from them, so the
result after `kill -9` and a rerun is identical to an uninterrupted run. When every chunk is
done, the parts are assembled into OUT (temp file + rename), with OUT.rejects.jsonl and
OUT.manifest.json beside it; a rerun of a finished run is a no-op. No torch or transformers is
imported on this path.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from reportguard.core.columns import load_column_map
from reportguard.core.credentials import find_credentials
from reportguard.core.labels import CREDENTIAL_MISSING, MODEL_LABELS, TESTING_SERVICE
from reportguard.core.normalize import NORMALIZER_VERSION
from reportguard.core.records import Chunk, ReadOptions, check_headers, iter_chunks, list_input_files

from .bundle import Bundle, load_bundle, sha256_file
from .evidence import clauses, lexicon_evidence, occluded_texts, prepare, span_evidence
from .outputs import SCORE_COLUMNS, assemble, iter_run, output_format, rows_to_table

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
    occlusion_clauses: int = 4
    min_drop: float = 0.1
    progress: bool = True


@dataclass
class ChunkStats:
    index: int
    rows_in: int = 0
    accepted: int = 0
    rejected: int = 0
    new_texts: int = 0
    truncated: int = 0
    seconds: dict = field(default_factory=dict)


class TextCache:
    """Normalised-text key -> (probabilities, occlusion spans): each unique text is scored once."""

    def __init__(self):
        self.entries: dict[str, tuple[np.ndarray, list]] = {}

    @staticmethod
    def key(model_text: str) -> str:
        return hashlib.blake2b(model_text.encode("utf-8"), digest_size=12).hexdigest()

    def load_part(self, part: Path) -> None:
        table = pq.read_table(part, columns=["_key", "p_report_sale", "p_false_ad", "p_testing_service", "_occlusion"])
        cols = table.to_pydict()
        for k, a, b, c, occ in zip(cols["_key"], cols["p_report_sale"], cols["p_false_ad"], cols["p_testing_service"], cols["_occlusion"]):
            self.entries.setdefault(k, (np.array([a, b, c], dtype=np.float32), json.loads(occ)))


def decide(labels: list[str], probs: np.ndarray, bundle: Bundle) -> str:
    """block: a violation above its block threshold; review: anything else worth a look; pass."""
    for k, name in enumerate(MODEL_LABELS):
        if name in bundle.block_thresholds and probs[k] >= bundle.block_thresholds[name]:
            return "block"
    if [x for x in labels if x != TESTING_SERVICE.name]:
        return "review"  # a violation label, or a testing service that shows no credential
    return "pass"


def run_state(files: list[Path], bundle: Bundle, options: ScoreOptions) -> dict:
    """What a run depends on: a resumed run must match it exactly."""
    return {"inputs": [{"path": str(f), "bytes": f.stat().st_size, "sha256": sha256_file(f)} for f in files],
            "model_version": bundle.model_version, "model_files": bundle.meta["files"],
            "normalizer_version": NORMALIZER_VERSION,
            "options": {k: v for k, v in asdict(options).items() if k in ("chunk_size", "columns", "encoding", "attribution",
                                                                             "occlusion_clauses", "min_drop")}}


def estimate_rows(files: list[Path]) -> int:
    """Rows to expect, for the progress bar: Parquet metadata, else newline count."""
    total = 0
    for f in files:
        if f.name.lower().endswith(".parquet"):
            total += pq.ParquetFile(f).metadata.num_rows
            continue
        opener = gzip.open if f.name.lower().endswith(".gz") else open
        with opener(f, "rb") as fh:
            total += sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 22), b""))
        if ".csv" in f.name.lower() or ".tsv" in f.name.lower():
            total -= 1
    return max(total, 0)


def score(inputs: list[str], output: str | Path, options: ScoreOptions | None = None) -> dict:
    options = options or ScoreOptions()
    out = Path(output)
    output_format(out)  # fail on a bad extension before any work
    bundle = load_bundle(options.model, threads=options.threads)
    files = list_input_files(inputs)
    read_options = ReadOptions(chunk_size=options.chunk_size, encoding=options.encoding,
                               column_map=load_column_map(options.columns))
    check_headers(files, read_options)  # a missing required column stops the run before any work
    state = run_state(files, bundle, options)
    manifest_path = Path(f"{out}.manifest.json")
    if out.exists() and manifest_path.exists():
        previous = json.loads(manifest_path.read_text(encoding="utf-8"))
        if previous.get("state") == state:
            print(f"{out}: already complete for these inputs and this model; nothing to do")
            return previous
    parts_dir = Path(f"{out}.parts")
    state_path = parts_dir / "state.json"
    if parts_dir.exists() and (not state_path.exists() or json.loads(state_path.read_text(encoding="utf-8")) != state):
        print(f"{parts_dir}: left by a run with other inputs, model or options; starting over")
        shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(state_path, json.dumps(state, ensure_ascii=False, indent=1))

    cache = TextCache()
    done = sorted(parts_dir.glob("chunk-*.parquet"))
    for part in done:
        cache.load_part(part)
    if done:
        print(f"resuming: {len(done)} chunk(s) already committed, {len(cache.entries)} unique texts cached")

    started = time.perf_counter()
    progress = _Progress(estimate_rows(files), options.progress)
    passthrough: list[str] = []
    stats: list[ChunkStats] = []
    for index, chunk in enumerate(iter_chunks(files, read_options)):
        part = parts_dir / f"chunk-{index:06d}.parquet"
        if part.exists():
            stats.append(ChunkStats(**json.loads((parts_dir / f"chunk-{index:06d}.json").read_text(encoding="utf-8"))))
            progress.finish_chunk(chunk.rows_in)
            continue
        stats.append(_score_chunk(index, chunk, bundle, cache, options, parts_dir, passthrough, progress))
    progress.close()

    parts = [parts_dir / f"chunk-{s.index:06d}.parquet" for s in stats]
    t0 = time.perf_counter()
    rows_out = assemble(parts, out) if parts else _empty_output(out, bundle)
    _assemble_rejects(parts_dir, stats, Path(f"{out}.rejects.jsonl"))
    manifest = _manifest(state, stats, cache, bundle, out, rows_out, time.perf_counter() - started, time.perf_counter() - t0, len(done))
    _write_atomic(manifest_path, json.dumps(manifest, ensure_ascii=False, indent=1))
    shutil.rmtree(parts_dir)
    rows = manifest["rows"]
    print(f"{out}: {rows['in']} rows in, {rows['accepted']} scored, {rows['rejected']} rejected "
          f"({rows['unique']} unique texts); decisions {manifest['decisions']}; {manifest['seconds']['total']:.1f}s")
    return manifest


def score_records(records: list[dict], bundle: Bundle, cache: TextCache, options: ScoreOptions,
                  passthrough: list[str] | None = None, on_batch=None) -> tuple[list[dict], dict]:
    """Score accepted records (core.records dicts), in order: the scorer's whole per-row logic.

    Used by the local scorer per chunk and by the Spark engine per partition, so both produce the
    same columns from the same code. `cache` deduplicates by normalised text and is filled with
    every new text. Returns the output rows (with the "_key"/"_occlusion" resume columns) and
    counts/timings.
    """
    passthrough = [] if passthrough is None else passthrough
    t0 = time.perf_counter()
    prepared = [prepare(r["title"], r.get("description") or "") for r in records]
    keys = [TextCache.key(text) for text, _ in prepared]
    t1 = time.perf_counter()
    new: dict[str, str] = {}
    for (text, _), key in zip(prepared, keys):
        if key not in cache.entries and key not in new:
            new[key] = text
    truncated = 0
    if new:
        probs, cut = bundle.predict_proba(list(new.values()), options.batch_size, on_batch=on_batch)
        truncated = int(sum(cut))
        occlusion = _occlusion(list(new.values()), probs, bundle, options)
        for k, key in enumerate(new):
            cache.entries[key] = (probs[k], occlusion[k])
    t2 = time.perf_counter()
    rows = []
    for record, (text, fields), key in zip(records, prepared, keys):
        probs, occl = cache.entries[key]
        labels = [x for x, p, t in zip(MODEL_LABELS, probs, bundle.thresholds) if p >= t]
        if TESTING_SERVICE.name in labels and not find_credentials(f"{record['title']}\n{record.get('description') or ''}",
                                                                    record.get("qualification") or ""):
            labels.insert(labels.index(TESTING_SERVICE.name), CREDENTIAL_MISSING.name)
        evidence = lexicon_evidence(text, fields, set(labels))
        for label, s, e in occl:
            if label in labels:
                ev = span_evidence(label, "occlusion", fields, s, e)
                if ev:
                    evidence.append(ev)
        row = {"listing_id": record["listing_id"], "p_report_sale": float(probs[0]), "p_false_ad": float(probs[1]),
               "p_testing_service": float(probs[2]), "labels": labels, "decision": decide(labels, probs, bundle),
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
    info = {"new_texts": len(new), "truncated": truncated,
            "seconds": {"normalise": t1 - t0, "inference": t2 - t1, "labels_and_evidence": t3 - t2}}
    return rows, info


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
    st = ChunkStats(index, rows_in=chunk.rows_in, accepted=len(chunk.records), rejected=len(chunk.rejects))
    # Progress moves by texts scored; scaled to rows it is approximate, and finish_chunk makes it exact.
    per_text = chunk.rows_in / max(len(chunk.records), 1)
    rows, info = score_records(chunk.records, bundle, cache, options, passthrough,
                               on_batch=lambda n: progress.update(n * per_text))
    st.new_texts, st.truncated = info["new_texts"], info["truncated"]
    t3 = time.perf_counter()
    # Rejects and stats first, the part file last: its rename commits the chunk.
    _write_atomic(parts_dir / f"chunk-{index:06d}.rejects.jsonl",
                  "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in chunk.rejects))
    table = rows_to_table(rows, [c for c in passthrough if any(c in r for r in rows)] + ["_key", "_occlusion"])
    tmp = parts_dir / f".chunk-{index:06d}.parquet.tmp"
    pq.write_table(table, tmp)
    st.seconds = dict(info["seconds"], write=time.perf_counter() - t3)
    _write_atomic(parts_dir / f"chunk-{index:06d}.json", json.dumps(asdict(st)))
    tmp.replace(parts_dir / f"chunk-{index:06d}.parquet")
    progress.finish_chunk(chunk.rows_in)
    return st


def _occlusion(texts: list[str], probs: np.ndarray, bundle: Bundle, options: ScoreOptions) -> list[list]:
    """Per text, [(label, start, end)] of the clause whose removal drops that label most."""
    result: list[list] = [[] for _ in texts]
    if options.attribution != "occlusion":
        return result
    jobs = []  # (text index, span)
    variants = []
    for i, text in enumerate(texts):
        if not (probs[i] >= bundle.thresholds).any():
            continue
        spans = clauses(text, options.occlusion_clauses)
        if len(spans) < 2:
            continue  # one clause: removing it removes the listing, which says nothing
        jobs += [(i, s) for s in spans]
        variants += occluded_texts(text, spans)
    if not variants:
        return result
    occluded, _ = bundle.predict_proba(variants, options.batch_size)
    best: dict[tuple[int, int], tuple[float, tuple[int, int]]] = {}
    for (i, span), p in zip(jobs, occluded):
        for k in range(len(MODEL_LABELS)):
            if probs[i][k] < bundle.thresholds[k]:
                continue
            drop = float(probs[i][k] - p[k])
            if drop >= options.min_drop and drop > best.get((i, k), (0.0, None))[0]:
                best[(i, k)] = (drop, span)
    for (i, k), (_, (s, e)) in sorted(best.items()):
        result[i].append([MODEL_LABELS[k], s, e])
    return result


def _assemble_rejects(parts_dir: Path, stats: list[ChunkStats], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for s in stats:
            out.write((parts_dir / f"chunk-{s.index:06d}.rejects.jsonl").read_text(encoding="utf-8"))
    tmp.replace(path)


def _manifest(state: dict, stats: list[ChunkStats], cache: TextCache, bundle: Bundle, out: Path, rows_out: int,
              total_seconds: float, assemble_seconds: float, resumed_chunks: int) -> dict:
    rows_in = sum(s.rows_in for s in stats)
    accepted = sum(s.accepted for s in stats)
    rejected = sum(s.rejected for s in stats)
    if rows_in != accepted + rejected or rows_out != accepted:
        raise RuntimeError(f"row counts do not reconcile: in {rows_in}, accepted {accepted}, rejected {rejected}, written {rows_out}")
    decisions: dict[str, int] = {}
    labels: dict[str, int] = {}
    for r in iter_run(out, columns=["decision", "labels"]):
        decisions[r["decision"]] = decisions.get(r["decision"], 0) + 1
        for x in r["labels"]:
            labels[x] = labels.get(x, 0) + 1
    seconds = {k: sum(s.seconds.get(k, 0.0) for s in stats) for k in ("normalise", "inference", "labels_and_evidence", "write")}
    seconds.update(assemble=assemble_seconds, total=total_seconds)
    return {
        "output": str(out), "rejects": f"{out}.rejects.jsonl",
        "rows": {"in": rows_in, "accepted": accepted, "rejected": rejected, "unique": len(cache.entries),
                 "truncated_texts": sum(s.truncated for s in stats)},
        "decisions": decisions, "labels": labels,
        "model_version": bundle.model_version, "model_path": str(bundle.path.resolve()), "precision": bundle.meta.get("precision"),
        # int8 with fp32 fallback: model passes (texts and occlusion variants) this process re-ran in fp32
        **({"fp32_fallback_passes": bundle.fallback_rows} if bundle.fallback_margin is not None else {}),
        "normalizer_version": NORMALIZER_VERSION, "threads": bundle.threads,
        "chunks": len(stats), "resumed_chunks": resumed_chunks,
        "seconds": seconds, "rows_per_second": round(rows_in / max(total_seconds, 1e-9), 1),
        "state": state,
    }


def _empty_output(out: Path, bundle: Bundle) -> int:
    table = rows_to_table([], [])
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp)
    assemble([tmp], out)
    tmp.unlink()
    return 0


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class _Progress:
    """tqdm in rows with rows/s and ETA. Inference reports fractions of a chunk as batches finish;
    finish_chunk tops the bar up to the chunk's exact row count."""

    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm
        self.bar = tqdm(total=total, unit="rows", unit_scale=True, disable=not enabled, dynamic_ncols=True, smoothing=0.1)
        self._partial = 0.0  # rows reported so far for the chunk in progress
        self._shown = 0

    def update(self, n: float) -> None:
        self._partial += n
        step = int(self._partial) - self._shown
        if step > 0:
            self.bar.update(step)
            self._shown += step

    def finish_chunk(self, rows: int) -> None:
        if rows > self._shown:
            self.bar.update(rows - self._shown)
        self._partial, self._shown = 0.0, 0

    def close(self) -> None:
        self.bar.close()

