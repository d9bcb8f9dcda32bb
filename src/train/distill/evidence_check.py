"""Does evidence at a student's price still name the clauses the teacher relies on?

Under the tiered route, occlusion runs through the cheapest tier that reproduces a listing's
decision (serve/score.py `_occlusion`). This check scores the same rows twice through the
scorer's own `score_records`, with `--route teacher` and with `--route auto`, and compares the
occlusion evidence of the rows the teacher flagged: per (row, label) that has teacher occlusion
evidence, whether the route names the same clause. The issue's bar: the top clause agrees on at
least 90% of validation's flagged rows.
"""
from __future__ import annotations

import json

from reportguard.core.labels import MODEL_LABELS


def _records(rows: list[dict]) -> list[dict]:
    return [{"listing_id": str(r.get("listing_id") or i), "title": r.get("title") or "", "description": r.get("description") or "",
             "qualification": r.get("qualification") or "", "shop_name": r.get("shop_name") or ""} for i, r in enumerate(rows)]


def _occlusion_spans(rows: list[dict]) -> list[dict[str, tuple]]:
    out = []
    for row in rows:
        spans = {}
        for ev in json.loads(row["evidence"]):
            if ev["source"] == "occlusion":
                spans[ev["label"]] = (ev["field"], ev["start"], ev["end"])
        out.append(spans)
    return out


def evidence_agreement(bundle, rows: list[dict], route: str = "auto") -> dict:
    """Top-clause agreement of `route`'s occlusion evidence with the teacher's, on the rows the teacher flags."""
    from reportguard.serve.score import ScoreOptions, TextCache, score_records
    records = _records(rows)
    scored = {}
    for name in ("teacher", route):
        scored[name], info = score_records(records, bundle, TextCache(), ScoreOptions(route=name, progress=False))
    teacher, routed = _occlusion_spans(scored["teacher"]), _occlusion_spans(scored[route])
    flagged = [i for i, r in enumerate(scored["teacher"]) if any(x in MODEL_LABELS for x in r["labels"])]
    with_evidence = [i for i in flagged if teacher[i]]
    pairs = [(i, label) for i in with_evidence for label in teacher[i]]
    same_pairs = sum(routed[i].get(label) == teacher[i][label] for i, label in pairs)
    same_rows = sum(all(routed[i].get(label) == span for label, span in teacher[i].items()) for i in with_evidence)
    return {"rows": len(rows), "teacher_flagged": len(flagged), "with_teacher_occlusion": len(with_evidence),
            "row_agreement": same_rows / max(len(with_evidence), 1), "label_agreement": same_pairs / max(len(pairs), 1),
            "route": route}
