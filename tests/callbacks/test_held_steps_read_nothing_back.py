"""The dynamics callbacks read nothing back to the host inside a training step.

On a logged step they reduce what they need, where the model runs, to small float32 tensors (``[B, T]`` norms,
sums, one norm per parameter) and hold them (``PendingSteps``) until the epoch end, where each callback copies them
to the host at once: on a GPU a logged step then costs no sync. Checked here on CPU, in real ``train.py`` runs with
``configs/dynamics.yaml`` at every step, by making every host read inside the per-step hooks fail; tests/gpu/
checks the same on CUDA with torch's sync debug mode.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from tests.gpu.cuda_runs import (
    HostRead,
    check_dynamics_output,
    configured,
    fit,
    guard_step_hooks,
    guarded_dynamics_run,
    hold_until_epoch_end,
)

CPU = torch.device("cpu")
SHORT = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
         "--trainer.accelerator", "cpu"]


@pytest.mark.parametrize("module", ["TextClassifier", "CurriculumAutoencoder"])
def test_logged_steps_are_held_as_float32_tensors_without_reading_them_back(module, tmp_path, monkeypatch):
    hold_until_epoch_end(monkeypatch)
    run, callbacks, spy = guarded_dynamics_run(module, tmp_path, CPU, *SHORT)
    # Each step is held until its epoch's end (2 steps an epoch), and what is held is float32.
    assert spy.held == [[1, 1, 1], [2, 2, 2], [1, 1, 1], [2, 2, 2]]
    assert spy.kinds == {(torch.float32, "cpu")}
    check_dynamics_output(run, callbacks, steps=4)


def test_the_guard_fails_a_callback_that_reads_a_value_back(tmp_path):
    class Peeks(pl.Callback):
        def on_after_backward(self, trainer, pl_module):
            self.norm = float(next(pl_module.parameters()).grad.norm())  # on a GPU: a sync every step

    cli = configured("TextClassifier", tmp_path, *SHORT)
    cli.trainer.callbacks.append(guard_step_hooks(Peeks(), CPU))
    with pytest.raises(HostRead, match="__float__"):
        fit(cli)
