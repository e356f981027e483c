"""The reference notebook's preprocessed poetry arrays as a corpus: ``embedding_sequences_<tag>.npy`` [N,T,D],
``attention_masks_<tag>.npy`` [N,T], ``token_sequences_<tag>.npy`` [N,T], ``embedding_matrix_<tag>.npy`` [V,D] and
``metadata_<tag>.json``, checked against each other."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from data_modules.poem_corpus import Corpus
from data_modules.poem_files import Poem
from data_modules.vocabulary import PAD, UNK
from src.utils.errors import UserInputError

BUNDLE_ARRAYS = ("embedding_sequences", "attention_masks", "token_sequences", "embedding_matrix")


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


def load_bundle(path: str | os.PathLike, tag: str = "latest", max_len: Optional[int] = None) -> Corpus:
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
    max_len = max_len or seqs.shape[1]
    # Our ids: 0 <pad>, 1 <unk>, then the bundle's rows shifted by 2.
    ids = np.where(np.arange(seqs.shape[1])[None] < lengths[:, None], np.take_along_axis(tokens, order, 1) + 2, 0)
    ids, lengths = ids[keep][:, :max_len], np.minimum(lengths[keep], max_len)
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
