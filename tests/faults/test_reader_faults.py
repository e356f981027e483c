"""Malformed files given to every reader, and broken checkpoints given to every command: one line that names the
file (and the line) and the fix, exit 2, no traceback, the file unchanged. Misnamed but readable files work."""

import gzip
import os

import pytest
import torch

from src.encode import main as encode_main
from src.explain import main as explain_main
from src.export import main as export_main
from src.predict import main as predict_main
from src.sample import main as sample_main
from tests.common import QUIET, ROOT
from tests.faults.fault_harness import assert_one_line_error, checksums, run_command
from train import cli_main

REVIEWS = "text,label\n" + "".join(f"a fine film {i},1\nan awful film {i},0\n" for i in range(30))
PARQUET = b"PAR1" + bytes(range(200)) * 5  # the magic bytes, then garbage: a parquet cut short
FILES = {
    # name: (bytes, the phrase of the error)
    "reviews.csv": (b'text,label\n"an unclosed quote,1\nfine,0\n', "could not read"),
    "empty.csv": (b"", "is empty"),
    "latin1.csv": ("text,label\ncaf\u00e9 cr\u00e8me,1\nok,0\n".encode("latin-1"), "line 2, column 4"),
    "bad_line.jsonl": (b'{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n{"text": "c" "label": 1}\n',
                       "line 3 of"),
    "list_line.jsonl": (b'{"text": "a", "label": 1}\n[1, 2]\n', "line 2 of"),
    "null_labels.jsonl": (b'{"text": "a", "label": 1}\n{"text": "b", "label": null}\n{"text": "c", "label": 0}\n',
                          "empty or null in 1 row"),
    "nan_labels.csv": (b"text,label\na,1\nb,NaN\nc,0\n", "empty or null"),
    "three_labels.csv": (b"text,label\na,1\nb,2\nc,0\n", "3 distinct"),
    "corrupt.parquet": (PARQUET, "could not read"),
    "reviews.xlsx": (b"PK\x03\x04", "cannot tell the format"),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_malformed_review_file_is_one_line(name, tmp_path, capfd):
    content, phrase = FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    before = checksums(path)
    code, lines = run_command(capfd, cli_main, ["fit", "--config", ROOT / "configs/reviews.yaml", "--data.path", path,
                                                "--trainer.default_root_dir", tmp_path, "--data.cache_dir",
                                                tmp_path / "cache", *QUIET])
    assert_one_line_error(code, lines, phrase)
    assert checksums(path) == before


def test_misnamed_and_bom_files_are_read_and_numeric_labels_are_one_class_each(tmp_path):
    from data_modules.reviews import ReviewsDataModule

    tsv = REVIEWS.replace(",", "\t")
    spelled = REVIEWS.replace(",1\n", ",1.0\n", 10)  # "1" and "1.0" in one column
    for name, text in (("tabs.csv", tsv), ("commas.tsv", REVIEWS), ("bom.csv", "\ufeff" + REVIEWS),
                       ("floats.csv", spelled)):
        (tmp_path / name).write_text(text, encoding="utf-8")
        data = ReviewsDataModule(path=str(tmp_path / name), cache_dir=str(tmp_path / "cache"))
        data.load()
        assert data.label_names == ["0", "1"], name
        assert sum(len(d) for d in data.datasets.values()) == 60, name
    lines = [f'{{"text": "film {i}", "label": {i % 2}}}' for i in range(40)]
    (tmp_path / "bom.jsonl").write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    data = ReviewsDataModule(path=str(tmp_path / "bom.jsonl"), cache_dir=str(tmp_path / "cache"))
    data.load()
    assert sum(len(d) for d in data.datasets.values()) == 40


def test_a_corrupt_parquet_in_an_imdb_folder_is_one_line(tmp_path, capfd):
    (tmp_path / "imdb").mkdir()
    (tmp_path / "imdb" / "train.parquet").write_bytes(PARQUET)
    code, lines = run_command(capfd, cli_main, ["fit", "--config", ROOT / "configs/reviews.yaml", "--data",
                                                "data_modules.imdb.IMDBDataModule", "--data.source", tmp_path / "imdb",
                                                "--trainer.default_root_dir", tmp_path, "--data.cache_dir",
                                                tmp_path / "cache"])
    assert_one_line_error(code, lines, "train.parquet")


GLOVE = {
    "tabs.txt": (b"red\t0.1\t0.2\nrose\t0.3\t0.4\n", "tabs"),
    "nan.txt": (b"red 0.1 0.2\nrose nan 0.4\n", "line 2: the vector of 'rose' holds NaN"),
    "inf.txt": (b"red 0.1 0.2\nrose 0.3 inf\n", "NaN or an infinity"),
    "ragged.txt": (b"red 0.1 0.2\nrose 0.4\n", "line 2 has 1 numbers"),
    "words.txt": (b"red\nrose\n", "no numbers"),
    "text.txt": (b"red 0.1 0.2\nrose 0.3 abc\n", "non-number"),
    "truncated.txt.gz": (gzip.compress(b"red 0.1 0.2\nrose 0.3 0.4\n")[:20], "cannot be"),
}
POEMS = {
    "bad_line.jsonl": (b'{"text": "a red rose", "title": "t", "author": "a"}\n{"text": \n', "line 2 of"),
    "latin1.jsonl": ('{"text": "caf\u00e9", "title": "t", "author": "a"}\n'.encode("latin-1"), "not UTF-8"),
}


@pytest.mark.parametrize("name", sorted(GLOVE) + sorted(POEMS))
def test_a_malformed_glove_or_poems_file_is_blamed_on_that_file(name, tmp_path, capfd):
    content, phrase = {**GLOVE, **POEMS}[name]
    path = tmp_path / name
    path.write_bytes(content)
    (tmp_path / "poems.jsonl").write_text('{"text": "red rose", "title": "t", "author": "a"}\n')
    (tmp_path / "glove.txt").write_text("red 0.1 0.2\nrose 0.3 0.4\n")
    files = {"--data.poems_path": tmp_path / "poems.jsonl", "--data.glove_path": tmp_path / "glove.txt",
             "--data.glove_path" if name in GLOVE else "--data.poems_path": path}
    code, lines = run_command(capfd, cli_main, ["fit", "--config", ROOT / "configs/poetry_autoencoder.yaml",
                                                *[a for pair in files.items() for a in pair],
                                                "--trainer.default_root_dir", tmp_path, "--data.cache_dir",
                                                tmp_path / "cache"])
    assert_one_line_error(code, lines, name, phrase)


def test_a_text_file_that_is_not_utf8_is_one_line_for_the_char_lm_and_predict(tmp_path, classifier_ckpt, capfd):
    path = tmp_path / "text.txt"
    path.write_bytes(b"fine\nna\xefve\n")
    code, lines = run_command(capfd, cli_main, ["fit", "--config", ROOT / "configs/char_lm.yaml", "--data.path", path,
                                                "--trainer.default_root_dir", tmp_path])
    assert_one_line_error(code, lines, "line 2, column 3")
    code, lines = run_command(capfd, predict_main, ["--ckpt_path", classifier_ckpt, "--input", path,
                                                    "--output", tmp_path / "p.csv"])
    assert_one_line_error(code, lines, "line 2, column 3")
    (tmp_path / "good.txt").write_text("fine\n")
    code, lines = run_command(capfd, predict_main, ["--ckpt_path", tmp_path / "model.onnx", "--input",
                                                    tmp_path / "good.txt", "--output", tmp_path / "p.csv"])
    assert_one_line_error(code, lines, "model.onnx")


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.fixture
def bad_checkpoints(tmp_path, classifier_ckpt, char_lm_ckpt, autoencoder_ckpt):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    data = classifier_ckpt.read_bytes()
    (folder / "truncated.ckpt").write_bytes(data[: len(data) // 3])
    torch.save({"state_dict": {}, "payload": Evil()}, folder / "pickled.ckpt")
    torch.save([1, 2, 3], folder / "list.ckpt")
    for name, source in (("classifier", classifier_ckpt), ("char_lm", char_lm_ckpt), ("autoencoder", autoencoder_ckpt)):
        checkpoint = torch.load(source, weights_only=True)
        name_of_weight = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
        checkpoint["state_dict"][name_of_weight].fill_(float("nan"))
        torch.save(checkpoint, folder / f"{name}_nan.ckpt")
        checkpoint = torch.load(source, weights_only=True)
        checkpoint["hyper_parameters"]["hidden_size"] += 3
        torch.save(checkpoint, folder / f"{name}_hparams.ckpt")
        checkpoint = torch.load(source, weights_only=True)
        checkpoint["vocabulary"] = list(checkpoint["vocabulary"]) + ["zzz1", "zzz2"]
        torch.save(checkpoint, folder / f"{name}_vocab.ckpt")
    return folder


def command_args(command, ckpt, tmp_path):
    poems = tmp_path / "poems.jsonl"
    poems.write_text('{"text": "red rose night", "title": "t", "author": "a"}\n')
    return {
        "predict": (predict_main, ["--ckpt_path", ckpt, "--input", poems, "--output", tmp_path / "out.csv"]),
        "explain": (explain_main, ["--ckpt_path", ckpt, "--text", "fine", "--output", tmp_path / "page.html"]),
        "export": (export_main, ["--ckpt_path", ckpt, "--output", tmp_path / "export"]),
        "encode": (encode_main, ["--ckpt_path", ckpt, "--input", poems, "--output", tmp_path / "latents"]),
        "sample": (sample_main, ["--ckpt_path", ckpt, "--length", "5"]),
    }[command]


MODEL_OF = {"predict": "classifier", "explain": "classifier", "export": "classifier", "encode": "autoencoder",
            "sample": "char_lm"}
BROKEN = {"truncated": "cannot be read", "pickled": "holds Python objects", "list": "not a Lightning checkpoint",
          "nan": "non-finite weights", "hparams": "", "vocab": "", "other": "not a"}


@pytest.mark.parametrize("command", sorted(MODEL_OF))
def test_every_command_refuses_every_broken_checkpoint_in_one_line(command, bad_checkpoints, tmp_path, capfd,
                                                                   classifier_ckpt, char_lm_ckpt):
    model = MODEL_OF[command]
    other = char_lm_ckpt if model == "classifier" else classifier_ckpt
    before = checksums(bad_checkpoints, other)
    for broken, phrase in BROKEN.items():
        ckpt = {"other": other}.get(broken) or bad_checkpoints / (
            f"{broken}.ckpt" if broken in ("truncated", "pickled", "list") else f"{model}_{broken}.ckpt")
        main, args = command_args(command, ckpt, tmp_path)
        code, lines = run_command(capfd, main, args)
        assert_one_line_error(code, lines, phrase)
        assert not any("weights_only=False" in line for line in lines)
    assert checksums(bad_checkpoints, other) == before


def test_sample_refuses_a_device_it_does_not_have_and_an_infinite_temperature(char_lm_ckpt, capfd):
    if not torch.cuda.is_available():
        code, lines = run_command(capfd, sample_main, ["--ckpt_path", char_lm_ckpt, "--device", "cuda"])
        assert_one_line_error(code, lines, "no CUDA device")
    code, lines = run_command(capfd, sample_main, ["--ckpt_path", char_lm_ckpt, "--temperature", "inf"])
    assert_one_line_error(code, lines, "must be a finite number")


def test_limit_takes_a_stratified_subsample_of_a_review_file(tmp_path):
    from data_modules.reviews import ReviewsDataModule

    (tmp_path / "reviews.csv").write_text(REVIEWS)
    data = ReviewsDataModule(path=str(tmp_path / "reviews.csv"), limit=20, cache_dir=str(tmp_path / "cache"))
    data.load()
    labels = [int(v) for d in data.datasets.values() for v in d.labels]
    assert len(labels) == 20 and sum(labels) == 10
