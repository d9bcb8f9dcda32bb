"""`reportguard pretrain`: masked-LM continued pretraining (domain-adaptive) of any backbone.

Text comes from plain-text files (one passage per line, e.g. data/unlabelled/train.txt from
`reportguard data unlabelled`) or from platform dumps in any format the scorer reads (title and
description). Every passage goes through the shared normaliser first, as at fine-tuning time.

On 2 CPU cores this is slow (FEASIBILITY.md: ~3,600 tokens/s even for a 4 x 256 model), so the
default is a short, measured continuation; at scale run it on a GPU (see the README: the same
command with a larger --max-steps and --batch-size, and `--bf16`). The output directory is a
backbone: point a fine-tuning config's `backbone.path` at it.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

# torch is imported inside the functions: the CLI builds this command's parser on every call,
# `reportguard score` included, which must never import torch.
from reportguard.core.encoding import encode_texts, load_tokenizer, pad_batch, spec_for
from reportguard.core.normalize import listing_text, normalize_text


def read_passages(paths: list[str]) -> list[str]:
    texts: list[str] = []
    for p in map(Path, paths):
        if p.suffix in (".txt",):
            texts += [normalize_text(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            from reportguard.core.records import ReadOptions, iter_chunks
            for chunk in iter_chunks([p], ReadOptions(reject_duplicate_ids=False)):
                texts += [listing_text(r["title"], r.get("description") or "") for r in chunk.records]
    return [t for t in texts if len(t) >= 5]


class MaskedLines:
    """A map-style dataset of token-id lists (what DataLoader needs: __len__ and __getitem__)."""

    def __init__(self, ids: list[list[int]]):
        self.ids = ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i]}


def make_mlm_collator(tokenizer, spec, mask_id: int, vocab_size: int, probability: float, seed: int):
    """BERT masking (80% [MASK], 10% random, 10% kept) on non-special tokens; loss on masked only."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    special = {spec.cls_id, spec.sep_id, spec.pad_id}

    def collate(features):
        input_ids, mask = pad_batch([f["input_ids"] for f in features], spec.pad_id)
        ids = torch.from_numpy(input_ids)
        attention = torch.from_numpy(mask)
        candidates = attention.bool() & ~sum((ids == s) for s in special).bool()
        chosen = (torch.rand(ids.shape, generator=generator) < probability) & candidates
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        roll = torch.rand(ids.shape, generator=generator)
        ids = torch.where(chosen & (roll < 0.8), torch.full_like(ids, mask_id), ids)
        random_ids = torch.randint(0, vocab_size, ids.shape, generator=generator)
        ids = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_ids, ids)
        return {"input_ids": ids, "attention_mask": attention, "labels": labels}
    return collate


def masked_eval(model, dataset, collate, batch_size: int = 32) -> dict:
    """Masked-token loss and accuracy on a fixed masking of the validation passages."""
    import torch
    torch.set_grad_enabled(False)
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for s in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(s, min(len(dataset), s + batch_size))])
        out = model(**batch)
        n = int((batch["labels"] != -100).sum())
        loss_sum += float(out.loss) * n
        pred = out.logits.argmax(-1)
        correct += int(((pred == batch["labels"]) & (batch["labels"] != -100)).sum())
        count += n
    model.train()
    torch.set_grad_enabled(True)
    return {"loss": loss_sum / max(count, 1), "perplexity": math.exp(min(20, loss_sum / max(count, 1))),
            "masked_accuracy": correct / max(count, 1), "masked_tokens": count}


# Long: the continuation is one loop with its warm-up phase, evaluation and provenance, read in order.
def pretrain(backbone: Path, train_files: list[str], validation_files: list[str], out: Path, max_steps: int = 200,
             batch_size: int = 16, learning_rate: float = 5e-5, max_length: int = 128, seed: int = 42,
             threads: int | None = None, limit: int | None = None, head_warmup_steps: int | None = None,
             head_learning_rate: float = 1e-3) -> dict:
    """Masked-LM continuation; returns a summary (also written to OUT/provenance.json).

    A backbone that ships no masked-LM head (multilingual-e5 is an embedding model) starts with a
    random one, and its first gradients are noise pushed into the pretrained encoder. Measured on
    e5-small: 400 steps straight from a random head lowered the fine-tuned validation macro-F1.
    So by default such a head is first trained alone (`head_warmup_steps`, encoder frozen; auto:
    a quarter of max_steps when the head is new, else none), then everything is trained.
    """
    import torch
    from transformers import AutoModelForMaskedLM, Trainer, TrainingArguments

    if threads:
        torch.set_num_threads(threads)
    tokenizer = load_tokenizer(str(backbone / "tokenizer.json"))
    spec = spec_for(tokenizer, max_length)
    mask_id = tokenizer.token_to_id("<mask>") if tokenizer.token_to_id("<mask>") is not None else tokenizer.token_to_id("[MASK]")
    train_texts, val_texts = read_passages(train_files), read_passages(validation_files)
    if limit:
        rng = np.random.default_rng(seed)
        train_texts = [train_texts[i] for i in rng.permutation(len(train_texts))[:limit]]
        val_texts = val_texts[: max(200, limit // 20)]
    train_ds = MaskedLines(encode_texts(tokenizer, train_texts, spec)[0])
    val_ds = MaskedLines(encode_texts(tokenizer, val_texts, spec)[0])
    model, loading = AutoModelForMaskedLM.from_pretrained(str(backbone), output_loading_info=True)
    new_head = [k for k in loading.get("missing_keys", []) if not k.startswith(model.base_model_prefix + ".")]
    if head_warmup_steps is None:
        head_warmup_steps = max_steps // 4 if new_head else 0
    vocab = model.config.vocab_size
    train_collate = make_mlm_collator(tokenizer, spec, mask_id, vocab, 0.15, seed)
    before = masked_eval(model, val_ds, make_mlm_collator(tokenizer, spec, mask_id, vocab, 0.15, seed + 1))
    print(f"before: {before}", flush=True)
    def args(steps: int, lr: float):
        return TrainingArguments(output_dir=str(out / "checkpoints"), max_steps=steps, per_device_train_batch_size=batch_size,
                                 learning_rate=lr, warmup_steps=0.06, weight_decay=0.01, logging_steps=10,
                                 save_strategy="no", report_to="none", use_cpu=not torch.cuda.is_available(), seed=seed,
                                 remove_unused_columns=False, dataloader_num_workers=0)
    t0 = time.perf_counter()
    warmed = None
    if head_warmup_steps:
        # Phase 1: the head alone. Its decoder is tied to the word embeddings, which stay frozen
        # with the encoder; the transform and the output bias learn.
        trainable = {n for n, p in model.named_parameters() if not n.startswith(model.base_model_prefix + ".")}
        for n, p in model.named_parameters():
            p.requires_grad_(n in trainable)
        print(f"head warm-up: {head_warmup_steps} steps on {sorted(trainable)} (new head: {bool(new_head)})", flush=True)
        Trainer(model=model, args=args(head_warmup_steps, head_learning_rate), train_dataset=train_ds, data_collator=train_collate).train()
        for p in model.parameters():
            p.requires_grad_(True)
        warmed = masked_eval(model, val_ds, make_mlm_collator(tokenizer, spec, mask_id, vocab, 0.15, seed + 1))
        print(f"after head warm-up: {warmed}", flush=True)
    # Phase 2: everything.
    Trainer(model=model, args=args(max_steps, learning_rate), train_dataset=train_ds, data_collator=train_collate).train()
    seconds = time.perf_counter() - t0
    after = masked_eval(model, val_ds, make_mlm_collator(tokenizer, spec, mask_id, vocab, 0.15, seed + 1))
    print(f"after: {after}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save(str(out / "tokenizer.json"))
    # The Trainer samples passages at random; the mean passage length times the steps taken is
    # the number of (unpadded) tokens it trained on.
    mean_tokens = float(np.mean([len(x) for x in train_ds.ids])) if len(train_ds) else 0.0
    tokens = mean_tokens * batch_size * (max_steps + head_warmup_steps)
    summary = {"backbone": str(backbone), "train_passages": len(train_ds), "validation_passages": len(val_ds),
               "max_steps": max_steps, "head_warmup_steps": head_warmup_steps, "new_head": bool(new_head),
               "batch_size": batch_size, "learning_rate": learning_rate, "seconds": seconds,
               "tokens_per_second": tokens / max(seconds, 1e-9), "before": before, "after_head_warmup": warmed, "after": after}
    provenance = {}
    if (backbone / "provenance.json").exists():
        provenance = json.loads((backbone / "provenance.json").read_text(encoding="utf-8"))
    provenance["continued_pretraining"] = summary | {"train_files": train_files}
    (out / "provenance.json").write_text(json.dumps(provenance, ensure_ascii=False, indent=1), encoding="utf-8")
    return summary
