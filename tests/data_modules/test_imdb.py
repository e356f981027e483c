import time

import pandas as pd
import pytest

from data_modules.imdb import IMDBDataModule
from src.utils.errors import UserInputError

POS = ["a wonderful moving film", "brilliant acting<br /><br />loved it", "great fun", "superb and touching"]
NEG = ["a dull boring mess", "awful plot, bad acting", "terrible waste of time", "worst film ever"]


def make_acl_imdb(root):
    for split in ("train", "test"):
        for name, texts in (("pos", POS), ("neg", NEG)):
            folder = root / "aclImdb" / split / name
            folder.mkdir(parents=True)
            for i, text in enumerate(texts * 5):
                (folder / f"{i}_{8 if name == 'pos' else 2}.txt").write_text(text)
    return root / "aclImdb"


def test_acl_imdb_folder(tmp_path, cache_dir):
    dm = IMDBDataModule(source=str(make_acl_imdb(tmp_path)), val_fraction=0.2, cache_dir=cache_dir, min_freq=1)
    dm.setup("fit")
    assert len(dm.datasets["test"]) == 40 and len(dm.datasets["train"]) + len(dm.datasets["val"]) == 40
    assert len(dm.datasets["val"]) == 8 and dm.datasets["val"].labels.mean() == 0.5
    assert "br" not in dm.vocabulary.index and "wonderful" in dm.vocabulary.index


def test_parquet_pair_and_limit(tmp_path, cache_dir):
    folder = tmp_path / "plain_text"
    folder.mkdir()
    for split in ("train", "test"):
        frame = pd.DataFrame({"text": (NEG + POS) * 10, "label": ([0] * 4 + [1] * 4) * 10})
        frame.to_parquet(folder / f"{split}-00000-of-00001.parquet")
    dm = IMDBDataModule(source=str(tmp_path), limit=40, cache_dir=cache_dir, min_freq=1)
    dm.setup("fit")
    assert len(dm.datasets["test"]) == 40 and len(dm.datasets["train"]) + len(dm.datasets["val"]) == 40


def test_single_50k_style_csv_holds_out_a_test_split(tmp_path, cache_dir):
    path = tmp_path / "IMDB Dataset.csv"
    sentiments = (["positive"] * 4 + ["negative"] * 4) * 5
    pd.DataFrame({"review": (POS + NEG) * 5, "sentiment": sentiments}).to_csv(path, index=False)
    dm = IMDBDataModule(source=str(path), test_fraction=0.5, cache_dir=cache_dir)
    dm.setup("fit")
    assert len(dm.datasets["test"]) == 20


def test_folder_without_imdb_data(tmp_path, cache_dir):
    with pytest.raises(UserInputError, match="neither aclImdb"):
        IMDBDataModule(source=str(tmp_path), cache_dir=cache_dir).setup("fit")
    with pytest.raises(UserInputError, match="IMDB source not found"):
        IMDBDataModule(source=str(tmp_path / "missing"), cache_dir=cache_dir)


def test_hub_offline_fails_fast_naming_the_local_option(cache_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    start = time.perf_counter()
    with pytest.raises(UserInputError, match=r"stanfordnlp/imdb.*--data\.source PATH.*aclImdb"):
        IMDBDataModule(source="hf", cache_dir=cache_dir).setup("fit")
    assert time.perf_counter() - start < 30


def test_an_unreachable_hub_is_not_asked(monkeypatch):
    """A closed network fails at once: no connection attempt reaches datasets' retry loop."""
    import socket

    from data_modules import imdb

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert imdb.hub_reachable() is False
