"""Multi-label fine-tuning with the transformers Trainer.

Inputs are the normalised title and description (core.normalize.listing_text), encoded by
core.encoding exactly as the scorer encodes them. The loss is BCE with a per-label positive
weight (neg/pos)^power, so rarer labels count more without swamping precision. The train split is
obfuscated on the fly (augment.py) with a seeded generator; validation and test never are.
Early stopping watches validation macro-F1.
"""
from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

from reportguard.core.encoding import Encoded, EncodingSpec, encode, length_batches, pad_batch, pool_max
from reportguard.core.phrases import find_phrases
from reportguard.core.normalize import listing_text

from .augment import obfuscate
from .config import TrainingConfig, section
from .metrics import to_matrix


class ListingDataset(torch.utils.data.Dataset):
    """Rows -> encoded examples; the train split re-obfuscates raw text each time it is read.

    With `spec.long_text == "windows"` a long listing has several windows, and each row still
    gives one training example a read: for a row with a label, the window with the most lexicon
    phrase hits (a violation buried mid-page is what the label is about); for a clean row, a
    random window each read in training (every part of an ordinary page is ordinary), the first
    in evaluation. `encoded` keeps every window, for scoring rows by the maximum over them
    (predict_logits), as the scorer does.
    """

    def __init__(self, rows: list[dict], tokenizer, spec: EncodingSpec, augment_probability: float = 0.0, seed: int = 0,
                 train: bool = False):
        self.rows = rows
        self.tokenizer = tokenizer
        self.spec = spec
        self.augment_probability = augment_probability
        self.train = train
        self.rng = random.Random(seed)
        self.labels = to_matrix([r["labels"] for r in rows]).astype(np.float32)
        self.texts = [listing_text(r["title"], r["description"]) for r in rows]
        self.encoded = encode(tokenizer, self.texts, spec)
        self.windows: list[list[int]] = [[] for _ in rows]
        for j, i in enumerate(self.encoded.owner):
            self.windows[i].append(j)
        self.truncated = self.encoded.truncated
        self.ids = [self._choose(i, self.texts[i], self.encoded, self.windows[i], random.Random(i)) for i in range(len(rows))]

    def _choose(self, i: int, text: str, encoded: Encoded, windows: list[int], rng: random.Random) -> list[int]:
        if len(windows) == 1:
            return encoded.ids[windows[0]]
        if self.labels[i].any():
            hits = [h.start for h in find_phrases(text)]
            counts = [sum(encoded.spans[j][0] <= h < encoded.spans[j][1] for h in hits) for j in windows]
            return encoded.ids[windows[int(np.argmax(counts))]]
        return encoded.ids[rng.choice(windows) if self.train else windows[0]]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        ids = self.ids[i]
        if self.augment_probability and self.rng.random() < self.augment_probability:
            row = self.rows[i]
            text = listing_text(obfuscate(row["title"], self.rng), obfuscate(row["description"], self.rng) if row["description"] else "")
            encoded = encode(self.tokenizer, [text], self.spec)
            ids = self._choose(i, text, encoded, list(range(len(encoded.ids))), self.rng)
        elif self.train and len(self.windows[i]) > 1 and not self.labels[i].any():
            ids = self.encoded.ids[self.rng.choice(self.windows[i])]
        return {"input_ids": ids, "labels": self.labels[i]}


class LengthBucketSampler(torch.utils.data.Sampler):
    """Random batches of similar length: shuffle, cut into pools of `pool` batches, sort each pool
    by length, cut it into batches, shuffle the batches. Padding (wasted compute on 2 cores) drops
    to a few tokens per batch while the order stays random. A new permutation every epoch."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, pool: int = 50):
        self.lengths, self.batch_size, self.seed, self.pool = lengths, batch_size, seed, pool
        self.epoch = 0

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        order = rng.permutation(len(self.lengths))
        span = self.batch_size * self.pool
        batches = []
        for start in range(0, len(order), span):
            pool = sorted(order[start:start + span], key=lambda i: self.lengths[i])
            batches += [pool[k:k + self.batch_size] for k in range(0, len(pool), self.batch_size)]
        for b in rng.permutation(len(batches)):
            yield [int(i) for i in batches[b]]

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)


class BucketedTrainer(Trainer):
    def get_train_dataloader(self):
        dataset = self.train_dataset
        sampler = LengthBucketSampler([len(x) for x in dataset.ids], self.args.per_device_train_batch_size, self.args.seed)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=self.data_collator, num_workers=0)
        return self.accelerator.prepare(loader)


def make_collator(pad_id: int):
    def collate(features: list[dict]) -> dict:
        input_ids, mask = pad_batch([f["input_ids"] for f in features], pad_id)
        return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask),
                "labels": torch.from_numpy(np.stack([f["labels"] for f in features]))}
    return collate


def positive_weights(labels: np.ndarray, power: float) -> torch.Tensor:
    """(negatives / positives) ** power per label; power 0 switches balancing off."""
    pos = labels.sum(axis=0).clip(min=1)
    neg = len(labels) - pos
    return torch.tensor((neg / pos) ** power, dtype=torch.float32)


def macro_f1_at_half(eval_pred) -> dict:
    from sklearn.metrics import f1_score
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    pred = (logits > 0).astype(int)  # sigmoid(x) > 0.5; thresholds are tuned after training
    return {"macro_f1": float(f1_score(labels.astype(int), pred, average="macro", zero_division=0))}


class ProgressLog(TrainerCallback):
    """One line per evaluation, and the metrics to a callback (MLflow) as they arrive."""

    def __init__(self, log_metrics=None):
        self.log_metrics = log_metrics
        self.start = time.perf_counter()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = metrics or {}
        print(f"epoch {state.epoch:.2f} step {state.global_step}: val macro-F1 {metrics.get('eval_macro_f1', float('nan')):.4f} "
              f"loss {metrics.get('eval_loss', float('nan')):.4f} ({time.perf_counter() - self.start:.0f}s)", flush=True)
        if self.log_metrics:
            self.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.log_metrics and logs and "loss" in logs:
            self.log_metrics({"train_loss": logs["loss"], "learning_rate": logs.get("learning_rate", 0.0)}, state.global_step)


def fine_tune(model, train: ListingDataset, validation: ListingDataset, training: TrainingConfig, out_dir: Path,
              log_metrics=None, freeze_word_embeddings: bool = False):
    """Train with the config's `training` section; return the Trainer holding the best model (by
    validation macro-F1). `freeze_word_embeddings` is model.freeze_word_embeddings."""
    t = section(training, "training")
    if freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if t.get("threads"):
        torch.set_num_threads(int(t["threads"]))
    weights = positive_weights(train.labels, t["pos_weight_power"])

    def bce(outputs, labels, num_items_in_batch=None):
        return torch.nn.functional.binary_cross_entropy_with_logits(outputs["logits"], labels, pos_weight=weights)

    args = TrainingArguments(
        output_dir=str(out_dir / "checkpoints"),
        num_train_epochs=t["epochs"], max_steps=t["max_steps"],
        per_device_train_batch_size=t["batch_size"], per_device_eval_batch_size=t["eval_batch_size"],
        learning_rate=t["learning_rate"], weight_decay=t["weight_decay"], warmup_steps=t["warmup"],
        lr_scheduler_type="linear", eval_strategy="epoch", save_strategy="epoch", save_total_limit=1,
        load_best_model_at_end=True, metric_for_best_model="macro_f1", greater_is_better=True,
        logging_steps=20, report_to="none", use_cpu=True, seed=t["seed"], data_seed=t["seed"],
        dataloader_num_workers=0, remove_unused_columns=False, save_only_model=True, disable_tqdm=False,
    )
    trainer = BucketedTrainer(model=model, args=args, train_dataset=train, eval_dataset=validation,
                      data_collator=make_collator(train.spec.pad_id), compute_loss_func=bce,
                      compute_metrics=macro_f1_at_half,
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=t["early_stopping_patience"]),
                                 ProgressLog(log_metrics)])
    trainer.train()
    return trainer


@torch.no_grad()
def predict_logits(model, dataset: ListingDataset, batch_size: int = 64) -> np.ndarray:
    """PyTorch logits per row of a dataset, in its order: every window scored (length-sorted
    batches to save padding), each row's logit the maximum over its windows, as the scorer does."""
    model.eval()
    ids = dataset.encoded.ids
    out = np.zeros((len(ids), dataset.labels.shape[1]), dtype=np.float32)
    for idx in length_batches(ids, batch_size):
        input_ids, mask = pad_batch([ids[i] for i in idx], dataset.spec.pad_id)
        with torch.no_grad():
            logits = model(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask)).logits
        out[idx] = logits.float().numpy()
    return pool_max(out, dataset.encoded.owner, len(dataset))
