"""How train.py keeps its checkpoints safe: written atomically in their own folder and loudly when they cannot be,
never from diverged weights, and once more when a scheduler (SIGTERM) or Ctrl-C stops the run.

- ``AtomicCheckpointIO``: Lightning's ``TorchCheckpointIO`` saves through an fsspec transaction whose temporary
  file lives in the system's temp folder, so the final move crosses devices (not atomic: a full disk leaves a
  truncated ``.ckpt``), and ``_atomic_save`` swallows a ``PermissionError`` (a run that could not save a single
  checkpoint exits 0). Local paths are written here instead: a temporary file in the checkpoint's own folder,
  renamed over the target once complete; any failure is one error line and leaves the previous file intact.
- ``DivergenceGuard``: every save first checks the module's parameters; non-finite ones, or ones past
  ``max_abs_weight``, stop the run (exit 2) before anything is written, so the last good checkpoint stays.
  The training loss check (src/lightning_modules/finite_loss.py) sees the loss before the optimizer step; the
  step that breaks the weights can be an epoch's last, with the epoch's checkpoints written right after it.
- ``BestCheckpoint`` (the ``checkpoint`` group) keeps the best epochs by ``monitor``, and stays off when no
  monitor is set: a user's model may log anything, and ``last_checkpoint`` keeps the newest epoch anyway.
- ``LastCheckpoint`` (the ``last_checkpoint`` group) rewrites last.ckpt after every epoch and, when SIGTERM or a
  first Ctrl-C stops the run, writes last.ckpt of the interrupted epoch at the end of the current batch (where
  Lightning's own SIGTERM handling stops), then exits with 128 + the signal number: ``--ckpt_path last`` resumes.
Both checkpoint groups fail at setup, before any training, when their folder cannot be created or written.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.cloud_io import _is_local_file_protocol
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

from src.utils.errors import check_positive
from src.utils.output_files import make_folder, remove_stale_temporaries, written_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are atomic in the checkpoint's own folder and fail loudly."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote storage: Lightning's way
        target = Path(path)
        make_folder(target.parent, "checkpoint folder")
        with written_atomically(target, "checkpoint") as temporary, open(temporary, "wb") as f:
            torch.save(checkpoint, f)


class DivergedWeightsError(FloatingPointError):
    """The weights are non-finite or past the guard's limit: nothing is saved from them."""


def diverged_parameter(module: torch.nn.Module, max_abs_weight: Optional[float]) -> Optional[str]:
    """``"<name> holds nan"`` / ``"<name> reaches |w| = 3e+37"`` for the first parameter past the limit, else None.

    One reduction per parameter and one host sync in all, so a save pays a pass over the weights and no more.
    """
    named = [(n, p) for n, p in module.named_parameters() if p.is_floating_point() and p.numel()]
    if not named:
        return None
    peaks = torch.stack([p.detach().abs().amax().float() for _, p in named]).cpu()  # amax propagates NaN
    limit = float("inf") if max_abs_weight is None else max_abs_weight
    if bool(torch.isfinite(peaks).all()) and float(peaks.max()) <= limit:
        return None
    for (name, _), peak in zip(named, peaks.tolist()):
        if peak != peak or peak == float("inf"):
            return f"{name} holds {'nan' if peak != peak else 'inf'}"
        if peak > limit:
            return f"{name} reaches |w| = {peak:.1e} (limit {limit:g})"
    return None


class DivergenceGuard(Callback):
    """Refuses every checkpoint of diverged weights (non-finite, or any ``|w|`` above ``max_abs_weight``; None
    checks finiteness only) and stops the run with one line that names the parameter."""

    def __init__(self, max_abs_weight: Optional[float] = 1e6):
        check_positive(max_abs_weight=max_abs_weight)
        self.max_abs_weight = max_abs_weight

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        problem = diverged_parameter(pl_module, self.max_abs_weight)
        if problem is None:
            return
        kept = [c.best_model_path for c in trainer.checkpoint_callbacks
                if isinstance(c, LastCheckpoint) and c.best_model_path]
        raise DivergedWeightsError(
            f"the weights diverged in epoch {trainer.current_epoch} (step {trainer.global_step}): {problem}; no "
            f"checkpoint was written from them, the last good one is kept ({kept[0] if kept else 'none yet'}). "
            "Lower the learning rate (or the scheduler's growth), or set --trainer.gradient_clip_val")


def check_checkpoint_folder(callback: ModelCheckpoint, trainer: pl.Trainer, stage: str) -> None:
    """Before training: the folder exists (created now) and takes files, or one error line; temporary files that
    a killed run left in it are removed."""
    if stage == "fit" and trainer.is_global_zero and callback.dirpath and _is_local_file_protocol(callback.dirpath):
        make_folder(Path(callback.dirpath), "checkpoint folder")
        remove_stale_temporaries(callback.dirpath)


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` of the best epochs by ``monitor``; writes nothing when ``monitor`` is None."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.monitor is None and self.save_top_k != 0:
            self.save_top_k = 0
            if stage == "fit":
                rank_zero_info("checkpoint.monitor is not set, so only last.ckpt is kept; set e.g. "
                               "--checkpoint.monitor val/loss to keep the best epoch too")
        if self.save_top_k != 0:
            check_checkpoint_folder(self, trainer, stage)


class LastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` of the newest epoch that also saves the interrupted one on SIGTERM or Ctrl-C."""

    _stop_signal: Optional[int] = None  # SIGINT once a first Ctrl-C asked to stop
    _previous_sigint = None  # the SIGINT handler to put back after training

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._stop_signal = None
        check_checkpoint_folder(self, trainer, stage)

    # -- Ctrl-C: the first one stops like SIGTERM, at the end of the batch; a second one stops at once -------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and _is_main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_ctrl_c)

    def _on_ctrl_c(self, signum, frame) -> None:
        if self._stop_signal is not None:
            raise KeyboardInterrupt
        self._stop_signal = signal.SIGINT
        print("Ctrl-C: stopping at the end of this batch with a checkpoint to resume from (Ctrl-C again: stop now)",
              file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning's own SIGTERM handling stops the loops cleanly

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None and _is_main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_sigint()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_sigint()
        if not isinstance(exception, SIGTERMException):
            return
        number = self._stop_signal or signal.SIGTERM
        exception.code = 128 + number  # the shell's convention for "stopped by a signal": never success
        if trainer.state.fn != "fit" or trainer.sanity_checking or trainer.fast_dev_run or not self.dirpath:
            return
        metrics = {**trainer.callback_metrics, "epoch": trainer.current_epoch, "step": trainer.global_step}
        path = self.format_checkpoint_name(metrics)
        trainer.save_checkpoint(path, weights_only=False)  # the whole training state: resumable
        if trainer.is_global_zero:
            print(f"stopped by {signal.Signals(number).name} in epoch {trainer.current_epoch} at step "
                  f"{trainer.global_step}; saved the interrupted epoch to {path}: resume with --ckpt_path {path}",
                  file=sys.stderr, flush=True)


def _is_main_thread() -> bool:  # signal handlers can only be set there
    return threading.current_thread() is threading.main_thread()
