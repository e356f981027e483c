"""Config and constructor mistakes given to train.py: one line naming the key and the fix, exit 2, no traceback.

These stop before any data is read or any model trained, so each case costs a parse (~0.1 s), in-process.
"""

import pytest

from tests.common import ROOT
from tests.faults.fault_harness import assert_one_line_error, run_command
from train import cli_main

CONFIG = ["--config", str(ROOT / "configs/reviews.yaml")]

CASES = {
    # constructor checks, wrapped by jsonargparse and unwrapped once in train.py
    "val_fraction": (["--data.val_fraction", "1.5"], ["val_fraction=1.5"]),
    "batch_size 0": (["--data.batch_size", "0"], ["batch_size=0"]),
    "max_len 0": (["--data.max_len", "0"], ["max_len=0"]),
    "max_len negative": (["--data.max_len", "-5"], ["max_len=-5"]),
    "hidden_size": (["--model.hidden_size", "-1"], ["hidden_size=-1"]),
    "num_layers": (["--model.num_layers", "0"], ["num_layers=0"]),
    "dropout": (["--model.dropout", "2"], ["dropout=2"]),
    "n_samples": (["--data.n_samples", "0"], ["n_samples=0"]),
    "limit": (["--data.limit", "0"], ["limit=0"]),
    "max_vocab_size": (["--data.max_vocab_size", "1"], ["max_vocab_size=1"]),
    "optimizer lr": (["--model.optimizer.lr", "-1"], ["learning rate"]),
    # choices: Literal types, checked at parse time, options listed
    "cell typo": (["--model.cell", "lstmm"], ["--model.cell", "rnn, lstm, gru", "did you mean lstm"]),
    "pooling typo": (["--model.pooling", "maxx"], ["--model.pooling", "last, mean, max"]),
    "nonlinearity": (["--model.nonlinearity", "sigmoid"], ["tanh, relu"]),
    # key typos: the key and the closest valid one
    "model key typo": (["--model.hiden_size", "32"], ["--model.hiden_size", "did you mean --model.hidden_size"]),
    "data key typo": (["--data.batch_sise", "8"], ["did you mean --data.batch_size"]),
    "top-level typo": (["--chekpoint.monitor", "val/acc"], ["did you mean --checkpoint.monitor"]),
    "optimizer key typo": (["--model.optimizer.lrr", "0.1"], ["did you mean --model.optimizer.lr"]),
    "optimizer class typo": (["--model.optimizer", "torch.optim.Adamm"], ["did you mean torch.optim.Adam"]),
    "type": (["--data.batch_size", "abc"], ["--data.batch_size", "'abc'", "int"]),
    "missing scheduler arg": (["--model.scheduler", "torch.optim.lr_scheduler.StepLR"], ["step_size"]),
    "trainer": (["--trainer.accelerator", "gpu"], ["gpu"]),
    "guard": (["--divergence.max_abs_weight", "-1"], ["max_abs_weight=-1"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_config_mistake_is_one_line(name, tmp_path, capfd):
    args, phrases = CASES[name]
    code, lines = run_command(capfd, cli_main, ["fit", *CONFIG, *args, "--trainer.default_root_dir", tmp_path,
                                                "--data.cache_dir", tmp_path / "cache"])
    assert_one_line_error(code, lines, *phrases)
    assert not list(tmp_path.rglob("*.ckpt"))


def test_a_typo_in_a_yaml_file_names_the_key(tmp_path, capfd):
    (tmp_path / "typo.yaml").write_text("trainer:\n  max_epochz: 3\n")
    code, lines = run_command(capfd, cli_main, ["fit", *CONFIG, "--config", tmp_path / "typo.yaml"])
    assert_one_line_error(code, lines, "max_epochz", "did you mean trainer.max_epochs")
    (tmp_path / "model.yaml").write_text("model:\n  init_args:\n    celll: gru\n")
    code, lines = run_command(capfd, cli_main, ["fit", *CONFIG, "--config", tmp_path / "model.yaml"])
    assert_one_line_error(code, lines, "celll", "did you mean --model.cell")
    (tmp_path / "broken.yaml").write_text("model: [1, 2\n  x: :\n")
    code, lines = run_command(capfd, cli_main, ["fit", *CONFIG, "--config", tmp_path / "broken.yaml"])
    assert_one_line_error(code, lines, "line 1")


def test_curriculum_and_autoencoder_choices(tmp_path, capfd):
    config = ["--config", str(ROOT / "configs/poetry_autoencoder.yaml"), "--trainer.default_root_dir", tmp_path]
    for args, phrase in ((["--model.curriculum", "[[0, 3]]"], "curriculum"),
                         (["--model.decoder_input", "teacher"], "previous_output, teacher_forcing, bottleneck"),
                         (["--model.teacher_forcing_ratio", "1.5"], "teacher_forcing_ratio=1.5"),
                         (["--data.oov", "keep"], "drop, zero")):
        assert_one_line_error(*run_command(capfd, cli_main, ["fit", *config, *args]), phrase)


def test_help_lists_the_choices(capfd):
    code, lines = run_command(capfd, cli_main, ["fit", "--model.help", "src.lightning_modules.text_classifier."
                                                "TextClassifier"])
    text = "\n".join(lines)
    assert code == 0 and "{rnn,lstm,gru}" in text and "{last,mean,max}" in text
