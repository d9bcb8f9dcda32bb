"""The two baselines the BERT model must beat, reported in reports/baselines.{md,json}.

- keyword: a label fires when any phrase of src/core/lexicon/phrases.yaml matches the normalised
  text (the notice's phrases and their obvious variants). Nothing is learned from train.
- tfidf: character 1-3-gram TF-IDF on the normalised text, one balanced logistic regression per
  label (core/tfidf.py), fitted on train; each label's threshold is the F1-maximising one on validation.

Both read text through the shared normaliser, as the model does.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from reportguard.core.labels import MODEL_LABELS, TAGS
from reportguard.core.normalize import listing_text
from reportguard.core.phrases import keyword_labels
from reportguard.core.tfidf import TfidfBaseline  # the model is core's: review uses it too

from .corpus import load_split
from .metrics import per_label, slice_metrics, to_matrix


def keyword_predict(rows: list[dict]) -> np.ndarray:
    return to_matrix([keyword_labels(listing_text(r["title"], r["description"])) for r in rows])


def leave_one_writer_out(rows: list[dict], seed: int = 13) -> dict:
    """TF-IDF trained on every writer but one, scored on that writer: how far a model fitted to
    writers' styles falls on a writer it never saw. Thresholds come from a seeded 10% of the
    training writers' rows; the held-out writer is never used for anything but scoring."""
    import random

    out = {}
    writers = sorted({r["writer"] for r in rows}, key=lambda w: (w.rstrip("0123456789"), int(w[len(w.rstrip("0123456789")):] or 0)))
    for writer in writers:
        held = [r for r in rows if r["writer"] == writer]
        rest = [r for r in rows if r["writer"] != writer]
        random.Random(seed).shuffle(rest)
        cut = len(rest) // 10
        tune, fit = rest[:cut], rest[cut:]
        text = lambda rs: [listing_text(r["title"], r["description"]) for r in rs]  # noqa: E731
        model = TfidfBaseline().fit(text(fit), to_matrix([r["labels"] for r in fit]))
        model.tune_thresholds(text(tune), to_matrix([r["labels"] for r in tune]))
        y = to_matrix([r["labels"] for r in held])
        out[writer] = {"rows": len(held), **per_label(y, model.predict(text(held)))}
    scores = [v["macro_f1"] for v in out.values()]
    return {"writers": out, "mean_macro_f1": float(np.mean(scores)), "min_macro_f1": float(np.min(scores))}


def run_baselines(data: Path, out: Path) -> dict:
    splits = {name: load_split(data, name) for name in ("train", "validation", "test")}
    texts = {name: [listing_text(r["title"], r["description"]) for r in rows] for name, rows in splits.items()}
    y = {name: to_matrix([r["labels"] for r in rows]) for name, rows in splits.items()}
    results: dict = {"data": str(data), "rows": {k: len(v) for k, v in splits.items()}}

    t0 = time.perf_counter()
    results["keyword"] = {}
    for name in ("validation", "test"):
        pred = keyword_predict(splits[name])
        results["keyword"][name] = per_label(y[name], pred)
        results["keyword"][name]["slices"] = slice_metrics(splits[name], y[name], pred, TAGS)
    t1 = time.perf_counter()
    model = TfidfBaseline().fit(texts["train"], y["train"]).tune_thresholds(texts["validation"], y["validation"])
    results["tfidf"] = {"thresholds": dict(zip(MODEL_LABELS, map(float, model.thresholds_)))}
    for name in ("validation", "test"):
        scores = model.predict_proba(texts[name])
        pred = (scores >= model.thresholds_).astype(np.int8)
        results["tfidf"][name] = per_label(y[name], pred, scores)
        results["tfidf"][name]["slices"] = slice_metrics(splits[name], y[name], pred, TAGS)
    results["seconds"] = {"keyword": round(t1 - t0, 2), "tfidf": round(time.perf_counter() - t1, 2)}
    if (data / "test_random.jsonl").exists():
        random_split = load_split(data, "test_random")
        scores = model.predict_proba([listing_text(r["title"], r["description"]) for r in random_split])
        results["tfidf"]["test_random"] = per_label(to_matrix([r["labels"] for r in random_split]), (scores >= model.thresholds_).astype(np.int8))
        results["rows"]["test_random"] = len(random_split)
        results["leave_one_writer_out"] = leave_one_writer_out(
            [r for name in ("train", "validation", "test", "test_random") for r in load_split(data, name)])

    out.mkdir(parents=True, exist_ok=True)
    (out / "baselines.json").write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (out / "baselines.md").write_text(render(results), encoding="utf-8")
    print(render(results))
    return results


def render(results: dict) -> str:
    lines = ["# Baselines", "",
             "Written by `reportguard baselines` (`make baselines`). Trained on `train`, thresholds "
             "chosen on `validation`; `test` is whole writers never seen in training.", ""]
    if "test_random" in results.get("tfidf", {}):
        lines += [f"TF-IDF macro-F1: random test split (writers shared with train) **{results['tfidf']['test_random']['macro_f1']:.3f}**, "
                  f"writer-held-out test **{results['tfidf']['test']['macro_f1']:.3f}**.", ""]
    for split in ("validation", "test"):
        lines += [f"## {split} ({results['rows'][split]} rows)", "",
                  "| baseline | label | precision | recall | F1 |", "|---|---|---:|---:|---:|"]
        for name in ("keyword", "tfidf"):
            m = results[name][split]
            for label in MODEL_LABELS:
                lines.append(f"| {name} | `{label}` | {m[label]['precision']:.3f} | {m[label]['recall']:.3f} | {m[label]['f1']:.3f} |")
            lines.append(f"| {name} | **macro-F1** | | | **{m['macro_f1']:.3f}** |")
        lines.append("")
    lowo = results.get("leave_one_writer_out")
    if lowo:
        lines += ["## TF-IDF, leave one writer out", "",
                  "Trained on every other writer of the corpus (all splits), thresholds on a seeded 10% of them, scored on "
                  f"the writer left out. Mean macro-F1 **{lowo['mean_macro_f1']:.3f}**, worst {lowo['min_macro_f1']:.3f}.", "",
                  "| writer left out | rows | " + " | ".join(f"`{x}` F1" for x in MODEL_LABELS) + " | macro-F1 |",
                  "|---|---:|" + "---:|" * (len(MODEL_LABELS) + 1)]
        for writer, m in lowo["writers"].items():
            lines.append(f"| {writer} | {m['rows']} | " + " | ".join(f"{m[x]['f1']:.3f}" for x in MODEL_LABELS) + f" | {m['macro_f1']:.3f} |")
        lines.append("")
    lines += ["## test, per slice (exact label-set match; false-alarm rate)", "",
              "| slice | rows | keyword exact | tfidf exact | keyword false alarms | tfidf false alarms |", "|---|---:|---:|---:|---:|---:|"]
    for tag, s in results["tfidf"]["test"]["slices"].items():
        k = results["keyword"]["test"]["slices"][tag]
        lines.append(f"| `{tag}` | {s['rows']} | {k['exact_match']:.3f} | {s['exact_match']:.3f} | {k['false_alarm_rate']:.3f} | {s['false_alarm_rate']:.3f} |")
    return "\n".join(lines) + "\n"
