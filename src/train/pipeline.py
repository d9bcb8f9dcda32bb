"""`reportguard train`: corpus -> fine-tuned model -> calibrated, exported, gated bundle, tracked in MLflow.

`train()` reads as the steps it runs, each a function here or in this package:

1. data: train and validation rows (corpus, ordinary listings, real text, extra rows), the
   writer-held-out test split; the backbone, its tokenizer and the measured max length;
2. fine-tune (finetune.py): early stopping on validation macro-F1, the best checkpoint kept;
3. calibrate (calibrate.py): temperatures and thresholds, on validation only;
4. export (export.py): the ONNX graphs, fused, and their int8 flavours;
5. gate (gate.py): which graph ships, checked against PyTorch on validation and test;
6. evaluate: the shipped bundle, loaded by serve's `Bundle` (the code that scores), on
   validation, test and the external set, beside the keyword and TF-IDF baselines; the report;
7. register: the bundle (models/<version>), MLflow (tracking.py: params, metrics, report, the
   registered model and its alias), models/current; then `reportguard evaluate` on the bundle.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reportguard.core.calibration import calibrated, label_array, sigmoid
from reportguard.core.encoding import EncodingSpec, spec_for
from reportguard.core.labels import TAGS
from reportguard.core.normalize import NORMALIZER_VERSION, listing_text

from . import tracking
from .baselines import TfidfBaseline, keyword_predict
from .calibrate import calibrate
from .card import model_card  # noqa: F401  (importable from here, as before)
from .config import ModelConfig, TrainConfig, TrainingConfig, resolve
from .corpus import load_split
from .datasets import training_files, training_rows
from .export import export_graphs, point_current, write_bundle
from .finetune import ListingDataset, fine_tune, predict_logits
from .gate import GateResult, run_gate
from .metrics import per_label, slice_metrics, to_matrix
from .model import load_backbone
from .report import evaluate, long_listing_coverage, plot_pr_curves, plot_reliability, render


def train(config: TrainConfig) -> Path:
    """Train, export, gate, evaluate and register one model; returns the bundle's folder."""
    config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    started = time.perf_counter()
    run = RunFolders.create(config)
    data = load_data(config)                                                                # 1. data
    model, tokenizer, provenance = load_backbone(config.backbone, data.texts["train"], config.data)
    spec, length_stats = encoding_spec(tokenizer, data.texts["train"], config.model)
    datasets = make_datasets(data, tokenizer, spec, config.training)
    resolved = config.to_dict() | {"model_version": run.version, "max_length_resolved": spec.max_length}
    with tracking.mlflow_run(config, run.version) as mlflow:
        tracking.log_run_start(mlflow, resolved, data.data_hash, run.version, length_stats)
        t0 = time.perf_counter()                                                            # 2. fine-tune
        model = fine_tune(model, datasets["train"], datasets["validation"], config.training, run.work,
                          tracking.epoch_logger(mlflow), freeze_word_embeddings=config.model.freeze_word_embeddings).model
        train_seconds = time.perf_counter() - t0
        torch_logits = {k: predict_logits(model, datasets[k], config.training.eval_batch_size) for k in ("validation", "test")}
        calibration = calibrate(torch_logits["validation"], data.labels["validation"], config.thresholds, data.ordinary)  # 3.
        graphs = export_graphs(model, spec.pad_id, run.work, config.export)                # 4. export
        gate = run_gate(graphs, torch_logits, data.labels, {k: datasets[k].encoded for k in ("validation", "test")},  # 5. gate
                        calibration, config.export, spec.pad_id, threads=config.training.threads or 2)
        bundle_args = dict(chosen_onnx=gate.graph, fp32_onnx=graphs["fp32"], tokenizer=tokenizer, hf_model=model, spec=spec,
                           calibration=calibration, model_version=run.version, precision=gate.precision,
                           precision_reason=gate.reason, provenance=provenance, resolved_config=resolved,
                           data_hash=data.data_hash, fallback=gate.fallback)
        summary = evaluate_shipped(run, config, data, tokenizer, spec, provenance, calibration, gate, torch_logits,  # 6.
                                   bundle_args, train_seconds, length_stats)
        bundle = register(run, config, summary, bundle_args, mlflow)                        # 7. register
    shutil.rmtree(run.work, ignore_errors=True)
    if config.output.evaluate:
        # The shipped bundle on every evaluation-only set, through serve's Bundle.
        from .evaluate import evaluate_bundle
        evaluate_bundle(bundle, config.data, resolve(config.output.reports_dir) / "eval", config.mlflow)
    print(f"bundle {bundle}{' (models/current)' if config.output.promote else ' (not promoted: output.promote is false)'}; "
          f"report {run.report_dir / 'report.md'}; test macro-F1 {summary['test']['macro_f1']:.4f}; "
          f"{time.perf_counter() - started:.0f}s in all", flush=True)
    return bundle


# --- 1. data ---------------------------------------------------------------------------------------

@dataclass
class RunFolders:
    version: str  # model_version: <name>-<timestamp>
    models_dir: Path
    report_dir: Path  # reports/train/<version>/
    work: Path  # models/.work/<version>/: checkpoints and candidate graphs, removed at the end

    @classmethod
    def create(cls, config: TrainConfig) -> RunFolders:
        version = f"{config.name}-{time.strftime('%Y%m%dT%H%M%S')}"
        models_dir = resolve(config.output.models_dir)
        run = cls(version, models_dir, resolve(config.output.reports_dir) / "train" / version, models_dir / ".work" / version)
        run.report_dir.mkdir(parents=True, exist_ok=True)
        run.work.mkdir(parents=True, exist_ok=True)
        return run


@dataclass
class TrainingData:
    splits: dict[str, list[dict]]  # train, validation, test rows
    texts: dict[str, list[str]]  # what the model reads (core.normalize.listing_text)
    labels: dict[str, np.ndarray]  # 0/1 per row and model label
    ordinary: np.ndarray  # validation rows that are ordinary listings (they bound the thresholds)
    data_hash: str  # over every file training reads


def load_data(config: TrainConfig) -> TrainingData:
    """Train and validation rows (corpus, ordinary listings, real text; plus extra training rows,
    e.g. exported reviewer verdicts), and the writer-held-out test split."""
    splits = training_rows(config.data)
    splits["test"] = load_split(resolve(config.data.dir), "test")
    texts = {k: [listing_text(r["title"], r["description"]) for r in v] for k, v in splits.items()}
    labels = {k: to_matrix([r["labels"] for r in v]) for k, v in splits.items()}
    ordinary = np.array([r["listing_id"].startswith("bg-") for r in splits["validation"]])
    return TrainingData(splits, texts, labels, ordinary, tracking.data_hash(training_files(config.data)))


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


def encoding_spec(tokenizer, train_texts: list[str], m: ModelConfig) -> tuple[EncodingSpec, dict]:
    """How listings become model input (max length from the measured token lengths), and those lengths."""
    max_length, length_stats = choose_max_length(tokenizer, train_texts, m.max_length)
    spec = spec_for(tokenizer, max_length, m.head_share, m.long_text or "head_tail", m.stride or 0)
    print(f"token lengths {length_stats}; max_length {max_length}", flush=True)
    return spec, length_stats


def make_datasets(data: TrainingData, tokenizer, spec: EncodingSpec, t: TrainingConfig) -> dict[str, ListingDataset]:
    return {"train": ListingDataset(data.splits["train"], tokenizer, spec, t.augment_probability, t.seed, train=True),
            "validation": ListingDataset(data.splits["validation"], tokenizer, spec),
            "test": ListingDataset(data.splits["test"], tokenizer, spec)}


# --- 6. evaluate -------------------------------------------------------------------------------------

def evaluate_shipped(run: RunFolders, config: TrainConfig, data: TrainingData, tokenizer, spec: EncodingSpec, provenance: dict,
                     calibration: dict, gate: GateResult, torch_logits: dict, bundle_args: dict, train_seconds: float,
                     length_stats: dict) -> dict:
    """The shipped model on validation, test and the external set, scored by serve's `Bundle` from
    a candidate bundle written exactly as the final one (the same graphs, tokenizer and
    bundle.json), beside the baselines; the report and its plots. Returns the summary."""
    from reportguard.serve.bundle import load_bundle
    candidate = write_bundle(run.work / "candidate", metrics={}, card="(candidate: evaluated before the final bundle is written)",
                             **bundle_args)
    shipped = load_bundle(candidate, threads=config.training.threads or 2)
    probs = {k: shipped.predict_proba(data.texts[k])[0] for k in ("validation", "test")}
    baselines = _baselines(data)
    summary = {
        "model_version": run.version, "config_file": config.config_file, "backbone": provenance.get("source"),
        "provenance": provenance, "data_hash": data.data_hash, "normalizer_version": NORMALIZER_VERSION,
        "train_rows": len(data.splits["train"]), "validation_rows": len(data.splits["validation"]),
        "test_rows": len(data.splits["test"]), "max_length": spec.max_length, "token_lengths": length_stats,
        "truncated_share": length_stats["truncated_share"], "long_text": spec.long_text,
        "long_listings": long_listing_coverage(tokenizer, data.splits["validation"] + data.splits["test"], spec),
        "train_seconds": train_seconds, "precision": gate.precision, "precision_reason": gate.reason,
        "calibration": calibration, "export": gate.results, "baselines": baselines,
        "validation": evaluate(data.splits["validation"], data.labels["validation"], probs["validation"], shipped.thresholds),
        "test": evaluate(data.splits["test"], data.labels["test"], probs["test"], shipped.thresholds),
    }
    summary["external"] = _external(config, shipped, baselines)
    temps = label_array(calibration["temperature"])
    plot_reliability(run.report_dir / "reliability.png", data.labels["test"],
                     {"raw": sigmoid(torch_logits["test"]), "temperature-scaled": calibrated(torch_logits["test"], temps)})
    plot_pr_curves(run.report_dir / "pr_curves.png", data.labels["test"],
                   {"model": probs["test"], "tf-idf baseline": baselines["tfidf"]["test_probs"]})
    baselines["tfidf"].pop("test_probs")
    baselines["tfidf"].pop("model")
    report = render(summary)
    (run.report_dir / "report.md").write_text(report, encoding="utf-8")
    (run.report_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1, default=float) + "\n",
                                                 encoding="utf-8")
    # A comparison run (output.promote: false) keeps its report and bundle but leaves
    # reports/train/latest.md and models/current on the model that ships.
    if config.output.promote:
        (run.report_dir.parent / "latest.md").write_text(report.replace("](", f"]({run.version}/"), encoding="utf-8")
    return summary


def _external(config: TrainConfig, shipped, baselines: dict) -> dict | None:
    """Scores on independently written listings (data/external/*.jsonl), if any: never used for
    training, thresholds or model choice; the closest proxy for listings from outside this corpus."""
    files = sorted(resolve(config.data.external_dir or "data/external").glob("*.jsonl"))
    if not files:
        return None
    rows = [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [listing_text(r["title"], r["description"]) for r in rows]
    labels = to_matrix([r["labels"] for r in rows])
    model = per_label(labels, (shipped.predict_proba(texts)[0] >= shipped.thresholds).astype(np.int8))
    tfidf = per_label(labels, baselines["tfidf"]["model"].predict(texts))
    keyword = per_label(labels, keyword_predict(rows))
    return {"files": [f.name for f in files], "rows": len(rows), "model": model, "tfidf": tfidf, "keyword": keyword}


def _baselines(data: TrainingData) -> dict:
    """Keyword rules and TF-IDF on the same splits, for the report."""
    splits, texts, labels = data.splits, data.texts, data.labels
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


# --- 7. register ---------------------------------------------------------------------------------------

def register(run: RunFolders, config: TrainConfig, summary: dict, bundle_args: dict, mlflow) -> Path:
    """The final bundle (models/<version>, with the card and metrics), MLflow's results and the
    registered model, and models/current: with MLflow it follows the champion alias
    (tracking.log_bundle), without it the bundle of a promoted run."""
    baselines = summary["baselines"]
    metrics = {"test": {k: v for k, v in summary["test"].items() if k not in ("errors",)},
               "validation_macro_f1": summary["validation"]["macro_f1"], "export": summary["export"],
               "baselines_test_macro_f1": {k: baselines[k]["test"]["macro_f1"] for k in ("keyword", "tfidf")},
               "external": summary["external"]}
    bundle = write_bundle(run.models_dir / run.version, metrics=metrics, card=model_card(summary, config.backbone), **bundle_args)
    if config.output.promote and not mlflow:
        point_current(run.models_dir, bundle)
    if mlflow:
        tracking.log_results(mlflow, summary, run.report_dir)
        registered = tracking.log_bundle(mlflow, bundle, config)
        print(f"MLflow: registered {config.mlflow.registered_model} version {registered}", flush=True)
    return bundle
