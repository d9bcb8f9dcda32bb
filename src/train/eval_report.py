"""Markdown for `reportguard evaluate`: every number with the keyword and TF-IDF baselines beside it."""
from __future__ import annotations

from reportguard.core.labels import MODEL_LABELS

SYSTEMS = ("model", "tfidf", "keyword")
SET_TITLES = {"test_random": "random test split (shares writers with train: flatters)",
              "test": "writer-held-out test (whole writers never seen in training)",
              "real": "real public text, evaluation-only sites",
              "external": "independent external listings (data/external)"}


def _f(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _labels_table(cell: dict) -> list[str]:
    lines = ["| system | macro-F1 | " + " | ".join(f"{x} P / R / F1" for x in MODEL_LABELS) + " |",
             "|---|---:|" + "---:|" * len(MODEL_LABELS)]
    for s in SYSTEMS:
        m = cell[s]
        lines.append(f"| {s} | **{_f(m['macro_f1'])}** | " + " | ".join(
            f"{_f(m[x]['precision'], 2)} / {_f(m[x]['recall'], 2)} / {_f(m[x]['f1'], 2)}" for x in MODEL_LABELS) + " |")
    return lines


def _rate(r: dict) -> str:
    lo, hi = r["wilson_per_10k"]
    return f"{r['per_10k']:.1f} [{lo:.1f}, {hi:.1f}] ({r['count']}/{r['rows']})"


# Long: one markdown template, its sections in the order the reader meets them (a flat layout).
def render(result: dict) -> str:
    out = [f"# Evaluation: {result['model_version']}", "",
           f"`reportguard evaluate --model {result['model_dir']}`; {result['seconds']:.0f} s. Rows per set: "
           + ", ".join(f"{k} {v}" for k, v in result["sets"].items()) + ". Every set here is evaluation-only: never "
           "trained on, never used for a threshold. Baselines: `keyword` (the notice's phrases, nothing learned) and "
           "`tfidf` (character 1–3-grams, logistic regression, fitted on the model's own training rows).", ""]
    out += ["## 1. Labels per set", ""]
    for name, cell in result["labels"].items():
        out += [f"### {SET_TITLES.get(name, name)}: {cell['rows']} rows", ""] + _labels_table(cell) + [""]
    if "real_text" in result:
        rt = result["real_text"]
        out += ["### Real text: the two numbers operators ask for", "",
                f"{rt['violating_seller_quotes']} violating seller quotes, {rt['narrative_paragraphs']} narrative paragraphs "
                "(news, judgments, rules).", "", "| system | seller quotes caught | narrative paragraphs flagged |", "|---|---:|---:|"]
        out += [f"| {s} | {_f(rt[s]['quotes_caught'])} | {_f(rt[s]['narrative_flagged'])} |" for s in SYSTEMS] + [""]
    if "probes" in result:
        out += ["## 2. Counterfactual probes, per shortcut family", "",
                "Pairs that differ only in a surface cue (invariance: the label must not move) or keep the cue and change "
                "the intent (flip). macro-F1 over the family's rows; `pairs` = share of pairs with both rows exactly right.", "",
                "| family | rows | " + " | ".join(f"{s} macro-F1 / pairs" for s in SYSTEMS) + " |", "|---|---:|" + "---:|" * len(SYSTEMS)]
        for family, cell in result["probes"].items():
            if family.startswith("_"):
                continue
            out.append(f"| {family} | {cell['rows']} | " + " | ".join(
                f"{_f(cell[s]['macro_f1'])} / {_f(cell[s]['pairs_both_right'], 2)}" for s in SYSTEMS) + " |")
        out += ["| **mean** | | " + " | ".join(f"**{_f(result['probes']['_mean'][s])}**" for s in SYSTEMS) + " |", ""]
    if "ordinary" in result:
        o = result["ordinary"]
        out += ["## 3. Held-out ordinary listings: false alarms", "",
                f"{o['rows']} ordinary listings by writers never trained on. Per 10,000 listings, 95% Wilson interval in "
                "brackets. *Violation* = `report_sale` or `false_ad` predicted; *not passed* = decision review or block.", "",
                "| system | violation flagged | any label | not passed | decisions pass / review / block |", "|---|---:|---:|---:|---|"]
        for s in SYSTEMS:
            c = o[s]
            mix = c.get("decisions")
            out.append(f"| {s} | {_rate(c['violation'])} | {_rate(c['any_label'])} | "
                       f"{_rate(c['not_passed']) if 'not_passed' in c else '–'} | "
                       f"{' / '.join(str(mix[d]) for d in ('pass', 'review', 'block')) if mix else '–'} |")
        out += ["", "By subset (violation flagged, per 10,000):", "", "| subset | rows | " + " | ".join(SYSTEMS) + " |",
                "|---|---:|" + "---:|" * len(SYSTEMS)]
        for subset, cell in o["by_subset"].items():
            out.append(f"| {subset} | {cell['rows']} | " + " | ".join(_rate(cell[s]) for s in SYSTEMS) + " |")
        out.append("")
    if "prevalence" in result:
        out += ["## 4. What a run brings at a realistic prevalence", "",
                "Recall R = share of the writer-held-out test's violations (report_sale or false_ad) flagged with a violation "
                "label; FAR = violation false-alarm rate on the held-out ordinary listings. Per million listings at prevalence π: "
                "true alerts = 10⁶·π·R, false alerts = 10⁶·(1−π)·FAR, precision = true / (true + false). The last column "
                "repeats the precision with FAR at the upper end of its 95% Wilson interval (FAR⁺): what a run can still "
                "expect if the true false-alarm rate is as high as the sample allows.", "",
                "| system | R | FAR | π | true alerts | false alerts | alerts | precision | precision at FAR⁺ |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s in SYSTEMS:
            p = result["prevalence"][s]
            for row in p["table"]:
                out.append(f"| {s} | {p['recall']:.3f} | {p['false_alarm_rate']:.4f} | {row['prevalence']:.1%} | "
                           f"10⁶·{row['prevalence']}·{p['recall']:.3f} = {row['true_alerts']:,.0f} | "
                           f"10⁶·{1 - row['prevalence']:.3f}·{p['false_alarm_rate']:.4f} = {row['false_alerts']:,.0f} | "
                           f"{row['alerts']:,.0f} | {row['precision']:.3f} | "
                           f"{_f(row.get('precision_at_far_upper'))} (FAR⁺ {p.get('far_upper', 0):.4f}) |")
        out.append("")
    if result.get("slices"):
        out += ["## 5. Slices of the two test splits", "", "macro-F1 over the labels present in the slice (exact label-set match in brackets).", ""]
        for key, groups in result["slices"].items():
            out += [f"**{key}**", "", "| value | rows | " + " | ".join(SYSTEMS) + " |", "|---|---:|" + "---:|" * len(SYSTEMS)]
            for value, cell in groups.items():
                out.append(f"| {value} | {cell['rows']} | " + " | ".join(
                    f"{_f(cell[s]['macro_f1'])} ({_f(cell[s]['exact_match'], 2)})" for s in SYSTEMS) + " |")
            out.append("")
    stem = result["model_version"]
    out += ["## 6. Curves", "", "Writer-held-out test plus held-out ordinary listings: PR curves per label "
            "(model and TF-IDF), and the model's reliability diagram with the count of listings in each bin.", "",
            f"![PR curves]({stem}.pr_curves.png)", "", f"![reliability]({stem}.reliability.png)", ""]
    return "\n".join(out)
