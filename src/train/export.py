"""ONNX export, fusion, int8 quantisation, and the bundle (written through core/bundle_format.py).

1. export: torch.onnx.export with dynamo=False and opset 17 (the dynamo exporter needs onnxscript
   and its graph gets no Attention fusion), dynamic batch and sequence axes;
2. fuse: onnxruntime's transformer optimiser (Attention, EmbedLayerNorm, SkipLayerNorm, BiasGelu),
   then check parity with PyTorch again, since fusion can drift;
3. quantise: dynamic int8 in five flavours (QInt8 / QUInt8, per-tensor / per-channel,
   reduce_range, FFN2 kept fp32); each is scored on validation and test against PyTorch, alone
   and with an fp32 fallback: listings whose int8 score lies within the largest int8 error seen on
   validation of a decision threshold are re-scored in fp32 (Bundle.predict_proba);
4. gate (gate.py): among the variants that lose at most `max_f1_drop` test macro-F1 and agree
   with PyTorch on at least `min_agreement` of label sets (validation and test), ship the fastest;
   if none passes, fp32, with the reason written into bundle.json and the model card.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from reportguard.core.atomic import atomic_path
from reportguard.core.bundle_format import FORMAT, BundleMeta, sha256_file, write_meta
from reportguard.core.encoding import length_batches, pad_batch
from reportguard.core.labels import MODEL_LABELS
from reportguard.core.normalize import NORMALIZER_VERSION

# The gate's pieces moved to gate.py; importable from here as before.
from .gate import choose_precision, compare, fallback_logits, fallback_margin  # noqa: F401

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


def export_graphs(model, pad_id: int, work: Path, export) -> dict[str, Path]:
    """The export step: the fp32 graph (fused unless `export.optimize` is false) and, unless
    `export.quantize` is false, every int8 flavour of it; {variant name: ONNX file} for the gate."""
    raw = export_onnx(model, work / "model_raw.onnx", pad_id)
    fp32 = fuse(raw, work / "model_fp32.onnx", model.config.num_attention_heads, model.config.hidden_size) \
        if export["optimize"] else raw
    graphs = {"fp32": fp32}
    if export["quantize"]:
        graphs.update({name: quantize(fp32, work / f"model_{name}.onnx", name) for name in INT8_FLAVOURS})
    return graphs


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

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out = np.zeros((len(ids), len(MODEL_LABELS)), dtype=np.float32)
    start = time.perf_counter()
    for idx in length_batches(ids, batch_size):
        input_ids, mask = pad_batch([ids[i] for i in idx], pad_id)
        out[idx] = session.run(["logits"], {"input_ids": input_ids, "attention_mask": mask})[0]
    return out, time.perf_counter() - start


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
    meta = BundleMeta(model_version=model_version, labels=list(MODEL_LABELS), normalizer_version=NORMALIZER_VERSION,
                      encoding=spec.to_dict(), temperature=calibration["temperature"], thresholds=calibration["thresholds"],
                      decision=calibration["decision"], precision=precision, precision_reason=precision_reason,
                      fallback=fallback or None, files=files, backbone=provenance, training_data_sha256=data_hash,
                      created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    # Refuse to ship thresholds the scorer would refuse; then seal: the hash of every file, and a
    # content hash over bundle.json itself (core/bundle_format.py), so that any later edit is detected.
    write_meta(tmp, meta)
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
    with atomic_path(link) as tmp:
        tmp.symlink_to(bundle.name)
    return link
