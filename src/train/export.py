"""ONNX export, fusion, int8 quantisation with a quality gate, and the bundle.

1. export: torch.onnx.export with dynamo=False and opset 17 (the dynamo exporter needs onnxscript
   and its graph gets no Attention fusion), dynamic batch and sequence axes;
2. fuse: onnxruntime's transformer optimiser (Attention, EmbedLayerNorm, SkipLayerNorm, BiasGelu),
   then check parity with PyTorch again, since fusion can drift;
3. quantise: dynamic int8 in five flavours (QInt8 / QUInt8, per-tensor / per-channel,
   reduce_range, FFN2 kept fp32); each is scored on validation and test against PyTorch, alone
   and with an fp32 fallback: listings whose int8 score lies within the largest int8 error seen on
   validation of a decision threshold are re-scored in fp32 (Bundle.predict_proba);
4. gate: among the variants that lose at most `max_f1_drop` test macro-F1 and agree with PyTorch
   on at least `min_agreement` of label sets (validation and test), ship the fastest; if none
   passes, fp32, with the reason written into bundle.json and the model card.
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
from reportguard.serve.bundle import FORMAT, decision_cuts, near_a_cut, seal, sha256_file, validate_thresholds

INT8_FLAVOURS = {
    # name: (weight type, per_channel, reduce_range, matmul classes kept in fp32)
    "qint8": ("QInt8", False, False, ()),
    "qint8_per_channel": ("QInt8", True, False, ()),
    "quint8": ("QUInt8", False, False, ()),
    "qint8_per_channel_reduce_range": ("QInt8", True, True, ()),
    # FFN2's input (the GELU output) has channels 30-40x the median (`reportguard bench int8`), and
    # one activation scale per tensor cannot serve both; keeping it fp32 halves the int8 error.
    "qint8_per_channel_fp32_ffn2": ("QInt8", True, False, ("ffn2",)),
}


def node_class(node) -> str | None:
    """Which matmul of a BERT layer a node of onnxruntime's fused graph is: the fused Attention
    (its QKV projection), the attention output projection, FFN1 or FFN2."""
    if node.op_type == "Attention":
        return "qkv"
    if node.op_type != "MatMul":
        return None
    if "attention/output" in node.name:
        return "attn_out"
    if "intermediate" in node.name:
        return "ffn1"
    if "/output/dense" in node.name:
        return "ffn2"
    return None


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

    weight_type, per_channel, reduce_range, keep_fp32 = INT8_FLAVOURS[flavour]
    exclude = []
    if keep_fp32:
        exclude = [n.name for n in onnx.load(str(src), load_external_data=False).graph.node if node_class(n) in keep_fp32]
    # DefaultTensorType: the fused graph's custom ops carry no type info the quantiser can read.
    quantize_dynamic(str(src), str(dst), weight_type=getattr(QuantType, weight_type), per_channel=per_channel,
                     reduce_range=reduce_range, nodes_to_exclude=exclude, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
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


def fallback_logits(int8: np.ndarray, fp32: np.ndarray, margin: np.ndarray, calibration: dict) -> tuple[np.ndarray, np.ndarray]:
    """What the scorer computes with an fp32 fallback (Bundle.predict_proba): int8 logits, except
    rows whose calibrated int8 logit lies within `margin` of a cut, which take the fp32 logits."""
    t = np.array([calibration["temperature"][x] for x in MODEL_LABELS])
    near = near_a_cut(int8 / t, decision_cuts(calibration["thresholds"], calibration["decision"]["block"]), margin)
    return np.where(near[:, None], fp32, int8), near


def fallback_margin(int8_validation: np.ndarray, fp32_validation: np.ndarray, calibration: dict) -> np.ndarray:
    """Per label, the largest int8 error (calibrated logits) seen on validation: a listing whose
    int8 score is farther than this from every cut cannot change decision by that much error."""
    t = np.array([calibration["temperature"][x] for x in MODEL_LABELS])
    return np.abs(int8_validation - fp32_validation).max(axis=0) / t


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
        # Time: int8's plus, for a fallback, the share of listings re-scored in fp32 times fp32's
        # (on test). A variant no faster than fp32 has no reason to ship.
        seconds = r.get("estimated_test_seconds", r["test_seconds"])
        if drop <= cfg["max_f1_drop"] and agreement >= cfg["min_agreement"] and seconds < results["fp32"]["test_seconds"]:
            candidates.append((-seconds, agreement, name))
    if not candidates:
        worst = {n: (round(reference_f1 - r["test"]["macro_f1"], 4), round(r["test"]["label_set_agreement"], 4))
                 for n, r in results.items() if n != "fp32"}
        return "fp32", (f"no int8 variant passed the gate (F1 drop <= {cfg['max_f1_drop']}, agreement >= {cfg['min_agreement']}, "
                        f"faster than fp32): {worst}")
    best = max(candidates)
    r = results[best[2]]
    extra = f", {r['fallback_share']['test']:.1%} of test listings re-scored in fp32" if "fallback_share" in r else ""
    return best[2], f"{best[2]} passed the gate with label-set agreement {best[1]:.4f}{extra}"


def write_bundle(out: Path, *, chosen_onnx: Path, fp32_onnx: Path, tokenizer, hf_model, spec, calibration: dict,
                 model_version: str, precision: str, precision_reason: str, provenance: dict,
                 metrics: dict, card: str, resolved_config: dict, data_hash: str, fallback: dict | None = None) -> Path:
    """Write models/<name>/ atomically (a temp dir renamed into place) and return its path.

    Every file is final before it is hashed into bundle.json: the ONNX graphs carry their
    metadata_props, hf/ is a complete transformers checkpoint (tokenizer with its class and special
    tokens, id2label/label2id) and hf/README.md the Hugging Face model card."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    props = onnx_metadata(model_version, calibration, precision)
    stamp_onnx(chosen_onnx, tmp / "model.onnx", props)
    if precision != "fp32":
        stamp_onnx(fp32_onnx, tmp / "model_fp32.onnx", {**props, "precision": "fp32"})
    tokenizer.save(str(tmp / "tokenizer.json"))
    save_hf_checkpoint(tmp / "hf", hf_model, tokenizer, spec, card)
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
        **({"fallback": fallback} if fallback else {}),
        "files": files,
        "backbone": provenance,
        "training_data_sha256": data_hash,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # Refuse to ship thresholds the scorer would refuse; then seal: the hash of every file, and a
    # content hash over bundle.json itself (serve/bundle.py), so that any later edit is detected.
    validate_thresholds(tmp / "bundle.json", meta["thresholds"], meta["decision"]["block"], meta["temperature"])
    meta = seal(meta, tmp)
    (tmp / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def onnx_metadata(model_version: str, calibration: dict, precision: str) -> dict[str, str]:
    """What a graph says about itself (ONNX metadata_props, strings; JSON for structures), so that
    an ONNX file found alone still names its output columns and how to read them."""
    return {
        "labels": json.dumps(list(MODEL_LABELS)),
        "thresholds": json.dumps({x: calibration["thresholds"][x] for x in MODEL_LABELS}),
        "block_thresholds": json.dumps(calibration["decision"]["block"]),
        "temperature": json.dumps({x: calibration["temperature"][x] for x in MODEL_LABELS}),
        "model_version": model_version,
        "normalizer_version": NORMALIZER_VERSION,
        "precision": precision,
        "bundle_format": FORMAT,
        "output": "logits, one column per label in `labels` order; calibrated p = sigmoid(logit / temperature), "
                  "flagged when p >= thresholds[label]",
    }


def stamp_onnx(src: Path, dst: Path, props: dict[str, str]) -> Path:
    """Copy an ONNX graph to `dst` with `props` in its metadata_props (other entries kept)."""
    import onnx

    model = onnx.load(str(src))
    merged = {p.key: p.value for p in model.metadata_props} | props
    onnx.helper.set_model_props(model, merged)
    onnx.save(model, str(dst))
    return dst


def hf_tokenizer(tokenizer, spec):
    """The bundle's `tokenizers` tokenizer as a transformers tokenizer that encodes exactly as the
    scorer does for a text that fits one window: [CLS]/<s>, the text's ids, [SEP]/</s>.

    Saved with its class and special tokens. Without tokenizer_config.json, transformers guesses the
    class from config.json (model_type bert) and builds a BERT WordPiece tokenizer around whatever
    tokenizer.json holds: e5's Unigram fails ("WordPiece error: Missing [UNK] token", or ids
    out of range)."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_truncation()
    tok.no_padding()
    cls, sep, pad = (tok.id_to_token(i) for i in (spec.cls_id, spec.sep_id, spec.pad_id))
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1", special_tokens=[(cls, spec.cls_id), (sep, spec.sep_id)])
    model = json.loads(tok.to_str())["model"]
    unk = model.get("unk_token") or (tok.id_to_token(model["unk_id"]) if model.get("unk_id") is not None else None)
    mask = next((m for m in ("[MASK]", "<mask>") if tok.token_to_id(m) is not None), None)
    # The ONNX graph takes input_ids and attention_mask only (token_type_ids are all zero anyway).
    return PreTrainedTokenizerFast(tokenizer_object=tok, cls_token=cls, sep_token=sep, pad_token=pad, unk_token=unk,
                                   mask_token=mask, model_max_length=spec.max_length,
                                   model_input_names=["input_ids", "attention_mask"])


def save_hf_checkpoint(out: Path, hf_model, tokenizer, spec, card: str) -> Path:
    """hf/: config.json (id2label, label2id, multi-label), weights, tokenizer.json +
    tokenizer_config.json, and the model card as README.md; `pipeline("text-classification",
    model=out)` loads it with no other argument."""
    from .model import ID2LABEL, LABEL2ID

    hf_model.config.id2label, hf_model.config.label2id = dict(ID2LABEL), dict(LABEL2ID)
    hf_model.config.problem_type = "multi_label_classification"  # the pipeline then applies a sigmoid
    hf_model.save_pretrained(str(out), safe_serialization=True)
    hf_tokenizer(tokenizer, spec).save_pretrained(str(out))
    # transformers 5 writes its own class name, TokenizersBackend; PreTrainedTokenizerFast names the
    # same class in 5.x and is the name transformers 4.x knows.
    config_path = out / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text(encoding="utf-8"))
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(tok_config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(card, encoding="utf-8")
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
