"""Poems as sequences of GloVe word vectors, for the curriculum autoencoder.

Sources (``poems_path``):

- JSON lines (``.jsonl``/``.json``/``.ndjson``, optionally ``.gz``): one object per poem with ``text`` and
  optional ``title``, ``author``;
- a folder of ``.txt`` files, one poem each (title = file name);
- one ``.txt`` file (optionally ``.gz``) holding many poems separated by **two or more blank lines** (a single
  blank line is a stanza break); each poem's title is its first line.

Or (``bundle_path``) the reference notebook's preprocessed arrays: ``embedding_sequences_<tag>.npy`` [N,T,D],
``attention_masks_<tag>.npy`` [N,T], ``token_sequences_<tag>.npy`` [N,T], ``embedding_matrix_<tag>.npy``
[V,D] and ``metadata_<tag>.json``.

Words: lowercased, curly quotes made straight, runs of letters with internal apostrophes, clitics split the
way GloVe's tokenizer does (``don't`` -> ``do n't``, ``poet's`` -> ``poet 's``); punctuation and digits are
left out. With no path the embedded default runs offline: 1,500 public-domain poems
(``data/poems/poems_default.jsonl.gz``) and the 50-d GloVe rows of their words (``data/glove/``).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Container, NamedTuple, Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from data_modules.glove import cached_glove, check_glove_path
from data_modules.text import PAD, UNK
from src.errors import UserInputError


PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POEMS = PROJECT_ROOT / "data" / "poems" / "poems_default.jsonl.gz"
DEFAULT_GLOVE = PROJECT_ROOT / "data" / "glove" / "glove.6B.50d.poems-default.txt.gz"
OOV_POLICIES = ("drop", "zero")
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
_CLITIC = re.compile(r"^(.+?)(n't|'s|'ll|'d|'re|'ve|'m)$")
_POEM_BREAK = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")  # two or more blank lines


# -- reading poems -----------------------------------------------------------------------------------------
@dataclass
class Poem:
    text: str
    title: str = ""
    author: str = ""


def tokenize_poem(text: str) -> list[str]:
    """Lowercased words, clitics split as GloVe writes them (``n't``, ``'s``, ``'ll`` ...); no punctuation."""
    tokens = []
    for word in _WORD.findall(text.lower().replace("\u2019", "'").replace("\u2018", "'")):
        m = _CLITIC.match(word)
        tokens.extend(m.groups() if m else (word,))
    return tokens


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserInputError(f"{path} is not UTF-8: invalid byte 0x{data[e.start]:02x} at byte offset {e.start}; "
                             f"re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix.lower() == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise UserInputError(f"{path} is not a readable gzip file ({e})") from None
    return _decode(data, path).replace("\r\n", "\n").replace("\r", "\n")


def _stem(path: Path) -> str:
    """Suffixes without .gz: poems.jsonl.gz -> .jsonl."""
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) > 1 and suffixes[-1] == ".gz":
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


def read_poems(path: str | os.PathLike) -> list[Poem]:
    """Poems from JSON lines, a folder of .txt files, or one .txt file with poems split by 2+ blank lines."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserInputError(f"poems not found: {p} (a .jsonl[.gz] file, a folder of .txt files or one .txt file)")
    if p.is_dir():
        files = sorted(p.glob("*.txt"))
        if not files:
            raise UserInputError(f"folder {p} has no .txt files (one poem per .txt file)")
        return [Poem(_read_text(f).strip(), f.stem) for f in files]
    kind = _stem(p)
    text = _read_text(p)
    if kind in JSON_SUFFIXES:
        poems = []
        for line_no, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserInputError(f"{p} line {line_no} is not valid JSON ({e.msg}); one object per line") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise UserInputError(f"{p} line {line_no} has no string field 'text' (fields: 'text', optional "
                                     f"'title', 'author')")
            poems.append(Poem(row["text"], str(row.get("title") or ""), str(row.get("author") or "")))
        return poems
    if kind == ".txt":
        return [Poem(chunk.strip(), chunk.strip().split("\n", 1)[0].strip()) for chunk in _POEM_BREAK.split(text)
                if chunk.strip()]
    raise UserInputError(f"cannot tell the format of {p}: use .jsonl/.json (optionally .gz), .txt, or a folder "
                         f"of .txt files")


# -- words -> ids ------------------------------------------------------------------------------------------
def select_words(token_lists: Sequence[list[str]], known: Container[str], seq_len: int, oov: str) -> list[list[str]]:
    """Each poem's first ``seq_len`` words after the OOV policy: ``drop`` removes unknown words, ``zero`` keeps
    them as ``<unk>`` (a zero vector)."""
    if oov == "drop":
        return [[t for t in tokens if t in known][:seq_len] for tokens in token_lists]
    return [[t if t in known else UNK for t in tokens[:seq_len]] for tokens in token_lists]


def build_table(words: Sequence[str], glove_words: Sequence[str], glove_vectors: np.ndarray) -> np.ndarray:
    """Rows of ``words`` (a vocabulary starting ``<pad>``, ``<unk>``) from GloVe; the two specials are zero."""
    row = {w: i for i, w in enumerate(glove_words)}
    table = np.zeros((len(words), glove_vectors.shape[1]), dtype=np.float32)
    for i, w in enumerate(words[2:], start=2):
        table[i] = glove_vectors[row[w]]
    return table


def to_ids(sequences: Sequence[list[str]], index: dict[str, int], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Word lists -> (ids ``[N, seq_len]`` int64 padded with 0, lengths ``[N]``)."""
    ids = np.zeros((len(sequences), seq_len), dtype=np.int64)
    lengths = np.zeros(len(sequences), dtype=np.int64)
    for i, words in enumerate(sequences):
        ids[i, :len(words)] = [index[w] for w in words]
        lengths[i] = len(words)
    return ids, lengths


def effective_dims(vectors: np.ndarray, shares: Sequence[float] = (0.90, 0.95)) -> tuple[list[int], np.ndarray]:
    """PCA of token vectors ``[M, D]``: components needed for each share of the variance, and the cumulative
    explained-variance curve ``[D]``."""
    centered = vectors.astype(np.float64) - vectors.mean(0)
    eigenvalues = np.linalg.eigvalsh(centered.T @ centered)[::-1].clip(min=0)  # [D], descending
    cumulative = np.cumsum(eigenvalues) / max(eigenvalues.sum(), 1e-12)
    return [int(np.searchsorted(cumulative, s - 1e-12) + 1) for s in shares], cumulative


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


# -- the reference notebook's bundle ---------------------------------------------------------------------
BUNDLE_ARRAYS = ("embedding_sequences", "attention_masks", "token_sequences", "embedding_matrix")


@dataclass
class Corpus:
    """What the DataModule keeps: ids/lengths per kept poem, the vector table, vocabulary and reports."""

    ids: np.ndarray  # [N, S] int64
    lengths: np.ndarray  # [N]
    table: np.ndarray  # [V, D] float32, rows 0/1 (<pad>/<unk>) zero
    vocabulary: list[str]  # [V]
    poems: list[Poem]  # [N] (text may be empty for a bundle)
    report: dict


def _bundle_files(path: Path, tag: str) -> dict[str, Path]:
    folder = path if path.is_dir() else path.parent
    if not folder.is_dir():
        raise UserInputError(f"bundle folder not found: {folder}")
    tags = {f.stem[len("embedding_sequences_"):] for f in folder.glob("embedding_sequences_*.npy")}
    if tag not in tags and len(tags) == 1:
        tag = next(iter(tags))  # a bundle saved under another tag than "latest"
    files = {name: folder / f"{name}_{tag}.npy" for name in BUNDLE_ARRAYS}
    missing = [f.name for f in files.values() if not f.is_file()]
    if missing:
        raise UserInputError(f"bundle {folder} lacks {', '.join(missing)} (tags found: {sorted(tags) or 'none'}); "
                             f"set bundle_tag to the suffix of its files")
    files["metadata"] = folder / f"metadata_{tag}.json"
    return files


def load_bundle(path: str | os.PathLike, tag: str = "latest", seq_len: Optional[int] = None) -> Corpus:
    """The reference notebook's preprocessed arrays -> Corpus. Shapes are checked against each other, and the
    embedding sequences must be rows of the embedding matrix at every valid position."""
    files = _bundle_files(Path(path).expanduser(), tag)
    try:
        arrays = {name: np.load(files[name], allow_pickle=False) for name in BUNDLE_ARRAYS}
    except (OSError, ValueError) as e:
        raise UserInputError(f"bundle array cannot be read ({e}); re-save it with numpy.save") from None
    seqs, masks, tokens, matrix = (arrays[n] for n in BUNDLE_ARRAYS)
    shapes = ", ".join(f"{n} {tuple(a.shape)}" for n, a in arrays.items())
    if (seqs.ndim != 3 or masks.ndim != 2 or tokens.ndim != 2 or matrix.ndim != 2
            or masks.shape != seqs.shape[:2] or tokens.shape != seqs.shape[:2] or matrix.shape[1] != seqs.shape[2]):
        raise UserInputError(f"bundle shapes do not match ({shapes}); expected [N,T,D], [N,T], [N,T], [V,D]")
    masks = masks.astype(bool)
    if tokens[masks].size and (tokens[masks].min() < 0 or tokens[masks].max() >= len(matrix)):
        raise UserInputError(f"bundle token ids run outside the embedding matrix's {len(matrix)} rows ({shapes})")
    if not np.allclose(matrix[tokens[masks]], seqs[masks], atol=1e-4):
        raise UserInputError("bundle embedding_sequences are not the embedding_matrix rows of token_sequences; "
                             "the arrays come from different runs (check bundle_tag)")
    metadata = {}
    if files["metadata"].is_file():
        try:
            metadata = json.loads(files["metadata"].read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserInputError(f"{files['metadata']} is not valid UTF-8 JSON ({e}); fix or remove it") from None
        metadata = metadata if isinstance(metadata, dict) else {}
    # Valid positions to the front of each row (the notebook's masks are prefixes; this keeps order either way).
    order = np.argsort(~masks, axis=1, kind="stable")
    lengths = masks.sum(1)
    keep = lengths > 0
    seq_len = seq_len or seqs.shape[1]
    # Our ids: 0 <pad>, 1 <unk>, then the bundle's rows shifted by 2.
    ids = np.where(np.arange(seqs.shape[1])[None] < lengths[:, None], np.take_along_axis(tokens, order, 1) + 2, 0)
    ids, lengths = ids[keep][:, :seq_len], np.minimum(lengths[keep], seq_len)
    table = np.concatenate([np.zeros((2, matrix.shape[1]), np.float32), matrix.astype(np.float32)])
    words = _metadata_list(metadata, ("vocabulary", "vocab", "idx_to_word", "index_to_word"), len(matrix))
    words = [PAD, UNK] + (words or [f"#{i}" for i in range(len(matrix))])
    titles = _metadata_list(metadata, ("titles", "title"), len(seqs)) or [f"poem {i}" for i in range(len(seqs))]
    authors = _metadata_list(metadata, ("authors", "author"), len(seqs)) or [""] * len(seqs)
    poems = [Poem("", str(t), str(a)) for t, a, k in zip(titles, authors, keep) if k]
    report = dict(poems_read=len(seqs), no_known_words=int((~keep).sum()), too_short=0, coverage=1.0)
    return Corpus(ids, lengths, table, words, poems, report)


def _metadata_list(metadata: dict, keys: Sequence[str], length: int) -> Optional[list]:
    for key in keys:
        value = metadata.get(key)
        if isinstance(value, dict):  # {index: word} or {word: index}
            if all(str(k).isdigit() for k in value):
                value = [value[k] for k in sorted(value, key=int)]
            else:
                value = sorted(value, key=value.get)
        if isinstance(value, list) and len(value) == length:
            return [str(v) for v in value]
    return None


# -- the DataModule ----------------------------------------------------------------------------------------
def corpus_from_poems(poems: Sequence[Poem], lookup: Callable[[set[str]], tuple[list[str], np.ndarray]], seq_len: int,
                      oov: str, min_tokens: int, source: str = "poems") -> Corpus:
    """Tokenize, look the words up (``lookup(words) -> (found words, vectors [N, D])``, e.g. cached GloVe rows),
    apply the OOV policy and drop unusable poems (counted in the report)."""
    token_lists = [tokenize_poem(p.text) for p in poems]
    counts = Counter(t for tokens in token_lists for t in tokens)
    glove_words, glove_vectors = lookup(set(counts))
    known = set(glove_words)
    sequences = select_words(token_lists, known, seq_len, oov)
    n_known = [sum(w != UNK for w in s) for s in sequences]
    no_known = sum(n == 0 for n in n_known)
    too_short = sum(0 < n < min_tokens for n in n_known)
    keep = [i for i, n in enumerate(n_known) if n >= max(min_tokens, 1)]
    total = sum(counts.values())
    report = dict(poems_read=len(poems), no_known_words=no_known, too_short=too_short,
                  coverage=sum(c for w, c in counts.items() if w in known) / max(total, 1))
    if not keep:
        raise UserInputError(f"no usable poems in {source}: {len(poems)} read, {no_known} with no word found in "
                             f"the GloVe file, {too_short} with fewer than min_tokens={min_tokens} known words "
                             f"(check the file's language and text field, or lower --data.min_tokens)")
    sequences = [sequences[i] for i in keep]
    freq = Counter(w for s in sequences for w in s if w != UNK)
    vocabulary = [PAD, UNK] + sorted(freq, key=lambda w: (-freq[w], w))
    ids, lengths = to_ids(sequences, {w: i for i, w in enumerate(vocabulary)}, seq_len)
    return Corpus(ids, lengths, build_table(vocabulary, glove_words, glove_vectors), vocabulary,
                  [poems[i] for i in keep], report)


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
        seq_len: keep each poem's first ``seq_len`` words (the reference's 50).
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
        seq_len: int = 50,
        min_tokens: int = 5,
        oov: str = "drop",
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
        if seq_len < 1 or batch_size < 1:
            raise UserInputError(f"seq_len={seq_len} and batch_size={batch_size} must be >= 1")
        if bundle_path and (poems_path or glove_path):
            raise UserInputError("give either bundle_path or poems_path/glove_path, not both")
        self.save_hyperparameters()
        self.poems_path = str(poems_path) if poems_path else str(DEFAULT_POEMS)
        self.glove_path = str(glove_path) if glove_path else str(DEFAULT_GLOVE)
        self.glove_dim, self.bundle_path, self.bundle_tag = glove_dim, bundle_path, bundle_tag
        self.seq_len, self.min_tokens, self.oov, self.max_poems = seq_len, min_tokens, oov, max_poems
        self.val_fraction, self.batch_size, self.seed = val_fraction, batch_size, seed
        self.num_workers, self.cache_dir = num_workers, cache_dir
        self.corpus: Optional[Corpus] = None
        self.datasets: dict[str, PoemSequences] = {}
        self.split_poems: dict[str, list[Poem]] = {}
        self.report: dict = {}

    # -- values the model needs --------------------------------------------------------------------------
    @property
    def embedding_dim(self) -> int:
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
        return {"seq_len": self.seq_len, "oov": self.oov}

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
            corpus = load_bundle(self.bundle_path, self.bundle_tag, self.seq_len)
            source = self.bundle_path
        else:
            check_glove_path(self.glove_path)
            corpus = corpus_from_poems(read_poems(self.poems_path), self.glove_lookup, self.seq_len, self.oov,
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
                       f"length {r['mean_length']:.1f}/{self.seq_len}; PCA: {d90} components hold 90% of the "
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
