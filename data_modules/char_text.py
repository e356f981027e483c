"""Character-level text for language modelling: windows of ``window_len`` characters with next-character targets.

Sources: a UTF-8 text file (``.gz`` too), a folder of ``.txt`` files, or JSON lines (``.jsonl``/``.ndjson``/``.json``,
gzipped or not) with a text field, such as the poems corpus. Without a path the embedded default is used:
``data/poems/poems_default.jsonl.gz`` (1,500 public-domain poems, 1.3 M characters, see its SOURCE.md).

The text is cut into ``num_blocks`` contiguous blocks; a seeded choice of them is the validation part, the rest
training. Windows are taken inside each run of same-split blocks, so no window holds characters of both
parts, and the character vocabulary (plus ``<unk>``) is fitted on the training part only::

    text:   |---- train ----|-- val --|------- train -------|-- val --|
    window: [c0 c1 ... c(T-1)] -> targets [c1 c2 ... cT]   (T = window_len, starts every `stride` characters)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from data_modules.text_files import JSON_LINES_SUFFIXES, json_lines, kind_of, read_text, text_field
from src.utils.errors import UserInputError, check_positive, check_range

UNK = "<unk>"
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "data" / "poems" / "poems_default.jsonl.gz"
# Documents (poems, files) are joined by a blank line: a boundary the model can learn, with no new character.
DOCUMENT_SEPARATOR = "\n\n"


class CharBatch(NamedTuple):
    inputs: Tensor  # [B, T] int64 character ids
    targets: Tensor  # [B, T] int64, the character after each input position


# -- reading ----------------------------------------------------------------------------------------------
def read_corpus(path: Optional[str | os.PathLike] = None, field: str = "text") -> str:
    """A text file, a folder of ``.txt`` files or JSON lines -> one string (documents joined by a blank line)."""
    p = DEFAULT_PATH if path is None else Path(path).expanduser()
    if not p.exists():
        raise UserInputError(f"text not found: {p} (give a UTF-8 .txt file, a folder of .txt files or a "
                             ".jsonl[.gz] file, e.g. --data.path book.txt)")
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.txt") if f.is_file())
        if not files:
            raise UserInputError(f"folder {p} has no .txt files; give a folder of UTF-8 .txt files or one file")
        texts = [read_text(f) for f in files]
    else:
        text = read_text(p)
        if kind_of(p) in JSON_LINES_SUFFIXES:
            texts = [text_field(row, field, number, p, "set --data.text_field") for number, row in json_lines(text, p)]
        else:
            texts = [text]
    corpus = DOCUMENT_SEPARATOR.join(t for t in texts if t)
    if not corpus.strip():
        raise UserInputError(f"{p} is empty: there is no text to learn from")
    return corpus


# -- splitting and windows ----------------------------------------------------------------------------------
def split_blocks(n_chars: int, window_len: int, val_fraction: float, num_blocks: int,
                 seed: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """-> (train segments, val segments) as ``(start, end)`` character ranges, each holding >= one window.

    Adjacent blocks of the same part are merged, so windows can run across their (invisible) border.
    A text too short for ``num_blocks`` blocks of one window each gets fewer blocks (at least 2).
    """
    need = window_len + 1  # a window reads window_len inputs and the one character after them
    if n_chars < 2 * need:
        raise UserInputError(f"the text has {n_chars} characters; with window_len={window_len} it needs at least "
                             f"{2 * need} (one training and one validation window of {need}): give more text or lower "
                             "--data.window_len")
    blocks = max(2, min(num_blocks, n_chars // need))
    n_val = min(blocks - 1, max(1, round(val_fraction * blocks)))
    bounds = np.linspace(0, n_chars, blocks + 1).astype(np.int64)
    is_val = np.zeros(blocks, dtype=bool)
    is_val[np.random.default_rng(seed).choice(blocks, n_val, replace=False)] = True
    parts: dict[bool, list[tuple[int, int]]] = {False: [], True: []}
    for b in range(blocks):
        start, end = int(bounds[b]), int(bounds[b + 1])
        segments = parts[bool(is_val[b])]
        if b > 0 and is_val[b] == is_val[b - 1]:
            segments[-1] = (segments[-1][0], end)
        else:
            segments.append((start, end))
    return parts[False], parts[True]


def window_starts(length: int, window_len: int, stride: int) -> np.ndarray:
    """Start offsets of the windows of ``window_len + 1`` characters that fit in ``length``."""
    return np.arange(0, max(0, length - window_len), stride, dtype=np.int64)


class CharWindows(Dataset):
    """Windows over one split. ids ``[N]`` (the split's segments back to back), starts ``[W]``.

    ``__getitems__`` gathers a whole batch with one indexing op instead of ``B`` slices and a stack.
    """

    def __init__(self, ids: Tensor, starts: np.ndarray, window_len: int):
        self.ids, self.window_len = ids, window_len
        self.starts = torch.as_tensor(starts, dtype=torch.int64)
        self._offsets = torch.arange(window_len + 1)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitems__(self, indices: Sequence[int]) -> CharBatch:
        rows = self.starts[torch.as_tensor(indices, dtype=torch.int64)][:, None] + self._offsets  # [B, T + 1]
        chunk = self.ids[rows].long()
        return CharBatch(chunk[:, :-1], chunk[:, 1:])

    def __getitem__(self, i: int) -> CharBatch:
        inputs, targets = self.__getitems__([i])
        return CharBatch(inputs[0], targets[0])


def collate_windows(batch) -> CharBatch:
    if isinstance(batch, CharBatch):  # already gathered by __getitems__
        return batch
    return CharBatch(torch.stack([b.inputs for b in batch]), torch.stack([b.targets for b in batch]))


def encode(codes: np.ndarray, vocabulary: Sequence[str]) -> np.ndarray:
    """Unicode code points ``[N]`` -> ids ``[N]`` int32; characters outside ``vocabulary`` -> 0 (``<unk>``)."""
    known = np.array([ord(c) for c in vocabulary[1:]], dtype=np.int64)
    order = np.argsort(known)
    sorted_codes = known[order]
    pos = np.searchsorted(sorted_codes, codes).clip(max=max(len(sorted_codes) - 1, 0))
    hit = sorted_codes[pos] == codes if len(sorted_codes) else np.zeros(len(codes), dtype=bool)
    return np.where(hit, order[pos] + 1, 0).astype(np.int32)


class CharTextDataModule(pl.LightningDataModule):
    """Windows of ``window_len`` characters with next-character targets, as ``CharBatch``.

    Args:
        path: UTF-8 text file, folder of ``.txt`` files, or JSON lines (``.gz`` allowed); None: the embedded poems.
        text_field: the JSON field that holds the text.
        window_len: characters per training window (the truncated-BPTT length).
        stride: characters between the starts of consecutive training windows (None: ``window_len``, no overlap).
            Validation windows never overlap, so every validation character is scored once.
        batch_size: windows per batch.
        val_fraction: share of the blocks held out for validation.
        num_blocks: contiguous blocks the text is cut into before the seeded train/val choice; several blocks
            keep validation representative when the source is ordered (the poems are sorted by author).
        lowercase: lowercase the text first (a smaller vocabulary; generation lowercases its prime too).
        seed: seed of the block choice and the training window order.
        num_workers: DataLoader workers (a batch is one indexing op; 0 is fastest here).
    """

    def __init__(self, path: Optional[str] = None, text_field: str = "text", window_len: int = 128,
                 stride: Optional[int] = None, batch_size: int = 64, val_fraction: float = 0.1, num_blocks: int = 20,
                 lowercase: bool = False, seed: int = 42, num_workers: int = 0):
        super().__init__()
        if window_len < 1:
            raise UserInputError(f"window_len={window_len} must be >= 1 (e.g. 128)")
        if stride is not None and stride < 1:
            raise UserInputError(f"stride={stride} must be >= 1 (or null for window_len)")
        if not 0.0 < val_fraction < 1.0:
            raise UserInputError(f"val_fraction={val_fraction} must be between 0 and 1 (e.g. 0.1)")
        check_positive(batch_size=batch_size)
        check_range("num_workers", num_workers, 0, float("inf"), example="0")
        if num_blocks < 2:
            raise UserInputError(f"num_blocks={num_blocks} must be >= 2 (one training and one validation block)")
        self.path, self.text_field, self.window_len, self.stride = path, text_field, window_len, stride or window_len
        self.batch_size, self.val_fraction, self.num_blocks = batch_size, val_fraction, num_blocks
        self.lowercase, self.seed, self.num_workers = lowercase, seed, num_workers
        self.vocabulary: Optional[list[str]] = None
        self.datasets: dict[str, CharWindows] = {}
        self.segments: dict[str, list[tuple[int, int]]] = {}
        self.unigram_counts: Optional[np.ndarray] = None  # [V] training-part character counts
        self.bigram_counts: Optional[np.ndarray] = None  # [V, V] counts of (previous, next) inside training segments

    # -- values the model needs (linked by train.py at instantiation) -------------------------------------
    @property
    def vocab_size(self) -> int:
        self.load()
        return len(self.vocabulary)

    def prepare_data(self) -> None:
        self.load()

    def setup(self, stage: Optional[str] = None) -> None:
        self.load()

    def load(self) -> None:
        """Read, split, fit the vocabulary and baseline counts, and index the windows; once."""
        if self.datasets:
            return
        text = read_corpus(self.path, self.text_field)
        if self.lowercase:
            text = text.lower()
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64)  # [N] code points
        train_segments, val_segments = split_blocks(len(codes), self.window_len, self.val_fraction, self.num_blocks,
                                                    self.seed)
        train_codes = np.concatenate([codes[s:e] for s, e in train_segments])
        found, counts = np.unique(train_codes, return_counts=True)
        # Most frequent first, ties by code point: the vocabulary depends only on the training text.
        ranked = found[np.lexsort((found, -counts))]
        self.vocabulary = [UNK, *map(chr, ranked.tolist())]
        ids = encode(codes, self.vocabulary)
        size = len(self.vocabulary)
        train_ids = np.concatenate([ids[s:e] for s, e in train_segments])
        self.unigram_counts = np.bincount(train_ids, minlength=size).astype(np.int64)
        self.bigram_counts = np.zeros((size, size), dtype=np.int64)
        for s, e in train_segments:
            pairs = ids[s:e - 1].astype(np.int64) * size + ids[s + 1:e]
            self.bigram_counts += np.bincount(pairs, minlength=size * size).reshape(size, size)
        self.segments = {"train": train_segments, "val": val_segments}
        for split, segments in self.segments.items():
            stride = self.stride if split == "train" else self.window_len
            flat = torch.from_numpy(np.concatenate([ids[s:e] for s, e in segments]))
            offsets = np.cumsum([0] + [e - s for s, e in segments])[:-1]
            starts = np.concatenate([o + window_starts(e - s, self.window_len, stride)
                                     for o, (s, e) in zip(offsets, segments)])
            self.datasets[split] = CharWindows(flat, starts, self.window_len)
        n_train, n_val = (sum(e - s for s, e in self.segments[k]) for k in ("train", "val"))
        rank_zero_info(f"characters: {len(codes):,} ({n_train:,} train, {n_val:,} val in {len(val_segments)} blocks); "
                       f"vocabulary {size} (with {UNK}); windows: {len(self.datasets['train']):,} train, "
                       f"{len(self.datasets['val']):,} val of {self.window_len}")

    # -- loaders ------------------------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.load()
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(self.datasets[split], batch_size=self.batch_size, shuffle=shuffle, generator=generator,
                          collate_fn=collate_windows, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)
