"""Tokenization + vocabulary + encoding of the IMDB train split: ours (cold and warm cache) vs the reference.

The reference is notebook 002's pipeline: lowercase, strip HTML tags, keep letters, whitespace split, a
`Counter` over all words for the vocabulary, then a dict lookup per word. Ours is IMDBDataModule.load()
(regex tokenizer, vocabulary on the training split, flat int32 arrays, on-disk cache).

    python bench/tokenization.py --data IMDB_TRAIN.parquet
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data_modules.imdb import IMDBDataModule  # noqa: E402


def reference_pipeline(path: str, max_size: int, max_len: int) -> int:
    frame = pd.read_parquet(path)

    def preprocess(text: str) -> str:
        text = text.lower()
        text = re.sub(r"<.*?>", " ", text)
        text = re.sub(r"[^a-z\s]", "", text)
        return re.sub(r"\s+", " ", text).strip()

    cleaned = frame["text"].apply(preprocess)
    counts = Counter(word for text in cleaned for word in text.split())
    word_to_idx = {"<PAD>": 0, "<UNK>": 1}
    for idx, (word, _) in enumerate(counts.most_common(max_size - 2), start=2):
        word_to_idx[word] = idx
    encoded = [[word_to_idx.get(w, 1) for w in text.split()[:max_len]] for text in cleaned]
    return sum(map(len, encoded))


def ours(path: str, cache_dir: str, max_size: int, max_len: int) -> int:
    dm = IMDBDataModule(source=path, test_fraction=0.1, max_vocab_size=max_size, max_len=max_len, min_freq=1,
                        cache_dir=cache_dir)
    dm.load()
    return sum(int(d.offsets[-1]) for d in dm.datasets.values())


def timed(fn, *args) -> tuple[float, int]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="IMDB's train split as a parquet of text,label rows")
    parser.add_argument("--max_size", type=int, default=25000)
    parser.add_argument("--max_len", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        t_ref, n_ref = timed(reference_pipeline, args.data, args.max_size, args.max_len)
        t_cold, n_cold = timed(ours, args.data, cache, args.max_size, args.max_len)
        t_warm, n_warm = timed(ours, args.data, cache, args.max_size, args.max_len)
    assert n_cold == n_warm
    rows = len(pd.read_parquet(args.data, columns=["label"]))
    print(f"reviews={rows} tokens_ref={n_ref} tokens_ours={n_cold}")
    print(f"reference (regex + Counter): {t_ref:.2f} s")
    print(f"ours cold (tokenize + vocab + encode + cache write): {t_cold:.2f} s")
    print(f"ours warm (cache hit): {t_warm:.3f} s")
    print(f"ratio_cold_vs_reference={t_ref / t_cold:.2f} warm_s={t_warm:.3f}")


if __name__ == "__main__":
    main()
