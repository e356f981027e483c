"""IMDB movie reviews (Maas et al. 2011) from the Hugging Face Hub or from local files.

``source: hf`` loads ``stanfordnlp/imdb`` through ``datasets`` (downloaded once in ``prepare_data`` and cached
by ``datasets``). ``source: <path>`` reads, by what the path holds:

- an ``aclImdb/`` folder: ``train/{pos,neg}/*.txt`` and ``test/{pos,neg}/*.txt``;
- a folder of HF-style parquet files (columns ``text``, ``label``) whose names contain ``train`` / ``test``;
- one file (the common 50k CSV with ``review``/``sentiment``, or a parquet/CSV with ``text``/``label``):
  with no official test split, ``test_fraction`` of it is held out as test.

Validation is always a seeded, stratified ``val_fraction`` of train; test is the official test split.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from data_modules.cache import file_identity
from data_modules.review_files import normalize_labels, read_table
from data_modules.text_classification import TextClassificationDataModule, limit_split, stratified_split
from src.utils.errors import UserInputError, check_positive, check_range

HF_NAME = "stanfordnlp/imdb"
HUB_HOST = "huggingface.co"
LOCAL_HINT = ("pass local files instead (train.py: --data.source PATH; experiments and benches: --data PATH): an "
              "aclImdb folder (train|test/pos|neg/*.txt), a folder of train/test parquet files, or the 50k "
              "'IMDB Dataset.csv'")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face Hub opens within ``timeout`` seconds."""
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def read_acl_imdb(root: Path, split: str) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for label, name in ((0, "neg"), (1, "pos")):
        files = sorted((root / split / name).glob("*.txt"), key=lambda f: (len(f.name), f.name))
        texts += [f.read_text(encoding="utf-8", errors="replace") for f in files]
        labels += [label] * len(files)
    return texts, np.asarray(labels, dtype=np.int64)


def frame_to_split(frame: pd.DataFrame, where) -> tuple[list[str], np.ndarray]:
    for text_col, label_col in (("text", "label"), ("review", "sentiment")):
        if {text_col, label_col} <= set(frame.columns):
            labels, _ = normalize_labels(frame[label_col], f"{label_col!r} of {where}")
            return frame[text_col].astype(str).tolist(), labels
    raise UserInputError(f"{where} has columns {list(frame.columns)}; IMDB files need text/label or review/sentiment")


class IMDBDataModule(TextClassificationDataModule):
    """IMDB sentiment. See the module docstring for ``source``.

    Args:
        source: ``hf`` or a local path (folder or file).
        limit: use at most this many reviews of each split (stratified subsample), as notebook 002's 30k run.
        test_fraction: held-out test share when the source is a single file without a test split.
        **others**: see ``TextClassificationDataModule``.
    """

    def __init__(self, source: str = "hf", limit: Optional[int] = None, test_fraction: float = 0.5,
                 batch_size: int = 64, max_len: Optional[int] = 400, max_vocab_size: Optional[int] = 25000,
                 min_freq: int = 2, val_fraction: float = 0.1, seed: int = 42, num_workers: int = 0,
                 bucket_batches: int = 50, cache_dir: str = ".cache/rnn_lab"):
        super().__init__(batch_size, max_len, max_vocab_size, min_freq, val_fraction, seed, num_workers,
                         bucket_batches, cache_dir)
        check_positive(limit=limit)
        check_range("test_fraction", test_fraction, 0.0, 1.0, low_closed=False, example="0.5")
        self.source, self.limit, self.test_fraction = source, limit, test_fraction
        if source != "hf" and not Path(source).expanduser().exists():
            raise UserInputError(f"IMDB source not found: {source}; use --data.source hf or an existing path")

    def source_key(self) -> dict:
        origin = {"hf": HF_NAME} if self.source == "hf" else file_identity(self.source)
        return {"origin": origin, "limit": self.limit, "test_fraction": self.test_fraction}

    def read_splits(self):
        splits = self._read_hf() if self.source == "hf" else self._read_local(Path(self.source).expanduser())
        for name in list(splits):
            splits[name] = limit_split(*splits[name], self.limit, self.seed)
        return splits, ["neg", "pos"]

    def _read_hf(self):
        os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
        os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
        unreachable = "datasets" not in sys.modules and not hub_reachable()
        if unreachable:
            # Read datasets' cache only: asking an unreachable Hub retries for ~30 s before giving up.
            os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
        try:
            import datasets

            data = datasets.load_dataset(HF_NAME)
        except Exception as e:  # offline, no cache, hub error: datasets raises several types for these
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            if unreachable:
                reason = f"{HUB_HOST} is unreachable and datasets holds no cached copy"
            raise UserInputError(f"could not load {HF_NAME} from the Hugging Face Hub ({reason}); "
                                 f"{LOCAL_HINT}") from None
        return {split: (list(data[split]["text"]), np.asarray(data[split]["label"], dtype=np.int64))
                for split in ("train", "test")}

    def _read_local(self, path: Path):
        if path.is_dir():
            root = next((p for p in (path, path / "aclImdb") if (p / "train" / "pos").is_dir()), None)
            if root is not None:
                splits = {s: read_acl_imdb(root, s) for s in ("train", "test") if (root / s / "pos").is_dir()}
                return splits
            parquet = sorted(path.rglob("*.parquet"))
            found = {s: [f for f in parquet if s in f.name] for s in ("train", "test")}
            if found["train"]:
                return {s: frame_to_split(pd.concat([read_table(f) for f in files]), files[0])
                        for s, files in found.items() if files}
            raise UserInputError(f"{path} holds neither aclImdb's train/pos and train/neg folders nor "
                                 f"train/test parquet files; {LOCAL_HINT}")
        texts, labels = frame_to_split(read_table(path), path)
        train_idx, test_idx = stratified_split(labels, (self.test_fraction,), self.seed)
        return {"train": ([texts[i] for i in train_idx], labels[train_idx]),
                "test": ([texts[i] for i in test_idx], labels[test_idx])}
