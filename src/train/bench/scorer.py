"""`make bench`: the scorer against a transformers pipeline, same checkpoint, same listings, one run.

Variants, each in its own subprocess (so peak RSS is its own), all on the same 2,000 unique
normalised listings and the same thread count:
- pipeline:       transformers pipeline("text-classification"), PyTorch fp32, batch 32, bundle's hf/;
- scorer_fp32:    the scorer's path (tokenizers + onnxruntime), fused fp32 graph, length-bucketed;
- scorer_fp32_unsorted: the same without length bucketing (what bucketing is worth);
- scorer_int8:    the same with the int8 graph (shipped, or quantised here if the gate kept fp32);
- scorer_shipped: (bundles with an fp32 fallback) the bundle as `reportguard score` runs it: int8,
                  re-scoring in fp32 the listings near a threshold.
Plus: a fp32 matmul peak measured in the same run (achieved GFLOP/s is reported against it),
tokenisation speed of `tokenizers` batch encoding against the transformers tokenizer called per
text, and an end-to-end `reportguard score` of a dump with 30% repeated texts (dedup at work).
Results: reports/bench.md and reports/bench.json. The tiered route is measured by bench/route.py
(`reportguard bench route`, which `make bench` runs next): it writes reports/bench_route.{md,json}
and its headline numbers as the "Tiered route" section at the end of bench.md; `render` points
there until that section is written.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from reportguard.core import paths
from reportguard.core.encoding import length_batches
from reportguard.core.labels import MODEL_LABELS

N_LISTINGS = 2000
BATCH = 32


def _texts(n: int) -> list[str]:
    from reportguard.core.normalize import listing_text
    from ..corpus import load_split
    rows = [r for split in ("test", "validation", "train") for r in load_split(paths.labelled_dir(), split)]
    seen, texts = set(), []
    for r in rows:
        t = listing_text(r["title"], r["description"])
        if t not in seen:
            seen.add(t)
            texts.append(t)
    return texts[:n]


def matmul_peak(threads: int, size: int = 1536, seconds: float = 2.0) -> float:
    """Sustained fp32 matmul rate. Timed over ~2 s, not one call: in a CPU-quota container a burst
    of threads can exceed the quota for a few milliseconds before being throttled."""
    import torch
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.matmul(a, b)
        n += 1
    return 2 * size ** 3 * n / (time.perf_counter() - start) / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def model_flops(lengths: list[int], hidden: int, layers: int, intermediate: int) -> float:
    """Forward FLOPs for sequences of these (unpadded) lengths: projections + FFN + attention."""
    lengths = np.asarray(lengths, dtype=np.float64)
    dense = 2 * lengths.sum() * layers * (4 * hidden * hidden + 2 * hidden * intermediate)
    attention = 2 * layers * 2 * (lengths ** 2).sum() * hidden
    return float(dense + attention)


# --- workers (run in subprocesses) ---------------------------------------------------------------

def _worker(variant: str, bundle_dir: str, texts_file: str, model_file: str | None, threads: int) -> dict:
    texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    if variant == "pipeline":
        return _pipeline_worker(bundle_dir, texts, threads)
    from reportguard.serve.bundle import load_bundle
    bundle = load_bundle(bundle_dir, threads=threads)
    if model_file:
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        bundle._session = ort.InferenceSession(model_file, options, providers=["CPUExecutionProvider"])
    if variant == "scorer_shipped":
        return _shipped_worker(bundle, texts)
    t0 = time.perf_counter()
    ids, _ = bundle.encode(texts)
    tokenise = time.perf_counter() - t0
    batches = list(length_batches(ids, BATCH, sort=variant != "scorer_fp32_unsorted"))
    score = bundle.logits
    score([ids[i] for i in batches[0]])  # warm-up, not timed
    probs = np.zeros((len(texts), len(MODEL_LABELS)), dtype=np.float32)
    latencies = []
    t0 = time.perf_counter()
    for idx in batches:
        tb = time.perf_counter()
        probs[idx] = bundle.calibrate(score([ids[i] for i in idx]))
        latencies.append(time.perf_counter() - tb)
    model_seconds = time.perf_counter() - t0
    return {"seconds": tokenise + model_seconds, "tokenise_seconds": tokenise, "model_seconds": model_seconds,
            "latencies": latencies, "probs": probs.tolist(), "lengths": [len(x) for x in ids]}


def _shipped_worker(bundle, texts: list[str]) -> dict:
    """The bundle as `reportguard score` runs it: Bundle.predict_proba, tokenisation and the fp32
    fallback pass included; batch latencies are the gaps between progress callbacks."""
    bundle.predict_proba(texts[:BATCH], BATCH)  # warm-up, not timed
    if bundle.fallback_margin is not None:
        bundle.logits(bundle.encode(texts[:BATCH])[0], bundle.fallback_session)
    bundle.fallback_rows = 0
    marks = [time.perf_counter()]
    probs, _ = bundle.predict_proba(texts, BATCH, on_batch=lambda n: marks.append(time.perf_counter()))
    seconds = time.perf_counter() - marks[0]
    return {"seconds": seconds, "tokenise_seconds": 0.0, "model_seconds": seconds, "latencies": list(np.diff(marks)),
            "probs": probs.tolist(), "lengths": [len(x) for x in bundle.encode(texts)[0]], "fallback_rows": bundle.fallback_rows}


def _pipeline_worker(bundle_dir: str, texts: list[str], threads: int) -> dict:
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast, pipeline

    torch.set_num_threads(threads)
    meta = json.loads((Path(bundle_dir) / "bundle.json").read_text(encoding="utf-8"))
    enc = meta["encoding"]
    tok_obj = Tokenizer.from_file(str(Path(bundle_dir) / "tokenizer.json"))
    special = {k: tok_obj.id_to_token(enc[f"{k}_id"]) for k in ("cls", "sep", "pad")}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok_obj, cls_token=special["cls"], sep_token=special["sep"],
                                        pad_token=special["pad"], model_max_length=enc["max_length"])
    model = AutoModelForSequenceClassification.from_pretrained(str(Path(bundle_dir) / "hf"))
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1, function_to_apply="sigmoid", top_k=None)
    kwargs = {"batch_size": BATCH, "truncation": True, "max_length": enc["max_length"]}
    pipe(texts[:BATCH], **kwargs)  # warm-up
    latencies, t0 = [], time.perf_counter()
    out = []
    for s in range(0, len(texts), BATCH):
        tb = time.perf_counter()
        out += pipe(texts[s:s + BATCH], **kwargs)
        latencies.append(time.perf_counter() - tb)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in texts:
        tokenizer(t, truncation=True, max_length=enc["max_length"])
    per_text_tokenise = time.perf_counter() - t0
    return {"seconds": seconds, "latencies": latencies, "per_text_tokenise_seconds": per_text_tokenise,
            "labels": [sorted(d["label"] for d in row if d["score"] >= 0.5) for row in out],
            # sigmoid of the raw logits per model label: bench/route.py applies the bundle's
            # temperature and thresholds to compare the pipeline's decisions with the scorer's
            "scores": [[next((d["score"] for d in row if d["label"] == name), 0.0) for name in MODEL_LABELS] for row in out]}


def _run_worker(variant: str, bundle: Path, texts_file: Path, model_file: Path | None, threads: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = Path(fh.name)
    cmd = [sys.executable, "-m", "reportguard.train.bench", "worker", variant, str(bundle), str(texts_file), str(out),
           "--threads", str(threads)] + (["--model-file", str(model_file)] if model_file else [])
    subprocess.run(cmd, check=True)
    result = json.loads(out.read_text())
    out.unlink()
    return result


def run(bundle: Path, out_dir: Path, threads: int, rounds: int = 3) -> dict:
    """The benchmark (module docstring): every variant `rounds` times, interleaved; writes
    out_dir/bench.{json,md} and returns the summary."""
    from reportguard.serve.bundle import load_bundle
    bundle = bundle.resolve()
    b = load_bundle(bundle)
    texts = _texts(N_LISTINGS)
    work = Path(tempfile.mkdtemp(prefix="rg-bench-"))
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    int8_file, int8_note = _int8_graph(b, bundle, work)
    peak = matmul_peak(threads)
    # Rounds interleave the variants (pipeline, fp32, unsorted, int8, pipeline, ...), so a slow
    # phase of a shared machine hits every variant alike; each figure is the median over rounds.
    variants = (("pipeline", None), ("scorer_fp32", b.fp32_path), ("scorer_fp32_unsorted", b.fp32_path), ("scorer_int8", int8_file))
    if b.fallback_margin is not None:
        variants += (("scorer_shipped", None),)
    runs: dict[str, list[dict]] = {name: [] for name, _ in variants}
    for round_no in range(rounds):
        for variant, model_file in variants:
            print(f"bench: round {round_no + 1}/{rounds} {variant} ...", flush=True)
            runs[variant].append(_run_worker(variant, bundle, texts_file, model_file, threads))
    results = {variant: _median_run(rs, len(texts)) for variant, rs in runs.items()}
    summary = _summary(b, bundle, results, texts, threads, rounds, peak, int8_note) | {"end_to_end": _end_to_end(bundle, work, threads)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (out_dir / "bench.md").write_text(render(summary), encoding="utf-8")
    print(render(summary))
    return summary


def _int8_graph(b, bundle: Path, work: Path) -> tuple[Path, str]:
    """The int8 graph of the bundle's model: the shipped one, or quantised here if it ships fp32."""
    if b.meta["precision"] == "fp32":
        from ..export import quantize
        return (quantize(b.fp32_path, work / "model_int8.onnx", "qint8_per_channel"),
                "quantised for this benchmark (qint8_per_channel); the bundle ships fp32")
    return bundle / "model.onnx", f"shipped ({b.meta['precision']})"


def _median_run(rs: list[dict], n_texts: int) -> dict:
    """A variant's median round, with every round's seconds, the pooled p95 batch latency and the peak RSS."""
    r = dict(rs[int(np.argsort([x["seconds"] for x in rs])[len(rs) // 2])])
    r["round_seconds"] = [x["seconds"] for x in rs]
    r["listings_per_second"] = n_texts / r["seconds"]
    r["p95_batch_seconds"] = float(np.percentile(sum((x["latencies"] for x in rs), []), 95))
    r["peak_rss_mb"] = max(x["peak_rss_mb"] for x in rs)
    return r


def _summary(b, bundle: Path, results: dict, texts: list[str], threads: int, rounds: int, peak: float, int8_note: str) -> dict:
    cfg = json.loads((bundle / "hf" / "config.json").read_text())
    round_ratios = {k: [p / s for p, s in zip(results["pipeline"]["round_seconds"], results[k]["round_seconds"])]
                    for k in results if k != "pipeline"}
    lengths = results["scorer_fp32"]["lengths"]
    flops = model_flops(lengths, cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"])
    fp32_probs, int8_probs = np.array(results["scorer_fp32"]["probs"]), np.array(results["scorer_int8"]["probs"])
    thr = b.thresholds
    agreement = float(((fp32_probs >= thr) == (int8_probs >= thr)).all(axis=1).mean())
    shipped = None
    if "scorer_shipped" in results:
        shipped_probs = np.array(results["scorer_shipped"]["probs"])
        shipped = {"label_set_agreement_with_fp32": float(((fp32_probs >= thr) == (shipped_probs >= thr)).all(axis=1).mean()),
                   "rescored_in_fp32": results["scorer_shipped"]["fallback_rows"] / len(texts)}
    scorer_tok = results["scorer_fp32"]["tokenise_seconds"]
    return {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": threads},
        "bundle": b.model_version, "precision_shipped": b.meta["precision"], "int8": int8_note,
        "listings": len(texts), "mean_tokens": float(np.mean(lengths)), "max_length": b.spec.max_length,
        "matmul_peak_gflops": peak,
        "variants": {k: {"listings_per_second": v["listings_per_second"], "p95_batch_seconds": v["p95_batch_seconds"],
                         "peak_rss_mb": v["peak_rss_mb"], "seconds": v["seconds"], "round_seconds": v["round_seconds"],
                         "achieved_gflops": flops / v.get("model_seconds", v["seconds"]) / 1e9}
                     for k, v in results.items()},
        "ratios_vs_pipeline": {k: results[k]["listings_per_second"] / results["pipeline"]["listings_per_second"]
                               for k in results if k != "pipeline"},
        "rounds": rounds, "round_ratios_vs_pipeline": round_ratios,
        "int8_fp32_label_agreement": agreement, "shipped": shipped,
        "tokenisation": {"tokenizers_batch_listings_per_second": len(texts) / scorer_tok,
                         "transformers_per_text_listings_per_second": len(texts) / results["pipeline"]["per_text_tokenise_seconds"]},
    }


def _end_to_end(bundle: Path, work: Path, threads: int) -> dict:
    """`reportguard score` on 2,000 listings of which 30% repeat an earlier text under a new id."""
    from ..corpus import load_split
    rows = load_split(paths.labelled_dir(), "train")[:1400]
    rng = np.random.default_rng(0)
    dups = [dict(rows[i], listing_id=f"{rows[i]['listing_id']}-r{k}") for k, i in enumerate(rng.integers(0, len(rows), 600))]
    dump = work / "dump.jsonl"
    dump.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows + dups), encoding="utf-8")
    out = {}
    for attribution in ("none", "occlusion"):
        target = work / f"scored-{attribution}.parquet"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "reportguard.cli", "score", str(dump), "--output", str(target), "--model", str(bundle),
                        "--threads", str(threads), "--attribution", attribution, "--quiet"], check=True, capture_output=True)
        seconds = time.perf_counter() - t0
        manifest = json.loads(Path(f"{target}.manifest.json").read_text())
        out[attribution] = {"rows": manifest["rows"]["in"], "unique": manifest["rows"]["unique"], "seconds": seconds,
                            "rows_per_second": manifest["rows"]["in"] / seconds}
    return out


def render(s: dict) -> str:
    v = s["variants"]
    lines = ["# Scorer benchmark", "",
             f"`make bench` on {s['machine']['cores']} cores ({s['machine']['cpu']}), {s['machine']['threads']} threads; bundle "
             f"`{s['bundle']}` (ships {s['precision_shipped']}); {s['listings']} unique listings, mean {s['mean_tokens']:.0f} tokens, "
             f"max_length {s['max_length']}. fp32 matmul peak measured in this run: **{s['matmul_peak_gflops']:.0f} GFLOP/s**. "
             f"{s.get('rounds', 1)} interleaved rounds; each figure is the median round.", "",
             "| variant | listings/s | × pipeline | × pipeline, per round | p95 batch (s) | peak RSS (MB) | achieved GFLOP/s | % of matmul peak |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for name, r in v.items():
        ratio = s["ratios_vs_pipeline"].get(name, 1.0)
        per_round = ", ".join(f"{x:.2f}" for x in s.get("round_ratios_vs_pipeline", {}).get(name, [])) or "–"
        lines.append(f"| {name} | {r['listings_per_second']:.1f} | {ratio:.2f} | {per_round} | {r['p95_batch_seconds']:.3f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['achieved_gflops']:.1f} | {100 * r['achieved_gflops'] / s['matmul_peak_gflops']:.0f}% |")
    t = s["tokenisation"]
    e = s["end_to_end"]
    shipped = s.get("shipped")
    if shipped:
        lines += ["", f"- The shipped bundle (`scorer_shipped`: {s['precision_shipped']}) re-scored "
                      f"{shipped['rescored_in_fp32']:.1%} of these listings in fp32 and agrees with fp32 on "
                      f"**{shipped['label_set_agreement_with_fp32']:.4f}** of label sets."]
    lines += ["", f"- int8 vs fp32 label-set agreement: **{s['int8_fp32_label_agreement']:.4f}** (int8: {s['int8']}, no fallback).",
              f"- What each part contributes: length bucketing {v['scorer_fp32']['listings_per_second'] / v['scorer_fp32_unsorted']['listings_per_second']:.2f}×; "
              f"int8 {v['scorer_int8']['listings_per_second'] / v['scorer_fp32']['listings_per_second']:.2f}× over fp32; "
              f"tokenisation {t['tokenizers_batch_listings_per_second']:.0f} listings/s (tokenizers, batch) vs "
              f"{t['transformers_per_text_listings_per_second']:.0f}/s (transformers tokenizer, per text).",
              f"- End to end (`reportguard score`, {e['none']['rows']} rows, {e['none']['unique']} unique texts): "
              f"{e['none']['rows_per_second']:.1f} rows/s without attribution, {e['occlusion']['rows_per_second']:.1f} rows/s with occlusion evidence.",
              "- Achieved GFLOP/s counts useful (unpadded) encoder FLOPs over model time only; the pipeline's includes its own overheads.", "",
              "## Tiered route", "",
              "Not measured in this run yet: `reportguard bench route` (the next step of `make bench`) measures the student tiers "
              "and the shipped route against `--route teacher` and replaces this section with its numbers "
              "([bench_route.md](bench_route.md)).", ""]
    return "\n".join(lines)


def _peak_rss_mb() -> float:
    """This process image's peak RSS (VmHWM). Not ru_maxrss: on Linux that survives exec and
    would report the parent's peak for a worker started with fork/exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
