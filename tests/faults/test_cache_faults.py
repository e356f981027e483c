"""Caches under faults: a truncated entry is rebuilt (with one warning), a file changed in place with the same size
and modification time is not served stale, and a cache that cannot be written only costs a warning."""

import os
import warnings

import numpy as np
import pytest

from data_modules.glove import cached_glove
from data_modules.reviews import ReviewsDataModule
from tests.faults.fault_harness import TINY, run_command
from train import cli_main


def reviews_file(path, word: str) -> str:
    rows = [f"a {word} film number {i},1" if i % 2 else f"a dull film number {i},0" for i in range(60)]
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return str(path)


def same_size_and_mtime_rewrite(path, old: str, new: str) -> None:
    assert len(old) == len(new)
    stat = os.stat(path)
    path.write_text(path.read_text().replace(old, new))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(path).st_size == stat.st_size and os.stat(path).st_mtime_ns == stat.st_mtime_ns


def loaded(path, cache) -> ReviewsDataModule:
    data = ReviewsDataModule(path=path, batch_size=8, cache_dir=str(cache))
    data.load()
    return data


def test_a_truncated_review_cache_is_rebuilt(tmp_path):
    path = reviews_file(tmp_path / "reviews.csv", "fine")
    first = loaded(path, tmp_path / "cache")
    (entry,) = (tmp_path / "cache").glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:700])
    with pytest.warns(UserWarning, match="unreadable.*rebuilding it"):
        second = loaded(path, tmp_path / "cache")
    assert second.vocabulary == first.vocabulary
    assert np.array_equal(second.datasets["train"].ids, first.datasets["train"].ids)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded(path, tmp_path / "cache")  # whole again: no warning


def test_a_file_rewritten_with_the_same_size_and_mtime_is_not_served_stale(tmp_path):
    path = tmp_path / "reviews.csv"
    reviews_file(path, "fine")
    assert "fine" in loaded(str(path), tmp_path / "cache").vocabulary.index
    same_size_and_mtime_rewrite(path, "fine", "grim")
    vocabulary = loaded(str(path), tmp_path / "cache").vocabulary.index
    assert "grim" in vocabulary and "fine" not in vocabulary


def test_the_glove_cache_is_rebuilt_when_truncated_and_follows_the_content(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("red 0.5 1.0\nrose 2.0 3.0\n")
    words, vectors = cached_glove(glove, {"red", "rose"}, cache_dir=str(tmp_path / "cache"))
    (entry,) = (tmp_path / "cache").glob("glove-*.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    with pytest.warns(UserWarning, match="rebuilding"):
        again = cached_glove(glove, {"red", "rose"}, cache_dir=str(tmp_path / "cache"))
    assert again[0] == words and np.array_equal(again[1], vectors)
    same_size_and_mtime_rewrite(glove, "0.5 1.0", "0.7 1.0")
    assert cached_glove(glove, {"red", "rose"}, cache_dir=str(tmp_path / "cache"))[1][0, 0] == np.float32(0.7)


def test_a_cache_folder_that_cannot_be_written_is_a_warning(tmp_path):
    (tmp_path / "afile").write_text("in the way")
    with pytest.warns(UserWarning, match="could not write the cache entry.*continuing without it"):
        data = loaded(reviews_file(tmp_path / "reviews.csv", "fine"), tmp_path / "afile" / "cache")
    assert len(data.datasets["train"]) > 0


def test_train_py_runs_on_after_its_cache_is_truncated(tmp_path, capfd):
    args = ["fit", *TINY, "--trainer.default_root_dir", tmp_path, "--data.cache_dir", tmp_path / "cache"]
    assert run_command(capfd, cli_main, args)[0] == 0
    for entry in (tmp_path / "cache").glob("*.npz"):
        entry.write_bytes(entry.read_bytes()[:700])
    with pytest.warns(UserWarning, match="rebuilding it"):
        code, lines = run_command(capfd, cli_main, args)
    assert code == 0, lines
    for entry in (tmp_path / "cache").glob("*.npz"):
        np.load(entry)  # whole again
