"""`reportguard evaluate --model DIR`: how many false alarms a run will bring and how many
violations it will miss, on text like the operator's, with the baselines beside every number.

The bundle is scored through serve's `Bundle` (the code `reportguard score` runs), on every
evaluation-only set of `datasets.evaluation_sets`. Written to reports/eval/<model_version>.{md,json}
with PR curves and a reliability diagram, and logged to MLflow. Sections:

1. per-label P/R/F1 and macro-F1 on the random test split, the writer-held-out test, the real
   public text, the independent external set and the probes (per shortcut family);
2. slices of the two test splits: obfuscated, hard negatives, length bands, platform, writer;
3. held-out ordinary listings: false alarms per 10,000 with a Wilson interval, by subset, and the
   decision mix (pass / review / block);
4. expected precision and alerts per million listings at a prevalence of 0.1%, 1% and 5%, from the
   measured recall and false-alarm rate, with the arithmetic shown.
"""
from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path

import numpy as np

from reportguard.core.credentials import find_credentials
from reportguard.core.labels import CREDENTIAL_MISSING, MODEL_LABELS, TESTING_SERVICE
from reportguard.core.normalize import listing_text

from .baselines import TfidfBaseline, keyword_predict
from .config import resolve
from .datasets import evaluation_sets, training_rows
from .metrics import per_label, to_matrix
from .report import plot_pr_curves, plot_reliability

VIOLATIONS = ("report_sale", "false_ad")
PREVALENCES = (0.001, 0.01, 0.05)
LENGTH_BANDS = ((0, 30), (30, 100), (100, 300), (300, 1000), (1000, 10**9))
NARRATIVE = ("news_paragraph", "legal_paragraph", "rule_paragraph")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for k successes in n trials.

    >>> [round(x, 4) for x in wilson(0, 1000)]
    [0.0, 0.0038]
    """
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


class Predictor:
    """One system under evaluation: the model (via a serve Bundle) or a baseline. `predict(rows)`
    gives the 0/1 label matrix, `scores(rows)` probabilities where the system has them."""

    def __init__(self, name: str, predict, scores=None, decide=None):
        self.name, self._predict, self._scores, self._decide = name, predict, scores, decide
        self._cache: dict[str, tuple] = {}  # listing_id -> (prediction, scores, decision) of one row

    def run(self, rows: list[dict]) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
        """Each row is scored once, however many sets and slices it appears in."""
        new = [r for r in rows if r["listing_id"] not in self._cache]
        if new:
            scores = self._scores(new) if self._scores else None
            pred = self._predict(new, scores)
            decisions = self._decide(new, scores, pred) if self._decide else [None] * len(new)
            for i, r in enumerate(new):
                self._cache[r["listing_id"]] = (pred[i], None if scores is None else scores[i], decisions[i])
        cached = [self._cache[r["listing_id"]] for r in rows]
        pred = np.array([c[0] for c in cached], dtype=np.int8).reshape(len(rows), len(MODEL_LABELS))
        scores = None if self._scores is None else np.array([c[1] for c in cached]).reshape(len(rows), len(MODEL_LABELS))
        decisions = None if self._decide is None else [c[2] for c in cached]
        return pred, scores, decisions


def model_predictor(bundle) -> Predictor:
    from reportguard.serve.score import decide

    def scores(rows):
        return bundle.predict_proba([listing_text(r["title"], r["description"]) for r in rows])[0]

    def predict(rows, probs):
        return (probs >= bundle.thresholds).astype(np.int8)

    def decisions(rows, probs, pred):
        out = []
        for r, p, y in zip(rows, probs, pred):
            labels = [x for x, v in zip(MODEL_LABELS, y) if v]
            if TESTING_SERVICE.name in labels and not find_credentials(f"{r['title']}\n{r['description']}", r.get("qualification") or ""):
                labels.append(CREDENTIAL_MISSING.name)
            out.append(decide(labels, p, bundle))
        return out
    return Predictor("model", predict, scores, decisions)


def baseline_predictors(data: dict) -> list[Predictor]:
    """The keyword rules, and TF-IDF fitted on the model's own training rows (thresholds on its
    validation rows), so the baselines see exactly the data the model saw."""
    splits = training_rows(data)
    text = {k: [listing_text(r["title"], r["description"]) for r in v] for k, v in splits.items()}
    y = {k: to_matrix([r["labels"] for r in v]) for k, v in splits.items()}
    tfidf = TfidfBaseline().fit(text["train"], y["train"]).tune_thresholds(text["validation"], y["validation"])

    def tfidf_scores(rows):
        return tfidf.predict_proba([listing_text(r["title"], r["description"]) for r in rows])

    return [Predictor("keyword", lambda rows, _: keyword_predict(rows)),
            Predictor("tfidf", lambda rows, s: (s >= tfidf.thresholds_).astype(np.int8), tfidf_scores)]


# --- the sections ------------------------------------------------------------------------------

def label_metrics(rows: list[dict], predictors: list[Predictor]) -> dict:
    y = to_matrix([r["labels"] for r in rows])
    out = {"rows": len(rows)}
    for p in predictors:
        pred, scores, _ = p.run(rows)
        out[p.name] = per_label(y, pred, scores)
    return out


def _violation(matrix: np.ndarray) -> np.ndarray:
    return matrix[:, [MODEL_LABELS.index(x) for x in VIOLATIONS]].any(axis=1)


def slices(rows: list[dict], predictors: list[Predictor]) -> dict:
    """macro-F1 (labels present in the slice) and exact match per slice of the test splits."""
    from sklearn.metrics import f1_score

    def length_band(r):
        n = len(r["title"]) + len(r["description"])
        return next(f"{lo}-{hi if hi < 10**9 else ''}" for lo, hi in LENGTH_BANDS if lo <= n < hi)

    keys = {"obfuscated": lambda r: "obfuscated" if "obfuscated" in r["tags"] else "plain",
            "hard_negative": lambda r: "hard negative" if "hard_negative" in r["tags"] else "other",
            "length": length_band, "writer": lambda r: r.get("writer", "?"), "platform": lambda r: r["platform"]}
    y = to_matrix([r["labels"] for r in rows])
    out = {}
    for name, key in keys.items():
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            groups.setdefault(key(r), []).append(i)
        if name == "platform":  # the ten largest; the long tail says nothing with a handful of rows
            groups = dict(sorted(groups.items(), key=lambda kv: -len(kv[1]))[:10])
        out[name] = {}
        for value, idx in sorted(groups.items()):
            t = y[idx]
            present = [k for k in range(t.shape[1]) if t[:, k].any()]
            cell = {"rows": len(idx)}
            for p in predictors:
                pred = p.run(rows)[0][idx]
                cell[p.name] = {"exact_match": float((pred == t).all(axis=1).mean()),
                                "macro_f1": float(f1_score(t[:, present], pred[:, present], average="macro", zero_division=0)) if present else None}
            out[name][value] = cell
    return out


def ordinary_alarms(rows: list[dict], predictors: list[Predictor]) -> dict:
    """False alarms on held-out ordinary listings: a violation label (report_sale or false_ad),
    and any label at all; per 10,000 with a 95% Wilson interval, overall and by subset."""
    out: dict = {"rows": len(rows), "by_subset": {}}
    subsets = sorted({r.get("subset", "?") for r in rows})
    for p in predictors:
        pred, _, decisions = p.run(rows)
        flagged, any_label = _violation(pred), pred.any(axis=1)
        out[p.name] = {"violation": _rate(flagged), "any_label": _rate(any_label)}
        if decisions is not None:
            mix = Counter(decisions)
            out[p.name]["decisions"] = {d: mix.get(d, 0) for d in ("pass", "review", "block")}
            out[p.name]["not_passed"] = _rate(np.array([d != "pass" for d in decisions]))
        for s in subsets:
            idx = [i for i, r in enumerate(rows) if r.get("subset", "?") == s]
            out["by_subset"].setdefault(s, {"rows": len(idx)})[p.name] = _rate(flagged[idx])
    return out


def _rate(hits: np.ndarray) -> dict:
    k, n = int(hits.sum()), int(len(hits))
    lo, hi = wilson(k, n)
    return {"count": k, "rows": n, "per_10k": 1e4 * k / max(n, 1), "wilson_per_10k": [1e4 * lo, 1e4 * hi]}


def prevalence_table(recall: float, false_alarm_rate: float, far_upper: float | None = None) -> list[dict]:
    """Expected alerts and precision per million listings, from recall on violations and the
    false-alarm rate on ordinary listings: TP = N·π·R, FP = N·(1−π)·FAR, precision = TP/(TP+FP).
    `far_upper` (the Wilson upper bound of FAR) gives the precision a run can still expect if the
    true false-alarm rate is as high as the sample allows: a measured 0 is not a promise."""
    rows = []
    for prevalence in PREVALENCES:
        n = 1_000_000
        tp, fp = n * prevalence * recall, n * (1 - prevalence) * false_alarm_rate
        row = {"prevalence": prevalence, "true_alerts": tp, "false_alerts": fp, "alerts": tp + fp,
               "precision": tp / (tp + fp) if tp + fp else 0.0}
        if far_upper is not None:
            fp_hi = n * (1 - prevalence) * far_upper
            row["precision_at_far_upper"] = tp / (tp + fp_hi) if tp + fp_hi else 0.0
        rows.append(row)
    return rows


def real_text(rows: list[dict], predictors: list[Predictor]) -> dict:
    """The issue's two real-text numbers: share of violating seller quotes caught, and share of
    narrative paragraphs (news, legal, rules) flagged with a violation label."""
    quotes = [i for i, r in enumerate(rows) if r.get("text_kind") == "seller_quote" and set(VIOLATIONS) & set(r["labels"])]
    narrative = [i for i, r in enumerate(rows) if r.get("text_kind") in NARRATIVE]
    out = {"violating_seller_quotes": len(quotes), "narrative_paragraphs": len(narrative)}
    for p in predictors:
        flagged = _violation(p.run(rows)[0])
        out[p.name] = {"quotes_caught": float(flagged[quotes].mean()) if quotes else None,
                       "narrative_flagged": float(flagged[narrative].mean()) if narrative else None}
    return out


def probes(rows: list[dict], predictors: list[Predictor]) -> dict:
    """Per shortcut family: macro-F1 over the labels that occur in the family (in truth or
    prediction: a family without report_sale rows must not score 0 for it), and the share of
    pairs with both rows exactly right."""
    from sklearn.metrics import f1_score

    out = {}
    for family in sorted({r["family"] for r in rows}):
        fam = [r for r in rows if r["family"] == family]
        cell = label_metrics(fam, predictors)
        y = to_matrix([r["labels"] for r in fam])
        for p in predictors:
            pred = p.run(fam)[0]
            present = [k for k in range(y.shape[1]) if y[:, k].any() or pred[:, k].any()]
            cell[p.name]["macro_f1"] = float(f1_score(y[:, present], pred[:, present], average="macro", zero_division=0)) if present else 1.0
            right = (pred == y).all(axis=1)
            pairs: dict[str, list[bool]] = {}
            for r, ok in zip(fam, right):
                pairs.setdefault(r["pair_id"], []).append(bool(ok))
            cell[p.name]["pairs_both_right"] = float(np.mean([all(v) for v in pairs.values()]))
        out[family] = cell
    families = [v for v in out.values()]
    out["_mean"] = {p.name: float(np.mean([f[p.name]["macro_f1"] for f in families])) for p in predictors} if families else {}
    return out


# --- plots -------------------------------------------------------------------------------------

# --- the command -------------------------------------------------------------------------------

def evaluate_bundle(model_dir: str | Path, data: dict, out_dir: str | Path = "reports/eval", mlflow_config: dict | None = None) -> dict:
    from reportguard.serve.bundle import load_bundle

    started = time.perf_counter()
    bundle = load_bundle(model_dir)
    sets = evaluation_sets(data)
    predictors = [model_predictor(bundle), *baseline_predictors(data)]
    result: dict = {"model_version": bundle.model_version, "model_dir": str(model_dir),
                    "sets": {k: len(v) for k, v in sets.items()}, "labels": {}}
    for name in ("test_random", "test", "real", "external"):
        if name in sets:
            result["labels"][name] = label_metrics(sets[name], predictors)
    tests = sets.get("test", []) + sets.get("test_random", [])
    result["slices"] = slices(tests, predictors) if tests else {}
    if "probes" in sets:
        result["probes"] = probes(sets["probes"], predictors)
    if "real" in sets:
        result["real_text"] = real_text(sets["real"], predictors)
    if "ordinary" in sets:
        result["ordinary"] = ordinary_alarms(sets["ordinary"], predictors)
        held = sets["test"]
        violating = [r for r in held if set(VIOLATIONS) & set(r["labels"])]
        result["prevalence"] = {}
        for p in predictors:
            recall = float(_violation(p.run(violating)[0]).mean()) if violating else 0.0
            alarms = result["ordinary"][p.name]["violation"]
            far, far_upper = alarms["count"] / max(alarms["rows"], 1), alarms["wilson_per_10k"][1] / 1e4
            result["prevalence"][p.name] = {"recall": recall, "false_alarm_rate": far, "far_upper": far_upper,
                                            "table": prevalence_table(recall, far, far_upper)}
    out = resolve(str(out_dir))
    out.mkdir(parents=True, exist_ok=True)
    stem = out / bundle.model_version
    plot_rows = sets.get("test", []) + sets.get("ordinary", [])
    if plot_rows:
        truth = to_matrix([r["labels"] for r in plot_rows])
        curves = {p.name: p.run(plot_rows)[1] for p in predictors if p.run(plot_rows)[1] is not None}
        plot_pr_curves(stem.with_name(f"{stem.name}.pr_curves.png"), truth, curves)
        plot_reliability(stem.with_name(f"{stem.name}.reliability.png"), truth, {"model": curves["model"]})
    result["seconds"] = time.perf_counter() - started
    stem.with_suffix(".json").write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    from .eval_report import render
    stem.with_suffix(".md").write_text(render(result), encoding="utf-8")
    _log(result, stem, mlflow_config)
    return result


def _log(result: dict, stem: Path, mlflow_config: dict | None) -> None:
    if not mlflow_config or mlflow_config.get("disabled"):
        return
    from .tracking import mlflow_run

    with mlflow_run({"mlflow": mlflow_config}, f"evaluate-{result['model_version']}") as mlflow:
        mlflow.set_tags({"model_version": result["model_version"], "kind": "evaluation"})
        metrics = {f"{name}_macro_f1": v["model"]["macro_f1"] for name, v in result["labels"].items()}
        if "ordinary" in result:
            metrics["ordinary_violation_per_10k"] = result["ordinary"]["model"]["violation"]["per_10k"]
            metrics["ordinary_not_passed_per_10k"] = result["ordinary"]["model"]["not_passed"]["per_10k"]
        if "probes" in result:
            metrics["probes_mean_macro_f1"] = result["probes"]["_mean"]["model"]
        mlflow.log_metrics(metrics)
        for path in stem.parent.glob(f"{stem.name}*"):
            mlflow.log_artifact(str(path), artifact_path="evaluation")
