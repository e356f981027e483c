"""Variable-length batches: an encoded corpus kept as one flat array, padding collate, length buckets."""

from __future__ import annotations

import random
from itertools import chain
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, Dataset, Sampler


class TextBatch(NamedTuple):
    tokens: Tensor  # [B, T] int64, padded with pad_index after each sequence
    lengths: Tensor  # [B] int64, number of valid tokens (>= 1)
    labels: Tensor  # [B] float32 (0/1); -1 where unlabeled


class EncodedTexts(Dataset):
    """N token sequences stored as one flat int32 array with offsets (no Python list per review).

    ids ``[sum of lengths]``, offsets ``[N + 1]``, labels ``[N]``.
    """

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray):
        self.ids, self.offsets, self.labels = ids, offsets, labels
        self.lengths = np.diff(offsets)

    @classmethod
    def from_sequences(cls, sequences: Sequence[Sequence[int]], labels: Sequence[float]) -> "EncodedTexts":
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.fromiter(chain.from_iterable(sequences), dtype=np.int32, count=int(offsets[-1]))
        return cls(ids, offsets, np.asarray(labels, dtype=np.float32))

    def subset(self, indices: np.ndarray) -> "EncodedTexts":
        return EncodedTexts.from_sequences([self.sequence(i) for i in indices], self.labels[indices])

    def sequence(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.sequence(i), self.labels[i]


def pad_collate(items, pad_index: int = 0) -> TextBatch:
    """[(ids, label), ...] -> TextBatch padded to the longest sequence of the batch."""
    lengths = torch.tensor([len(ids) for ids, _ in items], dtype=torch.int64)
    tokens = torch.full((len(items), int(lengths.max())), pad_index, dtype=torch.int64)
    for row, (ids, _) in enumerate(items):
        tokens[row, : len(ids)] = torch.from_numpy(np.asarray(ids, dtype=np.int64))
    labels = torch.tensor([float(label) for _, label in items], dtype=torch.float32)
    return TextBatch(tokens, lengths, labels)


class BucketBatchSampler(BatchSampler):
    """Batches of similar length, in random order.

    Takes the indices of ``sampler`` (a RandomSampler here, or the DistributedSampler Lightning swaps in
    under DDP, which gives every rank the same number of indices) in chunks of ``batch_size * bucket_batches``,
    sorts each chunk by length, cuts it into batches and shuffles the order of all batches with a seed that
    changes every epoch. Every index appears once per epoch.
    """

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool, lengths: Optional[Sequence[int]] = None,
                 bucket_batches: int = 50, seed: int = 0):
        super().__init__(sampler, batch_size, drop_last)
        if lengths is None:
            raise ValueError("BucketBatchSampler needs the sequence lengths")
        self.lengths = np.asarray(lengths)
        self.bucket_batches, self.seed, self.epoch = bucket_batches, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        indices = np.fromiter(iter(self.sampler), dtype=np.int64)
        chunk = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, len(indices), chunk):
            part = indices[start:start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[i:i + self.batch_size].tolist() for i in range(0, len(part), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        random.Random(self.seed * 1_000_003 + self.epoch).shuffle(batches)
        self.epoch += 1  # a new order next epoch even when nobody calls set_epoch
        yield from batches


class SortedBatchSampler(BatchSampler):
    """Evaluation batches in ascending length order (little padding, deterministic)."""

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool, lengths: Optional[Sequence[int]] = None):
        super().__init__(sampler, batch_size, drop_last)
        self.lengths = np.asarray(lengths)

    def __iter__(self) -> Iterator[list[int]]:
        indices = np.fromiter(iter(self.sampler), dtype=np.int64)
        indices = indices[np.argsort(self.lengths[indices], kind="stable")]
        for i in range(0, len(indices), self.batch_size):
            if not (self.drop_last and len(indices) - i < self.batch_size):
                yield indices[i:i + self.batch_size].tolist()
