"""Parameter gradient norms before clipping: total and per layer, with a warning when they vanish or explode."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn

from src.callbacks.tensorboard_output import add_layout, flush_scalars, log_scalars, run_dir, tensorboard_writer
from src.callbacks.trace_arming import PendingSteps, check_every_n_steps, due
from src.utils.errors import UserInputError


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
                per_tensor: bool = False) -> dict[str, float]:
    """Per-tensor norms -> ``{"<layer>" (or "<tensor>" if ``per_tensor``): ..., "total": ...}``."""
    groups: dict[str, list[float]] = {}
    for name, value in zip(names, norms):
        groups.setdefault(name if per_tensor else name.rpartition(".")[0] or name, []).append(value)
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
    """Logs ``gradnorm/total`` and ``gradnorm/<layer>`` every ``every_n_steps`` optimizer steps, from
    ``on_before_optimizer_step``: after backward (and AMP unscaling), before gradient clipping. Warns once per
    kind (one console line) when the total falls below ``vanishing_threshold`` or rises above
    ``exploding_threshold``, counts such steps, and writes the counts as text ``gradnorm/warnings`` at the end.
    Works with any LightningModule (no monitoring contract needed). The norms are taken on the step and copied to
    the host with the other pending steps' (``PendingSteps``): scalars and warnings come at the epoch end, after
    64 logged steps or 10 s, whichever is first, and before an exception that stops training propagates.

    Args:
        every_n_steps: log (and check the thresholds) on optimizer steps 0, n, 2n, ...
        norm_type: p of the p-norm (2.0; ``inf`` for the max-abs norm).
        per_tensor: one tag per parameter tensor instead of per layer.
        vanishing_threshold, exploding_threshold: total norms outside [vanishing, exploding] are flagged.
        save_arrays: write ``gradient_norms.npz`` at the end of training (also when it stops on an exception).
    """

    def __init__(self, every_n_steps: int = 25, norm_type: float = 2.0, per_tensor: bool = False,
                 vanishing_threshold: float = 1e-6, exploding_threshold: float = 10.0, save_arrays: bool = True):
        super().__init__()
        if not float(norm_type) > 0:
            raise UserInputError(f"GradientNormMonitor norm_type={norm_type} must be > 0 (2.0, or inf)")
        if not 0 <= vanishing_threshold < exploding_threshold:
            raise UserInputError(f"vanishing_threshold={vanishing_threshold} must be >= 0 and below "
                                 f"exploding_threshold={exploding_threshold} (defaults 1e-6 and 10)")
        self.every_n_steps = check_every_n_steps(every_n_steps)
        self.norm_type, self.per_tensor, self.save_arrays = float(norm_type), per_tensor, save_arrays
        self.vanishing_threshold, self.exploding_threshold = vanishing_threshold, exploding_threshold
        self.records: list[dict] = []  # per logged step: step, epoch, norms
        self.flagged = {"vanishing": 0, "exploding": 0}  # logged steps past each threshold
        self._last_step: Optional[int] = None
        self._parameters: list[tuple[str, Tensor]] = []
        self._pending = PendingSteps()  # (step, epoch, names, norms [P]) of logged steps not computed yet

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._parameters = list(pl_module.named_parameters())  # those without a gradient are skipped per step
        writer = tensorboard_writer(trainer) if trainer.is_global_zero else None
        if writer is not None:
            add_layout(writer, "parameter gradient norms", {"total (before clipping)": ["gradnorm/total"],
                                                            "per layer": [r"gradnorm/(?!total).*"]})

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
        """The held steps' per-tensor norms, copied to the host at once -> layer norms, records, scalars, and the
        threshold checks (so a warning comes when the step is computed: at the latest at the epoch end or
        ``FLUSH_SECONDS`` after it, and before a crash's exception propagates)."""
        pending = self._pending.take()
        if not pending:
            return
        values = torch.cat([norms for *_, norms in pending]).tolist()
        offset = 0
        for step, epoch, names, _ in pending:
            norms = group_norms(names, values[offset:offset + len(names)], self.norm_type, self.per_tensor)
            offset += len(names)
            self.records.append({"step": step, "epoch": epoch, "norms": norms})
            log_scalars(trainer, {f"gradnorm/{k}": v for k, v in norms.items()}, step)
            self._check(norms["total"], step)

    def _check(self, total: float, step: int) -> None:
        kind = ("vanishing" if total < self.vanishing_threshold
                else "exploding" if total > self.exploding_threshold else None)
        if kind is not None:
            self.flagged[kind] += 1
            if self.flagged[kind] == 1:  # one console line per kind and run, not one per step
                bound = self.vanishing_threshold if kind == "vanishing" else self.exploding_threshold
                rank_zero_warn(f"GradientNormMonitor: {kind} gradients: total norm {total:.3g} at step "
                               f"{step} is {'below' if kind == 'vanishing' else 'above'} {bound:g}; "
                               "later such steps are counted in TensorBoard text gradnorm/warnings")

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.is_global_zero:
            flush_scalars(trainer)

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero:
            return
        flush_scalars(trainer)
        if not self.records:
            return
        writer = tensorboard_writer(trainer)
        if writer is not None and any(self.flagged.values()):
            writer.add_text("gradnorm/warnings",
                            f"{self.flagged['vanishing']} of {len(self.records)} logged steps had a total gradient "
                            f"norm below {self.vanishing_threshold:g} (vanishing), {self.flagged['exploding']} above "
                            f"{self.exploding_threshold:g} (exploding).", trainer.global_step)
        if self.save_arrays:
            self.save(run_dir(trainer) / "gradient_norms.npz")

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        if trainer.is_global_zero:
            flush_scalars(trainer)
            if self.save_arrays and self.records:
                self.save(run_dir(trainer) / "gradient_norms.npz")

    def save(self, path) -> None:
        """``steps``, ``epochs`` and one array per layer (``total`` too); dots in names become ``__``."""
        keys = sorted({k for r in self.records for k in r["norms"]})
        columns = {k.replace(".", "__"): np.array([r["norms"].get(k, np.nan) for r in self.records], dtype=np.float64)
                   for k in keys}
        np.savez_compressed(path, steps=np.array([r["step"] for r in self.records]),
                            epochs=np.array([r["epoch"] for r in self.records]), **columns)
