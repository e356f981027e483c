"""Poems as sequences of GloVe word vectors, for the curriculum autoencoder: ``PoetryEmbeddingsDataModule``.

Poems come from a user's files (data_modules/poem_files.py) or the reference notebook's preprocessed arrays
(``bundle_path``, data_modules/poem_bundle.py); with no path the embedded default runs offline: 1,500
public-domain poems (``data/poems/poems_default.jsonl.gz``) and the 50-d GloVe rows of their words
(``data/glove/``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from data_modules.glove import cached_glove, check_glove_path
from data_modules.poem_bundle import load_bundle
from data_modules.poem_corpus import OOV_POLICIES, Corpus, OOVPolicy, corpus_from_poems, effective_dims
from data_modules.poem_files import Poem, read_poems
from src.utils.errors import UserInputError, check_positive, check_range

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POEMS = PROJECT_ROOT / "data" / "poems" / "poems_default.jsonl.gz"
DEFAULT_GLOVE = PROJECT_ROOT / "data" / "glove" / "glove.6B.50d.poems-default.txt.gz"


# -- batches -----------------------------------------------------------------------------------------------
class PoemBatch(NamedTuple):
    embeddings: Tensor  # [B, T, D] float32, zero after each poem's last word
    mask: Tensor  # [B, T] bool, True at valid positions
    tokens: Tensor  # [B, T] int64 vocabulary ids (0 = <pad>, 1 = <unk>)
    lengths: Tensor  # [B] int64, valid words per poem (>= 1)
    index: Tensor  # [B] int64, row of each poem in its split

    def truncate(self, max_len: int) -> "PoemBatch":
        """The first ``max_len`` positions (curriculum), lengths clipped to match."""
        if max_len >= self.embeddings.size(1):
            return self
        return PoemBatch(self.embeddings[:, :max_len], self.mask[:, :max_len], self.tokens[:, :max_len],
                         self.lengths.clamp(max=max_len), self.index)


class PoemSequences(Dataset):
    """N poems as padded ids ``[N, S]`` + lengths ``[N]``, looked up in a vector table ``[V, D]`` per batch.

    Items are row numbers; ``collate`` gathers a whole batch at once (one index op instead of N tensors).
    """

    def __init__(self, ids: np.ndarray, lengths: np.ndarray, table: np.ndarray | Tensor):
        self.ids, self.lengths = torch.as_tensor(ids, dtype=torch.int64), torch.as_tensor(lengths, dtype=torch.int64)
        self.table = torch.as_tensor(table, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, rows: list[int]) -> PoemBatch:
        index = torch.as_tensor(rows, dtype=torch.int64)
        lengths = self.lengths[index]
        tokens = self.ids[index, : int(lengths.max())]  # [B, T], T = longest poem of the batch
        return PoemBatch(self.table[tokens], tokens > 0, tokens, lengths, index)

    def valid_vectors(self) -> np.ndarray:
        """Vectors of every valid, known (id >= 2) word ``[M, D]``."""
        ids = self.ids[self.ids >= 2]
        return self.table[ids].numpy()


# -- the DataModule ----------------------------------------------------------------------------------------
def project_relative(path: str | os.PathLike) -> str:
    """A path inside the project as relative to its root (so a checkpoint survives moving the project), else
    absolute."""
    p = Path(path).expanduser().resolve()
    try:
        return str(p.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(p)


def resolve_recorded_path(recorded: str) -> Optional[Path]:
    """A path stored in a checkpoint: as is, else relative to the project root; None if neither exists."""
    for candidate in (Path(recorded).expanduser(), PROJECT_ROOT / recorded):
        if candidate.is_file():
            return candidate
    return None


class PoetryEmbeddingsDataModule(pl.LightningDataModule):
    """Poems -> batches of GloVe vectors (``PoemBatch``: embeddings ``[B, T, D]``, mask, ids, lengths).

    Args:
        poems_path: poems (see the module docstring); None: the embedded default.
        glove_path: GloVe text file (plain, .gz, or Stanford's .zip); None: the shipped 50-d rows of the default.
        glove_dim: the vectors' dimension; picks the member of a .zip (e.g. 300) and is checked.
        bundle_path: the reference notebook's preprocessed folder (instead of poems_path/glove_path).
        bundle_tag: suffix of the bundle's files (``embedding_sequences_<tag>.npy``).
        max_len: keep each poem's first ``max_len`` words (the reference's 50).
        min_tokens: poems with fewer known words are dropped (and counted).
        oov: ``drop`` words GloVe lacks, or keep them as ``zero`` vectors (``<unk>``) at their position.
        max_poems: a seeded sample of this many usable poems (the reference used 128); None: all.
        val_fraction: share of the poems held out for validation (seeded).
        batch_size: poems per batch (the reference's 16).
        seed: seed of the sample and the split.
        num_workers: DataLoader workers (batches are one index op; 0 is fastest).
        cache_dir: where the parsed GloVe rows are cached; None: no cache.
    """

    def __init__(
        self,
        poems_path: Optional[str] = None,
        glove_path: Optional[str] = None,
        glove_dim: Optional[int] = None,
        bundle_path: Optional[str] = None,
        bundle_tag: str = "latest",
        max_len: int = 50,
        min_tokens: int = 5,
        oov: OOVPolicy = "drop",
        max_poems: Optional[int] = None,
        val_fraction: float = 0.1,
        batch_size: int = 16,
        seed: int = 42,
        num_workers: int = 0,
        cache_dir: Optional[str] = ".cache/rnn_lab",
    ):
        super().__init__()
        if oov not in OOV_POLICIES:
            raise UserInputError(f"oov={oov!r} is not one of {list(OOV_POLICIES)}")
        if not 0.0 < val_fraction < 1.0:
            raise UserInputError(f"val_fraction={val_fraction} must be between 0 and 1 (e.g. 0.1)")
        check_positive(max_len=max_len, batch_size=batch_size, min_tokens=min_tokens, max_poems=max_poems,
                       glove_dim=glove_dim)
        check_range("num_workers", num_workers, 0, float("inf"), example="0")
        if bundle_path and (poems_path or glove_path):
            raise UserInputError("give either bundle_path or poems_path/glove_path, not both")
        self.save_hyperparameters()
        self.poems_path = str(poems_path) if poems_path else str(DEFAULT_POEMS)
        self.glove_path = str(glove_path) if glove_path else str(DEFAULT_GLOVE)
        self.glove_dim, self.bundle_path, self.bundle_tag = glove_dim, bundle_path, bundle_tag
        self.max_len, self.min_tokens, self.oov, self.max_poems = max_len, min_tokens, oov, max_poems
        self.val_fraction, self.batch_size, self.seed = val_fraction, batch_size, seed
        self.num_workers, self.cache_dir = num_workers, cache_dir
        self.corpus: Optional[Corpus] = None
        self.datasets: dict[str, PoemSequences] = {}
        self.split_poems: dict[str, list[Poem]] = {}
        self.report: dict = {}

    # -- values the model needs --------------------------------------------------------------------------
    @property
    def vector_dim(self) -> int:
        """D of the word vectors (linked to the model's ``input_dim`` by train.py)."""
        self.load()
        return int(self.corpus.table.shape[1])

    @property
    def vocabulary(self) -> list[str]:
        self.load()
        return self.corpus.vocabulary

    @property
    def vectors(self) -> np.ndarray:
        """``[V, D]`` the vocabulary's vectors (rows 0/1 zero)."""
        self.load()
        return self.corpus.table

    @property
    def mean_vector(self) -> np.ndarray:
        """``[D]`` mean of the training split's word vectors: the trivial baseline's output at every position."""
        self.load()
        return self.datasets["train"].valid_vectors().mean(0)

    @property
    def recorded_glove_path(self) -> Optional[str]:
        """The GloVe file as stored in a checkpoint (project-relative when inside the project)."""
        return None if self.bundle_path else project_relative(self.glove_path)

    @property
    def tokenizer_settings(self) -> dict:
        return {"max_len": self.max_len, "oov": self.oov}

    def glove_lookup(self, words: set[str]) -> tuple[list[str], np.ndarray]:
        return cached_glove(self.glove_path, words, self.glove_dim, self.cache_dir)

    # -- loading -----------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.load()

    def setup(self, stage: Optional[str] = None) -> None:
        self.load()

    def load(self) -> None:
        if self.corpus is not None:
            return
        if self.bundle_path:
            corpus = load_bundle(self.bundle_path, self.bundle_tag, self.max_len)
            source = self.bundle_path
        else:
            check_glove_path(self.glove_path)
            corpus = corpus_from_poems(read_poems(self.poems_path), self.glove_lookup, self.max_len, self.oov,
                                       self.min_tokens, self.poems_path)
            source = self.poems_path
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(corpus.lengths))
        if self.max_poems is not None:
            order = order[: self.max_poems]
        if len(order) < 2:
            raise UserInputError(f"{source} has {len(order)} usable poem(s); training needs at least 2")
        n_val = min(max(1, round(self.val_fraction * len(order))), len(order) - 1)
        splits = {"val": np.sort(order[:n_val]), "train": np.sort(order[n_val:])}
        for split, rows in splits.items():
            self.datasets[split] = PoemSequences(corpus.ids[rows], corpus.lengths[rows], corpus.table)
            self.split_poems[split] = [corpus.poems[i] for i in rows]
        self.corpus = corpus
        (d90, d95), _ = effective_dims(self.datasets["train"].valid_vectors())
        self.report = dict(corpus.report, poems_used=len(order), train=len(splits["train"]), val=n_val,
                           vocabulary=len(corpus.vocabulary) - 2, dim=int(corpus.table.shape[1]),
                           pca_dim_90=d90, pca_dim_95=d95,
                           mean_length=float(corpus.lengths[order].mean()))
        r = self.report
        dropped = r["no_known_words"] + r["too_short"]
        if dropped:
            rank_zero_warn(f"poetry: dropped {dropped} of {r['poems_read']} poems ({r['no_known_words']} with no "
                           f"known word, {r['too_short']} with fewer than min_tokens={self.min_tokens} known words)")
        rank_zero_info(f"poetry: {r['poems_used']} poems ({r['train']} train, {r['val']} val), {r['vocabulary']} "
                       f"words, {r['dim']}-d vectors, GloVe coverage {100 * r['coverage']:.1f}% of tokens, mean "
                       f"length {r['mean_length']:.1f}/{self.max_len}; PCA: {d90} components hold 90% of the "
                       f"variance, {d95} hold 95%")

    # -- loaders -----------------------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.load()
        data = self.datasets[split]
        return DataLoader(data, batch_size=self.batch_size, shuffle=shuffle, collate_fn=data.collate,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)
