"""Bad input to the review DataModule: each ends in one UserInputError line that names the problem and fix."""

import numpy as np
import pandas as pd
import pytest

from data_modules.review_files import normalize_labels
from data_modules.reviews import ReviewsDataModule
from src.utils.errors import UserInputError


def reviews_file(tmp_path, name="r.csv", n=40, labels=("negative", "positive"), **columns):
    frame = pd.DataFrame({"review": [f"review number {i} {'good' if i % 2 else 'bad'}" for i in range(n)],
                          "sentiment": [labels[i % 2] for i in range(n)], **columns})
    path = tmp_path / name
    {".csv": lambda: frame.to_csv(path, index=False), ".tsv": lambda: frame.to_csv(path, sep="\t", index=False),
     ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
     ".parquet": lambda: frame.to_parquet(path)}[path.suffix]()
    return path


def module(path, cache_dir, **kw):
    return ReviewsDataModule(path=str(path), text_column="review", label_column="sentiment", cache_dir=cache_dir, **kw)


@pytest.mark.parametrize("name", ["r.csv", "r.tsv", "r.jsonl", "r.parquet"])
def test_every_format_loads_and_splits_stratified(tmp_path, cache_dir, name):
    dm = module(reviews_file(tmp_path, name, n=100), cache_dir)
    dm.setup("fit")
    sizes = {s: len(d) for s, d in dm.datasets.items()}
    assert sum(sizes.values()) == 100 and sizes["test"] == 10
    assert all(d.labels.mean() == 0.5 for d in dm.datasets.values())
    assert dm.label_names == ["negative", "positive"]


@pytest.mark.parametrize("values, names", [(["0", "1"], ["0", "1"]), (["NEG", "Pos"], ["NEG", "Pos"]),
                                           (["positive", "negative"], ["negative", "positive"]),
                                           (["1", "2"], ["1", "2"]), ([0, 1], ["0", "1"])])
def test_label_spellings(values, names):
    labels, found = normalize_labels(pd.Series(values * 3), "label")
    assert found == names and labels.tolist() == [int(v == names[1]) for v in map(str, values)] * 3


def test_labels_that_are_not_two_classes_are_named(tmp_path, cache_dir):
    path = reviews_file(tmp_path, labels=("1", "3"), n=30)
    frame = pd.read_csv(path, dtype=str)
    frame.loc[:9, "sentiment"] = "5"
    frame.to_csv(path, index=False)
    with pytest.raises(UserInputError, match=r"3 distinct value\(s\) \['1', '3', '5'\].*needs two"):
        module(path, cache_dir).setup("fit")
    with pytest.raises(UserInputError, match="1 distinct"):
        normalize_labels(pd.Series(["positive"] * 4), "label")


def test_missing_file_names_the_path_and_option(tmp_path, cache_dir):
    with pytest.raises(UserInputError, match=r"data file not found: .*nope\.csv.*--data\.path"):
        module(tmp_path / "nope.csv", cache_dir).setup("fit")


def test_wrong_column_lists_the_columns_and_the_flag(tmp_path, cache_dir):
    path = reviews_file(tmp_path)
    dm = ReviewsDataModule(path=str(path), text_column="text", label_column="sentiment", cache_dir=cache_dir)
    expected = r"no column 'text'; its columns are \['review', 'sentiment'\].*--data\.text_column"
    with pytest.raises(UserInputError, match=expected):
        dm.setup("fit")


def test_empty_file_and_header_only_file(tmp_path, cache_dir):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(UserInputError, match="is empty"):
        module(empty, cache_dir).setup("fit")
    header = tmp_path / "header.csv"
    header.write_text("review,sentiment\n")
    with pytest.raises(UserInputError, match="has no rows"):
        module(header, cache_dir).setup("fit")


def test_rows_with_empty_text_are_skipped_and_counted(tmp_path, cache_dir):
    path = reviews_file(tmp_path, n=60)
    frame = pd.read_csv(path)
    frame.loc[[0, 1, 2], "review"] = ["", "   ", None]
    frame.to_csv(path, index=False)
    dm = module(path, cache_dir)
    with pytest.warns(UserWarning, match="skipped 3 of 60 rows"):
        dm.setup("fit")
    assert sum(len(d) for d in dm.datasets.values()) == 57


def test_non_utf8_bytes_give_the_line_and_column(tmp_path, cache_dir):
    path = tmp_path / "latin.csv"
    path.write_bytes("review,sentiment\ncaf\xe9 ok,positive\n".encode("latin-1"))
    with pytest.raises(UserInputError, match=r"not UTF-8: invalid byte 0xe9 at line 2, column 4"):
        module(path, cache_dir).setup("fit")


def test_unknown_extension(tmp_path, cache_dir):
    path = tmp_path / "r.xlsx"
    path.write_text("x")
    with pytest.raises(UserInputError, match="cannot tell the format"):
        module(path, cache_dir).setup("fit")


def test_synthetic_default_is_balanced_and_deterministic(cache_dir):
    a, b = ReviewsDataModule(n_samples=300, cache_dir=cache_dir), ReviewsDataModule(n_samples=300, seed=42)
    a.setup("fit")
    texts, labels = a.read_splits()[0]["train"]
    assert texts == b.read_splits()[0]["train"][0]
    assert np.isclose(np.mean(np.concatenate([d.labels for d in a.datasets.values()])), 0.5)
