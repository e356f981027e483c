"""What the review and IMDB DataModules share: splits, vocabulary, encoding cache and length-bucketed loaders.

A subclass only says where its texts come from (``read_splits``) and what identifies them (``source_key``).
"""

from __future__ import annotations

import json
import time
from typing import Optional

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from data_modules.batching import BucketBatchSampler, EncodedTexts, SortedBatchSampler, pad_collate
from data_modules.cache import cache_path, load_arrays, save_arrays
from data_modules.vocabulary import Vocabulary, tokenize
from src.utils.errors import UserInputError, check_positive, check_range

SPLITS = ("train", "val", "test")
ENCODED = ("ids", "offsets", "labels")  # the arrays of one encoded split in the cache


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Indices split per class in the given fractions (the remainder is the first part), seeded.

    Rows often come sorted by label (IMDB), so each class is shuffled before it is cut.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for value in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == value))
        sizes = [int(round(f * len(idx))) for f in fractions]
        bounds = np.cumsum([len(idx) - sum(sizes), *sizes])[:-1]
        for part, chunk in zip(parts, np.split(idx, bounds)):
            part.append(chunk)
    return [rng.permutation(np.concatenate(p)) if p else np.array([], dtype=np.int64) for p in parts]


def limit_split(texts: list[str], labels: np.ndarray, limit: Optional[int], seed: int):
    """A stratified random subsample of ``limit`` texts (all of them when limit is None or larger)."""
    if limit is None or limit >= len(labels):
        return texts, labels
    _, keep = stratified_split(labels, (limit / len(labels),), seed)
    return [texts[i] for i in keep], labels[keep]


class TextClassificationDataModule(pl.LightningDataModule):
    """Base: (texts, 0/1 labels) per split -> encoded, cached, bucketed batches of ``TextBatch``.

    Args:
        batch_size: reviews per batch.
        max_len: keep each review's first ``max_len`` tokens (None: all).
        max_vocab_size: vocabulary size including ``<pad>`` and ``<unk>``.
        min_freq: a word needs this many occurrences in the training split to get its own index.
        val_fraction: share of the training data held out for validation (stratified, seeded).
        seed: seed of every split and of the batch order.
        num_workers: DataLoader workers (batches are cheap to build; 0 is usually fastest here).
        bucket_batches: training batches per length bucket; 0 disables bucketing (plain shuffled batches).
        cache_dir: where encoded splits are cached, keyed by the data and these settings.
    """

    def __init__(self, batch_size: int = 64, max_len: Optional[int] = None, max_vocab_size: Optional[int] = 20000,
                 min_freq: int = 1, val_fraction: float = 0.1, seed: int = 42, num_workers: int = 0,
                 bucket_batches: int = 50, cache_dir: str = ".cache/rnn_lab"):
        super().__init__()
        if not 0.0 < val_fraction < 1.0:
            raise UserInputError(f"val_fraction={val_fraction} must be between 0 and 1 (e.g. 0.1)")
        check_positive(batch_size=batch_size, max_len=max_len, min_freq=min_freq)
        if max_vocab_size is not None:  # <pad>, <unk> and at least one word
            check_range("max_vocab_size", max_vocab_size, 3, float("inf"), example="20000")
        check_range("num_workers", num_workers, 0, float("inf"), example="0")
        check_range("bucket_batches", bucket_batches, 0, float("inf"), example="50 (0: no bucketing)")
        self.batch_size, self.max_len = batch_size, max_len
        self.max_vocab_size, self.min_freq = max_vocab_size, min_freq
        self.val_fraction, self.seed, self.num_workers = val_fraction, seed, num_workers
        self.bucket_batches, self.cache_dir = bucket_batches, cache_dir
        self.vocabulary: Optional[Vocabulary] = None
        self.label_names: list[str] = ["negative", "positive"]
        self.datasets: dict[str, EncodedTexts] = {}

    # -- what a subclass provides -------------------------------------------------------------------------
    def read_splits(self) -> tuple[dict[str, tuple[list[str], np.ndarray]], list[str]]:
        """-> ({"train": (texts, labels), "test": ...; "val" optional}, [name of label 0, name of label 1])."""
        raise NotImplementedError

    def source_key(self) -> dict:
        """What identifies the data (file identity, generator settings) for the cache key."""
        raise NotImplementedError

    # -- values the model needs (linked by train.py at instantiation) -------------------------------------
    @property
    def vocab_size(self) -> int:
        self.load()
        return len(self.vocabulary)

    @property
    def pad_index(self) -> int:
        return Vocabulary.pad_index

    def prepare_data(self) -> None:
        self.load()

    def setup(self, stage: Optional[str] = None) -> None:
        self.load()

    def load(self) -> None:
        """Encode every split once: from the cache when the data and settings match, else from the source."""
        if self.datasets:
            return
        settings = dict(source=self.source_key(), max_len=self.max_len, max_vocab_size=self.max_vocab_size,
                        min_freq=self.min_freq, val_fraction=self.val_fraction, seed=self.seed)
        path = cache_path(self.cache_dir, type(self).__name__.lower(), **settings)
        cached = load_arrays(path, required=["meta"] + [f"{s}_{a}" for s in ("train", "val") for a in ENCODED])
        if cached is None:
            # The first run with these data and settings reads and tokenizes every text (~20 s for IMDB's 50k).
            rank_zero_info(f"{type(self).__name__}: reading and encoding the data once; later runs with the same "
                           f"data and settings read {path}")
            start = time.perf_counter()
            cached = self._encode_from_source()
            save_arrays(path, **cached)
            rank_zero_info(f"{type(self).__name__}: encoded in {time.perf_counter() - start:.0f} s")
        meta = json.loads(str(cached["meta"]))
        self.vocabulary, self.label_names = Vocabulary(meta["vocabulary"]), meta["label_names"]
        for split in SPLITS:
            if f"{split}_offsets" in cached:
                self.datasets[split] = EncodedTexts(cached[f"{split}_ids"], cached[f"{split}_offsets"],
                                                    cached[f"{split}_labels"])

    def _encode_from_source(self) -> dict[str, np.ndarray]:
        raw, label_names = self.read_splits()
        tokens = {s: [tokenize(t)[: self.max_len] if self.max_len else tokenize(t) for t in texts]
                  for s, (texts, _) in raw.items()}
        labels = {s: np.asarray(lab) for s, (_, lab) in raw.items()}
        if "val" not in raw:
            train_idx, val_idx = stratified_split(labels["train"], (self.val_fraction,), self.seed)
            train_tokens = tokens["train"]
            tokens["train"], tokens["val"] = [train_tokens[i] for i in train_idx], [train_tokens[i] for i in val_idx]
            labels["train"], labels["val"] = labels["train"][train_idx], labels["train"][val_idx]
        vocabulary = Vocabulary.build(tokens["train"], self.max_vocab_size, self.min_freq)
        arrays = {"meta": np.array(json.dumps({"vocabulary": vocabulary.tokens, "label_names": label_names}))}
        for split, seqs in tokens.items():
            ids = [vocabulary.encode(s) or [vocabulary.unk_index] for s in seqs]
            encoded = EncodedTexts.from_sequences(ids, labels[split])
            arrays |= {f"{split}_ids": encoded.ids, f"{split}_offsets": encoded.offsets,
                       f"{split}_labels": encoded.labels}
        return arrays

    # -- loaders ------------------------------------------------------------------------------------------
    def _loader(self, split: str, train: bool) -> DataLoader:
        self.load()
        if split not in self.datasets:
            raise UserInputError(f"this data source has no {split} split")
        data = self.datasets[split]
        sampler = RandomSampler(data) if train else SequentialSampler(data)
        if train and self.bucket_batches > 0:
            batches = BucketBatchSampler(sampler, self.batch_size, False, data.lengths, self.bucket_batches, self.seed)
        elif train:
            batches = None
        else:
            batches = SortedBatchSampler(sampler, self.batch_size, False, data.lengths)
        kwargs = dict(batch_sampler=batches) if batches is not None else dict(batch_size=self.batch_size, shuffle=True)
        return DataLoader(data, collate_fn=pad_collate, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, **kwargs)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
