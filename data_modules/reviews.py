"""Reviews: a user's own review file, or (with no path) the synthetic movie reviews of reference notebook 003."""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from data_modules.cache import file_identity
from data_modules.review_files import normalize_labels, pick_columns, read_table
from data_modules.text_classification import TextClassificationDataModule, limit_split, stratified_split
from src.utils.errors import UserInputError, check_positive

POSITIVE_TEMPLATES = [
    "This movie was absolutely amazing! The acting was superb and the plot was engaging.",
    "I loved every minute of this film. The characters were well developed and believable.",
    "An outstanding performance by the lead actor. Highly recommend this movie!",
    "Brilliant cinematography and excellent direction. One of the best films I've seen.",
    "Fantastic storyline with unexpected twists. The ending was perfect.",
    "Incredible action sequences and great special effects. Truly entertaining.",
    "The dialogue was witty and the pacing was excellent throughout.",
    "A masterpiece of filmmaking. Every scene was beautifully crafted.",
    "Outstanding performances from the entire cast. Emotionally powerful.",
    "This film exceeded all my expectations. Absolutely worth watching.",
]
NEGATIVE_TEMPLATES = [
    "This movie was terrible. Poor acting and a confusing plot.",
    "I wasted my time watching this film. The story made no sense.",
    "Boring and predictable. The characters were poorly developed.",
    "Awful direction and terrible screenplay. Complete disappointment.",
    "The worst movie I've seen this year. Avoid at all costs.",
    "Poorly executed with bad special effects. Very disappointing.",
    "The dialogue was cringe-worthy and the pacing was awful.",
    "A complete mess of a film. Nothing worked in this movie.",
    "Terrible performances and a ridiculous plot. Total waste of time.",
    "This film was boring and uninspiring. Definitely not recommended.",
]
POSITIVE_WORDS = ["excellent", "amazing", "fantastic", "brilliant", "outstanding", "wonderful", "great", "superb",
                  "incredible", "perfect"]
NEGATIVE_WORDS = ["terrible", "awful", "horrible", "disappointing", "boring", "bad", "worst", "poor", "ridiculous",
                  "waste"]


def synthetic_reviews(n_samples: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Balanced reviews (even rows positive): a template plus 0-2 sentiment words, lowercased. Deterministic."""
    rng = np.random.default_rng(seed)
    texts, labels = [], np.zeros(n_samples, dtype=np.int64)
    for i in range(n_samples):
        positive = i % 2 == 0
        if positive:
            templates, words, end = POSITIVE_TEMPLATES, POSITIVE_WORDS, "!"
        else:
            templates, words, end = NEGATIVE_TEMPLATES, NEGATIVE_WORDS, "."
        review = templates[rng.integers(len(templates))]
        for _ in range(rng.integers(0, 3)):
            review += f" {words[rng.integers(len(words))].capitalize()}{end}"
        texts.append(review.lower())
        labels[i] = int(positive)
    return texts, labels


class ReviewsDataModule(TextClassificationDataModule):
    """Binary review classification from a user's file, or synthetic reviews when ``path`` is None.

    Args:
        path: CSV, TSV, JSON lines or parquet file with one review per row (None: synthetic reviews).
        text_column: column holding the review text.
        label_column: column holding the label: 0/1, neg/pos or negative/positive (any case).
        n_samples: number of synthetic reviews (ignored with a path).
        limit: use at most this many reviews (a stratified, seeded subsample, e.g. of a large file); None: all.
        test_fraction: share held out for testing (stratified, seeded); validation is ``val_fraction``.
        **others**: see ``TextClassificationDataModule``.
    """

    def __init__(self, path: Optional[str] = None, text_column: str = "text", label_column: str = "label",
                 n_samples: int = 2000, test_fraction: float = 0.1, batch_size: int = 32,
                 max_len: Optional[int] = 400, max_vocab_size: Optional[int] = 20000, min_freq: int = 1,
                 val_fraction: float = 0.1, seed: int = 42, num_workers: int = 0, bucket_batches: int = 50,
                 cache_dir: str = ".cache/rnn_lab", limit: Optional[int] = None):
        super().__init__(batch_size, max_len, max_vocab_size, min_freq, val_fraction, seed, num_workers,
                         bucket_batches, cache_dir)
        if not 0.0 < test_fraction < 1.0 or test_fraction + val_fraction >= 1.0:
            raise UserInputError(f"test_fraction={test_fraction} and val_fraction={val_fraction} must each be in "
                                 "(0, 1) and leave data for training (e.g. 0.1 each)")
        check_positive(n_samples=n_samples, limit=limit)
        self.path, self.text_column, self.label_column = path, text_column, label_column
        self.n_samples, self.test_fraction, self.limit = n_samples, test_fraction, limit

    def source_key(self) -> dict:
        if self.path is None:
            return {"synthetic": self.n_samples, "seed": self.seed, "limit": self.limit}
        return {"file": file_identity(self.path), "text": self.text_column, "label": self.label_column,
                "test_fraction": self.test_fraction, "limit": self.limit}

    def read_splits(self):
        if self.path is None:
            texts, labels = synthetic_reviews(self.n_samples, self.seed)
            names = ["negative", "positive"]
        else:
            frame = pick_columns(read_table(self.path), self.path, self.text_column, self.label_column)
            text = frame[self.text_column].astype(str).where(frame[self.text_column].notna(), "")
            empty = text.str.strip() == ""
            if empty.all():
                raise UserInputError(f"every row of {self.path} has an empty {self.text_column!r}; "
                                     "is --data.text_column the review column?")
            if empty.any():
                warnings.warn(f"skipped {int(empty.sum())} of {len(text)} rows of {self.path} with empty text",
                              stacklevel=2)
            frame = frame[~empty.to_numpy()]
            labels, names = normalize_labels(frame[self.label_column], f"{self.label_column!r} of {self.path}")
            texts = frame[self.text_column].astype(str).tolist()
        texts, labels = limit_split(texts, labels, self.limit, self.seed)
        # The remainder is train; val is carved from it later by the base class.
        train_idx, test_idx = stratified_split(labels, (self.test_fraction,), self.seed)
        if len(test_idx) == 0 or len(train_idx) < 2:
            raise UserInputError(f"only {len(labels)} usable reviews: too few to split into train/val/test")
        return {"train": ([texts[i] for i in train_idx], labels[train_idx]),
                "test": ([texts[i] for i in test_idx], labels[test_idx])}, names
