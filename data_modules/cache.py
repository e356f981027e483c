"""On-disk cache of encoded corpora, keyed by the data's content and every setting that shapes the result.

Keyed by content, not by size and modification time: a file rewritten in place with the same size and mtime (a
copy with ``cp -p``, a restored backup, a checkout) must not be served stale. Hashing is cheap next to the
parsing it saves (SHA-256 of the 14 MB IMDB parquet: ~13 ms, reading it with pandas: ~560 ms; docs/benchmarks.md).
An entry is checked when loaded (zip CRCs, the arrays the caller needs); one that cannot be read (a killed run
before the atomic writes, a full disk, a damaged disk) is rebuilt with one warning. A cache that cannot be written
is a warning too: the run goes on without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from src.utils.errors import UserInputError
from src.utils.output_files import remove_stale_temporaries, written_atomically

CACHE_VERSION = 2  # bump when tokenization or the stored layout changes (2: keys hash the data's content)
CHUNK = 1 << 20


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """Identity of a file or folder by content: SHA-256 over every file's bytes (and, in a folder, its relative
    name), plus the total size."""
    p = Path(path).expanduser().resolve()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    digest, size = hashlib.sha256(), 0
    for f in files:
        if f != p:
            digest.update(f.relative_to(p).as_posix().encode() + b"\0")
        try:
            with open(f, "rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as e:
            raise UserInputError(f"cannot read {f} ({e.strerror or e})") from None
    return {"sha256": digest.hexdigest(), "files": len(files), "bytes": size}


def cache_path(cache_dir: str | os.PathLike, prefix: str, **key: Any) -> Path:
    digest = hashlib.sha1(json.dumps({"v": CACHE_VERSION, **key}, sort_keys=True, default=str).encode()).hexdigest()
    return Path(cache_dir).expanduser() / f"{prefix}-{digest[:16]}.npz"


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Write atomically (temp file in the same folder + rename): an interrupted run never leaves a broken entry.
    A cache that cannot be written (read-only folder, full disk) is a warning, not a failed run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        with written_atomically(path, "cache entry") as temporary, open(temporary, "wb") as f:
            np.savez(f, **arrays)
    except (OSError, UserInputError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else e
        warnings.warn(f"could not write the cache entry {path} ({reason}); continuing without it", stacklevel=2)


def load_arrays(path: Path, required: Iterable[str] = ()) -> dict[str, np.ndarray] | None:
    """The arrays of a cache entry, or None when it is missing or unusable (then the caller rebuilds it)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}  # reads every member: zip CRCs are checked here
        missing = [k for k in required if k not in arrays]
        if missing:
            raise KeyError(f"no {', '.join(missing)}")
        return arrays
    except Exception as e:  # truncated zip, bad CRC, wrong layout: whatever the damage, the cure is to rebuild
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        warnings.warn(f"cache entry {path} is unreadable ({first}); rebuilding it", stacklevel=2)
        return None
