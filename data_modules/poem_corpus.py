"""Poems -> a corpus of word-id sequences and the GloVe vector table they index, with a report of what was kept.

``corpus_from_poems`` tokenizes, looks the words up, applies the OOV policy (``drop`` unknown words, or keep them as
``zero`` vectors at their position) and drops poems with too few known words, counting them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Container, Literal, Sequence, get_args

import numpy as np

from data_modules.poem_files import Poem, tokenize_poem
from data_modules.vocabulary import PAD, UNK
from src.utils.errors import UserInputError

OOVPolicy = Literal["drop", "zero"]
OOV_POLICIES = get_args(OOVPolicy)


@dataclass
class Corpus:
    """What the DataModule keeps: ids/lengths per kept poem, the vector table, vocabulary and reports."""

    ids: np.ndarray  # [N, S] int64
    lengths: np.ndarray  # [N]
    table: np.ndarray  # [V, D] float32, rows 0/1 (<pad>/<unk>) zero
    vocabulary: list[str]  # [V]
    poems: list[Poem]  # [N] (text may be empty for a bundle)
    report: dict


def select_words(token_lists: Sequence[list[str]], known: Container[str], max_len: int, oov: str) -> list[list[str]]:
    """Each poem's first ``max_len`` words after the OOV policy: ``drop`` removes unknown words, ``zero`` keeps
    them as ``<unk>`` (a zero vector)."""
    if oov == "drop":
        return [[t for t in tokens if t in known][:max_len] for tokens in token_lists]
    return [[t if t in known else UNK for t in tokens[:max_len]] for tokens in token_lists]


def build_table(words: Sequence[str], glove_words: Sequence[str], glove_vectors: np.ndarray) -> np.ndarray:
    """Rows of ``words`` (a vocabulary starting ``<pad>``, ``<unk>``) from GloVe; the two specials are zero."""
    row = {w: i for i, w in enumerate(glove_words)}
    table = np.zeros((len(words), glove_vectors.shape[1]), dtype=np.float32)
    for i, w in enumerate(words[2:], start=2):
        table[i] = glove_vectors[row[w]]
    return table


def to_ids(sequences: Sequence[list[str]], index: dict[str, int], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Word lists -> (ids ``[N, max_len]`` int64 padded with 0, lengths ``[N]``)."""
    ids = np.zeros((len(sequences), max_len), dtype=np.int64)
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


def corpus_from_poems(poems: Sequence[Poem], lookup: Callable[[set[str]], tuple[list[str], np.ndarray]], max_len: int,
                      oov: str, min_tokens: int, source: str = "poems") -> Corpus:
    """Tokenize, look the words up (``lookup(words) -> (found words, vectors [N, D])``, e.g. cached GloVe rows),
    apply the OOV policy and drop unusable poems (counted in the report)."""
    token_lists = [tokenize_poem(p.text) for p in poems]
    counts = Counter(t for tokens in token_lists for t in tokens)
    glove_words, glove_vectors = lookup(set(counts))
    known = set(glove_words)
    sequences = select_words(token_lists, known, max_len, oov)
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
    ids, lengths = to_ids(sequences, {w: i for i, w in enumerate(vocabulary)}, max_len)
    return Corpus(ids, lengths, build_table(vocabulary, glove_words, glove_vectors), vocabulary,
                  [poems[i] for i in keep], report)
