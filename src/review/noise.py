"""Label noise: which rows of the labelled corpus are most likely mislabelled, for reviewers to recheck.

1. Read every split of data/labelled (train, validation, test: a wrong label hurts wherever it is).
2. Out-of-fold probabilities: k-fold cross-validation of the project's TF-IDF baseline
   (reportguard.core.tfidf.TfidfBaseline: character n-grams, one logistic regression per
   label), so every row is scored by a model that never saw it. The BERT model would give better
   probabilities, but k fine-tunings take hours on two CPU cores; the baseline's five folds take
   15-70 s there on the ~4,000-row corpus, and confident learning needs probabilities that are
   roughly right, not the best ones.
3. cleanlab's multi-label `find_label_issues` (cleanlab.multilabel_classification.filter, the
   successor of `filter.find_label_issues(multi_label=True)`; confident learning: per label, estimate
   the joint distribution of given and true label from the out-of-fold probabilities and flag
   rows whose given label the model disagrees with more than that noise rate explains), ranked
   by self-confidence; `get_label_quality_scores` gives each row a score in [0, 1].
4. Write a markdown report with the top rows: text, given labels, suspected labels (out-of-fold
   probability >= 0.5; the baseline is fitted with balanced class weights, so 0.5 is its natural
   cut) and each label's probability.

Caveat: the corpus keeps paraphrases of one listing in one split, but CV folds here are random, so
a row's paraphrases may sit in the training folds. That makes the model agree more with the
row's label group, which hides noise shared by a whole paraphrase group: the report finds
rows that disagree with their neighbours, not groups that are wrong together.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from reportguard.core import paths
from reportguard.core.labels import MODEL_LABELS
from reportguard.core.normalize import listing_text

SPLITS = ("train", "validation", "test")


def load_corpus(folder: str | Path) -> list[dict]:
    folder = Path(folder)
    rows = []
    for split in SPLITS:
        path = folder / f"{split}.jsonl"
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                row["split"] = split
                rows.append(row)
    if not rows:
        raise FileNotFoundError(f"{folder}: no train/validation/test.jsonl to check")
    return rows


def label_matrix(rows: list[dict]) -> np.ndarray:
    return np.array([[x in r["labels"] for x in MODEL_LABELS] for r in rows], dtype=np.int8)


def out_of_fold_probabilities(texts: list[str], y: np.ndarray, folds: int = 5, seed: int = 13,
                              make_model=None) -> np.ndarray:
    """Each row's label probabilities from a model fitted on the other folds."""
    from sklearn.model_selection import KFold

    from reportguard.core.tfidf import TfidfBaseline

    make_model = make_model or TfidfBaseline
    probs = np.zeros(y.shape, dtype=np.float64)
    for train_idx, test_idx in KFold(n_splits=folds, shuffle=True, random_state=seed).split(texts):
        model = make_model().fit([texts[i] for i in train_idx], y[train_idx])
        probs[test_idx] = model.predict_proba([texts[i] for i in test_idx])
    return probs


def rank_label_issues(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices of likely mislabelled rows, most likely first; quality score of every row)."""
    from cleanlab.multilabel_classification import get_label_quality_scores
    from cleanlab.multilabel_classification.filter import find_label_issues

    given = [list(np.flatnonzero(row)) for row in y]
    issues = find_label_issues(given, probs, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(given, probs)
    return np.asarray(issues, dtype=int), quality


def find_noise(folder: str | Path, folds: int = 5, seed: int = 13) -> dict:
    """Everything the report needs: the rows, out-of-fold probabilities, ranked issues."""
    started = time.perf_counter()
    rows = load_corpus(folder)
    texts = [listing_text(r["title"], r.get("description") or "") for r in rows]
    y = label_matrix(rows)
    probs = out_of_fold_probabilities(texts, y, folds=folds, seed=seed)
    issues, quality = rank_label_issues(y, probs)
    return {"folder": str(folder), "rows": rows, "y": y, "probs": probs, "issues": issues, "quality": quality,
            "folds": folds, "seed": seed, "seconds": round(time.perf_counter() - started, 1)}


def suspected(probs_row: np.ndarray) -> list[str]:
    return [x for x, p in zip(MODEL_LABELS, probs_row) if p >= 0.5]


def render(result: dict, top: int = 50) -> str:
    rows, y, probs, issues, quality = (result[k] for k in ("rows", "y", "probs", "issues", "quality"))
    pred = (probs >= 0.5).astype(np.int8)
    folder = Path(result["folder"]).resolve()
    home = paths.home().resolve()
    shown = folder.relative_to(home) if folder.is_relative_to(home) else folder
    lines = [
        "# Label noise in the labelled corpus", "",
        f"Written by `reportguard review noise --data {shown}`: {len(rows)} rows, "
        f"{result['folds']}-fold out-of-fold probabilities from the TF-IDF baseline (seed {result['seed']}), "
        f"ranked by cleanlab's multi-label `find_label_issues`; {result['seconds']} s.", "",
        f"**{len(issues)} rows flagged** as likely mislabelled ({len(issues) / len(rows):.1%}). "
        "They are candidates for a second look, not verdicts: a flagged row may be a hard case the "
        "baseline gets wrong. Check each against TAXONOMY.md before changing data/raw.", "",
        "| label | given | out-of-fold predicted | flagged rows where they differ | out-of-fold F1 |",
        "|---|---:|---:|---:|---:|",
    ]
    flagged = set(int(i) for i in issues)
    for k, label in enumerate(MODEL_LABELS):
        differ = sum(1 for i in flagged if y[i, k] != pred[i, k])
        tp = int(((y[:, k] == 1) & (pred[:, k] == 1)).sum())
        f1 = 2 * tp / max(1, int(y[:, k].sum()) + int(pred[:, k].sum()))
        lines.append(f"| `{label}` | {int(y[:, k].sum())} | {int(pred[:, k].sum())} | {differ} | {f1:.3f} |")
    by_split = {s: sum(1 for i in flagged if rows[i]["split"] == s) for s in SPLITS}
    lines += ["", "Flagged per split: " + ", ".join(f"{s} {n}" for s, n in by_split.items()) + ".", ""]
    # cleanlab flags conservatively; when it flags fewer than `top`, the list goes on with the
    # lowest label-quality scores, so reviewers still get a full worklist in order of suspicion.
    ranked = [int(i) for i in issues[:top]]
    extra = [int(i) for i in np.argsort(quality, kind="stable") if int(i) not in flagged][:max(0, top - len(ranked))]
    lines += [f"## The {len(ranked)} rows flagged by cleanlab, most likely mislabelled first", ""]
    for rank, i in enumerate(ranked + extra, start=1):
        if rank == len(ranked) + 1:
            lines += [f"## The next {len(extra)} rows by lowest label-quality score (not flagged)", ""]
        r = rows[i]
        given = ", ".join(r["labels"]) or "clean"
        guess = ", ".join(suspected(probs[i])) or "clean"
        scores = " · ".join(f"{x} {p:.2f}" for x, p in zip(MODEL_LABELS, probs[i]))
        lines += [f"### {rank}. `{r['listing_id']}` ({r['split']}), quality {quality[i]:.3f}", "",
                  f"- given: **{given}**; suspected: **{guess}**",
                  f"- out-of-fold probabilities: {scores}",
                  f"- tags: {', '.join(r.get('tags') or []) or '—'}", "",
                  f"> {_quote(r['title'])}", ">",
                  f"> {_quote(r.get('description') or '', 300)}", ""]
    return "\n".join(lines) + "\n"


def _quote(text: str, limit: int = 200) -> str:
    """One markdown blockquote line: no newlines, no raw HTML, cut at `limit` characters."""
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[:limit] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") or "—"


def write_report(folder: str | Path, out: str | Path, folds: int = 5, seed: int = 13, top: int = 50) -> dict:
    result = find_noise(folder, folds=folds, seed=seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(result, top=top), encoding="utf-8")
    return {"rows": len(result["rows"]), "flagged": int(len(result["issues"])), "seconds": result["seconds"],
            "path": str(out)}
