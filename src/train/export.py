"""ONNX export, fusion, int8 quantisation with a quality gate, and the bundle.

1. export: torch.onnx.export with dynamo=False and opset 17 (the dynamo exporter needs onnxscript
   and its graph gets no Attention fusion), dynamic batch and sequence axes;
2. fuse: onnxruntime's transformer optimiser (Attention, EmbedLayerNorm, SkipLayerNorm, BiasGelu),
   then check parity with PyTorch again, since fusion can drift;
3. quantise: dynamic int8 in four flavours (QInt8 / QUInt8, per-tensor / per-channel,
   reduce_range); each is scored on validation and test against PyTorch;
4. gate: ship the int8 flavour that agrees best with PyTorch only if it loses at most
   `max_f1_drop` test macro-F1 and agrees on at least `min_agreement` of label sets; else fp32,
   with the reason written into bundle.json and the model card.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from reportguard.core.labels import MODEL_LABELS
from reportguard.core.normalize import NORMALIZER_VERSION
from reportguard.serve.bundle import FORMAT, sha256_file

INT8_FLAVOURS = {
    # name: (weight type, per_channel, reduce_range)
    "qint8": ("QInt8", False, False),
    "qint8_per_channel": ("QInt8", True, False),
    "quint8": ("QUInt8", False, False),
    "qint8_per_channel_reduce_range": ("QInt8", True, True),
}


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def export_onnx(model, path: Path, pad_id: int) -> Path:
    """Export with eager attention: the SDPA graph of transformers 5 is not recognised by
    onnxruntime's fusion (measured: no Attention/EmbedLayerNorm fusion, 1.85x slower fp32)."""
    model.eval()
    previous = getattr(model.config, "_attn_implementation", None)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    example = torch.full((2, 16), pad_id, dtype=torch.long)
    example[:, :8] = 5
    mask = (example != pad_id).long()
    torch.onnx.export(_LogitsOnly(model), (example, mask), str(path), input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                    "attention_mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}})
    if previous and previous != "eager" and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(previous)
    return path


def fuse(src: Path, dst: Path, num_heads: int, hidden_size: int) -> Path:
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size)
    optimized.save_model_to_file(str(dst))
    return dst


def quantize(src: Path, dst: Path, flavour: str) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weight_type, per_channel, reduce_range = INT8_FLAVOURS[flavour]
    # DefaultTensorType: the fused graph's custom ops carry no type info the quantiser can read.
    quantize_dynamic(str(src), str(dst), weight_type=getattr(QuantType, weight_type), per_channel=per_channel,
                     reduce_range=reduce_range, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dst


def onnx_logits(path: Path, ids: list[list[int]], pad_id: int, threads: int = 2, batch_size: int = 32) -> tuple[np.ndarray, float]:
    """Logits from an ONNX file (length-sorted batches) and the seconds it took."""
    import onnxruntime as ort

    from reportguard.core.encoding import pad_batch
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(ids), len(MODEL_LABELS)), dtype=np.float32)
    start = time.perf_counter()
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        input_ids, mask = pad_batch([ids[i] for i in idx], pad_id)
        out[idx] = session.run(["logits"], {"input_ids": input_ids, "attention_mask": mask})[0]
    return out, time.perf_counter() - start


def label_sets(logits: np.ndarray, calibration: dict) -> np.ndarray:
    t = np.array([calibration["temperature"][x] for x in MODEL_LABELS])
    thr = np.array([calibration["thresholds"][x] for x in MODEL_LABELS])
    return (1 / (1 + np.exp(-logits / t)) >= thr).astype(np.int8)


def compare(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray, calibration: dict) -> dict:
    """Agreement of a candidate's logits with the reference (PyTorch) and its macro-F1."""
    from .metrics import per_label
    ref_sets, cand_sets = label_sets(reference, calibration), label_sets(candidate, calibration)
    t = np.array([calibration["temperature"][x] for x in MODEL_LABELS])
    pr, pc = 1 / (1 + np.exp(-reference / t)), 1 / (1 + np.exp(-candidate / t))
    return {"label_set_agreement": float((ref_sets == cand_sets).all(axis=1).mean()),
            "max_abs_prob_diff": float(np.abs(pr - pc).max()),
            "macro_f1": per_label(labels, cand_sets)["macro_f1"]}


def choose_precision(results: dict, reference_f1: float, config: dict) -> tuple[str, str]:
    """(chosen variant, reason) by the int8 quality gate."""
    cfg = config["export"]
    if not cfg.get("quantize", True):
        return "fp32", "int8 disabled in the config"
    candidates = []
    for name, r in results.items():
        if name == "fp32":
            continue
        drop = reference_f1 - r["test"]["macro_f1"]
        agreement = min(r["test"]["label_set_agreement"], r["validation"]["label_set_agreement"])
        if drop <= cfg["max_f1_drop"] and agreement >= cfg["min_agreement"]:
            candidates.append((agreement, -r["test_seconds"], name))
    if not candidates:
        worst = {n: (round(reference_f1 - r["test"]["macro_f1"], 4), round(r["test"]["label_set_agreement"], 4))
                 for n, r in results.items() if n != "fp32"}
        return "fp32", f"no int8 flavour passed the gate (F1 drop <= {cfg['max_f1_drop']}, agreement >= {cfg['min_agreement']}): {worst}"
    best = max(candidates)
    return best[2], f"{best[2]} passed the gate with label-set agreement {best[0]:.4f}"


def write_bundle(out: Path, *, chosen_onnx: Path, fp32_onnx: Path, tokenizer, hf_model, spec, calibration: dict,
                 model_version: str, precision: str, precision_reason: str, provenance: dict,
                 metrics: dict, card: str, resolved_config: dict, data_hash: str) -> Path:
    """Write models/<name>/ atomically (a temp dir renamed into place) and return its path."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(chosen_onnx, tmp / "model.onnx")
    if precision != "fp32":
        shutil.copyfile(fp32_onnx, tmp / "model_fp32.onnx")
    tokenizer.save(str(tmp / "tokenizer.json"))
    hf_model.save_pretrained(str(tmp / "hf"), safe_serialization=True)
    tokenizer.save(str(tmp / "hf" / "tokenizer.json"))
    (tmp / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (tmp / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    import yaml
    (tmp / "config.resolved.yaml").write_text(yaml.safe_dump(resolved_config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    files = {name: sha256_file(tmp / name) for name in ("model.onnx", "tokenizer.json", "model_fp32.onnx") if (tmp / name).exists()}
    meta = {
        "format": FORMAT,
        "model_version": model_version,
        "labels": list(MODEL_LABELS),
        "normalizer_version": NORMALIZER_VERSION,
        "encoding": spec.to_dict(),
        "temperature": calibration["temperature"],
        "thresholds": calibration["thresholds"],
        "decision": calibration["decision"],
        "precision": precision,
        "precision_reason": precision_reason,
        "files": files,
        "backbone": provenance,
        "training_data_sha256": data_hash,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (tmp / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def point_current(models_dir: Path, bundle: Path) -> Path:
    """models/current -> the new bundle (a relative symlink, swapped atomically)."""
    link = models_dir / "current"
    tmp = models_dir / ".current.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(bundle.name)
    tmp.replace(link)
    return link
