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

import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reportguard.core.encoding import EncodingSpec, encode, encode_texts, load_tokenizer, pad_batch, pool_max
from reportguard.core.labels import MODEL_LABELS
from reportguard.core.normalize import NORMALIZER_VERSION

FORMAT = "reportguard-bundle/1"
REQUIRED_FILES = ("model.onnx", "tokenizer.json")


class BundleError(Exception):
    """The bundle cannot be used; the message says which file or field and why."""


class GraphError(BundleError):
    """A bundle file passed its hash check but cannot be loaded (a garbage model.onnx or
    tokenizer.json sealed as it is); `reportguard score` exits 1 on it."""
    exit_code = 1


CONTENT_FIELD = "content_sha256"


def content_hash(meta: dict) -> str:
    """SHA-256 of bundle.json's content without its own `content_sha256` field (canonical JSON:
    sorted keys, no whitespace), hence over every file hash it lists."""
    body = {k: v for k, v in meta.items() if k != CONTENT_FIELD}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()


def bundle_files(path: Path) -> list[str]:
    """Every file of a bundle directory but bundle.json, as sorted relative POSIX paths."""
    return sorted(f.relative_to(path).as_posix() for f in path.rglob("*") if f.is_file() and f.name != "bundle.json")


def seal(meta: dict, path: Path) -> dict:
    """`meta` with `other_files` (the hash of every bundle file not in `files`) and
    `content_sha256`; the caller writes it to path/bundle.json."""
    meta = {k: v for k, v in meta.items() if k != CONTENT_FIELD}
    meta["other_files"] = {name: sha256_file(path / name) for name in bundle_files(path) if name not in meta.get("files", {})}
    meta[CONTENT_FIELD] = content_hash(meta)
    return meta


def seal_bundle(path: str | Path) -> str:
    """Seal a bundle directory as it is now (after checking that the files in `files` match their
    hashes, so that sealing never blesses a swapped graph); returns the content hash."""
    path = Path(path)
    meta = json.loads((path / "bundle.json").read_text(encoding="utf-8"))
    for name, expected in meta.get("files", {}).items():
        if not (path / name).exists() or sha256_file(path / name) != expected:
            raise BundleError(f"{path / name}: missing or its SHA-256 differs from bundle.json; refusing to seal")
    meta = seal(meta, path)
    (path / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return meta[CONTENT_FIELD]


def verify_bundle(path: str | Path) -> list[str]:
    """Problems with a bundle, checking every file it lists (`files` and `other_files`)."""
    path = Path(path)
    problems = []
    try:
        load_bundle(path, threads=1)
    except BundleError as exc:
        problems.append(str(exc))
    meta = json.loads((path / "bundle.json").read_text(encoding="utf-8"))
    for name, expected in meta.get("other_files", {}).items():
        if not (path / name).exists():
            problems.append(f"{path / name}: missing")
        elif sha256_file(path / name) != expected:
            problems.append(f"{path / name}: SHA-256 differs from bundle.json")
    return problems


def validate_thresholds(meta_path: Path, thresholds: dict, block: dict, temperature: dict) -> None:
    """Flag thresholds finite in (0, 1); block thresholds finite and >= the label's flag threshold
    (above 1: never block); temperatures finite and > 0. Else a BundleError naming the field."""
    def number(value, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise BundleError(f"{meta_path}: {where} = {value!r} is not a finite number")
        return float(value)
    for name in MODEL_LABELS:
        flag = number(thresholds.get(name), f"thresholds.{name}")
        if not 0.0 < flag < 1.0:
            raise BundleError(f"{meta_path}: thresholds.{name} = {flag} is not in (0, 1)")
        if not number(temperature.get(name), f"temperature.{name}") > 0:
            raise BundleError(f"{meta_path}: temperature.{name} = {temperature.get(name)} is not positive")
    for name, value in block.items():
        if name not in MODEL_LABELS:
            raise BundleError(f"{meta_path}: decision.block.{name}: not a model label ({', '.join(MODEL_LABELS)})")
        cut = number(value, f"decision.block.{name}")
        if cut < float(thresholds[name]):
            raise BundleError(f"{meta_path}: decision.block.{name} = {cut} is below thresholds.{name} = {thresholds[name]}; "
                              f"a listing without the label could be blocked")


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
    # A block threshold >= 1 blocks nothing: it is no cut.
    return [np.array(sorted({logit(thresholds[x])} | ({logit(block[x])} if x in block and 0.0 < block[x] < 1.0 else set())))
            for x in MODEL_LABELS]


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
    #: SHA-256 of bundle.json without its content_sha256 field (see content_hash)
    content_sha256: str = ""
    #: model_version as reported: bundle.json's, plus "+<hash>" for an unsealed bundle
    version: str = ""
    _session: object = field(default=None, repr=False)
    _fallback_session: object = field(default=None, repr=False)
    _tokenizer: object = field(default=None, repr=False)

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

        A long text is several windows (core.encoding, `long_text: windows`); every window is
        scored and a text's logit per label is the maximum over its windows. With a fallback
        (int8 bundles), a second pass re-scores with the fp32 graph every window of the texts
        whose int8 score lies within the margin of a decision threshold, so int8 noise cannot move
        a decision (export.py sizes the margin from the largest int8 error seen on validation; the
        gate checks it on test). The few texts re-scored are batched together, by length too.
        `on_batch(n)` is called after each first-pass batch of n sequences (progress reporting).
        """
        encoded = encode(self.tokenizer, texts, self.spec)
        ids = encoded.ids
        order = np.argsort([len(x) for x in ids], kind="stable")
        window_logits = np.zeros((len(ids), len(MODEL_LABELS)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            window_logits[idx] = self.logits([ids[i] for i in idx])
            if on_batch:
                on_batch(len(idx))
        logits = pool_max(window_logits, encoded.owner, len(texts))
        if self.fallback_margin is not None and len(texts):
            near_texts = self.near_a_cut(logits)
            near = order[near_texts[encoded.owner[order]]]  # their windows, still in length order
            for start in range(0, len(near), batch_size):
                idx = near[start:start + batch_size]
                window_logits[idx] = self.logits([ids[i] for i in idx], self.fallback_session)
            logits[near_texts] = pool_max(window_logits, encoded.owner, len(texts))[near_texts]
            self.fallback_rows += int(near_texts.sum())
        return self.calibrate(logits), encoded.truncated


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
    computed = content_hash(meta)
    stored = meta.get(CONTENT_FIELD)
    if stored is not None and stored != computed:
        raise BundleError(f"{meta_path}: content hash differs from the content_sha256 sealed at export: bundle.json was edited "
                          f"(thresholds, hashes or versions); use the bundle as exported, or re-export it")
    for name, expected in files.items():
        file = path / name
        if not file.exists():
            raise BundleError(f"{file}: missing from the bundle")
        if verify_hashes and sha256_file(file) != expected:
            raise BundleError(f"{file}: SHA-256 differs from bundle.json (tampered or incompletely copied)")
    try:
        spec = EncodingSpec(**meta["encoding"])
        validate_thresholds(meta_path, meta["thresholds"], meta["decision"]["block"], meta["temperature"])
        thresholds = np.array([meta["thresholds"][x] for x in MODEL_LABELS], dtype=np.float32)
        temperature = np.array([meta["temperature"][x] for x in MODEL_LABELS], dtype=np.float32)
        block = {k: float(v) for k, v in meta["decision"]["block"].items()}
        fallback = meta.get("fallback")
        margin = np.array([float(fallback["margin"][x]) for x in MODEL_LABELS], dtype=np.float32) if fallback else None
        if fallback and fallback["file"] not in files:
            raise BundleError(f"{meta_path}: fallback model {fallback['file']!r} has no hash in files")
        if margin is not None and not (np.isfinite(margin).all() and (margin >= 0).all()):
            raise BundleError(f"{meta_path}: fallback.margin {fallback['margin']} must be finite and >= 0")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"{meta_path}: missing or malformed field {exc}") from exc
    version = meta["model_version"]
    if stored is None:
        version = f"{version}+{computed[:8]}"
        print(f"warning: {meta_path}: not sealed (no content_sha256; exported before bundles were sealed): its edits cannot be "
              f"detected, so it runs as model_version {version}; seal it with `python -m reportguard.serve.bundle seal {path}`",
              file=sys.stderr)
    threads = threads or int(os.environ.get("REPORTGUARD_THREADS", 0)) or (os.cpu_count() or 1)
    return Bundle(path, meta, spec, thresholds, temperature, block, threads, fallback_margin=margin,
                  content_sha256=computed, version=version)


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
