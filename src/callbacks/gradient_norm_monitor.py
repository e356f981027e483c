"""Parameter gradient norms before clipping: total and per layer, as log10 (they span decades)."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor, nn

from src.callbacks.diagnosis import clip_threshold, write_diagnosis
from src.callbacks.recurrent_modules import parameter_groups
from src.callbacks.tensorboard_output import add_layout, flush_scalars, log10, log_scalars, run_dir, tensorboard_writer
from src.callbacks.trace_arming import PendingSteps, check_every_n_steps, due
from src.utils.errors import UserInputError

BASELINE_STEPS = 3  # the first logged steps, against which a run without clipping is judged (diagnosis.py)


def layer_grad_norms(module_or_parameters: Union[nn.Module, Sequence[tuple[str, Tensor]]], norm_type: float = 2.0,
                     per_tensor: bool = False) -> dict[str, float]:
    """``{"total": ..., "<layer>": ...}`` gradient p-norms of a module's parameters, in float32.

    A layer is the module that owns the parameter (``net.rnn.layers.0.weight_ih_l0`` -> ``net.rnn.layers.0``);
    its norm combines its tensors as if concatenated, so one tag per layer, not per tensor. ``per_tensor``
    keys by full parameter name instead. Parameters without a gradient are skipped; {} if none has one.

    The same per-tensor norms as Lightning's ``grad_norm`` (tested against it), which the callback used first;
    but that walks the whole module tree (torchmetrics metrics too) and builds its dict on every call, 0.25 ms a
    step on the default run's small model, so the callback passes the ``(name, parameter)`` list it took once.
    """
    named = module_or_parameters
    if isinstance(named, nn.Module):
        named = named.named_parameters()
    measured = tensor_grad_norms(named, norm_type)
    if measured is None:
        return {}
    names, norms = measured
    return group_norms(names, norms.tolist(), norm_type, per_tensor)


def tensor_grad_norms(named_parameters, norm_type: float = 2.0) -> Optional[tuple[tuple[str, ...], Tensor]]:
    """The names of the parameters that have a gradient and ``[P]`` float32 p-norms of their gradients, on their
    device (no sync); None if none has one."""
    with_grad = [(name, p.grad) for name, p in named_parameters if p.grad is not None]
    if not with_grad:
        return None
    norms = torch.stack([torch.linalg.vector_norm(g.detach(), norm_type, dtype=torch.float32) for _, g in with_grad])
    return tuple(name for name, _ in with_grad), norms


def group_norms(names: Sequence[str], norms: Sequence[float], norm_type: float = 2.0,
                per_tensor: bool = False, layers: Optional[dict[str, str]] = None) -> dict[str, float]:
    """Per-tensor norms -> ``{"<layer>" (or "<tensor>" if ``per_tensor``): ..., "total": ...}``; a tensor's layer
    is ``layers[name]`` where given (``parameter_groups``), else the module that owns it."""
    groups: dict[str, list[float]] = {}
    for name, value in zip(names, norms):
        layer = name if per_tensor else (layers or {}).get(name) or name.rpartition(".")[0] or name
        groups.setdefault(layer, []).append(value)
    result = {layer: _combine(layer_values, norm_type) for layer, layer_values in groups.items()}
    result["total"] = _combine(list(norms), norm_type)
    return result


def _combine(norms: list[float], norm_type: float) -> float:
    """The p-norm of a concatenation from the p-norms of its parts: a few floats, so plain Python (numpy's call
    overhead was most of it), scaled by the largest part so that an exploding norm does not overflow."""
    if any(math.isnan(value) for value in norms):
        return math.nan
    largest = max(norms)
    if math.isinf(norm_type) or largest == 0.0 or math.isinf(largest):
        return largest
    return largest * math.fsum((value / largest) ** norm_type for value in norms) ** (1.0 / norm_type)


class GradientNormMonitor(Callback):
    """Logs ``gradnorm/total_log10`` and ``gradnorm/<layer>_log10`` (log10 of the L2 norm of the parameter
    gradients, all together and per layer) every ``every_n_steps`` optimizer steps, from
    ``on_before_optimizer_step``: after backward (and AMP unscaling), before gradient clipping. Layers are named by
    what they are (``embedding``, ``lstm_l0``, ``lstm_l0_reverse``, ``head``: ``parameter_groups``). The raw norms
    go to ``gradient_norms.npz``; the totals feed the ``dynamics/diagnosis`` line, which judges them against the
    run's clipping threshold (src/callbacks/diagnosis.py). Works with any LightningModule. The norms are taken on
    the step and copied to the host with the other pending steps' (``PendingSteps``).

    Args:
        every_n_steps: log on optimizer steps 0, n, 2n, ...
        norm_type: p of the p-norm (2.0; ``inf`` for the max-abs norm).
        per_tensor: one tag per parameter tensor instead of per layer.
        save_arrays: write ``gradient_norms.npz`` at the end of training (also when it stops on an exception).
    """

    def __init__(self, every_n_steps: int = 25, norm_type: float = 2.0, per_tensor: bool = False,
                 save_arrays: bool = True):
        super().__init__()
        if not float(norm_type) > 0:
            raise UserInputError(f"GradientNormMonitor norm_type={norm_type} must be > 0 (2.0, or inf)")
        self.every_n_steps = check_every_n_steps(every_n_steps)
        self.norm_type, self.per_tensor, self.save_arrays = float(norm_type), per_tensor, save_arrays
        self.records: list[dict] = []  # per logged step: step, epoch, norms
        self._last_step: Optional[int] = None
        self._parameters: list[tuple[str, Tensor]] = []
        self._layers: dict[str, str] = {}
        self._pending = PendingSteps()  # (step, epoch, names, norms [P]) of logged steps not computed yet

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._parameters = list(pl_module.named_parameters())  # those without a gradient are skipped per step
        self._layers = parameter_groups(pl_module)
        writer = tensorboard_writer(trainer) if trainer.is_global_zero else None
        if writer is not None:
            clip = clip_threshold(trainer)
            where = f" (clipping at {clip:g}: log10 = {math.log10(clip):.2g})" if clip else " (no clipping)"
            add_layout(writer, "parameter gradient norms", {f"log10 total norm before clipping{where}":
                                                            ["gradnorm/total_log10"],
                                                            "log10 norm per layer": [r"gradnorm/(?!total).*_log10"]})

    def on_before_optimizer_step(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", optimizer) -> None:
        if not due(trainer, self.every_n_steps, self._last_step):
            return
        self._last_step = trainer.global_step
        measured = tensor_grad_norms(self._parameters or pl_module.named_parameters(), self.norm_type)
        if measured is None:
            return
        self._pending.add((trainer.global_step, trainer.current_epoch, *measured))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._pending.full():  # see PendingSteps: only once every callback has added the step
            flush_scalars(trainer)

    def compute_pending(self, trainer: "pl.Trainer") -> None:
        """The held steps' per-tensor norms, copied to the host at once -> layer norms, records, scalars."""
        pending = self._pending.take()
        if not pending:
            return
        values = torch.cat([norms for *_, norms in pending]).tolist()
        offset = 0
        for step, epoch, names, _ in pending:
            norms = group_norms(names, values[offset:offset + len(names)], self.norm_type, self.per_tensor,
                                self._layers)
            offset += len(names)
            self.records.append({"step": step, "epoch": epoch, "norms": norms})
            log_scalars(trainer, {f"gradnorm/{k}_log10": log10(v) for k, v in norms.items()}, step)

    def diagnosis_figures(self, since: Optional[int]) -> dict:
        """The total norms of the logged steps after ``since`` (the last one if none is newer) and of the first
        logged steps, for src/callbacks/diagnosis.py."""
        window = [r for r in self.records if since is None or r["step"] > since] or self.records[-1:]
        return {"totals": [r["norms"]["total"] for r in window],
                "baseline": [r["norms"]["total"] for r in self.records[:BASELINE_STEPS]]}

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.is_global_zero:
            flush_scalars(trainer)

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            write_diagnosis(trainer)

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero:
            return
        flush_scalars(trainer)
        if self.save_arrays and self.records:
            self.save(run_dir(trainer) / "gradient_norms.npz")

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        if trainer.is_global_zero:
            flush_scalars(trainer)
            if self.save_arrays and self.records:
                self.save(run_dir(trainer) / "gradient_norms.npz")

    def save(self, path) -> None:
        """``steps``, ``epochs`` and one array of raw norms per layer (``total`` too); dots in names become ``__``."""
        keys = sorted({k for r in self.records for k in r["norms"]})
        columns = {k.replace(".", "__"): np.array([r["norms"].get(k, np.nan) for r in self.records], dtype=np.float64)
                   for k in keys}
        np.savez_compressed(path, steps=np.array([r["step"] for r in self.records]),
                            epochs=np.array([r["epoch"] for r in self.records]), **columns)
