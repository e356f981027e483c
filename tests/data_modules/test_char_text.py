"""CharTextDataModule: windows and split, sources, bad input, bigram counts."""

import gzip
import json

import numpy as np
import pytest
import torch

from data_modules.char_text import DEFAULT_PATH, UNK, CharTextDataModule, read_corpus, split_blocks
from src.utils.errors import UserInputError
from tests.common import QUIET, ROOT, random_text, write
from train import cli_main


def decode(dm: CharTextDataModule, ids) -> str:
    return "".join(dm.vocabulary[i] for i in ids.tolist())



# -- windows and split ----------------------------------------------------------------------------------
def test_every_target_is_the_next_character_and_no_window_crosses_the_split(tmp_path):
    text = random_text(3000)
    dm = CharTextDataModule(write(tmp_path, text), window_len=9, stride=4, num_blocks=7, val_fraction=0.3, seed=3)
    dm.load()
    train, val = dm.segments["train"], dm.segments["val"]
    bounds = sorted(train + val)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # the parts tile the text, no overlap
    for split, segments in dm.segments.items():
        data = dm.datasets[split]
        assert len(data) > 0
        for i in range(len(data)):
            window = data[i]
            assert window.inputs.shape == window.targets.shape == (9,)
            assert torch.equal(window.targets[:-1], window.inputs[1:])  # shifted by one inside the window
            chars = decode(dm, window.inputs) + decode(dm, window.targets[-1:])
            starts = [m for m in range(len(text) - 9) if text.startswith(chars, m)]
            assert len(starts) == 1  # a random 10-char string occurs once
            start = starts[0]
            assert any(s <= start and start + 10 <= e for s, e in segments), f"{split} window {i} crosses a border"
    # training windows start every `stride` characters, validation windows every window_len (each char scored once)
    expected_val = sum(len(range(0, e - s - 9, 9)) for s, e in val)
    assert len(dm.datasets["val"]) == expected_val
    assert len(dm.datasets["train"]) == sum(len(range(0, e - s - 9, 4)) for s, e in train)


def test_batches_are_gathered_whole_and_seeded(tmp_path):
    path = write(tmp_path, random_text(2000))
    orders = []
    for _ in range(2):
        dm = CharTextDataModule(path, window_len=16, batch_size=8, seed=5)
        batch = next(iter(dm.train_dataloader()))
        assert batch.inputs.shape == batch.targets.shape == (8, 16) and batch.inputs.dtype == torch.int64
        orders.append(batch.inputs)
    assert torch.equal(*orders)


def test_vocabulary_is_fitted_on_the_training_part_only(tmp_path):
    n, window_len = 4000, 20
    train, val = split_blocks(n, window_len, 0.25, 8, seed=1)
    chars = list(random_text(n))
    s, e = val[0]
    for i in range(s, e, 50):
        chars[i] = "Z"  # only inside validation
    dm = CharTextDataModule(write(tmp_path, "".join(chars)), window_len=window_len, num_blocks=8, val_fraction=0.25,
                            seed=1)
    dm.load()
    assert dm.segments == {"train": train, "val": val}
    assert dm.vocabulary[0] == UNK and "Z" not in dm.vocabulary and "a" in dm.vocabulary
    val_ids = dm.datasets["val"].ids
    assert int((val_ids == 0).sum()) == len(range(s, e, 50))  # every Z read as <unk>, nothing else
    assert int((dm.datasets["train"].ids == 0).sum()) == 0


def test_lowercase_option(tmp_path):
    dm = CharTextDataModule(write(tmp_path, "Hello World " * 50), window_len=8, lowercase=True)
    dm.load()
    assert "H" not in dm.vocabulary and "h" in dm.vocabulary


# -- sources --------------------------------------------------------------------------------------------
def test_reads_a_folder_of_txt_files_and_gzipped_json_lines(tmp_path):
    folder = tmp_path / "books"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("second", encoding="utf-8")
    (folder / "a.txt").write_text("first", encoding="utf-8")
    (folder / "sub" / "c.txt").write_text("third", encoding="utf-8")
    (folder / "skip.md").write_text("not text", encoding="utf-8")
    assert read_corpus(folder) == "first\n\nsecond\n\nthird"
    rows = [{"title": "t", "text": "roses are red"}, {"title": "u", "text": "violets"}]
    path = tmp_path / "poems.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in rows).encode()))
    assert read_corpus(path) == "roses are red\n\nviolets"
    with pytest.raises(UserInputError, match="no 'body' field.*--data.text_field"):
        read_corpus(path, field="body")


def test_the_embedded_default_is_in_the_repository():
    assert DEFAULT_PATH.is_file() and DEFAULT_PATH.relative_to(ROOT)
    assert len(read_corpus(None)) > 1_000_000  # used when --data.path is not given


# -- bad input ------------------------------------------------------------------------------------------
def test_empty_file(tmp_path):
    with pytest.raises(UserInputError, match="empty"):
        CharTextDataModule(write(tmp_path, "")).load()


def test_a_file_that_is_not_utf8_names_the_file_line_and_column(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("first line\ncaf\u00e9 au lait".encode("latin-1"))
    with pytest.raises(UserInputError, match=r"latin1\.txt is not UTF-8: invalid byte 0xe9 at line 2, column 4"):
        CharTextDataModule(str(path)).load()


def test_a_text_shorter_than_a_window_says_how_long_it_must_be(tmp_path):
    with pytest.raises(UserInputError, match=r"has 100 characters; with window_len=64 it needs at least 130"):
        CharTextDataModule(write(tmp_path, "x" * 100), window_len=64).load()


def test_train_py_turns_bad_data_into_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli_main(["fit", "--config", str(ROOT / "configs/char_lm.yaml"), "--data.path", write(tmp_path, ""), *QUIET])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # earlier lines may be warnings (LightningCLI's, under pytest)
    assert stop.value.code == 2 and last.startswith("error: ") and "is empty" in last and "Traceback" not in err



def test_the_datamodule_counts_bigrams_inside_training_segments_only(tmp_path):
    text = random_text(3000, "abc")
    dm = CharTextDataModule(write(tmp_path, text), window_len=10, num_blocks=6, val_fraction=0.34, seed=2)
    dm.load()
    index = {c: i for i, c in enumerate(dm.vocabulary)}
    expected = np.zeros_like(dm.bigram_counts)
    for s, e in dm.segments["train"]:
        for a, b in zip(text[s:e - 1], text[s + 1:e]):
            expected[index[a], index[b]] += 1
    assert np.array_equal(dm.bigram_counts, expected)
    assert dm.unigram_counts.sum() == sum(e - s for s, e in dm.segments["train"])
