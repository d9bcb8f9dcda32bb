"""A model bundle: everything the scorer needs, checked before it is used.

A bundle directory (models/<name>/, models/current -> the latest) holds:

- model.onnx       the classifier (fp32 or int8), inputs input_ids + attention_mask, output logits
- tokenizer.json   a `tokenizers` tokenizer
- bundle.json      labels, thresholds, calibration, encoding, normaliser version, file hashes,
                   backbone provenance
- model_fp32.onnx  (int8 bundles) the fp32 graph; with a `fallback` section in bundle.json the
                   scorer re-scores in fp32 every listing whose int8 score lies within a margin
                   of a decision threshold (see `Bundle.predict_proba`)
- tier1.npz, tier2.onnx (bundles with a `route` section) the student tiers that settle the easy
                   listings before the teacher (serve/tiers.py); hash-checked like model.onnx
- metrics.json, MODEL_CARD.md, hf/ (the fine-tuned transformers checkpoint) — for people and
  for further training; the scorer does not need them.

`load_bundle` refuses a bundle with a missing file, a file whose SHA-256 differs from
bundle.json (tampered or half-copied), a different label list, or a different normaliser version
(the model would read text normalised differently from how it was trained). The format and its
checks are core's (core/bundle_format.py: `BundleMeta`, read, validate, hash, seal), shared with
the exporter; this module turns a checked bundle into sessions. Only onnxruntime, tokenizers and
numpy are imported here.

Integrity: bundle.json carries `content_sha256`, the SHA-256 of bundle.json itself without that
field (canonical JSON) — which holds the SHA-256 of every file of the bundle: `files` for the
files the scorer reads (checked at every load) and `other_files` for the rest (hf/, the model
card, metrics; checked by `python -m reportguard.serve.bundle verify DIR`). Any edit of
bundle.json (a threshold, a hash, the version) makes the bundle refuse to load. A bundle written
before sealing existed (no `content_sha256`) still loads, with a warning, under a model_version
that carries its content hash (`<version>+<first 8 hex digits>`), so an edit changes the version;
`python -m reportguard.serve.bundle seal DIR` seals it after its file hashes are checked.
Thresholds are validated: finite, flag thresholds in (0, 1), block >= flag (a block threshold
above 1 blocks nothing), temperatures finite and positive.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# The format itself (fields, validation, hashing, sealing) is core's; these names stay importable
# from here for callers of the scorer.
from reportguard.core.bundle_format import (CONTENT_FIELD, FORMAT, REQUIRED_FILES, BundleError, BundleMeta,  # noqa: F401
                                            bundle_files, check_files, check_other_files, content_hash, dump, read_meta,
                                            required, seal, sha256_file, validate_fields, validate_meta, validate_thresholds)
from reportguard.core.calibration import calibrated, decision_cuts, label_array, near_a_cut, sigmoid
from reportguard.core.encoding import EncodingSpec, encode, encode_texts, length_batches, load_tokenizer, pad_batch, pool_max
from reportguard.core.labels import MODEL_LABELS

from .tiers import Tier, open_tier, parse_tiers


class GraphError(BundleError):
    """A bundle file passed its hash check but cannot be loaded (a garbage model.onnx or
    tokenizer.json sealed as it is); `reportguard score` exits 1 on it."""
    exit_code = 1


def seal_bundle(path: str | Path) -> str:
    """Seal a bundle directory as it is now (after checking that the files in `files` match their
    hashes, so that sealing never blesses a swapped graph); returns the content hash."""
    path = Path(path)
    meta = json.loads((path / "bundle.json").read_text(encoding="utf-8"))
    for name, expected in meta.get("files", {}).items():
        if not (path / name).exists() or sha256_file(path / name) != expected:
            raise BundleError(f"{path / name}: missing or its SHA-256 differs from bundle.json; refusing to seal")
    meta = seal(meta, path)
    (path / "bundle.json").write_text(dump(meta), encoding="utf-8")
    return meta[CONTENT_FIELD]


def verify_bundle(path: str | Path) -> list[str]:
    """Problems with a bundle, checking every file it lists (`files` and `other_files`)."""
    path = Path(path)
    problems = []
    try:
        load_bundle(path, threads=1)
    except BundleError as exc:
        problems.append(str(exc))
    return problems + check_other_files(read_meta(path), path)


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
    #: SHA-256 of bundle.json without its content_sha256 field (see content_hash)
    content_sha256: str = ""
    #: model_version as reported: bundle.json's, plus "+<hash>" for an unsealed bundle
    version: str = ""
    _session: object = field(default=None, repr=False)
    _fallback_session: object = field(default=None, repr=False)
    _tokenizer: object = field(default=None, repr=False)
    #: the student tiers of bundle.json's `route`, cheapest first (serve/tiers.py); none: teacher-only
    tiers: list[Tier] = field(default_factory=list)
    #: tier index -> its model, opened lazily in the process that uses it, like the sessions
    _tier_models: dict = field(default_factory=dict, repr=False)

    @property
    def model_version(self) -> str:
        return self.version or self.meta["model_version"]

    @property
    def sealed(self) -> bool:
        return CONTENT_FIELD in self.meta

    def check_loadable(self) -> None:
        """Open the graphs and the tokenizer now (they open lazily), so that a file that passed
        its hash check but is not a model fails before any work, as a GraphError naming it."""
        self.tokenizer
        self.session
        if self.fallback_margin is not None:
            self.fallback_session
        for index in range(len(self.tiers)):
            self.tier_model(index)

    def tier_model(self, index: int):
        """Tier `index`'s model (serve.tiers.open_tier): a session for a transformer, arrays for
        n-grams; created on first use in this process and never pickled (see `session`)."""
        model = self._tier_models.get(index)
        if model is None:
            model = self._tier_models[index] = open_tier(self, self.tiers[index])
        return model

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
        try:
            return ort.InferenceSession(str(self.path / name), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            raise GraphError(f"{self.path / name}: not a loadable ONNX graph ({_one_line(exc)})") from exc

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            try:
                self._tokenizer = load_tokenizer(str(self.path / "tokenizer.json"))
            except Exception as exc:
                raise GraphError(f"{self.path / 'tokenizer.json'}: not a loadable tokenizer ({_one_line(exc)})") from exc
        return self._tokenizer

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_session"] = state["_fallback_session"] = state["_tokenizer"] = None
        state["_tier_models"] = {}
        return state

    def encode(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        return encode_texts(self.tokenizer, texts, self.spec)

    def logits(self, ids: list[list[int]], session=None) -> np.ndarray:
        input_ids, mask = pad_batch(ids, self.spec.pad_id)
        return (session or self.session).run(["logits"], {"input_ids": input_ids, "attention_mask": mask})[0]

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        return calibrated(logits, self.temperature)

    def cuts(self) -> list[np.ndarray]:
        return decision_cuts(self.meta["thresholds"], self.block_thresholds)

    def near_a_cut(self, logits: np.ndarray) -> np.ndarray:
        """Rows whose calibrated logit lies within the fallback margin of any decision threshold."""
        return near_a_cut(logits / self.temperature, self.cuts(), self.fallback_margin)

    def predict_proba(self, texts: list[str], batch_size: int = 32, on_batch=None) -> tuple[np.ndarray, list[bool]]:
        """Calibrated probabilities for already-normalised texts (`calibrated_logits`, through the sigmoid)."""
        logits, truncated = self.calibrated_logits(texts, batch_size, on_batch)
        return sigmoid(logits), truncated

    def calibrated_logits(self, texts: list[str], batch_size: int = 32, on_batch=None,
                          fallback: bool = True) -> tuple[np.ndarray, list[bool]]:
        """Calibrated logits (logit / T per label) for already-normalised texts, batched by length
        to cut padding. The units the routing cuts and the students' targets are in.

        A long text is several windows (core.encoding, `long_text: windows`); every window is
        scored and a text's logit per label is the maximum over its windows. With a fallback
        (int8 bundles), a second pass re-scores with the fp32 graph every window of the texts
        whose int8 score lies within the margin of a decision threshold, so int8 noise cannot move
        a decision (export.py sizes the margin from the largest int8 error seen on validation; the
        gate checks it on test). The few texts re-scored are batched together, by length too.
        `on_batch(n)` is called after each first-pass batch of n sequences (progress reporting).
        `fallback=False` skips the fp32 pass (occlusion variants under the tiered route, whose
        scores rank clauses and decide nothing).
        """
        encoded = encode(self.tokenizer, texts, self.spec)
        ids = encoded.ids
        window_logits = np.zeros((len(ids), len(MODEL_LABELS)), dtype=np.float32)
        for idx in length_batches(ids, batch_size):
            window_logits[idx] = self.logits([ids[i] for i in idx])
            if on_batch:
                on_batch(len(idx))
        logits = pool_max(window_logits, encoded.owner, len(texts))
        if fallback and self.fallback_margin is not None and len(texts):
            near_texts = self.near_a_cut(logits)
            # their windows, batched by length too
            for idx in length_batches(ids, batch_size, rows=np.flatnonzero(near_texts[encoded.owner])):
                window_logits[idx] = self.logits([ids[i] for i in idx], self.fallback_session)
            logits[near_texts] = pool_max(window_logits, encoded.owner, len(texts))[near_texts]
            self.fallback_rows += int(near_texts.sum())
        return logits / self.temperature, encoded.truncated


def load_bundle(path: str | Path, threads: int | None = None, verify_hashes: bool = True) -> Bundle:
    """Read, validate and check a bundle directory (core.bundle_format), ready to score; a
    BundleError naming the file or field otherwise."""
    path = Path(path)
    meta_path = path / "bundle.json"
    meta = read_meta(path)
    validate_meta(meta, meta_path)
    check_files(meta, path, verify_hashes)
    try:
        spec = EncodingSpec(**required(meta, "encoding"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"{meta_path}: missing or malformed field {exc}") from exc
    validate_fields(meta, meta_path)
    thresholds = label_array(meta.thresholds).astype(np.float32)
    temperature = label_array(meta.temperature).astype(np.float32)
    block = {k: float(v) for k, v in meta.decision["block"].items()}
    margin = label_array({k: float(v) for k, v in meta.fallback["margin"].items()}).astype(np.float32) if meta.fallback else None
    computed = meta.content_hash()
    version = meta.model_version
    if not meta.sealed:
        version = f"{version}+{computed[:8]}"
        print(f"warning: {meta_path}: not sealed (no content_sha256; exported before bundles were sealed): its edits cannot be "
              f"detected, so it runs as model_version {version}; seal it with `python -m reportguard.serve.bundle seal {path}`",
              file=sys.stderr)
    threads = threads or int(os.environ.get("REPORTGUARD_THREADS", 0)) or (os.cpu_count() or 1)
    return Bundle(path, meta.to_dict(), spec, thresholds, temperature, block, threads, fallback_margin=margin,
                  content_sha256=computed, version=version, tiers=parse_tiers(meta.route))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """`python -m reportguard.serve.bundle seal|verify DIR`."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m reportguard.serve.bundle")
    parser.add_argument("command", choices=["seal", "verify"])
    parser.add_argument("bundle")
    args = parser.parse_args(argv)
    try:
        if args.command == "seal":
            print(f"{args.bundle}: sealed, content_sha256 {seal_bundle(args.bundle)}")
            return 0
        problems = verify_bundle(args.bundle)
    except (BundleError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(problem)
    print(f"{args.bundle}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
