"""reports/distill/<version>.md: what `reportguard distill` built and what its gate saw."""
from __future__ import annotations

TIER_NAMES = {0: "tier1", 1: "tier2"}


def _settled(row: dict, names: list[str]) -> str:
    counts = row.get("settled_by_tier") or []
    total = max(sum(counts), 1)
    return ", ".join(f"{name} {c / total:.0%}" for name, c in zip(names, counts))


def render(s: dict) -> str:
    names = [t["name"] for t in s["tiers"]] + ["teacher"]
    lines = [f"# Distillation: `{s['version']}`", "",
             f"Teacher `{s['teacher']}`; transfer set of {s['transfer_texts']:,} texts (sha256 `{s['transfer_sha256'][:16]}`).",
             f"Route shipped: **{'auto' if s['passed'] else 'teacher only'}**: {s['reason']}.", "",
             "## Tiers", "",
             "| tier | kind | margins (calibrated logits) | label sets = teacher (fitting rows) | settles alone (fitting rows) |",
             "|---|---|---|---:|---:|"]
    for t in s["tiers"]:
        fit = s["fit_agreement"].get(t["name"], {})
        margins = ", ".join(f"{k} {v:.2f}" for k, v in t["margin"].items())
        lines.append(f"| {t['name']} | {t['kind']} | {margins} | {fit.get('label_set_agreement', 0):.1%} | {fit.get('settled_alone', 0):.1%} |")
    lines += ["", "## Gate (route vs teacher only, per set)", "",
              "| set | rows | settled by | label sets = teacher | macro-F1 teacher | macro-F1 route | ordinary false alarms teacher → route |",
              "|---|---:|---|---:|---:|---:|---|"]
    rows = {k: v for k, v in s["gate"].items() if isinstance(v, dict) and k not in ("not_gated", "held_out_transfer")}
    rows |= {f"{k} (not gated)": v for k, v in (s["gate"].get("not_gated") or {}).items()}
    for name, r in rows.items():
        f1 = (f"{r['macro_f1_teacher']:.3f} | {r['macro_f1_route']:.3f}" if "macro_f1_teacher" in r else "– | –")
        alarms = f"{r['false_alarms_teacher']} → {r['false_alarms_route']}" if "false_alarms_teacher" in r else "–"
        lines.append(f"| {name} | {r['rows']} | {_settled(r, names)} | {r['label_set_agreement']:.1%} | {f1} | {alarms} |")
    held = s["gate"].get("held_out_transfer")
    if held:
        lines += ["", f"Held-out transfer texts (no student trained on them): {held['rows']:,} rows, settled by "
                      f"{_settled(held, names)}; {held['decisions_moved']} decisions moved against the teacher."]
    ev = s.get("evidence")
    if ev:
        lines += ["", f"Evidence at a student's price (`score_records`, route {ev['route']} vs teacher, validation): of "
                      f"{ev['with_teacher_occlusion']} rows the teacher flags with occlusion evidence, the route names the same "
                      f"top clause for every label on **{ev['row_agreement']:.1%}** (per label: {ev['label_agreement']:.1%}; goal ≥ 90%)."]
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in s["seconds"].items())
    lines += ["", f"Time: {seconds}.", ""]
    if s.get("tier2"):
        t2 = s["tier2"]
        lines += [f"Tier 2: teacher layers {t2.get('layers')}, {t2.get('precision', 'fp32')}; "
                  + ", ".join(f"{k} {v}" for k, v in t2.items() if k not in ("layers", "precision", "file") and not isinstance(v, (dict, list))),
                  ""]
    return "\n".join(lines)
