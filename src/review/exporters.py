"""Verdicts out of the store: labelled records for retraining, and production precision estimates.

## Labelled records (`--labelled OUT.jsonl`)

One JSON object per reviewed listing, in the corpus format of data/labelled/*.jsonl:
`listing_id, platform, shop_name, title, description, qualification, labels, tags`, where `labels`
holds the model labels the final verdict confirms, in model order (report_sale, false_ad,
testing_service; the rule-derived credential_missing is not a training target) and `tags` is [].
A listing whose reviewers disagree and that nobody has adjudicated yet is left out. So is a
listing whose normalised text equals a row of data/labelled/validation or test: training on it
would leak into the numbers the next model is judged by. Retrain with it by adding the file to
the experiment config: `data: {extra_train: [reviews/labelled.jsonl]}`.

## Precision estimates (`--precision OUT.json`), read by `reportguard report RUN --verdicts FILE`

```
{
  "format": "reportguard-verdicts/1",
  "created_at": "2025-11-28T10:00:00+00:00",
  "db": "sqlite:///…/verdicts.sqlite",                  # password masked
  "confidence": 0.95,                                   # of every interval below
  "bands": ["0.00-0.50", "0.50-0.80", "0.80-0.95", "0.95-1.00"],
  "models": {
    "<model_version>": {
      "method": "weighted" | "unweighted",
      "representative": true | false,   # true: estimates come from stratified queues only and
                                        # generalise to the scored runs; false: they describe
                                        # the reviewed items (uncertainty/top queues) only
      "coverage": "complete" | "partial" | "none",   # complete: every stratum has a final verdict
      "queues": [{"queue_id", "strategy", "run", "items", "final", "used": bool}],
      "counts": {"items", "reviewed", "double_reviewed", "final", "open_disagreements", "adjudicated"},
      "agreement": {"kappa": {label: float|null}, "kappa_pooled": float|null, ...},
      "labels": {
        "<label>": {                       # report_sale, false_ad, credential_missing, testing_service
          "precision": ESTIMATE | null,    # among listings the model gave this label
          "recall": ESTIMATE | null,       # among listings that truly have it
          "recall_note": str,              # why recall is null, when it is
          "bands": {"<band>": ESTIMATE}    # precision by the band of the label's probability
        }                                  # (credential_missing: of p_testing_service)
      }
    }
  }
}
ESTIMATE = {"estimate": p, "low": lo, "high": hi,
            "reviewed": n items behind it, "confirmed": n items where the verdict agrees,
            "effective_n": Kish effective sample size (= reviewed when unweighted)}
```

How. Each final verdict is an observation; its weight is N_h / r_h for a stratified queue (N_h
listings in its stratum, r_h of them with a final verdict: sampled items still unreviewed are
treated as missing at random within their stratum), 1 otherwise. Precision of label L is
sum(w: L predicted and confirmed) / sum(w: L predicted); recall is sum(w: L confirmed and
predicted) / sum(w: L confirmed), estimable only from stratified queues whose strata all have a
final verdict (the `none` strata hold the model's misses). Intervals are Wilson score intervals,
with the Kish effective sample size (sum w)^2 / sum w^2 in place of n for weighted estimates:
an approximation that widens the interval as the weights grow unequal.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from statistics import NormalDist

from reportguard.core import paths
from reportguard.core.labels import ALL_LABEL_NAMES, MODEL_LABELS
from reportguard.core.normalize import normalize_text

from .agreement import agreement, final_labels
from .queue import band_of, bands, label_score
from .runs import row_field
from .store import Store, safe_url

FORMAT = "reportguard-verdicts/1"
CORPUS_FIELDS = ("listing_id", "platform", "shop_name", "title", "description", "qualification", "labels", "tags", "writer")
EVAL_SPLITS = ("validation", "test", "test_random")
#: The `writer` of exported verdicts: reviewers are not one of the corpus's writers, so their rows
#: never fall into the writer-held-out test split by accident.
REVIEW_WRITER = "review"


def wilson(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion; n may be an effective (non-integer) sample size.

    >>> [round(x, 3) for x in wilson(8, 10)]
    [0.49, 0.943]
    >>> wilson(0, 0)
    (0.0, 1.0)
    """
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0 or n successes the bound is exactly 0 or 1; floating point would leave 1e-17 crumbs.
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return low, high


def estimate(pairs: list[tuple[float, bool]], confidence: float = 0.95) -> dict | None:
    """A weighted proportion with its interval from (weight, success) pairs; None when empty."""
    if not pairs:
        return None
    total = sum(w for w, _ in pairs)
    hits = sum(w for w, ok in pairs if ok)
    p = hits / total
    n_eff = total * total / sum(w * w for w, _ in pairs)
    low, high = wilson(p * n_eff, n_eff, confidence)
    return {"estimate": round(p, 4), "low": round(low, 4), "high": round(high, 4), "reviewed": len(pairs),
            "confirmed": sum(1 for _, ok in pairs if ok), "effective_n": round(n_eff, 2)}


def collect_finals(store: Store, queue_ids: list[str] | None = None) -> list[dict]:
    """One entry per queue item with a final verdict: the item, its queue header and final labels."""
    out = []
    for q in store.queues():
        if queue_ids and q["queue_id"] not in queue_ids:
            continue
        header = store.queue_header(q["queue_id"])
        by_item = store.verdicts_by_item(q["queue_id"])
        for item in store.items(q["queue_id"]):
            roles = by_item.get(item.position, {"review": [], "adjudication": []})
            labels = final_labels(roles["review"], roles["adjudication"])
            if labels is not None:
                updated = max(v["updated_at"] for v in roles["review"] + roles["adjudication"])
                out.append({"item": item, "header": header, "labels": labels, "updated_at": updated})
    return out


def export_labelled(store: Store, out: str | Path, queue_ids: list[str] | None = None,
                    labelled_dir: str | Path | None = ...) -> dict:
    """Write final verdicts as corpus records; returns counts (written, skipped and why). `labelled_dir`
    (default: the project home's data/labelled; None: keep all) holds the splits whose validation/test rows are left out."""
    labelled_dir = paths.labelled_dir() if labelled_dir is ... else labelled_dir
    held_out = _held_out_texts(Path(labelled_dir)) if labelled_dir else set()
    latest: dict[str, dict] = {}
    for final in sorted(collect_finals(store, queue_ids), key=lambda f: f["updated_at"]):
        latest[final["item"].listing_id] = final  # a listing reviewed in two queues: the latest verdict
    written, leaked, empty = 0, 0, 0
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for listing_id, final in latest.items():
            record = final["item"].record
            row = {"listing_id": listing_id, **{f: row_field(record, f) for f in CORPUS_FIELDS[1:6]},
                   "labels": [x for x in MODEL_LABELS if x in final["labels"]], "tags": [], "writer": REVIEW_WRITER}
            if not row["title"].strip():
                empty += 1
                continue
            if normalize_text(f"{row['title']}\n{row['description']}") in held_out:
                leaked += 1
                continue
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
    return {"written": written, "skipped_held_out_duplicates": leaked, "skipped_empty_title": empty,
            "path": str(out)}


def _held_out_texts(folder: Path) -> set[str]:
    texts = set()
    for split in EVAL_SPLITS:
        path = folder / f"{split}.jsonl"
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    texts.add(normalize_text(f"{row['title']}\n{row.get('description') or ''}"))
    return texts


def estimate_precision(store: Store, queue_ids: list[str] | None = None, confidence: float = 0.95) -> dict:
    """The precision document described in the module docstring."""
    finals = collect_finals(store, queue_ids)
    queues = [q for q in store.queues() if not queue_ids or q["queue_id"] in queue_ids]
    models: dict[str, dict] = {}
    for model_version in sorted({q["model_version"] for q in queues}):
        mine = [q for q in queues if q["model_version"] == model_version]
        models[model_version] = _model_estimates(store, mine, [f for f in finals if f["header"]["model_version"] == model_version],
                                                 confidence)
    return {"format": FORMAT, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "db": safe_url(store.url), "confidence": confidence, "bands": bands(), "models": models}


def _model_estimates(store: Store, queues: list[dict], finals: list[dict], confidence: float) -> dict:
    stratified = {q["queue_id"] for q in queues if q["strategy"] == "stratified"}
    weighted_finals = [f for f in finals if f["item"].queue_id in stratified]
    weighted = bool(weighted_finals)
    used = weighted_finals if weighted else finals
    weights, coverage = _weights(used, weighted)

    labels = {}
    for label in ALL_LABEL_NAMES:
        precision_pairs, recall_pairs, band_pairs = [], [], defaultdict(list)
        for f in used:
            w = weights[id(f)]
            predicted = label in f["item"].predicted
            confirmed = label in f["labels"]
            if predicted:
                precision_pairs.append((w, confirmed))
                band_pairs[band_of(label_score(f["item"].record, label))].append((w, confirmed))
            if confirmed:
                recall_pairs.append((w, predicted))
        recall_ok = weighted and coverage == "complete"
        labels[label] = {
            "precision": estimate(precision_pairs, confidence),
            "recall": estimate(recall_pairs, confidence) if recall_ok else None,
            "recall_note": "" if recall_ok else (
                "recall needs a stratified queue with a final verdict in every stratum (the model's misses "
                "live in the 'none' strata)" if weighted else
                "no stratified queue: uncertainty and top queues do not sample the model's misses"),
            "bands": {band: estimate(pairs, confidence) for band, pairs in sorted(band_pairs.items())},
        }

    by_item_all = [store.verdicts_by_item(q["queue_id"]) for q in queues]
    merged = {(i, pos): roles for i, by_item in enumerate(by_item_all) for pos, roles in by_item.items()}
    open_disagreements = sum(1 for roles in merged.values()
                             if len({tuple(v["labels"]) for v in roles["review"]}) > 1 and not roles["adjudication"])
    return {
        "method": "weighted" if weighted else "unweighted",
        "representative": weighted,
        "coverage": coverage,
        "queues": [{"queue_id": q["queue_id"], "strategy": q["strategy"], "run": q["run"], "items": q["items"],
                    "final": sum(1 for f in finals if f["item"].queue_id == q["queue_id"]),
                    "used": any(f["item"].queue_id == q["queue_id"] for f in used)} for q in queues],
        "counts": {"items": sum(q["items"] for q in queues), "reviewed": len(merged),
                   "double_reviewed": sum(1 for r in merged.values() if len(r["review"]) >= 2),
                   "final": len(finals), "open_disagreements": open_disagreements,
                   "adjudicated": sum(1 for r in merged.values() if r["adjudication"])},
        "agreement": agreement({k: v for k, v in enumerate(merged.values())}),
        "labels": labels,
    }


def _weights(finals: list[dict], weighted: bool) -> tuple[dict[int, float], str]:
    """Observation weights N_h / r_h (stratified) or 1, and whether every stratum is covered."""
    if not weighted:
        return {id(f): 1.0 for f in finals}, "none"
    reviewed: dict[tuple[str, str], int] = defaultdict(int)
    for f in finals:
        reviewed[(f["item"].queue_id, f["item"].stratum)] += 1
    weights, complete = {}, True
    seen_queues = {f["item"].queue_id: f["header"] for f in finals}
    for queue_id, header in seen_queues.items():
        for stratum, info in header["weights"]["strata"].items():
            if info["population"] and not reviewed.get((queue_id, stratum)):
                complete = False
    for f in finals:
        info = f["header"]["weights"]["strata"][f["item"].stratum]
        weights[id(f)] = info["population"] / reviewed[(f["item"].queue_id, f["item"].stratum)]
    return weights, "complete" if complete else "partial"


def write_json(document: dict, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, ensure_ascii=False, indent=1, default=str) + "\n", encoding="utf-8")
    return out
