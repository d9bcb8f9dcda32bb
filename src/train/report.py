"""The training report: test metrics, slices, label combinations, errors, plots, baselines side by
side. Written as markdown with PNG plots into reports/train/<model_version>/ and copied to
reports/train/latest.md."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from reportguard.core.labels import MODEL_LABELS, TAGS

from .calibrate import expected_calibration_error, reliability
from .metrics import per_label, slice_metrics


def evaluate(rows: list[dict], labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> dict:
    pred = (probs >= thresholds).astype(np.int8)
    out = per_label(labels, pred, probs)
    out["slices"] = slice_metrics(rows, labels, pred, TAGS)
    out["exact_match"] = float((pred == labels).all(axis=1).mean())
    combos = Counter((_combo(t), _combo(p)) for t, p in zip(labels, pred))
    out["combinations"] = [{"true": t, "predicted": p, "rows": n} for (t, p), n in sorted(combos.items(), key=lambda x: -x[1])]
    out["errors"] = [
        {"listing_id": r["listing_id"], "true": _combo(t), "predicted": _combo(p),
         "probabilities": {x: round(float(v), 3) for x, v in zip(MODEL_LABELS, pr)},
         "title": r["title"], "description": r["description"][:200], "tags": r["tags"]}
        for r, t, p, pr in zip(rows, labels, pred, probs) if (t != p).any()
    ]
    return out


def _combo(vector) -> str:
    return "+".join(x for x, v in zip(MODEL_LABELS, vector) if v) or "clean"


def plot_reliability(path: Path, probs_before: np.ndarray, probs_after: np.ndarray, labels: np.ndarray) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MODEL_LABELS), figsize=(4 * len(MODEL_LABELS), 4))
    for k, (ax, name) in enumerate(zip(axes, MODEL_LABELS)):
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        for probs, style, tag in ((probs_before, "o-", "raw"), (probs_after, "s-", "temperature-scaled")):
            mean_p, freq, _ = reliability(probs[:, k], labels[:, k])
            ece = expected_calibration_error(probs[:, k], labels[:, k])
            ax.plot(mean_p, freq, style, label=f"{tag} (ECE {ece:.3f})")
        ax.set_title(name)
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed frequency")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_pr_curves(path: Path, probs: np.ndarray, labels: np.ndarray, baseline_probs: np.ndarray | None = None) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    fig, axes = plt.subplots(1, len(MODEL_LABELS), figsize=(4 * len(MODEL_LABELS), 4))
    for k, (ax, name) in enumerate(zip(axes, MODEL_LABELS)):
        p, r, _ = precision_recall_curve(labels[:, k], probs[:, k])
        ax.plot(r, p, label="model")
        if baseline_probs is not None:
            p, r, _ = precision_recall_curve(labels[:, k], baseline_probs[:, k])
            ax.plot(r, p, "--", label="tf-idf baseline")
        ax.set_title(name)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_ylim(0.5, 1.01)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render(summary: dict) -> str:
    test, base = summary["test"], summary["baselines"]
    lines = [f"# Training report: {summary['model_version']}", "",
             f"Config `{summary['config_file']}`; backbone `{summary['backbone']}`; training data sha256 "
             f"`{summary['data_hash'][:16]}`; {summary['train_rows']} train / {summary['validation_rows']} validation / "
             f"{summary['test_rows']} test rows; max_length {summary['max_length']} tokens "
             f"({summary['truncated_share']:.1%} of train listings longer, encoded head+tail); "
             f"training {summary['train_seconds'] / 60:.1f} min; shipped precision **{summary['precision']}** "
             f"({summary['precision_reason']}).", "",
             "## Test split (held out: never used for training, calibration or thresholds)", "",
             "| label | precision | recall | F1 | PR-AUC | keyword F1 | TF-IDF F1 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for x in MODEL_LABELS:
        m = test[x]
        lines.append(f"| `{x}` | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m.get('pr_auc', float('nan')):.3f} | "
                     f"{base['keyword']['test'][x]['f1']:.3f} | {base['tfidf']['test'][x]['f1']:.3f} |")
    lines.append(f"| **macro-F1** | | | **{test['macro_f1']:.3f}** | | {base['keyword']['test']['macro_f1']:.3f} | {base['tfidf']['test']['macro_f1']:.3f} |")
    ext = summary.get("external")
    if ext:
        lines += ["", f"### Independently written listings ({ext['rows']} rows, {', '.join(ext['files'])})", "",
                  "Written by a separate writer who never saw the corpus; not used for training, thresholds or model choice.", "",
                  "| label | model F1 | TF-IDF F1 | keyword F1 |", "|---|---:|---:|---:|"]
        for x in MODEL_LABELS:
            lines.append(f"| `{x}` | {ext['model'][x]['f1']:.3f} | {ext['tfidf'][x]['f1']:.3f} | {ext['keyword'][x]['f1']:.3f} |")
        lines.append(f"| **macro-F1** | **{ext['model']['macro_f1']:.3f}** | {ext['tfidf']['macro_f1']:.3f} | {ext['keyword']['macro_f1']:.3f} |")
    lines += ["", f"Exact label-set match: {test['exact_match']:.3f}. Validation macro-F1 (thresholds tuned there): "
              f"{summary['validation']['macro_f1']:.3f}.", "",
              "![precision-recall](pr_curves.png)", "", "## Calibration (fitted on validation, shown on test)", "",
              "| label | temperature | flag threshold | block threshold |", "|---|---:|---:|---:|"]
    cal = summary["calibration"]
    for x in MODEL_LABELS:
        lines.append(f"| `{x}` | {cal['temperature'][x]:.3f} | {cal['thresholds'][x]:.3f} | {cal['decision']['block'].get(x, '-')} |")
    lines += ["", "![reliability](reliability.png)", "", "## Export", "",
              "`+fp32_fallback`: the int8 graph, with listings whose int8 score lies within the largest int8 error seen on "
              "validation of a threshold re-scored in fp32; its time is int8's plus the re-scored share of fp32's.", "",
              "| variant | test macro-F1 | label-set agreement with PyTorch (validation / test) | max prob diff | re-scored in fp32 (test) | test seconds |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, r in summary["export"].items():
        share = f"{r['fallback_share']['test']:.1%}" if "fallback_share" in r else "–"
        lines.append(f"| {name} | {r['test']['macro_f1']:.4f} | {r['validation']['label_set_agreement']:.4f} / {r['test']['label_set_agreement']:.4f} | "
                     f"{r['test']['max_abs_prob_diff']:.4f} | {share} | {r.get('estimated_test_seconds', r['test_seconds']):.1f} |")
    lines += ["", "## Test slices", "",
              "Exact match: the whole label set right. False alarms: rows given a label they don't have. "
              "Macro-F1 over the labels present in the slice (none for all-clean slices).", "",
              "| slice | rows | exact match: model / TF-IDF / keyword | false alarms: model / TF-IDF / keyword | macro-F1: model / TF-IDF |",
              "|---|---:|---|---|---|"]
    for tag, s in test["slices"].items():
        t, k = base["tfidf"]["test"]["slices"].get(tag, {}), base["keyword"]["test"]["slices"].get(tag, {})
        f1 = "–" if s["macro_f1"] is None else f"{s['macro_f1']:.3f} / {t.get('macro_f1') or 0:.3f}"
        lines.append(f"| `{tag}` | {s['rows']} | {s['exact_match']:.3f} / {t.get('exact_match', 0):.3f} / {k.get('exact_match', 0):.3f} | "
                     f"{s['false_alarm_rate']:.3f} / {t.get('false_alarm_rate', 0):.3f} / {k.get('false_alarm_rate', 0):.3f} | {f1} |")
    lines += ["", "## Label combinations (test)", "", "| true | predicted | rows |", "|---|---|---:|"]
    lines += [f"| {c['true']} | {c['predicted']} | {c['rows']} |" for c in test["combinations"]]
    lines += ["", f"## Errors on test ({len(test['errors'])})", "", "| id | true | predicted | probabilities | text |", "|---|---|---|---|---|"]
    for e in test["errors"]:
        text = (e["title"] + " / " + e["description"]).replace("|", "｜").replace("\n", " ")[:160]
        lines.append(f"| {e['listing_id']} | {e['true']} | {e['predicted']} | {json.dumps(e['probabilities'])} | {text} |")
    return "\n".join(lines) + "\n"
