"""What keying the data cache by content costs: SHA-256 of a data file (``file_identity``) against reading it.

    python bench/cache_key.py --data ../shared/data/imdb/train.parquet

The cache key hashes every byte of the data so a file rewritten in place with the same size and modification
time is never served stale (data_modules/cache.py). The figure is the median of ``--repeats`` runs of each,
alternated, with the file in the page cache (as on every run after the first): the hash against
``pd.read_parquet`` (the cheapest way the data is ever read) and against the old key (size and mtime only).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_modules.cache import file_identity  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a data file, e.g. ../shared/data/imdb/train.parquet")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    path = Path(args.data)
    file_identity(path)  # into the page cache
    hashed, read, stat = [], [], []
    for _ in range(args.repeats):
        hashed.append(timed(lambda: file_identity(path)))
        read.append(timed(lambda: pd.read_parquet(path) if path.suffix == ".parquet" else path.read_bytes()))
        stat.append(timed(lambda: os.stat(path)))
    h, r, s = (statistics.median(x) for x in (hashed, read, stat))
    print(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB; content hash {h * 1e3:.1f} ms, read {r * 1e3:.0f} ms, "
          f"stat {s * 1e6:.0f} us (medians of {args.repeats}); hash / read = {h / r:.3f}")
    if path.suffix == ".parquet":
        from data_modules.imdb import IMDBDataModule

        with tempfile.TemporaryDirectory() as cache:
            cold = timed(lambda: IMDBDataModule(source=str(path), cache_dir=cache, test_fraction=0.1).load())
            warm = statistics.median(timed(lambda: IMDBDataModule(source=str(path), cache_dir=cache,
                                                                  test_fraction=0.1).load())
                                     for _ in range(args.repeats))
        print(f"IMDBDataModule.load(): cold {cold:.2f} s, warm (cache hit, hash included) {warm * 1e3:.0f} ms; "
              f"hash / warm = {h / warm:.2f}, hash / cold = {h / cold:.3f}")


if __name__ == "__main__":
    main()
