"""Each LightningModule trains on CUDA, in fp32 and bf16-mixed, through ``train.py`` with ``configs/dynamics.yaml`` at
every step: every scalar of the run finite, each callback's tags at every step, what the callbacks hold between
flushes float32 and still on the GPU, and no host sync inside their per-step hooks (torch's sync debug mode turns
one into an error; the last test shows that it does)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from tests.gpu.cuda_runs import (
    GPU,
    MODULES,
    check_dynamics_output,
    configured,
    fit,
    guard_step_hooks,
    guarded_dynamics_run,
    hold_until_epoch_end,
)

pytestmark = GPU
CUDA0 = torch.device("cuda", 0)
STEPS = ["--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.max_epochs", "2",
         "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2"]


@pytest.fixture(autouse=True)
def deterministic_flag_restored():
    """memory_task.yaml trains with trainer.deterministic: true, which Lightning sets process-wide and leaves on."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("module", MODULES)
def test_trains_on_cuda_with_the_dynamics_callbacks_and_no_sync_per_step(module, precision, tmp_path, monkeypatch):
    hold_until_epoch_end(monkeypatch)
    run, callbacks, spy = guarded_dynamics_run(module, tmp_path, CUDA0, *STEPS, "--trainer.precision", precision)
    assert spy.held == [[1, 1, 1], [2, 2, 2], [3, 3, 3]] * 2  # held until each epoch's end
    assert spy.kinds == {(torch.float32, "cuda")}  # norms and sums in float32, also under bf16 autocast
    check_dynamics_output(run, callbacks, steps=6)


def test_the_sync_guard_fails_a_callback_that_reads_a_value_back(tmp_path):
    class Peeks(pl.Callback):
        def on_after_backward(self, trainer, pl_module):
            self.norm = next(pl_module.parameters()).grad.norm().item()

    cli = configured("TextClassifier", tmp_path, *STEPS)
    cli.trainer.callbacks.append(guard_step_hooks(Peeks(), CUDA0))
    with pytest.raises(RuntimeError, match="synchroniz"):
        fit(cli)
