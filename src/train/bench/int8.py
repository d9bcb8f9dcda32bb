"""`reportguard bench int8`: where int8 loses this model's decisions, measured.

The export gate (export.py) ships int8 only if it agrees with PyTorch on >= 99.5% of label sets.
The shipped e5-small model fails it with every dynamic-quantisation flavour, and this study says
why and what was tried, on the validation split only (test stays for the gate):

- sensitivity: dynamic QInt8 per-channel applied to one class of matmuls at a time (the fused
  Attention's QKV projection, the attention output projection, FFN1, FFN2), to all but FFN2, and
  to all of them; for each, the error of the calibrated logits against fp32 (mean, p99, max),
  label-set agreement and time;
- activation outliers: per input channel, the largest |activation| over the split, divided by the
  median channel's, for each matmul class. Dynamic quantisation uses one scale per tensor, so a
  channel 30x larger than the rest leaves the others a few int8 steps;
- MatMulNBits: onnxruntime's block-wise weight quantisation with int8 compute (accuracy_level 4)
  quantises activations per block of 32 rather than per tensor; it is far more accurate, and the
  study times it, since on CPUs without a fast kernel for it it is not faster than fp32.

Writes reports/int8_study.{md,json}.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from reportguard.core import paths
from reportguard.core.calibration import calibrated, sigmoid

from ..export import node_class

CLASSES = ("qkv", "attn_out", "ffn1", "ffn2")


def activation_outliers(model_path: Path, ids: list[list[int]], pad_id: int, threads: int) -> dict:
    """max / median over input channels of max |x|, per matmul class (median over layers)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    from reportguard.core.encoding import pad_batch
    model = onnx.load(str(model_path))
    targets = [(n.input[0], node_class(n)) for n in model.graph.node if node_class(n)]
    for name, _ in targets:
        model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    peaks: dict[str, np.ndarray] = {}
    for s in range(0, len(ids), 32):
        x, mask = pad_batch(ids[s:s + 32], pad_id)
        outs = session.run([n for n, _ in targets], {"input_ids": x, "attention_mask": mask})
        keep = mask.reshape(-1).astype(bool)
        for (name, _), a in zip(targets, outs):
            v = np.abs(a.reshape(-1, a.shape[-1])[keep]).max(0)
            peaks[name] = v if name not in peaks else np.maximum(peaks[name], v)
    ratios: dict[str, list[float]] = {c: [] for c in CLASSES}
    for name, cls in targets:
        ratios[cls].append(float(peaks[name].max() / max(np.median(peaks[name]), 1e-9)))
    return {c: {"median_over_layers": float(np.median(r)), "max_over_layers": float(np.max(r))} for c, r in ratios.items() if r}


# Long: one study; its variants are closures over the same fp32 graph and validation ids.
def run(bundle_dir: Path, out_dir: Path, threads: int) -> dict:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from reportguard.core.normalize import listing_text
    from reportguard.serve.bundle import load_bundle

    from ..corpus import load_split
    from ..export import onnx_logits

    bundle = load_bundle(bundle_dir, threads=threads)
    fp32 = bundle.fp32_path
    rows = load_split(paths.labelled_dir(), "validation")
    ids, _ = bundle.encode([listing_text(r["title"], r["description"]) for r in rows])
    temperature, thresholds = bundle.temperature, bundle.thresholds
    reference, reference_seconds = onnx_logits(fp32, ids, bundle.spec.pad_id, threads=threads)
    reference = reference / temperature
    graph = onnx.load(str(fp32), load_external_data=False).graph
    by_class = {c: [n.name for n in graph.node if node_class(n) == c] for c in CLASSES}
    work = Path(tempfile.mkdtemp(prefix="rg-int8-"))

    def dynamic(name: str, classes: tuple[str, ...]) -> Path:
        path = work / f"{name}.onnx"
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_quantize=sum((by_class[c] for c in classes), []),
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        return path

    def nbits(name: str) -> Path | None:
        try:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        except ImportError:  # it needs onnx_ir (the train extra installs it)
            return None
        path = work / f"{name}.onnx"
        quantizer = MatMulNBitsQuantizer(str(fp32), bits=8, block_size=32, is_symmetric=True, accuracy_level=4)
        quantizer.process()
        quantizer.model.save_model_to_file(str(path), use_external_data_format=False)
        return path

    variants = {f"only_{c}": (lambda c=c: dynamic(f"only_{c}", (c,))) for c in CLASSES}
    variants["all_but_ffn2"] = lambda: dynamic("all_but_ffn2", ("qkv", "attn_out", "ffn1"))
    variants["all (qint8_per_channel)"] = lambda: dynamic("all", CLASSES)
    variants["matmulnbits_8bit_block32_int8compute"] = lambda: nbits("nbits8")
    results = {"fp32": {"seconds": reference_seconds}}
    for name, build in variants.items():
        print(f"int8 study: {name} ...", flush=True)
        path = build()
        if path is None:
            results[name] = {"skipped": "onnx_ir is not installed"}
            continue
        logits, seconds = onnx_logits(path, ids, bundle.spec.pad_id, threads=threads)
        diff = np.abs(logits / temperature - reference)
        agree = ((calibrated(logits, temperature) >= thresholds) == (sigmoid(reference) >= thresholds)).all(1)
        results[name] = {"mean_abs_logit_error": float(diff.mean()), "p99_abs_logit_error": float(np.quantile(diff, 0.99)),
                         "max_abs_logit_error": float(diff.max()), "label_set_agreement": float(agree.mean()),
                         "seconds": seconds, "speed_vs_fp32": reference_seconds / seconds}
    summary = {"bundle": bundle.model_version, "split": "validation", "rows": len(ids), "threads": threads,
               "variants": results, "activation_outliers": activation_outliers(fp32, ids, bundle.spec.pad_id, threads)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "int8_study.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (out_dir / "int8_study.md").write_text(render(summary), encoding="utf-8")
    print(render(summary))
    return summary


def render(s: dict) -> str:
    lines = ["# Where int8 loses this model's decisions", "",
             f"`reportguard bench int8` on bundle `{s['bundle']}`, {s['split']} split ({s['rows']} listings), {s['threads']} threads. "
             "Errors are in calibrated-logit units (logit / temperature) against the fp32 graph; the gate needs label-set "
             "agreement >= 0.995.", "",
             "| variant | mean error | p99 error | max error | label-set agreement | speed vs fp32 |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in s["variants"].items():
        if name == "fp32":
            continue
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} | | | | |")
            continue
        lines.append(f"| {name} | {r['mean_abs_logit_error']:.3f} | {r['p99_abs_logit_error']:.3f} | {r['max_abs_logit_error']:.3f} | "
                     f"{r['label_set_agreement']:.4f} | {r['speed_vs_fp32']:.2f}× |")
    lines += ["", "Activation outliers at each matmul's input (largest channel's max |x| over the median channel's; "
              "dynamic int8 uses one scale per tensor):", "", "| matmul | median over layers | worst layer |", "|---|---:|---:|"]
    for cls, r in s["activation_outliers"].items():
        lines.append(f"| {cls} | {r['median_over_layers']:.1f}× | {r['max_over_layers']:.1f}× |")
    lines.append("")
    return "\n".join(lines)
