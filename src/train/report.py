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


def backbone_text(source) -> str:
    """The backbone in words, whether provenance recorded a path or a package record."""
    if isinstance(source, dict):
        return f"{source.get('package')} {source.get('version')} ({source.get('file')}, {source.get('licence')})"
    return str(source)


def long_listing_coverage(tokenizer, rows: list[dict], spec) -> dict:
    """How much of a long listing the model sees, and where its violation sits.

    For rows longer than one window: the share of their tokens that head+tail encoding keeps
    (windows keep all), and for labelled rows the position of the first lexicon phrase hit
    (a proxy for where the violation sits) in thirds of the text, and whether head+tail keeps it."""
    from reportguard.core.encoding import head_tail
    from reportguard.core.normalize import listing_text
    from reportguard.core.phrases import find_phrases

    long_rows, seen_share, where, kept = 0, [], Counter(), Counter()
    for r in rows:
        text = listing_text(r["title"], r["description"])
        enc = tokenizer.encode(text, add_special_tokens=False)
        if len(enc.ids) <= spec.budget:
            continue
        long_rows += 1
        seen_share.append(spec.budget / len(enc.ids))
        hits = find_phrases(text) if r["labels"] else []
        if not hits:
            continue
        first = min(h.start for h in hits)
        where[("head", "middle", "tail")[min(2, 3 * first // max(len(text), 1))]] += 1
        kept_ids = set(range(len(enc.ids))) if len(enc.ids) <= spec.budget else \
            set(head_tail(list(range(len(enc.ids))), spec.budget, spec.head_share))
        token = next((k for k, (s, e) in enumerate(enc.offsets) if s <= first < e), 0)
        kept["kept" if token in kept_ids else "cut"] += 1
    return {"long_rows": long_rows, "rows": len(rows),
            "head_tail_token_share_median": float(np.median(seen_share)) if seen_share else None,
            "violation_position": dict(where), "head_tail_would_keep_it": dict(kept),
            "long_text": spec.long_text}


def plot_reliability(path: Path, labels: np.ndarray, curves: dict[str, np.ndarray], bins: int = 10) -> Path:
    """Observed frequency against mean predicted probability per bin, one panel per label and one
    line per entry of `curves` (e.g. raw and temperature-scaled); the last curve's points carry the
    number of listings in their bin, since a bin of three says little."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MODEL_LABELS), figsize=(4.2 * len(MODEL_LABELS), 4))
    for k, (ax, name) in enumerate(zip(axes, MODEL_LABELS)):
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        for n, (tag, probs) in enumerate(curves.items()):
            mean_p, freq, count = reliability(probs[:, k], labels[:, k], bins)
            ece = expected_calibration_error(probs[:, k], labels[:, k], bins)
            ax.plot(mean_p, freq, "os"[n % 2] + "-", label=f"{tag} (ECE {ece:.3f})")
            if n == len(curves) - 1:
                for x, f, c in zip(mean_p, freq, count):
                    if c:
                        ax.annotate(f"n={c}", (x, f), textcoords="offset points", xytext=(3, -10), fontsize=7)
        ax.set_title(name)
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed frequency")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_pr_curves(path: Path, labels: np.ndarray, curves: dict[str, np.ndarray]) -> Path:
    """Precision-recall per label, one line per system in `curves` (name -> probabilities)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    fig, axes = plt.subplots(1, len(MODEL_LABELS), figsize=(4.2 * len(MODEL_LABELS), 4))
    for k, (ax, name) in enumerate(zip(axes, MODEL_LABELS)):
        for n, (system, probs) in enumerate(curves.items()):
            if labels[:, k].any():
                p, r, _ = precision_recall_curve(labels[:, k], probs[:, k])
                ax.plot(r, p, "-" if n == 0 else "--", label=system)
        ax.set_title(f"{name} ({int(labels[:, k].sum())} positives / {len(labels)})", fontsize=9)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# Long: one Markdown report, its sections in the order they are read.
def render(summary: dict) -> str:
    test, base = summary["test"], summary["baselines"]
    lines = [f"# Training report: {summary['model_version']}", "",
             f"Config `{summary['config_file']}`; backbone {backbone_text(summary['backbone'])}; training data sha256 "
             f"`{summary['data_hash'][:16]}`; {summary['train_rows']} train / {summary['validation_rows']} validation / "
             f"{summary['test_rows']} test rows (the test split is whole writers never seen in training); max_length "
             f"{summary['max_length']} tokens ({summary['truncated_share']:.1%} of train listings longer, encoded "
             f"{'in overlapping windows, scored by the maximum over them' if summary.get('long_text') == 'windows' else 'head+tail'}); "
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
    cov = summary.get("long_listings")
    if cov:
        lines += ["", "## Long listings", "",
                  f"{cov['long_rows']} of {cov['rows']} validation and test rows are longer than one window. Head+tail would "
                  f"keep a median {(cov['head_tail_token_share_median'] or 0):.0%} of their tokens; windows keep all of them. "
                  f"Where the first lexicon phrase of a labelled long row sits (thirds of the text): "
                  f"{', '.join(f'{k} {v}' for k, v in cov['violation_position'].items()) or 'none'}; head+tail would keep "
                  f"that phrase in {cov['head_tail_would_keep_it'].get('kept', 0)} and cut it in {cov['head_tail_would_keep_it'].get('cut', 0)}."]
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
