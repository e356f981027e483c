import numpy as np
import pytest

from data_modules.reviews import ReviewsDataModule
from data_modules.vocabulary import PAD, UNK, Vocabulary, tokenize


def test_tokenize_strips_html_breaks_and_lowercases():
    assert tokenize("Great<br /><br />FILM, isn't it? 10/10") == ["great", "film", "isn't", "it", "10", "10"]
    assert tokenize("") == []


def test_vocabulary_specials_frequency_order_and_limits():
    vocab = Vocabulary.build([["b", "a", "b"], ["c", "b", "a"]], max_size=4, min_freq=1)
    assert vocab.tokens == [PAD, UNK, "b", "a"]  # max_size counts the specials; ties and order by frequency
    assert vocab.encode(["a", "zzz", "b"]) == [3, 1, 2]
    assert Vocabulary.build([["x", "y", "y"]], min_freq=2).tokens == [PAD, UNK, "y"]


def test_encode_text_never_returns_an_empty_sequence_and_truncates():
    vocab = Vocabulary.build([["good", "film"]])
    assert vocab.encode_text("") == [vocab.unk_index]
    assert vocab.encode_text("!!! ???") == [vocab.unk_index]
    assert vocab.encode_text("good good good film", max_len=2) == [vocab.index["good"]] * 2


def test_vocabulary_is_fitted_on_the_training_split_only(tmp_path, cache_dir):
    rows = ["text,label"] + [f"common trainword{i} good,1" for i in range(40)]
    rows += [f"common other{i} bad,0" for i in range(40)]
    path = tmp_path / "r.csv"
    path.write_text("\n".join(rows) + "\n")
    dm = ReviewsDataModule(path=str(path), val_fraction=0.2, test_fraction=0.2, cache_dir=cache_dir, min_freq=1)
    dm.setup("fit")
    train_ids = set(dm.datasets["train"].ids.tolist())
    held_out = np.concatenate([dm.datasets["val"].ids, dm.datasets["test"].ids])
    # Words unique to held-out reviews are unknown to the vocabulary, so they encode as <unk>.
    assert (held_out == Vocabulary.unk_index).sum() > 0
    assert Vocabulary.unk_index not in train_ids
    assert dm.vocab_size == len(dm.vocabulary)


def test_encoded_splits_are_cached_and_reused(tmp_path, cache_dir, monkeypatch):
    dm = ReviewsDataModule(n_samples=200, cache_dir=cache_dir)
    dm.setup("fit")
    calls = []
    def read_splits(self):
        calls.append(1)
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(ReviewsDataModule, "read_splits", read_splits)
    again = ReviewsDataModule(n_samples=200, cache_dir=cache_dir)
    again.setup("fit")
    assert calls == [] and again.vocabulary == dm.vocabulary
    assert np.array_equal(again.datasets["train"].ids, dm.datasets["train"].ids)
    with pytest.raises(AssertionError):  # other settings, other cache entry: the source is read again
        ReviewsDataModule(n_samples=200, max_len=5, cache_dir=cache_dir).setup("fit")
