"""What the fault-injection tests share: run a command in-process and read its exit status and output lines, the
checksums of files that must not change, a tiny trained checkpoint of each model, and tiny data files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

import pytorch_lightning as pl
import torch

from tests.common import QUIET, ROOT

# One tiny, fast run of the default config: 200 synthetic reviews, one epoch, a small LSTM.
TINY = ["--config", str(ROOT / "configs/reviews.yaml"), "--trainer.max_epochs", "1", "--data.n_samples", "200",
        "--model.embedding_dim", "8", "--model.hidden_size", "8", *QUIET]


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def checksums(*paths: str | Path) -> dict[str, str]:
    """sha256 of every file under the given files or folders."""
    files = [f for p in map(Path, paths) for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    return {str(f): sha256(f) for f in files}


def output_lines(text: str) -> list[str]:
    """Non-empty lines, without Lightning's informational ones (seed, hardware) that precede any run."""
    noise = ("Seed set", "GPU available", "TPU available", "HPU available", "💡", "Trainer already configured")
    return [line for line in text.splitlines() if line.strip() and not line.startswith(noise)]


def run_command(capfd, main: Callable, args: Sequence[str]) -> tuple[int, list[str]]:
    """Run a command's ``main``/``cli_main`` in-process -> (exit status, lines it printed on stdout and stderr)."""
    capfd.readouterr()
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    out, err = capfd.readouterr()
    return code, output_lines(out + err)


def assert_one_line_error(code: int, lines: list[str], *phrases: str) -> None:
    """Exit status 2, exactly one line ``error: ...`` naming every phrase, and no traceback."""
    assert code == 2, lines
    assert not any("Traceback" in line for line in lines), lines
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[-1] == lines[-1], lines
    for phrase in phrases:
        assert phrase.lower() in errors[0].lower(), (phrase, errors[0])


def checkpoint_of(module, path: Path, **extra) -> Path:
    """An untrained LightningModule saved the way train.py saves one (class stamp, hyperparameters, plain data)."""
    import pytorch_lightning as pl

    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "epoch": 0,
                  "global_step": 0, "pytorch-lightning_version": pl.__version__, "model_class": type(module).__name__,
                  **extra}
    torch.save(checkpoint, path)
    return path


def loadable_checkpoints(folder: str | Path) -> dict[str, dict]:
    """Every *.ckpt under ``folder``, each loaded with weights_only=True (a truncated one fails the test)."""
    return {str(f): torch.load(f, weights_only=True, map_location="cpu") for f in sorted(Path(folder).rglob("*.ckpt"))}


class SignalAtStep(pl.Callback):
    """Sends this process ``signum`` after training step ``step``, as a scheduler (SIGTERM) or Ctrl-C (SIGINT)
    would, in the middle of an epoch."""

    def __init__(self, signum: int = 15, step: int = 9):
        self.signum, self.step = signum, step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)
