"""The memory task of reference notebook 001: report the first token of a sequence at its last step.

Each sequence has ``seq_length`` tokens drawn uniformly from ``num_symbols`` symbols; the first one is the
target, the ``seq_length - 1`` after it are random distractors from the same symbols. A model reads the whole
sequence and must name the first token from its state after the last one, so it has to carry one symbol
across ``seq_length - 1`` steps. Guessing scores ``1 / num_symbols`` (10% for the default 10 symbols).

Every split is generated once in ``setup`` from its own seed, so the same ``seed`` gives the same data on
every machine and the validation and test sequences are independent draws from the training ones.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from src.utils.errors import UserInputError

SPLIT_OFFSETS = {"train": 0, "val": 1, "test": 2}  # each split's generator seed is seed * 3 + offset


class MemoryBatch(NamedTuple):
    tokens: Tensor  # [B, T] int64 symbols
    targets: Tensor  # [B] int64, equal to tokens[:, 0]


def memory_sequences(n: int, seq_length: int, num_symbols: int, seed: int) -> MemoryBatch:
    """``n`` sequences ``[n, seq_length]`` of uniform symbols and their targets (the first symbol), seeded."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, num_symbols, (n, seq_length), generator=generator)
    return MemoryBatch(tokens, tokens[:, 0].clone())


class MemoryDataset(Dataset):
    def __init__(self, data: MemoryBatch):
        self.data = data

    def __len__(self) -> int:
        return len(self.data.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.data.tokens[i], self.data.targets[i]


def collate(items) -> MemoryBatch:
    tokens, targets = zip(*items)
    return MemoryBatch(torch.stack(tokens), torch.stack(targets))


class MemoryTaskDataModule(pl.LightningDataModule):
    """Synthetic sequences whose label is their first token (see the module docstring).

    Args:
        seq_length: tokens per sequence, the first included: the target must be kept for ``seq_length - 1``
            steps. 1 would make the task trivial, so it must be >= 2.
        num_symbols: size of the vocabulary and number of classes (10: chance is 10%).
        n_train, n_val, n_test: sequences per split. The training set is fixed (not redrawn per epoch) so
            that a run is a fixed budget of ``max_epochs * n_train / batch_size`` steps on known data.
        batch_size: sequences per batch.
        seed: seed of the generated data and of the training batch order.
    """

    def __init__(self, seq_length: int = 20, num_symbols: int = 10, n_train: int = 10000, n_val: int = 2000,
                 n_test: int = 2000, batch_size: int = 64, seed: int = 0):
        super().__init__()
        if seq_length < 2:
            raise UserInputError(f"seq_length={seq_length} must be >= 2 (the first token plus at least one step "
                                 "to remember it over), e.g. --data.seq_length 20")
        if num_symbols < 2:
            raise UserInputError(f"num_symbols={num_symbols} must be >= 2, e.g. 10")
        for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("batch_size", batch_size)):
            if value < 1:
                raise UserInputError(f"{name}={value} must be >= 1")
        self.save_hyperparameters()
        self.seq_length, self.num_symbols, self.batch_size, self.seed = seq_length, num_symbols, batch_size, seed
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.datasets: dict[str, MemoryDataset] = {}

    @property
    def vocab_size(self) -> int:
        """Linked to the model's ``vocab_size`` by train.py; the model's classes default to the same number."""
        return self.num_symbols

    @property
    def chance(self) -> float:
        return 1.0 / self.num_symbols

    def setup(self, stage: Optional[str] = None) -> None:
        if self.datasets:
            return
        for split, n in self.sizes.items():
            seed = self.seed * len(SPLIT_OFFSETS) + SPLIT_OFFSETS[split]
            data = memory_sequences(n, self.seq_length, self.num_symbols, seed)
            self.datasets[split] = MemoryDataset(data)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        # A generator of our own: the batch order follows `seed`, not whatever the global RNG did before.
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(self.datasets[split], batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate,
                          generator=generator)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
