"""The bundle format: what bundle.json holds, how it is validated, hashed and sealed.

The one contract between training (src/train/export.py writes a bundle through `write_meta`) and
scoring (src/serve/bundle.py reads one through `read_meta`, `validate_meta` and `check_files`).
Neither side restates it: a change to the format is a change here. No torch, no onnxruntime:
json, hashlib and math only.

A bundle directory holds model.onnx, tokenizer.json (the files the scorer reads, hashed in
`files`), model_fp32.onnx for int8 bundles with an fp32 fallback, the student tiers of the
`route` section (tier1.npz, tier2.onnx; hashed in `files` too), and files for people and
further training (hf/, MODEL_CARD.md, metrics.json, config.resolved.yaml; hashed in
`other_files`). bundle.json carries `content_sha256`, the SHA-256 of bundle.json itself without
that field (canonical JSON: sorted keys, no whitespace), hence over every file hash it lists: any
edit of bundle.json (a threshold, a hash, the version) is detected.

>>> meta = BundleMeta(model_version="v1", labels=["a"], normalizer_version="n", encoding={},
...                   temperature={"a": 1.0}, thresholds={"a": 0.5}, decision={"block": {}}, precision="fp32")
>>> list(meta.to_dict())[:3]
['format', 'model_version', 'labels']
>>> len(meta.content_hash())
64
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import InputError
from .labels import MODEL_LABELS
from .normalize import NORMALIZER_VERSION

FORMAT = "reportguard-bundle/1"
#: The files the scorer reads; their hashes must be in `files`.
REQUIRED_FILES = ("model.onnx", "tokenizer.json")
#: Written last: the hash over everything else in bundle.json.
CONTENT_FIELD = "content_sha256"
META_FILE = "bundle.json"


class BundleError(InputError):
    """The bundle cannot be used; the message says which file or field and why (the CLI: one line, exit 1)."""


@dataclass
class BundleMeta:
    """bundle.json, typed. Field order is the order written (and so the bytes of bundle.json).

    Reading is lenient (`from_dict` never fails on a missing field; `validate_meta` says what is
    wrong, naming the field), so that an old or damaged bundle gets a precise message. Fields this
    version does not know are kept in `extra` and written back after the known ones."""
    format: str | None = FORMAT
    model_version: str | None = None
    labels: list | None = None
    normalizer_version: str | None = None
    encoding: dict | None = None  # core.encoding.EncodingSpec.to_dict()
    temperature: dict | None = None  # per model label: p = sigmoid(logit / T)
    thresholds: dict | None = None  # per model label: flagged when p >= threshold
    decision: dict | None = None  # {"block": {label: threshold}} for the violation labels
    precision: str | None = None  # "fp32", an int8 flavour, or "<flavour>+fp32_fallback"
    precision_reason: str | None = None
    fallback: dict | None = None  # {"file", "margin": {label: calibrated-logit margin}, "rule"}
    route: dict | None = None  # {"default", "reason", "tiers": [...], "gate"}: the students in front of the teacher
    files: dict | None = None  # name -> SHA-256, the files the scorer reads
    backbone: dict | None = None  # provenance of the backbone
    training_data_sha256: str | None = None
    created: str | None = None
    extra: dict = field(default_factory=dict)  # fields this version does not know, kept as read
    other_files: dict | None = None  # name -> SHA-256, every other file of the bundle (seal)
    content_sha256: str | None = None  # over everything above (seal)
    #: bundle.json as read (None for a meta built in code): what the content hash is checked over
    raw: dict | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict) -> BundleMeta:
        known = {f.name for f in fields(cls)} - {"extra", "raw"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known}, raw=data)

    def to_dict(self) -> dict:
        """bundle.json's content: the known fields in order (absent ones left out), `extra` after
        `created`, then the seal. A bundle read from disk gives back what it held."""
        if self.raw is not None:
            return dict(self.raw)
        out = {}
        for f in fields(self):
            if f.name == "raw":
                continue
            if f.name == "extra":
                out.update(self.extra)
            elif getattr(self, f.name) is not None:
                out[f.name] = getattr(self, f.name)
        return out

    def content_hash(self) -> str:
        return content_hash(self.to_dict())

    @property
    def sealed(self) -> bool:
        return self.content_sha256 is not None


def content_hash(meta: dict) -> str:
    """SHA-256 of bundle.json's content without its own `content_sha256` field (canonical JSON:
    sorted keys, no whitespace), hence over every file hash it lists."""
    body = {k: v for k, v in meta.items() if k != CONTENT_FIELD}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle_files(path: Path) -> list[str]:
    """Every file of a bundle directory but bundle.json, as sorted relative POSIX paths."""
    return sorted(f.relative_to(path).as_posix() for f in path.rglob("*") if f.is_file() and f.name != META_FILE)


def seal(meta: dict, path: Path) -> dict:
    """`meta` with `other_files` (the hash of every bundle file not in `files`) and
    `content_sha256`; the caller writes it to path/bundle.json."""
    meta = {k: v for k, v in meta.items() if k != CONTENT_FIELD}
    meta["other_files"] = {name: sha256_file(path / name) for name in bundle_files(path) if name not in meta.get("files", {})}
    meta[CONTENT_FIELD] = content_hash(meta)
    return meta


def dump(meta: dict) -> str:
    """bundle.json's text."""
    return json.dumps(meta, ensure_ascii=False, indent=1) + "\n"


def read_meta(path: Path) -> BundleMeta:
    """path/bundle.json, parsed; a BundleError if it is missing or not JSON."""
    meta_path = Path(path) / META_FILE
    if not meta_path.exists():
        raise BundleError(f"{path}: not a model bundle (bundle.json missing); train one with `make train`")
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{meta_path}: invalid JSON at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{meta_path}: expected a JSON object, found {type(data).__name__}")
    return BundleMeta.from_dict(data)


def write_meta(path: Path, meta: BundleMeta) -> dict:
    """Validate `meta`'s thresholds (refuse to ship what the scorer would refuse), seal it over
    the files now in `path`, write path/bundle.json and return what was written."""
    meta_path = Path(path) / META_FILE
    validate_thresholds(meta_path, meta.thresholds, meta.decision["block"], meta.temperature)
    sealed = seal(meta.to_dict(), Path(path))
    meta_path.write_text(dump(sealed), encoding="utf-8")
    return sealed


def validate_meta(meta: BundleMeta, meta_path: Path) -> None:
    """Everything about bundle.json that needs no other file, in the order a reader needs it:
    format, labels, normaliser, file hashes recorded, content hash, thresholds, fallback. A
    BundleError names the field."""
    if meta.format != FORMAT:
        raise BundleError(f"{meta_path}: format {meta.format!r}, expected {FORMAT!r}")
    if list(meta.labels or []) != list(MODEL_LABELS):
        raise BundleError(f"{meta_path}: labels {meta.labels} differ from this reportguard's {list(MODEL_LABELS)}")
    if meta.normalizer_version != NORMALIZER_VERSION:
        raise BundleError(f"{meta_path}: trained with normaliser {meta.normalizer_version!r}, "
                          f"but this reportguard normalises with {NORMALIZER_VERSION!r}; retrain or install the matching version")
    files = meta.files or {}
    for name in REQUIRED_FILES:
        if name not in files:
            raise BundleError(f"{meta_path}: no hash recorded for {name}")
    if meta.content_sha256 is not None and meta.content_sha256 != meta.content_hash():
        raise BundleError(f"{meta_path}: content hash differs from the content_sha256 sealed at export: bundle.json was edited "
                          f"(thresholds, hashes or versions); use the bundle as exported, or re-export it")


def validate_fields(meta: BundleMeta, meta_path: Path) -> None:
    """Thresholds, temperatures, the fallback section and the version (after the files are
    checked); a missing or malformed one is a BundleError naming it."""
    try:
        validate_thresholds(meta_path, required(meta, "thresholds"), required(meta, "decision")["block"], required(meta, "temperature"))
        fallback = meta.fallback
        if fallback:
            margin = [float(fallback["margin"][x]) for x in MODEL_LABELS]
            if fallback["file"] not in (meta.files or {}):
                raise BundleError(f"{meta_path}: fallback model {fallback['file']!r} has no hash in files")
            if not all(math.isfinite(m) and m >= 0 for m in margin):
                raise BundleError(f"{meta_path}: fallback.margin {fallback['margin']} must be finite and >= 0")
        required(meta, "model_version")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"{meta_path}: missing or malformed field {exc}") from exc
    validate_route(meta, meta_path)


#: What `route.default` may say: the cascade, or the teacher alone (the gate failed).
ROUTE_DEFAULTS = ("auto", "teacher")
#: Tier kinds the scorer knows, and the settings each needs (positive integers).
TIER_KINDS = {"hashed_ngrams": ("buckets", "ngram_min", "ngram_max", "window_chars", "stride_chars"), "transformer": ()}


def validate_route(meta: BundleMeta, meta_path: Path) -> None:
    """The `route` section, when there is one: a known default, and per tier a unique name (not a
    route's own: auto, teacher), a known kind with its settings, a file hashed in `files` (so a
    swapped student graph refuses to load like a swapped teacher) and a finite margin >= 0 per
    label. A bundle without `route` is teacher-only, as bundles were before tiers."""
    route = meta.route
    if route is None:
        return
    where = f"{meta_path}: route"
    if not isinstance(route, dict):
        raise BundleError(f"{where}: expected an object, found {type(route).__name__}")
    if route.get("default") not in ROUTE_DEFAULTS:
        raise BundleError(f"{where}.default = {route.get('default')!r}; expected one of {', '.join(ROUTE_DEFAULTS)}")
    tiers = route.get("tiers") or []
    if not isinstance(tiers, list):
        raise BundleError(f"{where}.tiers: expected a list, found {type(tiers).__name__}")
    names: set[str] = set()
    for k, tier in enumerate(tiers):
        at = f"{where}.tiers[{k}]"
        if not isinstance(tier, dict):
            raise BundleError(f"{at}: expected an object, found {type(tier).__name__}")
        name = tier.get("name")
        if not isinstance(name, str) or not name or name in ROUTE_DEFAULTS or name in names:
            raise BundleError(f"{at}.name = {name!r}: a tier needs a unique name other than {', '.join(ROUTE_DEFAULTS)}")
        names.add(name)
        if tier.get("kind") not in TIER_KINDS:
            raise BundleError(f"{at}.kind = {tier.get('kind')!r}: not a tier kind this reportguard knows ({', '.join(TIER_KINDS)})")
        for key in TIER_KINDS[tier["kind"]]:
            value = tier.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BundleError(f"{at}.{key} = {value!r} is not a positive integer")
        if tier["kind"] == "hashed_ngrams" and tier["ngram_min"] > tier["ngram_max"]:
            raise BundleError(f"{at}: ngram_min {tier['ngram_min']} exceeds ngram_max {tier['ngram_max']}")
        if tier.get("file") not in (meta.files or {}):
            raise BundleError(f"{at}.file = {tier.get('file')!r} has no hash in files")
        margin = tier.get("margin")
        if not isinstance(margin, dict) or any(_not_a_margin(margin.get(x)) for x in MODEL_LABELS):
            raise BundleError(f"{at}.margin = {margin!r}: needs a finite number >= 0 for each of {', '.join(MODEL_LABELS)}")


def _not_a_margin(value) -> bool:
    return isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0


def required(meta: BundleMeta, name: str):
    """A field's value; KeyError(name) when bundle.json lacks it (reported as a missing field)."""
    value = getattr(meta, name)
    if value is None:
        raise KeyError(name)
    return value


def check_files(meta: BundleMeta, path: Path, verify_hashes: bool = True) -> None:
    """Every file in `files` exists and (with verify_hashes) has the SHA-256 recorded for it."""
    for name, expected in (meta.files or {}).items():
        file = Path(path) / name
        if not file.exists():
            raise BundleError(f"{file}: missing from the bundle")
        if verify_hashes and sha256_file(file) != expected:
            raise BundleError(f"{file}: SHA-256 differs from bundle.json (tampered or incompletely copied)")


def check_other_files(meta: BundleMeta, path: Path) -> list[str]:
    """Problems with the files in `other_files` (hf/, the model card, metrics): missing or edited."""
    problems = []
    for name, expected in (meta.other_files or {}).items():
        if not (Path(path) / name).exists():
            problems.append(f"{Path(path) / name}: missing")
        elif sha256_file(Path(path) / name) != expected:
            problems.append(f"{Path(path) / name}: SHA-256 differs from bundle.json")
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
