"""Tier 2: a few of the teacher's own transformer layers, distilled to the teacher's calibrated logits.

Why this shape (issue #14): a 3-4 layer student initialised from the teacher's alternate layers
(as DistilBERT and RBT3 do) keeps most of the teacher's score at a fraction of its cost, and needs
no hub: the embeddings (already a pruned vocabulary), pooler and classifier head come from the
teacher's fine-tuned checkpoint (bundle hf/). The classifier rows are divided by the bundle's
temperatures, so the student speaks in calibrated-logit units (logit / T, the routing cuts' units)
from its first step, and it is trained to stay there: MSE to the teacher's calibrated logits
(temperature 1), BCE on gold labels where a text has them, and optionally MSE between hidden
states at the mapped layers (a teacher forward per batch, so about twice the CPU time).

The graph goes through the project's own exporter (train/export.py: ONNX, onnxruntime fusion,
dynamic int8), and ships int8 only when its decisions at the teacher's cuts agree with fp32's.
Inputs and output are those of the teacher's model.onnx: input_ids, attention_mask -> logits.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path

import numpy as np
import torch

from reportguard.core.encoding import Encoded, EncodingSpec, encode, load_tokenizer, pad_batch
from reportguard.core.labels import MODEL_LABELS

TIER2_FILE = "tier2.onnx"
# Fastest first: the first that agrees with fp32 ships (FFN2 kept fp32 is the teacher's fallback
# flavour: slower, but half the int8 error).
INT8_FLAVOURS = ("qint8_per_channel", "qint8_per_channel_fp32_ffn2")


@dataclass
class Tier2Config:
    layers: list[int] | None = None  # teacher layers kept (0-based); None: 4 alternate layers ending at the last
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup: float = 0.06  # share of the planned steps
    weight_decay: float = 0.01
    max_seconds: float = 3600.0  # wall-clock budget of the training loop
    max_steps: int = 0  # 0: no limit beyond `epochs`
    gold_weight: float = 0.5
    hidden_weight: float = 0.0  # > 0: also match hidden states (needs a teacher forward: ~2x the time)
    # The word embeddings are 9.0M of e5-small's 16.4M student parameters, already fine-tuned by
    # the teacher: frozen, AdamW and the dense embedding gradient skip them (cheaper steps on 2 cores).
    freeze_embeddings: bool = True
    threads: int = 2
    seed: int = 0
    log_every: int = 50
    min_agreement: float = 0.99  # int8 vs fp32 decisions at the teacher's cuts
    int8_flavours: tuple[str, ...] = INT8_FLAVOURS
    check_windows: int = 2000  # windows of the given texts the int8 check scores


ALIASES = {"lr": "learning_rate"}
#: Keys of distill/config.py's Tier2Config that the pipeline reads (whether to train, how many
#: transfer texts to sample), not the training: accepted and ignored here.
PIPELINE_KEYS = {"enabled", "train_texts", "reuse_from"}


def tier2_config(cfg) -> Tier2Config:
    """A Tier2Config from a plain dict (a YAML section), another dataclass with these fields (the
    distill config's tier2 section) or None; unknown keys are an error, so a misspelt setting
    cannot be silently ignored."""
    if isinstance(cfg, Tier2Config):
        return cfg
    cfg = asdict(cfg) if is_dataclass(cfg) else dict(cfg or {})
    cfg = {ALIASES.get(k, k): v for k, v in cfg.items() if k not in PIPELINE_KEYS}
    unknown = set(cfg) - {f.name for f in fields(Tier2Config)}
    if unknown:
        raise ValueError(f"unknown tier2 settings: {sorted(unknown)}")
    if "int8_flavours" in cfg:
        cfg["int8_flavours"] = tuple(cfg["int8_flavours"])
    return Tier2Config(**cfg)


def alternate_layers(teacher_layers: int, keep: int = 4) -> list[int]:
    """`keep` evenly spaced teacher layers ending with the last (DistilBERT/RBT3 style).

    >>> alternate_layers(12, 4)
    [2, 5, 8, 11]
    >>> alternate_layers(12, 3)
    [3, 7, 11]
    >>> alternate_layers(2, 4)
    [0, 1]
    """
    keep = min(keep, teacher_layers)
    step = teacher_layers / keep
    return [int(round(teacher_layers - 1 - step * (keep - 1 - k))) for k in range(keep)]


# --- building ---------------------------------------------------------------------------------

def load_teacher(teacher_hf_dir: str | Path):
    """The teacher's fine-tuned transformers checkpoint (a local directory only: no hub here)."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(str(teacher_hf_dir), local_files_only=True)


def build_student(teacher_hf_dir: str | Path, layers: list[int] | None = None, temperature: np.ndarray | None = None):
    """A student with the teacher's embeddings, pooler, classifier and only encoder `layers`
    (0-based, in order), its config saying so (num_hidden_layers = len(layers)).

    Built fresh from the config and filled from a remapped state dict (layer k of the student =
    teacher layer layers[k]) rather than by cutting the teacher's ModuleList: each layer then has
    the layer_idx and config of its new place. With `temperature` (per model label, the bundle's),
    the classifier's rows are divided by it, so the student's logits start in calibrated units."""
    from transformers import AutoModelForSequenceClassification

    teacher = load_teacher(teacher_hf_dir)
    depth = teacher.config.num_hidden_layers
    layers = list(layers) if layers is not None else alternate_layers(depth)
    if not layers or sorted(set(layers)) != layers or layers[0] < 0 or layers[-1] >= depth:
        raise ValueError(f"layers must be increasing teacher layers in 0..{depth - 1}, not {layers}")
    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    config.num_hidden_layers = len(layers)
    config.distilled_from_layers = layers
    student = AutoModelForSequenceClassification.from_config(config)
    student.load_state_dict(remap_layers(teacher.state_dict(), layers), strict=True)
    if temperature is not None:
        scale_head(student, np.asarray(temperature, dtype=np.float32))
    return student


def remap_layers(state: dict, layers: list[int]) -> dict:
    """The teacher's state dict with encoder layer layers[k] renamed to layer k, others dropped."""
    new_index = {old: new for new, old in enumerate(layers)}
    pattern = re.compile(r"(.*\.encoder\.layer\.)(\d+)(\..*)")
    out = {}
    for key, value in state.items():
        m = pattern.fullmatch(key)
        if m is None:
            out[key] = value
        elif int(m.group(2)) in new_index:
            out[f"{m.group(1)}{new_index[int(m.group(2))]}{m.group(3)}"] = value
    return out


@torch.no_grad()
def scale_head(model, temperature: np.ndarray) -> None:
    """Divide the last linear layer's rows (weight and bias) by T per label: logit / T."""
    head = model.classifier if not hasattr(model.classifier, "out_proj") else model.classifier.out_proj
    t = torch.from_numpy(temperature).to(head.weight.dtype)
    if head.weight.shape[0] != len(t):
        raise ValueError(f"classifier has {head.weight.shape[0]} outputs, temperature {len(t)}")
    head.weight.div_(t[:, None])
    head.bias.div_(t)


# --- training ---------------------------------------------------------------------------------

def first_windows(encoded: Encoded) -> list[list[int]]:
    """Each text's first sequence (window): the training input of a text (owner is sorted)."""
    _, first = np.unique(encoded.owner, return_index=True)
    return [encoded.ids[j] for j in first]


def gold_targets(gold: list | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, labels) 0/1 targets and a per-row mask: gold may be None (no gold at all) or a list
    with, per text, a list of label names or None (no gold for that text)."""
    targets = np.zeros((n, len(MODEL_LABELS)), dtype=np.float32)
    mask = np.zeros(n, dtype=np.float32)
    if gold is None:
        return targets, mask
    if len(gold) != n:
        raise ValueError(f"{len(gold)} gold rows for {n} texts")
    for i, labels in enumerate(gold):
        if labels is not None:
            mask[i] = 1.0
            targets[i] = [name in labels for name in MODEL_LABELS]
    return targets, mask


def lr_factor(step: int, planned: int, elapsed: float, cfg: Tier2Config) -> float:
    """Linear warmup, then linear decay to zero at whichever limit comes first (steps or seconds),
    so a run cut by its time budget still ends on a small learning rate."""
    warm = max(1, int(cfg.warmup * planned))
    progress = max(step / max(planned, 1), elapsed / cfg.max_seconds if cfg.max_seconds else 0.0)
    return min(1.0, (step + 1) / warm) * max(0.0, 1.0 - progress)


def hidden_loss(student_hidden, teacher_hidden, layers: list[int], mask: torch.Tensor) -> torch.Tensor:
    """MSE between student layer k's output and teacher layer layers[k]'s, over real tokens only
    (hidden_states[0] is the embeddings, so layer i's output is hidden_states[i + 1])."""
    weight = mask.unsqueeze(-1).to(student_hidden[0].dtype)
    denom = weight.sum() * student_hidden[0].shape[-1]
    total = sum(((student_hidden[k + 1] - teacher_hidden[old + 1]) ** 2 * weight).sum() / denom
                for k, old in enumerate(layers))
    return total / len(layers)


def batch_loss(student, batch: dict, cfg: Tier2Config, teacher=None, layers: list[int] | None = None) -> tuple[torch.Tensor, dict]:
    """The distillation loss of one batch and its parts (floats, for the log)."""
    want_hidden = cfg.hidden_weight > 0
    out = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=want_hidden)
    mse = torch.nn.functional.mse_loss(out.logits, batch["soft"])
    loss, parts = mse, {"mse": mse.item()}
    if cfg.gold_weight > 0 and batch["gold_mask"].any():
        bce = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, batch["gold"], reduction="none").mean(dim=1)
        bce = (bce * batch["gold_mask"]).sum() / batch["gold_mask"].sum()
        loss = loss + cfg.gold_weight * bce
        parts["bce"] = bce.item()
    if want_hidden:
        with torch.no_grad():
            t_out = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        hid = hidden_loss(out.hidden_states, t_out.hidden_states, layers, batch["attention_mask"])
        loss = loss + cfg.hidden_weight * hid
        parts["hidden"] = hid.item()
    parts["loss"] = loss.item()
    return loss, parts


def make_batch(idx: list[int], ids: list[list[int]], soft: np.ndarray, gold: np.ndarray, gold_mask: np.ndarray, pad_id: int) -> dict:
    input_ids, mask = pad_batch([ids[i] for i in idx], pad_id)
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask),
            "soft": torch.from_numpy(soft[idx]), "gold": torch.from_numpy(gold[idx]), "gold_mask": torch.from_numpy(gold_mask[idx])}


def batches(lengths: list[int], cfg: Tier2Config):
    """Seeded length-bucketed batches, a new permutation each epoch, without end (the loop stops
    itself): finetune.LengthBucketSampler, the fine-tuning's own bucketing."""
    from reportguard.train.finetune import LengthBucketSampler

    sampler = LengthBucketSampler(lengths, cfg.batch_size, cfg.seed)
    while True:
        yield from sampler


def distil(student, texts: list[str], teacher_logits: np.ndarray, gold: list | None, cfg: dict | Tier2Config, *,
           tokenizer, spec: EncodingSpec, teacher=None) -> dict:
    """Train `student` in place (plain torch loop, CPU) on each text's first window; stop at the
    planned steps (epochs, max_steps) or at cfg.max_seconds, whichever comes first. Returns what
    happened (steps, seconds, steps/s, last losses, why it stopped). `teacher` (a transformers
    model) is needed only for cfg.hidden_weight > 0."""
    cfg = tier2_config(cfg)
    soft = np.ascontiguousarray(teacher_logits, dtype=np.float32)
    if soft.shape != (len(texts), len(MODEL_LABELS)):
        raise ValueError(f"teacher_logits has shape {soft.shape}, expected ({len(texts)}, {len(MODEL_LABELS)})")
    if cfg.hidden_weight > 0 and teacher is None:
        raise ValueError("hidden_weight > 0 needs the teacher model")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    ids = first_windows(encode(tokenizer, texts, spec))
    gold_arr, gold_mask = gold_targets(gold, len(texts))
    planned = math.ceil(cfg.epochs * math.ceil(len(ids) / cfg.batch_size))
    planned = min(planned, cfg.max_steps) if cfg.max_steps else planned
    if teacher is not None:
        teacher.eval()
    student.get_input_embeddings().weight.requires_grad_(not cfg.freeze_embeddings)
    layers = getattr(student.config, "distilled_from_layers", None)
    stats = train_loop(student, batches([len(x) for x in ids], cfg), planned, cfg,
                       lambda idx: make_batch(idx, ids, soft, gold_arr, gold_mask, spec.pad_id), teacher, layers)
    return {**stats, "planned_steps": planned, "texts": len(texts), "gold_rows": int(gold_mask.sum())}


def train_loop(student, batch_indices, planned: int, cfg: Tier2Config, to_batch, teacher, layers) -> dict:
    """AdamW over the batches until `planned` steps or cfg.max_seconds; progress to stderr."""
    trainable = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    student.train()
    start, step, window, last = time.perf_counter(), 0, [], {}
    stopped = "steps"
    while step < planned:
        elapsed = time.perf_counter() - start
        if cfg.max_seconds and elapsed >= cfg.max_seconds:
            stopped = "max_seconds"
            break
        for group in optimizer.param_groups:
            group["lr"] = cfg.learning_rate * lr_factor(step, planned, elapsed, cfg)
        loss, last = batch_loss(student, to_batch(next(batch_indices)), cfg, teacher, layers)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        step += 1
        window.append(last["loss"])
        if (cfg.log_every and step % cfg.log_every == 0) or step == planned:
            seconds = time.perf_counter() - start
            print(f"tier2: step {step}/{planned}, {step / seconds:.2f} steps/s, loss {np.mean(window):.4f} "
                  f"({', '.join(f'{k} {v:.4f}' for k, v in last.items() if k != 'loss')}), {seconds:.0f}s", file=sys.stderr, flush=True)
            window = []
    student.eval()
    seconds = time.perf_counter() - start
    return {"steps": step, "seconds": round(seconds, 2), "steps_per_s": round(step / max(seconds, 1e-9), 3),
            "last": last, "stopped_by": stopped}


# --- export -----------------------------------------------------------------------------------

def decisions(logits: np.ndarray, cuts: list[np.ndarray]) -> np.ndarray:
    """Which side of every cut each row lies on (calibrated-logit units): one bool column per cut."""
    return np.concatenate([logits[:, j, None] >= np.asarray(c)[None, :] for j, c in enumerate(cuts)], axis=1)


def decision_agreement(a: np.ndarray, b: np.ndarray, cuts: list[np.ndarray]) -> float:
    """Share of rows on the same side of every cut under both logits."""
    return float((decisions(a, cuts) == decisions(b, cuts)).all(axis=1).mean()) if len(a) else 1.0


@torch.no_grad()
def torch_logits(model, ids: list[list[int]], pad_id: int, batch_size: int = 64) -> np.ndarray:
    """The student's PyTorch logits per sequence (the reference the graphs are checked against)."""
    from reportguard.core.encoding import length_batches

    model.eval()
    out = np.zeros((len(ids), len(MODEL_LABELS)), dtype=np.float32)
    for idx in length_batches(ids, batch_size):
        input_ids, mask = pad_batch([ids[i] for i in idx], pad_id)
        out[idx] = model(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    return out


def export_student(student, out_path: str | Path, pad_id: int, check_ids: list[list[int]], cuts: list[np.ndarray],
                   min_agreement: float = 0.99, flavours: tuple[str, ...] = INT8_FLAVOURS, threads: int = 2,
                   metadata: dict[str, str] | None = None) -> dict:
    """Export `student` to `out_path` through export.py (ONNX, fusion, int8); the first int8
    flavour whose decisions at `cuts` agree with the fused fp32 graph's on `check_ids` (token-id
    sequences) on at least `min_agreement` of rows ships, else fp32. The fused fp32 graph must
    itself agree with PyTorch (fusion can drift), or this raises."""
    from reportguard.train.export import export_onnx, fuse, onnx_logits, quantize, stamp_onnx

    out_path = Path(out_path)
    work = Path(tempfile.mkdtemp(prefix=".tier2-", dir=out_path.parent))
    try:
        reference = torch_logits(student, check_ids, pad_id)
        fp32 = fuse(export_onnx(student, work / "raw.onnx", pad_id), work / "fp32.onnx",
                    student.config.num_attention_heads, student.config.hidden_size)
        fp32_logits, fp32_seconds = onnx_logits(fp32, check_ids, pad_id, threads=threads)
        result = {"fp32_vs_torch_agreement": decision_agreement(reference, fp32_logits, cuts),
                  "fp32_vs_torch_max_abs_diff": float(np.abs(reference - fp32_logits).max()) if len(check_ids) else 0.0,
                  "fp32_seconds": round(fp32_seconds, 3), "check_rows": len(check_ids), "int8": {}}
        if result["fp32_vs_torch_agreement"] < min_agreement:
            raise RuntimeError(f"fused fp32 tier2 graph disagrees with PyTorch: {result}")
        chosen, precision, agreement = fp32, "fp32", 1.0
        for name in flavours:
            graph = quantize(fp32, work / f"{name}.onnx", name)
            logits, seconds = onnx_logits(graph, check_ids, pad_id, threads=threads)
            agree = decision_agreement(fp32_logits, logits, cuts)
            result["int8"][name] = {"agreement": agree, "max_abs_diff": float(np.abs(fp32_logits - logits).max()) if len(check_ids) else 0.0,
                                    "seconds": round(seconds, 3)}
            if agree >= min_agreement:
                chosen, precision, agreement = graph, name, agree
                break
        layers = list(getattr(student.config, "distilled_from_layers", range(student.config.num_hidden_layers)))
        props = {"labels": json.dumps(list(MODEL_LABELS)), "precision": precision, "tier": "tier2",
                 "layers": str(layers), "output": "logits, one column per label in `labels` order, in calibrated-logit "
                 "units (temperature 1): p = sigmoid(logit)", **(metadata or {})}
        stamp_onnx(chosen, out_path, props)
        return {"file": out_path.name, "precision": precision, "layers": layers, "agreement": agreement,
                "file_mb": round(out_path.stat().st_size / 2**20, 1), **result}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- all together -----------------------------------------------------------------------------

def check_sequences(encoded: Encoded, n: int, seed: int) -> list[list[int]]:
    """Up to n of the texts' sequences (every window, not only the first: the scorer scores
    them all), a seeded sample, for the int8 check."""
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.permutation(len(encoded.ids))[:n])
    return [encoded.ids[j] for j in pick]


def train_tier2(bundle_dir: str | Path, texts: list[str], teacher_logits: np.ndarray, gold: list | None,
                out_dir: str | Path, cfg: dict | Tier2Config | None = None) -> dict:
    """Build, distil and export the tier-2 student of the bundle at `bundle_dir` into
    out_dir/tier2.onnx; returns what bundle.json's route tier and the logs need (file, precision,
    layers, agreement, the training run, the settings)."""
    from reportguard.serve.bundle import load_bundle

    cfg = tier2_config(cfg)
    bundle_dir, out_dir = Path(bundle_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = load_bundle(bundle_dir, threads=cfg.threads)
    tokenizer = load_tokenizer(str(bundle_dir / "tokenizer.json"))
    student = build_student(bundle_dir / "hf", cfg.layers, bundle.temperature)
    layers = list(student.config.distilled_from_layers)
    teacher = load_teacher(bundle_dir / "hf") if cfg.hidden_weight > 0 else None
    training = distil(student, texts, teacher_logits, gold, cfg, tokenizer=tokenizer, spec=bundle.spec, teacher=teacher)
    check = check_sequences(encode(tokenizer, texts, bundle.spec), cfg.check_windows, cfg.seed)
    cuts = bundle.cuts()  # core.calibration.decision_cuts: flag and block cuts, calibrated units
    exported = export_student(student, out_dir / TIER2_FILE, bundle.spec.pad_id, check, cuts, cfg.min_agreement,
                              cfg.int8_flavours, cfg.threads, {"teacher_model_version": bundle.model_version})
    return {**exported, "layers": layers, "training": training, "config": {**asdict(cfg), "layers": layers},
            "teacher_model_version": bundle.model_version}
