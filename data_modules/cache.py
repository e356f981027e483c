"""On-disk cache of encoded corpora, keyed by the data's identity and every setting that shapes the result."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

CACHE_VERSION = 1  # bump when tokenization or the stored layout changes


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """Cheap identity of a file or folder: resolved path, total size and newest mtime (no hashing of data)."""
    p = Path(path).expanduser().resolve()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    stats = [f.stat() for f in files]
    return {"path": str(p), "files": len(files), "bytes": sum(s.st_size for s in stats),
            "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}


def cache_path(cache_dir: str | os.PathLike, prefix: str, **key: Any) -> Path:
    digest = hashlib.sha1(json.dumps({"v": CACHE_VERSION, **key}, sort_keys=True, default=str).encode()).hexdigest()
    return Path(cache_dir).expanduser() / f"{prefix}-{digest[:16]}.npz"


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Write atomically (temp file + rename) so an interrupted run never leaves a broken cache entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError, EOFError):
        return None  # missing or unreadable: rebuild
