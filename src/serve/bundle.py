"""A model bundle: everything the scorer needs, checked before it is used.

A bundle directory (models/<name>/, models/current -> the latest) holds:

- model.onnx       the classifier (fp32 or int8), inputs input_ids + attention_mask, output logits
- tokenizer.json   a `tokenizers` tokenizer
- bundle.json      labels, thresholds, calibration, encoding, normaliser version, file hashes,
                   backbone provenance
- model_fp32.onnx  (int8 bundles) the fp32 graph; with a `fallback` section in bundle.json the
                   scorer re-scores in fp32 every listing whose int8 score lies within a margin
                   of a decision threshold (see `Bundle.predict_proba`)
- metrics.json, MODEL_CARD.md, hf/ (the fine-tuned transformers checkpoint) — for people and
  for further training; the scorer does not need them.

`load_bundle` refuses a bundle with a missing file, a file whose SHA-256 differs from
bundle.json (tampered or half-copied), a different label list, or a different normaliser version
(the model would read text normalised differently from how it was trained). Only onnxruntime,
tokenizers and numpy are imported here.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reportguard.core.encoding import EncodingSpec, encode_texts, load_tokenizer, pad_batch
from reportguard.core.labels import MODEL_LABELS
from reportguard.core.normalize import NORMALIZER_VERSION

FORMAT = "reportguard-bundle/1"
REQUIRED_FILES = ("model.onnx", "tokenizer.json")


class BundleError(Exception):
    """The bundle cannot be used; the message says which file or field and why."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def decision_cuts(thresholds: dict[str, float], block: dict[str, float]) -> list[np.ndarray]:
    """Per model label, the calibrated logits at which a decision changes: the flag threshold and,
    for violation labels, the block threshold. Shared by the scorer and the export gate."""
    def logit(p: float) -> float:
        return float(np.log(p / (1.0 - p)))
    return [np.array(sorted({logit(thresholds[x])} | ({logit(block[x])} if x in block else set()))) for x in MODEL_LABELS]


def near_a_cut(calibrated_logits: np.ndarray, cuts: list[np.ndarray], margin: np.ndarray) -> np.ndarray:
    """Rows with any label's calibrated logit closer than that label's margin to one of its cuts."""
    near = np.zeros(len(calibrated_logits), dtype=bool)
    for j, label_cuts in enumerate(cuts):
        near |= (np.abs(calibrated_logits[:, j, None] - label_cuts[None, :]) < margin[j]).any(axis=1)
    return near


@dataclass
class Bundle:
    path: Path
    meta: dict
    spec: EncodingSpec
    thresholds: np.ndarray  # per model label, on calibrated probabilities
    temperature: np.ndarray  # per model label: p = sigmoid(logit / T)
    block_thresholds: dict[str, float]
    threads: int
    #: per model label, in calibrated-logit units (logit / T); None: no fp32 fallback
    fallback_margin: np.ndarray | None = None
    #: listings re-scored in fp32 by this process (reported in the manifest)
    fallback_rows: int = 0
    _session: object = field(default=None, repr=False)
    _fallback_session: object = field(default=None, repr=False)
    _tokenizer: object = field(default=None, repr=False)

    @property
    def model_version(self) -> str:
        return self.meta["model_version"]

    @property
    def fp32_path(self) -> Path:
        """The fp32 graph: model.onnx in an fp32 bundle, model_fp32.onnx beside an int8 one."""
        return self.path / ("model.onnx" if self.meta["precision"] == "fp32" else "model_fp32.onnx")

    @property
    def session(self):
        # Created lazily in the process that uses it: an InferenceSession cannot be pickled
        # (onnxruntime#643), so a bundle may be shipped to workers but sessions may not.
        if self._session is None:
            self._session = self._open("model.onnx")
        return self._session

    @property
    def fallback_session(self):
        if self._fallback_session is None:
            self._fallback_session = self._open(self.meta["fallback"]["file"])
        return self._fallback_session

    def _open(self, name: str):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(self.path / name), options, providers=["CPUExecutionProvider"])

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(str(self.path / "tokenizer.json"))
        return self._tokenizer

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_session"] = state["_fallback_session"] = state["_tokenizer"] = None
        return state

    def encode(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        return encode_texts(self.tokenizer, texts, self.spec)

    def logits(self, ids: list[list[int]], session=None) -> np.ndarray:
        input_ids, mask = pad_batch(ids, self.spec.pad_id)
        return (session or self.session).run(["logits"], {"input_ids": input_ids, "attention_mask": mask})[0]

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-logits / self.temperature))

    def cuts(self) -> list[np.ndarray]:
        return decision_cuts(self.meta["thresholds"], self.block_thresholds)

    def near_a_cut(self, logits: np.ndarray) -> np.ndarray:
        """Rows whose calibrated logit lies within the fallback margin of any decision threshold."""
        return near_a_cut(logits / self.temperature, self.cuts(), self.fallback_margin)

    def predict_proba(self, texts: list[str], batch_size: int = 32, on_batch=None) -> tuple[np.ndarray, list[bool]]:
        """Calibrated probabilities for already-normalised texts, batched by length to cut padding.

        With a fallback (int8 bundles), a second pass re-scores with the fp32 graph the texts whose
        int8 score lies within the margin of a decision threshold, so int8 noise cannot move a
        decision (export.py sizes the margin from the largest int8 error seen on validation; the
        gate checks it on test). The few texts re-scored are batched together, by length too.
        `on_batch(n)` is called after each first-pass batch of n texts (progress reporting).
        """
        ids, truncated = self.encode(texts)
        order = np.argsort([len(x) for x in ids], kind="stable")
        logits = np.zeros((len(texts), len(MODEL_LABELS)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            logits[idx] = self.logits([ids[i] for i in idx])
            if on_batch:
                on_batch(len(idx))
        if self.fallback_margin is not None and len(texts):
            near = order[self.near_a_cut(logits)[order]]  # still in length order
            for start in range(0, len(near), batch_size):
                idx = near[start:start + batch_size]
                logits[idx] = self.logits([ids[i] for i in idx], self.fallback_session)
            self.fallback_rows += len(near)
        return self.calibrate(logits), truncated


def load_bundle(path: str | Path, threads: int | None = None, verify_hashes: bool = True) -> Bundle:
    path = Path(path)
    meta_path = path / "bundle.json"
    if not meta_path.exists():
        raise BundleError(f"{path}: not a model bundle (bundle.json missing); train one with `make train`")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{meta_path}: invalid JSON at line {exc.lineno} column {exc.colno}") from exc
    if meta.get("format") != FORMAT:
        raise BundleError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    if list(meta.get("labels", [])) != list(MODEL_LABELS):
        raise BundleError(f"{meta_path}: labels {meta.get('labels')} differ from this reportguard's {list(MODEL_LABELS)}")
    if meta.get("normalizer_version") != NORMALIZER_VERSION:
        raise BundleError(f"{meta_path}: trained with normaliser {meta.get('normalizer_version')!r}, "
                          f"but this reportguard normalises with {NORMALIZER_VERSION!r}; retrain or install the matching version")
    files = meta.get("files", {})
    for name in REQUIRED_FILES:
        if name not in files:
            raise BundleError(f"{meta_path}: no hash recorded for {name}")
    for name, expected in files.items():
        file = path / name
        if not file.exists():
            raise BundleError(f"{file}: missing from the bundle")
        if verify_hashes and sha256_file(file) != expected:
            raise BundleError(f"{file}: SHA-256 differs from bundle.json (tampered or incompletely copied)")
    try:
        spec = EncodingSpec(**meta["encoding"])
        thresholds = np.array([meta["thresholds"][x] for x in MODEL_LABELS], dtype=np.float32)
        temperature = np.array([meta["temperature"][x] for x in MODEL_LABELS], dtype=np.float32)
        block = {k: float(v) for k, v in meta["decision"]["block"].items()}
        fallback = meta.get("fallback")
        margin = np.array([float(fallback["margin"][x]) for x in MODEL_LABELS], dtype=np.float32) if fallback else None
        if fallback and fallback["file"] not in files:
            raise BundleError(f"{meta_path}: fallback model {fallback['file']!r} has no hash in files")
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{meta_path}: missing or malformed field {exc}") from exc
    threads = threads or int(os.environ.get("REPORTGUARD_THREADS", 0)) or (os.cpu_count() or 1)
    return Bundle(path, meta, spec, thresholds, temperature, block, threads, fallback_margin=margin)
