"""Reading GloVe word vectors (``word v1 ... vD`` per line) from a plain, ``.gz`` or Stanford ``.zip`` file.

Stanford ships ``glove.6B.zip`` with one member per dimension (``glove.6B.50d.txt`` ... ``glove.6B.300d.txt``);
``dim`` picks the member. Only the rows of ``words`` are parsed into floats, so reading the 300-d file for a
poetry vocabulary costs one pass over its lines, not a 400k x 300 matrix. ``cached_glove`` keeps the parsed
subset as a compact ``.npz`` so a second run skips even that pass.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from data_modules.cache import cache_path, file_identity, load_arrays, save_arrays
from src.utils.errors import UserInputError

_MEMBER_DIM = re.compile(r"(\d+)d\.txt$")


def _zip_member(archive: zipfile.ZipFile, path: Path, dim: Optional[int]) -> str:
    members = [n for n in archive.namelist() if n.endswith(".txt")]
    by_dim = {int(m.group(1)): n for n in members if (m := _MEMBER_DIM.search(n))}
    if dim is not None:
        if dim not in by_dim:
            raise UserInputError(f"{path} has no {dim}-d member (it holds {sorted(by_dim) or members}); "
                                 f"set glove_dim to one of those")
        return by_dim[dim]
    if len(members) == 1:
        return members[0]
    raise UserInputError(f"{path} holds {len(members)} vector files {sorted(by_dim) or members}; "
                         f"set glove_dim (e.g. --data.glove_dim 300) to pick one")


@contextmanager
def _open_lines(path: Path, dim: Optional[int]) -> Iterator[io.TextIOBase]:
    """Text lines of a plain, .gz or .zip GloVe file. Decoding errors surface while iterating."""
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as archive, archive.open(_zip_member(archive, path, dim)) as raw:
            yield io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
    elif path.suffix.lower() == ".gz":
        with gzip.open(path, "rt", encoding="utf-8", newline="\n") as f:
            yield f
    else:
        with open(path, encoding="utf-8", newline="\n") as f:
            yield f


def check_glove_path(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserInputError(f"GloVe file not found: {p} (point glove_path at e.g. glove.6B.300d.txt, "
                             f"its .gz, or Stanford's glove.6B.zip)")
    return p


def read_glove(path: str | os.PathLike, words: Optional[set[str]] = None,
               dim: Optional[int] = None) -> tuple[list[str], np.ndarray]:
    """GloVe text file -> (words, float32 vectors ``[N, D]``) in file order.

    words: keep only these (None: every line). A word listed twice keeps its first line.
    dim: the expected D; picks the member of a Stanford .zip and is checked against the file.
    Raises UserInputError for a missing file, non-UTF-8 bytes, a line whose number of fields differs from the
    first line's (with its line number), a non-number, or a dimension other than ``dim``.
    """
    p = check_glove_path(path)
    kept_words: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    fields = None  # spaces per line, fixed by the first line
    line_no = 0
    try:
        with _open_lines(p, dim) as lines:
            for line_no, line in enumerate(lines, start=1):
                line = line.rstrip("\r\n ")
                if not line:
                    continue
                spaces = line.count(" ")
                if fields is None:
                    fields = spaces
                    if fields == 0 and "\t" in line:
                        raise UserInputError(f"{p} line {line_no} separates its fields with tabs; GloVe files use "
                                             "single spaces ('word v1 ... vD'): convert it, e.g. tr '\\t' ' '")
                    if fields == 0:
                        raise UserInputError(f"{p} line {line_no} holds a word and no numbers; every line of a GloVe "
                                             "file is 'word v1 ... vD'")
                    if dim is not None and fields != dim:
                        raise UserInputError(f"{p} has {fields}-d vectors (line 1), not the {dim}-d expected; "
                                             f"use a {dim}-d file or change the dimension")
                elif spaces != fields:
                    raise UserInputError(f"{p} line {line_no} has {spaces} numbers where line 1 has {fields}; "
                                         f"the file is truncated or malformed (every line is 'word v1 ... vD')")
                word, _, numbers = line.partition(" ")
                if (words is not None and word not in words) or word in seen:
                    continue
                try:
                    row = np.array(numbers.split(" "), dtype=np.float32)
                except ValueError:
                    raise UserInputError(f"{p} line {line_no}: the vector of {word!r} holds a non-number") from None
                if not np.isfinite(row).all():  # else training would diverge and blame the learning rate
                    raise UserInputError(f"{p} line {line_no}: the vector of {word!r} holds NaN or an infinity; the "
                                         "file is damaged: re-download or repair it")
                rows.append(row)
                kept_words.append(word)
                seen.add(word)
    except UnicodeDecodeError as e:
        raise UserInputError(f"{p} is not UTF-8 (invalid byte near line {line_no + 1}: {e.reason}); "
                             f"GloVe files are UTF-8, re-download or re-save it") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise UserInputError(f"{p} cannot be read ({e}); it may be truncated or not a GloVe file") from None
    if fields is None:
        raise UserInputError(f"{p} holds no vectors")
    vectors = np.stack(rows) if rows else np.zeros((0, fields), dtype=np.float32)
    return kept_words, vectors


def cached_glove(path: str | os.PathLike, words: set[str], dim: Optional[int] = None,
                 cache_dir: Optional[str] = ".cache/rnn_lab") -> tuple[list[str], np.ndarray]:
    """``read_glove`` for a word set, cached as ``.npz`` (words + float32 matrix) keyed by the file and the set."""
    p = check_glove_path(path)
    if cache_dir is None:
        return read_glove(p, words, dim)
    digest = hashlib.sha1("\n".join(sorted(words)).encode()).hexdigest()
    key = cache_path(cache_dir, "glove", source=file_identity(p), dim=dim, words=digest)
    cached = load_arrays(key, required=["words", "vectors"])
    if cached is not None and cached["vectors"].ndim == 2 and len(cached["words"]) == len(cached["vectors"]):
        return cached["words"].tolist(), cached["vectors"]
    found, vectors = read_glove(p, words, dim)
    save_arrays(key, words=np.array(found, dtype=str), vectors=vectors)
    return found, vectors
