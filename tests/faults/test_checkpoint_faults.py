"""Checkpoints under faults: diverged weights, a full disk, a write refused, a folder that cannot exist, and bad
checkpoints given to train.py. Real train.py runs (in-process) on 200 synthetic reviews with a tiny LSTM."""

import errno
import io
import os
import pickle

import pytest
import torch

from tests.common import QUIET, ROOT
from tests.faults.fault_harness import TINY, assert_one_line_error, checksums, loadable_checkpoints, run_command, sha256
from train import cli_main


def fit_args(root, *extra):
    return ["fit", *TINY, "--trainer.default_root_dir", root, "--data.cache_dir", root / "cache", *extra]


def test_nan_at_an_epochs_last_step_leaves_no_diverged_checkpoint(tmp_path, capfd):
    """One step per epoch and a scheduler that multiplies the learning rate by 1e40: epoch 1's only (so last)
    step blows the weights up to ~1e37, finite, with a finite loss before it; the epoch's saves must refuse them."""
    code, lines = run_command(capfd, cli_main, fit_args(
        tmp_path, "--trainer.max_epochs", "4", "--data.n_samples", "400", "--data.batch_size", "512",
        "--model.scheduler", "torch.optim.lr_scheduler.StepLR", "--model.scheduler.step_size", "1",
        "--model.scheduler.gamma", "1e40"))
    assert_one_line_error(code, lines, "diverged", "last good one is kept", "last.ckpt")
    saved = loadable_checkpoints(tmp_path / "lightning_logs")
    assert saved and all(c["epoch"] == 0 for c in saved.values())
    for checkpoint in saved.values():
        for value in checkpoint["state_dict"].values():
            assert torch.isfinite(value).all() and value.abs().max() <= 1e6


def full_disk_on_save(monkeypatch, failing_call: int, error: OSError):
    """torch.save that writes half a checkpoint and then fails, on its ``failing_call``-th call."""
    real_save, calls = torch.save, {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] != failing_call:
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise error

    monkeypatch.setattr(torch, "save", save)
    return calls


def test_a_full_disk_keeps_the_previous_checkpoint_whole_and_the_run_resumes(tmp_path, capfd, monkeypatch):
    run = tmp_path / "lightning_logs" / "text_classifier-lstm" / "version_0" / "checkpoints"  # train.py names it
    before = {}

    real_replace = os.replace

    def replace(src, dst):  # note the previous last.ckpt at the moment the third save would replace it
        if str(dst).endswith("last.ckpt") and (run / "last.ckpt").exists():
            before.setdefault("last", sha256(run / "last.ckpt"))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    # epoch 0 writes best-*.ckpt and last.ckpt; the first save of epoch 1 meets a full disk
    full_disk_on_save(monkeypatch, 3, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    code, lines = run_command(capfd, cli_main, fit_args(tmp_path, "--trainer.max_epochs", "3"))
    assert_one_line_error(code, lines, "No space left on device", "nothing was replaced")
    saved = loadable_checkpoints(tmp_path)  # none truncated
    assert sorted(c["epoch"] for c in saved.values()) == [0, 0]
    assert not list(run.glob(".*")), "a temporary file was left behind"
    assert sha256(run / "last.ckpt") == before.get("last", sha256(run / "last.ckpt"))
    monkeypatch.undo()
    code, lines = run_command(capfd, cli_main, fit_args(tmp_path, "--trainer.max_epochs", "2", "--ckpt_path", "last"))
    assert code == 0, lines
    resumed = torch.load(run.parent.parent / "version_1/checkpoints/last.ckpt", weights_only=True)
    assert resumed["epoch"] == 1


def test_a_refused_write_is_one_line_not_a_silent_success(tmp_path, capfd, monkeypatch):
    """Lightning's own save swallowed a PermissionError: the run ended with exit 0 and no checkpoint."""
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(".ckpt"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    code, lines = run_command(capfd, cli_main, fit_args(tmp_path))
    assert_one_line_error(code, lines, "could not write checkpoint", "Permission denied")
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob(".*.tmp"))


def test_a_checkpoint_folder_that_cannot_be_created_fails_before_training(tmp_path, capfd):
    (tmp_path / "afile").write_text("in the way")
    folder = tmp_path / "afile" / "checkpoints"
    code, lines = run_command(capfd, cli_main, fit_args(tmp_path, "--last_checkpoint.dirpath", folder,
                                                        "--checkpoint.dirpath", folder))
    assert_one_line_error(code, lines, "afile is a file")
    assert not list(tmp_path.rglob("events.out.tfevents.*")) or not any(
        "train/loss" in line for line in lines)  # nothing was trained


def test_resume_from_last_without_a_last_checkpoint_is_one_line(tmp_path, capfd):
    code, lines = run_command(capfd, cli_main, fit_args(tmp_path, "--ckpt_path", "last"))
    assert_one_line_error(code, lines, "--ckpt_path last", "nothing to resume")
    assert not (tmp_path / "lightning_logs").exists()


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def broken_checkpoints(classifier_ckpt, char_lm_ckpt, folder):
    """name -> (path, phrase of the error) for every way a checkpoint given to a command can be wrong."""
    good = torch.load(classifier_ckpt, weights_only=True)
    data = classifier_ckpt.read_bytes()

    def tampered(name, change):
        checkpoint = pickle.loads(pickle.dumps(good))
        change(checkpoint)
        torch.save(checkpoint, folder / f"{name}.ckpt")
        return folder / f"{name}.ckpt"

    (folder / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    torch.save({"state_dict": {}, "payload": Evil()}, folder / "pickled.ckpt")
    cases = {
        "truncated": (folder / "truncated.ckpt", "cannot be read"),
        "pickled": (folder / "pickled.ckpt", "holds Python objects"),
        "missing": (folder / "missing.ckpt", "not found"),
        "folder": (folder, "is a folder"),
        "another model": (char_lm_ckpt, "holds a CharLanguageModel, not a TextClassifier"),
        "nan weights": (tampered("nan", lambda c: c["state_dict"]["net.head.weight"].fill_(float("nan"))),
                        "non-finite weights"),
        "hyperparameters": (tampered("hparams", lambda c: c["hyper_parameters"].update(hidden_size=5)),
                            "does not fit"),
        "unknown hyperparameter": (tampered("unknown", lambda c: c["hyper_parameters"].update(colour=1)), "colour"),
        "bigger vocabulary": (tampered("vocab", lambda c: c["vocabulary"].extend(["zz1", "zz2"])), "vocabulary"),
    }
    return cases


def test_train_py_test_refuses_every_bad_checkpoint_in_one_line(classifier_ckpt, char_lm_ckpt, tmp_path, capfd):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    cases = broken_checkpoints(classifier_ckpt, char_lm_ckpt, folder)
    before = checksums(folder, char_lm_ckpt, classifier_ckpt)
    for name, (path, phrase) in cases.items():
        code, lines = run_command(capfd, cli_main, ["test", *TINY, "--ckpt_path", path, "--trainer.default_root_dir",
                                                    tmp_path / "runs", "--data.cache_dir", tmp_path / "cache"])
        assert_one_line_error(code, lines, phrase)
        assert not any("weights_only=False" in line for line in lines), name
    assert checksums(folder, char_lm_ckpt, classifier_ckpt) == before


def test_a_users_model_without_a_monitor_trains_with_last_checkpoints(tmp_path, capfd):
    """Issue 17 item 3: no checkpoint.monitor (both checkpoint groups used to share one state key and crash),
    and a data module without vocab_size (the link to the model's vocab_size is skipped)."""
    code, lines = run_command(capfd, cli_main, [
        "fit", "--model", "tests.faults.user_module.SensorClassifier", "--data", "tests.faults.user_module.SensorData",
        "--config", ROOT / "configs/dynamics.yaml", "--trainer.max_epochs", "2", *QUIET,
        "--trainer.default_root_dir", tmp_path])
    assert code == 0, lines
    saved = loadable_checkpoints(tmp_path)
    assert [os.path.basename(p) for p in saved] == ["last.ckpt"]
    checkpoint = next(iter(saved.values()))
    assert checkpoint["epoch"] == 1 and checkpoint["hyper_parameters"]["vocab_size"] == 7


@pytest.mark.parametrize("subcommand", ["validate", "predict"])
def test_other_subcommands_check_the_checkpoint_too(subcommand, char_lm_ckpt, tmp_path, capfd):
    code, lines = run_command(capfd, cli_main, [subcommand, *TINY, "--ckpt_path", char_lm_ckpt,
                                                "--trainer.default_root_dir", tmp_path])
    assert_one_line_error(code, lines, "holds a CharLanguageModel")
