"""`reportguard bench route`: the tiered route against the teacher alone, end to end, in one run.

Issue 14, "Measured, in make bench". Two workloads, written as JSONL dumps of corpus-like rows
(listing_id, title, description, shop_name, qualification):
- (a) `corpus_mix`: 2,000 unique corpus-mix listings (data/labelled test, then validation, then
  train, first occurrence of each scorer text), gold labels from the corpus;
- (b) `prevalence`: a realistic-prevalence dump: the held-out ordinary listings
  (data/background/test.jsonl), plus 1% violations (data/labelled/test.jsonl rows labelled
  report_sale or false_ad), with 30% of rows reposting an earlier row's text under a new
  listing_id (~2,600 rows from 1,795 ordinary listings).

Variants, each a `reportguard score` subprocess end to end (process start, bundle load, reading,
dedup, routing, evidence, writing), the default command (`--attribution occlusion`):
`--route auto` (the shipped route), `--route teacher`, `--route tier1` / `--route tier2` (when the
bundle has them); plus the transformers pipeline (bench/scorer.py's pipeline worker on the
workload's unique texts: model time only, no evidence, no output). Every variant of both workloads
runs in each of `rounds` interleaved rounds, so a slow phase of a shared machine hits all alike;
each figure is the variant's median round. Per variant: listings/s (rows / wall seconds of the
subprocess), its ratio to `--route teacher` (per round and median), the share of rows each tier
settled (the manifest's `route.rows_by_tier`), macro-F1 against gold, agreement with `--route
teacher` (label sets and decisions, row by row), false alarms on the ordinary rows of (b), and peak
RSS (GNU time's maximum resident set size of the subprocess).

Per tier, measured model-only in its own subprocess on each workload's unique texts: FLOPs per
listing (tier 1: the bucket rows it gathers, 2 x buckets touched x d per window, plus its hidden
layer; tier 2 and the teacher: scorer.model_flops over their token windows) and the achieved
GFLOP/s as a share of the fp32 matmul peak measured in the same run (scorer.matmul_peak).

Writes out_dir/bench_route.{json,md} and, when out_dir/bench.md exists (`reportguard bench` ran
first, as in `make bench`), replaces its "Tiered route" section with the headline numbers.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from reportguard.core import paths
from reportguard.core.labels import MODEL_LABELS

from .scorer import BATCH, _run_worker, matmul_peak, model_flops

#: The dump's columns (as the corpus rows spell them).
FIELDS = ("listing_id", "title", "description", "shop_name", "qualification")
#: Labels that make a row a violation (workload b's gold, and a false alarm on an ordinary row).
VIOLATIONS = ("report_sale", "false_ad")
#: The score variants, in run order; tier routes run only when the bundle has that tier.
ROUTES = ("auto", "teacher", "tier1", "tier2")
PIPELINE = "pipeline"
TIME = "/usr/bin/time"
SECTION = "## Tiered route"


@dataclass
class RouteBenchOptions:
    """What `reportguard bench route` runs; the defaults are the issue's workloads."""
    rounds: int = 2
    corpus_listings: int = 2000  # workload (a): unique corpus-mix listings
    ordinary: int | None = None  # workload (b): held-out ordinary listings used (None: all 1,795)
    violation_share: float = 0.01  # of (b)'s unique listings
    repost_share: float = 0.30  # of (b)'s rows
    attribution: str = "occlusion"  # the default command: evidence included
    pipeline: bool = True  # also the transformers pipeline
    peak_seconds: float = 2.0  # how long the matmul peak is timed
    seed: int = 0
    work_dir: str | None = None  # dumps and outputs (kept when given; else a temp folder, removed)
    workloads: tuple[str, ...] = ("corpus_mix", "prevalence")  # which of the two to run (tests run one)


@dataclass
class Workload:
    """A dump and what it is measured against: per row gold model labels and whether the row is an
    ordinary listing (workload b; None for a), and the scorer text per row (dedup key)."""
    name: str
    description: str
    rows: list[dict]
    gold: list[list[str]]
    texts: list[str]
    ordinary: list[bool] | None = None
    params: dict = field(default_factory=dict)

    @property
    def unique_texts(self) -> list[str]:
        return list(dict.fromkeys(self.texts))

    def write(self, folder: Path) -> tuple[Path, Path]:
        """The dump (JSONL) and its unique texts (JSON list, for the pipeline and the tier workers)."""
        dump, texts = folder / f"{self.name}.jsonl", folder / f"{self.name}.texts.json"
        dump.write_text("".join(json.dumps({k: r.get(k) or "" for k in FIELDS}, ensure_ascii=False) + "\n" for r in self.rows),
                        encoding="utf-8")
        texts.write_text(json.dumps(self.unique_texts, ensure_ascii=False), encoding="utf-8")
        return dump, texts


# --- workloads -----------------------------------------------------------------------------------

def scorer_text(row: dict) -> str:
    """The normalised text `reportguard score` reads for a row (and deduplicates on)."""
    from reportguard.serve.evidence import prepare
    from reportguard.serve.score import model_input
    first, description, _ = model_input({"title": row.get("title") or "", "description": row.get("description") or "",
                                         "shop_name": row.get("shop_name") or ""})
    return prepare(first, description)[0]


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def corpus_mix(n: int = 2000) -> Workload:
    """(a) The first `n` unique corpus listings, test then validation then train (as `make bench`
    picks its texts), with their corpus labels as gold."""
    rows, texts, seen = [], [], set()
    for split in ("test", "validation", "train"):
        for r in _read_jsonl(paths.labelled_dir() / f"{split}.jsonl"):
            text = scorer_text(r)
            if text in seen:
                continue
            seen.add(text)
            rows.append(r)
            texts.append(text)
            if len(rows) == n:
                break
        if len(rows) == n:
            break
    return Workload("corpus_mix", f"{len(rows):,} unique corpus-mix listings (data/labelled test, validation, train)",
                    rows, [list(r.get("labels") or []) for r in rows], texts, None, {"listings": n})


def prevalence(ordinary: int | None = None, violation_share: float = 0.01, repost_share: float = 0.30, seed: int = 0) -> Workload:
    """(b) Held-out ordinary listings plus `violation_share` violations among the unique listings,
    shuffled, with `repost_share` of all rows reposting an earlier row's text under a new id."""
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    originals: list[tuple[dict, str, bool]] = []  # (row, scorer text, ordinary)
    for r in _read_jsonl(paths.data_dir() / "background" / "test.jsonl")[:ordinary]:
        text = scorer_text(r)
        if text not in seen:
            seen.add(text)
            originals.append((r, text, True))
    n_ordinary = len(originals)
    candidates = []
    for r in _read_jsonl(paths.labelled_dir() / "test.jsonl"):
        text = scorer_text(r)
        if set(r.get("labels") or []) & set(VIOLATIONS) and text not in seen:
            seen.add(text)
            candidates.append((r, text, False))
    n_violations = min(len(candidates), max(1, round(n_ordinary * violation_share / (1 - violation_share))))
    originals += [candidates[i] for i in sorted(rng.choice(len(candidates), n_violations, replace=False))]
    originals = [originals[i] for i in rng.permutation(len(originals))]
    total = round(len(originals) / (1 - repost_share))
    reposts = set(rng.choice(np.arange(1, total), total - len(originals), replace=False).tolist())
    rows, placed = [], 0
    for position in range(total):
        if position in reposts:  # an earlier original's text under a new id
            row, text, is_ordinary = originals[int(rng.integers(0, placed))]
            row = dict(row, listing_id=f"{row['listing_id']}-r{position}")
        else:
            row, text, is_ordinary = originals[placed]
            placed += 1
        rows.append((row, text, is_ordinary))
    return Workload("prevalence", f"{n_ordinary:,} held-out ordinary listings + {n_violations} violations "
                                  f"({violation_share:.0%} of unique listings), {total - len(originals):,} reposts "
                                  f"({repost_share:.0%} of {total:,} rows)",
                    [r for r, _, _ in rows], [[] if o else list(r["labels"]) for r, _, o in rows], [t for _, t, _ in rows],
                    [o for _, _, o in rows],
                    {"ordinary": n_ordinary, "violations": n_violations, "reposts": total - len(originals), "rows": total,
                     "violation_share": violation_share, "repost_share": repost_share, "seed": seed})


# --- variants (each in its own process) ----------------------------------------------------------

def score_variant(route: str, dump: Path, bundle: Path, work: Path, threads: int, attribution: str) -> dict:
    """`reportguard score DUMP --route ROUTE` as a subprocess: wall seconds, the manifest, each
    row's labels and decision (by listing_id), and the process's peak RSS (GNU time, when present)."""
    target = work / f"{dump.stem}-{route}.parquet"
    for stale in (target, Path(f"{target}.manifest.json"), Path(f"{target}.rejects.jsonl")):
        stale.unlink(missing_ok=True)  # else the scorer finds the run complete and does nothing
    shutil.rmtree(f"{target}.parts", ignore_errors=True)
    rss_file = work / f"{dump.stem}-{route}.rss"
    cmd = [sys.executable, "-m", "reportguard.cli", "score", str(dump), "--output", str(target), "--model", str(bundle),
           "--threads", str(threads), "--attribution", attribution, "--route", route, "--quiet"]
    timed = Path(TIME).exists()
    if timed:
        cmd = [TIME, "-o", str(rss_file), "-f", "%M", *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"reportguard score --route {route} on {dump} failed: {proc.stderr.strip()[-2000:]}")
    manifest = json.loads(Path(f"{target}.manifest.json").read_text(encoding="utf-8"))
    from reportguard.serve.outputs import iter_run
    scored = {r["listing_id"]: (r["labels"], r["decision"]) for r in iter_run(target, columns=["listing_id", "labels", "decision"])}
    rss = float(rss_file.read_text().split()[-1]) / 1024 if timed else None
    return {"seconds": seconds, "manifest": {k: manifest.get(k) for k in ("rows", "route", "seconds", "decisions", "precision")},
            "scored": scored, "peak_rss_mb": rss}


def pipeline_variant(bundle: Path, texts_file: Path, threads: int) -> dict:
    """The transformers pipeline on the unique texts (bench/scorer.py's worker, its own process)."""
    return _run_worker(PIPELINE, bundle, texts_file, None, threads)


def tier_worker(name: str, bundle_dir: str, texts_file: str, threads: int) -> dict:
    """One tier (or the teacher) alone on the texts, model only: seconds after a warm-up batch,
    and the FLOPs it did (run as `python -m reportguard.train.bench route-worker`)."""
    from reportguard.serve.bundle import load_bundle
    from reportguard.serve.tiers import tier_logits, tier_names
    texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    bundle = load_bundle(bundle_dir, threads=threads)
    index = tier_names(bundle).index(name)
    tier_logits(bundle, index, texts[:BATCH], BATCH)  # warm-up (and sessions opened), not timed
    bundle.fallback_rows = 0
    t0 = time.perf_counter()
    tier_logits(bundle, index, texts, BATCH)
    seconds = time.perf_counter() - t0
    flops = tier_flops(bundle, index, texts)
    # the teacher's int8 pass re-runs its near-a-cut texts in fp32: count those texts' FLOPs again (at the mean)
    executed = flops * (1 + bundle.fallback_rows / max(len(texts), 1))
    return {"tier": name, "texts": len(texts), "seconds": seconds, "flops": flops, "flops_executed": executed,
            "fallback_rows": bundle.fallback_rows, "kind": "teacher" if index == len(bundle.tiers) else bundle.tiers[index].kind}


def tier_flops(bundle, index: int, texts: list[str]) -> float:
    """FLOPs one pass of tier `index` (len(tiers): the teacher) does on `texts`.

    Transformers: scorer.model_flops over every token window (the teacher's layers and sizes from
    hf/config.json; tier 2's layer count from its entry's `layers`, its sizes from its entry if
    given, else the teacher's). Hashed n-grams: per character window, 2 x distinct buckets x d
    (the gathered, scaled weight rows), plus 2 x d x labels for a hidden layer; the hashing itself
    is integer work and not counted."""
    from reportguard.core.encoding import encode
    if index < len(bundle.tiers) and bundle.tiers[index].kind == "hashed_ngrams":
        from reportguard.core.hashed_ngrams import bag, windows
        model = bundle.tier_model(index)
        cfg, d = model.config, model.weights.shape[1]
        head = 2 * d * model.w2.shape[1] if model.w2 is not None else 0
        return float(sum(2 * len(bag(w, cfg)[0]) * d + head for t in texts for w in windows(t, cfg["window_chars"], cfg["stride_chars"])))
    cfg = json.loads((bundle.path / "hf" / "config.json").read_text(encoding="utf-8"))
    hidden, layers, intermediate = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
    if index < len(bundle.tiers):
        entry = bundle.tiers[index].config
        layers = len(entry["layers"]) if isinstance(entry.get("layers"), list) else int(entry.get("layers") or layers)
        hidden, intermediate = entry.get("hidden_size", hidden), entry.get("intermediate_size", intermediate)
    lengths = [len(ids) for ids in encode(bundle.tokenizer, texts, bundle.spec).ids]
    return model_flops(lengths, hidden, layers, intermediate)


def _run_tier_worker(name: str, bundle: Path, texts_file: Path, threads: int) -> dict:
    out = texts_file.parent / f"tier-{name}.json"
    subprocess.run([sys.executable, "-m", "reportguard.train.bench", "route-worker", name, str(bundle), str(texts_file), str(out),
                    "--threads", str(threads)], check=True)
    result = json.loads(out.read_text())
    out.unlink()
    return result


# --- the run -------------------------------------------------------------------------------------

# Long because it is the run in order: workloads, variants, interleaved rounds, then the summary.
def run(bundle: Path, out_dir: Path, threads: int, options: RouteBenchOptions | None = None) -> dict:
    """The route benchmark (module docstring): writes out_dir/bench_route.{json,md}, updates
    out_dir/bench.md's "Tiered route" section when that file exists, and returns the summary."""
    from reportguard.serve.bundle import load_bundle
    from reportguard.serve.tiers import resolve_route
    options = options or RouteBenchOptions()
    bundle = bundle.resolve()
    b = load_bundle(bundle, threads=threads)
    work = Path(options.work_dir) if options.work_dir else Path(tempfile.mkdtemp(prefix="rg-bench-route-"))
    work.mkdir(parents=True, exist_ok=True)
    workloads = [w for w in (corpus_mix(options.corpus_listings) if "corpus_mix" in options.workloads else None,
                             prevalence(options.ordinary, options.violation_share, options.repost_share, options.seed)
                             if "prevalence" in options.workloads else None) if w is not None]
    files = {w.name: w.write(work) for w in workloads}
    tiers = [t.name for t in b.tiers]
    routes = [r for r in ROUTES if r in ("auto", "teacher") or r in tiers]
    skipped = {r: f"the bundle has no {r} (its tiers: {', '.join(tiers) or 'none'})" for r in ROUTES if r not in routes}
    if not options.pipeline:
        skipped[PIPELINE] = "not run (--no-pipeline)"
    elif not (bundle / "hf" / "config.json").exists():
        skipped[PIPELINE] = "the bundle has no hf/ checkpoint"
    variants = routes + ([PIPELINE] if PIPELINE not in skipped else [])
    load_before = os.getloadavg()[0]
    peak = matmul_peak(threads, seconds=options.peak_seconds)
    runs: dict[str, dict[str, list[dict]]] = {w.name: {v: [] for v in variants} for w in workloads}
    tier_runs: dict[str, dict[str, list[dict]]] = {w.name: {t: [] for t in tiers + ["teacher"]} for w in workloads}
    for round_no in range(options.rounds):
        for w in workloads:
            dump, texts_file = files[w.name]
            for variant in variants[round_no % len(variants):] + variants[:round_no % len(variants)]:  # rotated each round
                print(f"bench route: round {round_no + 1}/{options.rounds} {w.name} {variant} ...", flush=True)
                if variant == PIPELINE:
                    runs[w.name][variant].append(pipeline_variant(bundle, texts_file, threads))
                else:
                    runs[w.name][variant].append(score_variant(variant, dump, bundle, work, threads, options.attribution))
            for name in tier_runs[w.name]:
                print(f"bench route: round {round_no + 1}/{options.rounds} {w.name} model-only {name} ...", flush=True)
                tier_runs[w.name][name].append(_run_tier_worker(name, bundle, texts_file, threads))
    summary = {
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "threads": threads,
                    "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]}},
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "bundle": b.model_version, "bundle_path": str(bundle), "precision": b.meta.get("precision"),
        "route_default": (b.meta.get("route") or {}).get("default", "teacher"), "auto_runs": resolve_route(b, "auto"),
        "route_reason": (b.meta.get("route") or {}).get("reason"), "tiers": tiers,
        "attribution": options.attribution, "rounds": options.rounds, "options": asdict(options),
        "matmul_peak_gflops": peak, "variants_run": variants, "skipped": skipped,
        "workloads": {w.name: _workload_summary(w, files[w.name][0], runs[w.name], b) for w in workloads},
        "tiers_model_only": {w.name: {name: _tier_summary(rs, peak) for name, rs in tier_runs[w.name].items()} for w in workloads},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_route.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (out_dir / "bench_route.md").write_text(render(summary), encoding="utf-8")
    update_bench_md(out_dir / "bench.md", summary)
    print(render(summary))
    if not options.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- summaries -----------------------------------------------------------------------------------

def _median(rs: list[dict]) -> dict:
    """The median round (the slower middle one for an even count), for what is not a time."""
    return rs[int(np.argsort([r["seconds"] for r in rs])[len(rs) // 2])]


def _workload_summary(w: Workload, dump: Path, runs: dict[str, list[dict]], bundle) -> dict:
    """Per variant of one workload: speed (median round), tiers, quality against gold and teacher,
    peak RSS; and the workload's own description."""
    n = len(w.rows)
    ids = [r["listing_id"] for r in w.rows]
    teacher_rounds = [r["seconds"] for r in runs["teacher"]]
    predictions = {v: _predictions(v, rs[-1], w, bundle) for v, rs in runs.items()}
    variants = {}
    for v, rs in runs.items():
        med = _median(rs)
        seconds = [r["seconds"] for r in rs]
        median_seconds = float(np.median(seconds))
        entry = {"listings_per_second": n / median_seconds, "seconds": median_seconds, "round_seconds": seconds,
                 **_after_start(n, rs, runs["teacher"]),
                 "ratio_vs_teacher": float(np.median(teacher_rounds)) / median_seconds,
                 "round_ratios_vs_teacher": [t / s for t, s in zip(teacher_rounds, seconds)],
                 "peak_rss_mb": max((r["peak_rss_mb"] for r in rs if r.get("peak_rss_mb") is not None), default=None),
                 "evidence": v != PIPELINE,
                 **_quality(w, *predictions[v], *predictions["teacher"])}
        if v == PIPELINE:
            entry["rows_by_tier"], entry["reconciled"] = None, {"ok": len(predictions[v][0]) == n}
        else:
            entry |= _tiers_and_reconciliation(w, ids, rs, med)
        variants[v] = entry
    return {"description": w.description, "rows": n, "unique_texts": len(w.unique_texts), "params": w.params,
            "dump_sha256": hashlib.sha256(dump.read_bytes()).hexdigest(), "gold": _gold_note(w), "variants": variants}


def _after_start(n: int, rs: list[dict], teacher: list[dict]) -> dict:
    """Listings/s once the process is up: rows / the scorer's own timed seconds (manifest
    `seconds.total`: reading to assembly; no interpreter start, imports, bundle load and hashing,
    or graph sessions). What a campaign-sized dump sees, where start-up is paid once; on a dump of
    a few thousand rows start-up is seconds of the end-to-end figure. None for the pipeline."""
    inside = [((r.get("manifest") or {}).get("seconds") or {}).get("total") for r in rs]
    inside_teacher = [((r.get("manifest") or {}).get("seconds") or {}).get("total") for r in teacher]
    if any(x is None for x in inside + inside_teacher):
        return {"listings_per_second_after_start": None, "ratio_vs_teacher_after_start": None}
    return {"listings_per_second_after_start": n / float(np.median(inside)), "seconds_after_start": float(np.median(inside)),
            "start_seconds": float(np.median([r["seconds"] - x for r, x in zip(rs, inside)])),
            "ratio_vs_teacher_after_start": float(np.median(inside_teacher)) / float(np.median(inside))}


def _tiers_and_reconciliation(w: Workload, ids: list[str], rs: list[dict], med: dict) -> dict:
    """The manifest's route account, and whether every count reconciles with the dump: rows in ==
    accepted == rows written == the sum settled per tier, unique texts as built, and the same
    labels and decisions in every round."""
    manifest = med["manifest"]
    route = manifest.get("route") or {}
    rows_by_tier = {k: int(v) for k, v in (route.get("rows_by_tier") or {}).items()}
    accepted = manifest["rows"]["accepted"]
    checks = {"rows_in": manifest["rows"]["in"] == len(ids), "accepted": accepted == len(ids),
              "written": sorted(med["scored"]) == sorted(ids), "rows_by_tier": sum(rows_by_tier.values()) == accepted,
              "unique_texts": manifest["rows"]["unique"] == len(w.unique_texts),
              "same_in_every_round": all(r["scored"] == rs[0]["scored"] for r in rs)}
    return {"route": {k: route.get(k) for k in ("requested", "used", "tiers", "reason") if k in route},
            "rows_by_tier": rows_by_tier, "share_by_tier": {k: v / max(accepted, 1) for k, v in rows_by_tier.items()},
            "texts_by_tier": route.get("texts_by_tier"), "evidence_by_tier": route.get("evidence_by_tier"),
            "scorer_seconds": manifest.get("seconds"), "reconciled": {"ok": all(checks.values()), **checks}}


def _predictions(variant: str, result: dict, w: Workload, bundle) -> tuple[list[list[str]], list[str]]:
    """Per dump row, (labels, decision) of a variant: read from the scored output, or for the
    pipeline its unique texts' scores through the bundle's temperature, thresholds and rules."""
    if variant != PIPELINE:
        scored = result["scored"]
        return [list(scored[r["listing_id"]][0]) for r in w.rows], [scored[r["listing_id"]][1] for r in w.rows]
    from reportguard.core.calibration import sigmoid
    from reportguard.core.credentials import with_derived_labels
    from reportguard.serve.score import decide
    raw = np.clip(np.asarray(result["scores"], dtype=np.float64), 1e-7, 1 - 1e-7)
    probs = sigmoid(np.log(raw / (1 - raw)) / bundle.temperature)
    by_text = dict(zip(w.unique_texts, probs))
    labels, decisions = [], []
    for row, text in zip(w.rows, w.texts):
        p = by_text[text]
        names = with_derived_labels([x for x, q, t in zip(MODEL_LABELS, p, bundle.thresholds) if q >= t],
                                    row.get("title") or "", row.get("description"), row.get("qualification"))
        labels.append(names)
        decisions.append(decide(names, p, bundle))
    return labels, decisions


def _quality(w: Workload, labels: list[list[str]], decisions: list[str], t_labels: list[list[str]], t_decisions: list[str]) -> dict:
    """macro-F1 against gold (a: over the model labels; b: violation vs ordinary, with the label
    macro-F1 beside it), agreement with the teacher row by row, and false alarms on ordinary rows."""
    from sklearn.metrics import f1_score

    from ..metrics import per_label, to_matrix
    out: dict = {"label_set_agreement_with_teacher": float(np.mean([sorted(a) == sorted(b) for a, b in zip(labels, t_labels)])),
                 "decision_agreement_with_teacher": float(np.mean([a == b for a, b in zip(decisions, t_decisions)])),
                 "decisions_moved_vs_teacher": int(sum(a != b for a, b in zip(decisions, t_decisions))),
                 "label_macro_f1": per_label(to_matrix(w.gold), to_matrix(labels))["macro_f1"]}
    if w.ordinary is None:
        out["macro_f1"] = out["label_macro_f1"]
        return out
    gold = [bool(set(g) & set(VIOLATIONS)) for g in w.gold]
    flagged = [bool(set(x) & set(VIOLATIONS)) for x in labels]
    t_flagged = [bool(set(x) & set(VIOLATIONS)) for x in t_labels]
    ordinary = np.flatnonzero(w.ordinary)
    out["macro_f1"] = float(f1_score(gold, flagged, average="macro", labels=[False, True], zero_division=0))
    out["violation_recall"] = float(np.mean([f for f, g in zip(flagged, gold) if g])) if any(gold) else None
    out["false_alarms"] = int(sum(flagged[i] for i in ordinary))
    out["false_alarm_rate"] = out["false_alarms"] / max(len(ordinary), 1)
    out["teacher_false_alarms"] = int(sum(t_flagged[i] for i in ordinary))
    out["ordinary_rows"] = len(ordinary)
    return out


def _gold_note(w: Workload) -> str:
    if w.ordinary is None:
        return "corpus labels; macro-F1 over the model labels (report_sale, false_ad, testing_service), every row"
    return ("violation (report_sale or false_ad) vs ordinary per row, reposts included; macro-F1 over the two classes "
            "(label_macro_f1: over the model labels, ordinary rows clean)")


def _tier_summary(rs: list[dict], peak: float) -> dict:
    """A tier's model-only median round: listings/s, FLOPs per listing, achieved GFLOP/s and its
    share of the matmul peak."""
    med = _median(rs)
    seconds = float(np.median([r["seconds"] for r in rs]))
    gflops = med["flops_executed"] / seconds / 1e9
    return {"kind": med["kind"], "texts": med["texts"], "seconds": seconds, "round_seconds": [r["seconds"] for r in rs],
            "listings_per_second": med["texts"] / seconds, "flops_per_listing": med["flops"] / max(med["texts"], 1),
            "fallback_rows": med["fallback_rows"], "achieved_gflops": gflops, "share_of_matmul_peak": gflops / peak,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs)}


# --- reports -------------------------------------------------------------------------------------

def _f(x, spec: str = ".3f", none: str = "–") -> str:
    return none if x is None else format(x, spec)


def _si(x: float) -> str:
    """FLOPs in a readable unit: 1.23 G, 4.56 M, 7.8 k."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g}"


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%" if share >= 0.001 else f"{100 * share:.2g}%"


# Long because it is one table per workload and one for the tiers, in reading order, with their notes.
def render(s: dict) -> str:
    m = s["machine"]
    tiers = s["tiers"] + ["teacher"]
    lines = ["# Tiered route benchmark", "",
             f"`reportguard bench route` ({s['date']}) on **{m['cores']} cores** ({m['cpu']}), {m['threads']} threads; bundle "
             f"`{s['bundle']}` ({s['precision']}); student tiers: {', '.join(s['tiers']) or 'none'}; `route.default` "
             f"{s['route_default']}, so `--route auto` runs **{s['auto_runs']}**"
             + (f" ({s['route_reason']})" if s.get("route_reason") else "") + ".", "",
             f"**All variants of both workloads ran in the same run**, in {s['rounds']} interleaved round(s) (every variant "
             "once per round, in turn, the order rotated by one each round), so a slow phase of this shared machine hits them alike; each figure is the variant's "
             "median round (seconds: the median of the rounds'). Each `--route` variant is `reportguard score DUMP --route R --attribution "
             f"{s['attribution']}` as its own process, end to end: listings/s = dump rows / wall seconds of that process "
             "(start, bundle load, reading, dedup, routing, evidence, writing); *after start-up*: dump rows / the scorer's own "
             "timed seconds from the manifest (reading to assembly, no interpreter start, imports, bundle hashing or graph "
             "sessions), what a campaign-sized dump sees, with the start-up seconds it leaves out. Peak RSS: GNU time's maximum resident set of "
             f"that process. fp32 matmul peak measured in this run: **{s['matmul_peak_gflops']:.0f} GFLOP/s**. "
             f"1-minute load average {m['load_average_1min']['start']:.1f} at the start, {m['load_average_1min']['end']:.1f} at "
             f"the end (above {m['cores']}: other work shared these cores).", ""]
    if s["skipped"]:
        lines += ["Not run: " + "; ".join(f"`{k}`: {v}" for k, v in s["skipped"].items()) + ".", ""]
    for name, w in s["workloads"].items():
        lines += [f"## Workload {'(a)' if name == 'corpus_mix' else '(b)'} `{name}`: {w['description']}", "",
                  f"{w['rows']:,} rows, {w['unique_texts']:,} unique texts. Gold: {w['gold']}.", "",
                  "| variant | evidence | listings/s | × teacher (per round) | after start-up: listings/s (× teacher), start s | settled " + " / ".join(tiers)
                  + " | macro-F1 | label sets = teacher | decisions = teacher | false alarms (teacher) | peak RSS (MB) | rows reconcile |",
                  "|---|---|---:|---|---|---|---:|---:|---:|---:|---:|---|"]
        for v, r in w["variants"].items():
            share = r.get("share_by_tier")
            settled = "–" if share is None else " / ".join(f"{share.get(t, 0.0):.1%}" for t in tiers)
            per_round = ", ".join(f"{x:.2f}" for x in r["round_ratios_vs_teacher"])
            alarms = "–" if r.get("false_alarms") is None else f"{r['false_alarms']} of {r['ordinary_rows']:,} ({r['teacher_false_alarms']})"
            label = {"auto": "`--route auto` (shipped)", PIPELINE: "transformers pipeline"}.get(v, f"`--route {v}`")
            lines.append(f"| {label} | {'yes' if r['evidence'] else '**none**'} | {r['listings_per_second']:.1f} | "
                         f"{r['ratio_vs_teacher']:.2f} ({per_round}) | {_after_start_cell(r)} | {settled} | {r['macro_f1']:.4f} | "
                         f"{r['label_set_agreement_with_teacher']:.4f} | {r['decision_agreement_with_teacher']:.4f} | {alarms} | "
                         f"{_f(r['peak_rss_mb'], '.0f')} | {'yes' if r['reconciled']['ok'] else '**NO** ' + str(r['reconciled'])} |")
        lines.append("")
    lines += ["## Per tier, model only", "",
              "Each tier alone on each workload's unique texts in its own process, after a warm-up batch, model time only "
              "(tier 1 includes its n-gram hashing). FLOPs per listing: tier 1 counts 2 × distinct buckets × d per character "
              "window (plus its hidden layer); tier 2 and the teacher count encoder FLOPs over their token windows "
              "(`model_flops`; the teacher's fp32 re-scoring near a cut is added at the mean). Int8 layers are compared with "
              "the fp32 peak.", "",
              "| workload | tier | kind | listings/s | FLOPs per listing | achieved GFLOP/s | % of matmul peak | peak RSS (MB) |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, by_tier in s["tiers_model_only"].items():
        for t, r in by_tier.items():
            lines.append(f"| {name} | {t} | {r['kind']} | {r['listings_per_second']:.1f} | {_si(r['flops_per_listing'])} | "
                         f"{r['achieved_gflops']:.3g} | {_percent(r['share_of_matmul_peak'])} | {r['peak_rss_mb']:.0f} |")
    lines += ["", "## Against the issue's goals", ""] + _goals(s) + [
        "", "Notes: the transformers pipeline is `pipeline('text-classification')` on the bundle's hf/ checkpoint (PyTorch "
            "fp32, batch 32, truncation at max_length, no windows) over the unique texts only: its seconds are model time "
            "after load (no process start, reading, dedup, evidence or writing), so its listings/s flatters it; its labels "
            "and decisions apply the bundle's temperature, thresholds and rules to its probabilities. Agreement and false "
            "alarms are row by row over every dump row, reposts included. Made by `reportguard bench route --model DIR "
            f"--rounds {s['rounds']}` (`make bench` runs it after `reportguard bench`).", ""]
    return "\n".join(lines)


def _after_start_cell(r: dict) -> str:
    if r.get("listings_per_second_after_start") is None:
        return "–"
    return f"{r['listings_per_second_after_start']:.1f} ({r['ratio_vs_teacher_after_start']:.2f}), {r['start_seconds']:.1f}"


def _goals(s: dict) -> list[str]:
    """The issue's bar for the shipped route, with this run's numbers."""
    out = []
    for name, goal in (("corpus_mix", 4.0), ("prevalence", 20.0)):
        w = s["workloads"].get(name)
        if not w or "auto" not in w["variants"]:
            continue
        a, t = w["variants"]["auto"], w["variants"]["teacher"]
        verdict = "meets" if a["ratio_vs_teacher"] >= goal else "**misses**"
        line = (f"- `{name}`: `--route auto` {a['listings_per_second']:.1f} listings/s vs `--route teacher` "
                f"{t['listings_per_second']:.1f}/s = **{a['ratio_vs_teacher']:.2f}×** ({verdict} the ≥ {goal:.0f}× goal); "
                f"macro-F1 {a['macro_f1']:.4f} vs {t['macro_f1']:.4f} ({100 * (a['macro_f1'] - t['macro_f1']):+.2f} points)")
        if a.get("false_alarms") is not None:
            line += f"; false alarms on ordinary rows {a['false_alarms']} vs {a['teacher_false_alarms']}"
        if a.get("ratio_vs_teacher_after_start") is not None:
            after = "meets" if a["ratio_vs_teacher_after_start"] >= goal else "**misses**"
            line += (f". After start-up (the scorer's own seconds, as on a campaign-sized dump): "
                     f"{a['listings_per_second_after_start']:.1f} vs {t['listings_per_second_after_start']:.1f}/s = "
                     f"**{a['ratio_vs_teacher_after_start']:.2f}×** ({after} it); start-up {a['start_seconds']:.1f} s vs "
                     f"{t['start_seconds']:.1f} s")
        out.append(line + ".")
    if "corpus_mix" in s["workloads"] and "auto" in s["workloads"]["corpus_mix"]["variants"]:
        out.append(f"- The issue's absolute bar on (a): ≈ 420 listings/s on 2 cores; measured "
                   f"{s['workloads']['corpus_mix']['variants']['auto']['listings_per_second']:.1f} on {s['machine']['cores']} cores.")
    if s["auto_runs"] == "teacher":
        out.append("- `--route auto` ran teacher-only with this bundle, so its ratio is the teacher's against itself (≈ 1×).")
    return out


def bench_md_section(s: dict) -> str:
    """The "Tiered route" section of bench.md: the headline per workload and a pointer."""
    lines = [SECTION, "", f"`reportguard bench route` ({s['date']}, {s['machine']['cores']} cores, {s['rounds']} interleaved "
                          f"round(s), default command with evidence; details in [bench_route.md](bench_route.md)):", ""]
    for name, w in s["workloads"].items():
        v = w["variants"]
        speeds = ", ".join(f"{k} {r['listings_per_second']:.1f}/s ({r['ratio_vs_teacher']:.2f}×)" for k, r in v.items())
        lines.append(f"- `{name}` ({w['rows']:,} rows): {speeds}.")
    return "\n".join(lines) + "\n"


def update_bench_md(path: Path, s: dict) -> bool:
    """Replace (or append) bench.md's "Tiered route" section; False when there is no bench.md."""
    if not path.exists():
        return False
    text = path.read_text(encoding="utf-8")
    if SECTION in text:
        head, _, rest = text.partition(SECTION)
        nxt = rest.find("\n## ")
        text = head.rstrip("\n") + "\n\n" + bench_md_section(s) + (rest[nxt:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + bench_md_section(s)
    path.write_text(text, encoding="utf-8")
    return True
