"""End-to-end runs of train.py and src.predict on the synthetic reviews (CPU, seconds each)."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from src.lightning_modules.text_classifier import TextClassifier
from src.utils.errors import UserInputError
from tests.common import QUIET, ROOT, run_dir, scalars
from train import cli_main


def fit(tmp_path, *extra, name="run"):
    args = ["fit", "--config", str(ROOT / "configs/reviews.yaml"), "--trainer.default_root_dir", str(tmp_path / name),
            "--data.cache_dir", str(tmp_path / "cache"), *QUIET, *extra]
    cli_main(args)
    return run_dir(tmp_path / name)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    return tmp, fit(tmp, "--trainer.max_epochs", "3")


@pytest.mark.slow
def test_default_fit_reaches_95_percent_and_logs_the_tags(trained):
    _, run = trained
    tags = scalars(run)
    assert {"train/loss", "val/loss", "val/acc", "val/f1", "val/auroc"} <= set(tags)
    assert tags["val/acc"][-1] >= 0.95
    assert (run / "config.yaml").is_file()
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(p.startswith("best-") for p in ckpts)


@pytest.mark.slow
def test_checkpoint_alone_predicts_identically_and_loads_weights_only(trained, tmp_path):
    _, run = trained
    ckpt = run / "checkpoints" / "last.ckpt"
    raw = torch.load(ckpt, weights_only=True)
    assert raw["model_class"] == "TextClassifier" and raw["vocabulary"][:2] == ["<pad>", "<unk>"]
    texts = ["this movie was absolutely amazing", "boring and predictable. awful.", "", "zzqx wvvb " * 500]
    a = TextClassifier.from_checkpoint(str(ckpt)).predict_texts(texts)
    b = TextClassifier.from_checkpoint(str(ckpt)).predict_texts(texts[::-1])[::-1]
    assert [p.label for p in a] == [p.label for p in b] and a[0].label == "positive" and a[1].label == "negative"
    assert [p.probability for p in a] == pytest.approx([p.probability for p in b], abs=1e-6)

    inp = tmp_path / "in.txt"
    inp.write_text("great film, loved it\nthe worst movie, avoid\n\nzzqx wvvb\n")
    out = tmp_path / "p.csv"
    subprocess.run([sys.executable, "-m", "src.predict", "--ckpt_path", str(ckpt), "--input", str(inp),
                    "--output", str(out)], cwd=ROOT, check=True, capture_output=True)
    frame = pd.read_csv(out, keep_default_na=False)
    assert list(frame.columns) == ["text", "probability", "label"] and len(frame) == 4 and frame.text[2] == ""


@pytest.mark.slow
def test_resume_continues_at_the_next_epoch_and_validate_test_predict_run(trained, tmp_path):
    tmp, run = trained
    last = str(run / "checkpoints" / "last.ckpt")
    resumed = fit(tmp_path, "--trainer.max_epochs", "4", "--ckpt_path", last, "--data.cache_dir", str(tmp / "cache"))
    assert torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 3
    assert len(scalars(resumed)["val/acc"]) == 1  # only the one new epoch was trained and validated
    for sub in ("validate", "test", "predict"):
        cli_main([sub, "--config", str(ROOT / "configs/reviews.yaml"), "--ckpt_path", last,
                  "--trainer.default_root_dir", str(tmp_path / sub), "--data.cache_dir", str(tmp / "cache"), *QUIET])
    assert scalars(tmp_path / "test")["test/acc"][-1] >= 0.95
    predictions = pd.read_csv(run_dir(tmp_path / "predict") / "predictions.csv")
    assert len(predictions) == 200 and set(predictions.label) <= {"negative", "positive"}  # the 10% test split


def run_train(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "train.py", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.slow
def test_user_errors_end_in_one_line_without_traceback(trained, tmp_path):
    _, run = trained
    cases = {
        "data file not found": ["fit", "--config", "configs/reviews.yaml",
                                "--data.path", str(tmp_path / "missing.csv")],
        "bogus_key": ["fit", "--config", "configs/reviews.yaml", "--model.init_args.bogus_key", "1"],
        "cannot be read": ["test", "--config", "configs/reviews.yaml", "--ckpt_path", str(tmp_path / "trunc.ckpt")],
        "checkpoint not found": ["test", "--config", "configs/reviews.yaml",
                                 "--ckpt_path", str(tmp_path / "nope.ckpt")],
    }
    data = (run / "checkpoints" / "last.ckpt").read_bytes()
    (tmp_path / "trunc.ckpt").write_bytes(data[: len(data) // 2])
    for expected, args in cases.items():
        result = run_train(*args, "--trainer.default_root_dir", str(tmp_path / "e"))
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert expected in result.stderr, result.stderr[-2000:]
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2  # nothing damaged


@pytest.mark.slow
def test_a_checkpoint_of_another_model_class_is_refused(trained, tmp_path):
    _, run = trained
    foreign = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    foreign["model_class"] = "CharLanguageModel"
    torch.save(foreign, tmp_path / "foreign.ckpt")
    result = run_train("test", "--config", "configs/reviews.yaml", "--ckpt_path", str(tmp_path / "foreign.ckpt"),
                       "--trainer.default_root_dir", str(tmp_path / "e"), *QUIET)
    assert result.returncode == 2 and "holds a CharLanguageModel, not a TextClassifier" in result.stderr
    with pytest.raises(Exception, match="use python -m src.sample"):
        TextClassifier.from_checkpoint(str(tmp_path / "foreign.ckpt"))


class PoisonWeightsAtEpoch(pl.Callback):
    """Test stand-in for a training blow-up: fills the embedding with NaN when the given epoch starts."""

    def __init__(self, epoch: int = 1):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                pl_module.net.embedding.weight.fill_(float("nan"))


@pytest.mark.slow
def test_non_finite_loss_stops_before_the_last_good_checkpoint_is_overwritten(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        fit(tmp_path, "--trainer.max_epochs", "3", "--data.n_samples", "300",
            "--trainer.callbacks+", "tests.commands.test_train_cli.PoisonWeightsAtEpoch")
    assert stop.value.code == 2 and "last good checkpoint is kept" in capsys.readouterr().err
    last = torch.load(run_dir(tmp_path / "run") / "checkpoints/last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and all(torch.isfinite(v).all() for v in last["state_dict"].values())


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path):
    result = run_train("fit", "--config", "configs/reviews.yaml", "--trainer.strategy", "ddp", "--trainer.devices", "2",
                       "--trainer.max_epochs", "2", "--data.n_samples", "600",
                       "--trainer.default_root_dir", str(tmp_path), "--data.cache_dir", str(tmp_path / "cache"), *QUIET)
    assert result.returncode == 0, result.stderr[-3000:]
    tags = scalars(tmp_path / "lightning_logs")
    assert len(list(run_dir(tmp_path).parent.parent.iterdir())) == 1  # rank zero alone logs
    assert len(list(run_dir(tmp_path).parent.iterdir())) == 1
    # 600 reviews -> 486 train; each of the 2 ranks sees half of them: ceil(243 / 32) = 8 steps per epoch.
    last = torch.load(run_dir(tmp_path) / "checkpoints/last.ckpt", weights_only=True)
    assert last["global_step"] == 16
    assert tags["val/acc"][-1] >= 0.9


def test_cpu_threads_sets_torch_intra_op_threads(tmp_path):
    before = torch.get_num_threads()
    try:
        for threads, expected in (("2", 2), ("0", 2), ("1", 1)):  # 0 leaves the current setting alone
            cli_main(["fit", "--config", str(ROOT / "configs/reviews.yaml"), "--cpu_threads", threads,
                      "--trainer.fast_dev_run", "1", "--data.n_samples", "100", "--trainer.default_root_dir",
                      str(tmp_path), "--data.cache_dir", str(tmp_path / "cache"), *QUIET])
            assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)


def test_ckpt_path_last_resumes_this_model_and_cell_not_the_newest_run(tmp_path):
    from train import newest_last_checkpoint

    def checkpoint(run: str, mtime: int) -> Path:
        path = tmp_path / "lightning_logs" / run / "version_0" / "checkpoints" / "last.ckpt"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
        os.utime(path, (mtime, mtime))
        return path

    ours = checkpoint("text_classifier-lstm", 1_000)
    checkpoint("sequence_classifier-rnn", 2_000)  # newer, another model
    checkpoint("text_classifier-gru", 3_000)  # newer, another cell
    config = {"trainer": {"default_root_dir": str(tmp_path)},
              "model": {"class_path": "src.lightning_modules.text_classifier.TextClassifier",
                        "init_args": {"cell": "lstm"}}}
    assert newest_last_checkpoint(config) == ours
    config["model"]["init_args"]["cell"] = "rnn"
    with pytest.raises(UserInputError, match="text_classifier-rnn.*nothing to resume"):
        newest_last_checkpoint(config)
