"""`prune_vocab`: a copy of a backbone whose vocabulary keeps only the pieces listing text uses
(the 250k x 384 embedding table is 90% of e5-small and what makes fine-tuning slow), and
`measure_pruning`: what that costs on text the vocabulary was not built from."""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from reportguard.core.encoding import length_batches

from .bert import EMBEDDING_NAMES, build_bert, count_parameters
from .provision import folder_mb
from .sentencepiece import META, SPECIALS, assemble_tokenizer, save_tokenizer

E5_PREFIXES = ("query: ", "passage: ")
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


# --- measuring ----------------------------------------------------------------------------------

def load_encoder(folder: Path):
    """(model, tokenizer) of a provisioned folder, offline, without the pooler it never had: the
    bare encoder, for measuring (train/model.py's `load_backbone` gives a classifier to fine-tune,
    in the same order: model first)."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True, add_pooling_layer=False)
    return model.eval(), tokenizer


def embed(tokenizer, model, texts: Sequence[str], prefix: str = "", batch_size: int = 32,
          max_length: int = 512) -> np.ndarray:
    """Mean-pooled (over the attention mask), L2-normalised embeddings, in input order.

    Texts are batched by length (in characters), since padding every batch to the longest text
    wastes time.
    """
    import torch

    out = np.zeros((len(texts), model.config.hidden_size), np.float32)
    with torch.inference_mode():
        for idx in length_batches(texts, batch_size):
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
    full_model, full_tok = load_encoder(full_dir)
    pruned_model, pruned_tok = load_encoder(pruned_dir)
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
