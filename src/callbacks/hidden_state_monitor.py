"""Hidden-state saturation: how many units sit at the flat ends of tanh/sigmoid, and how much they still move.

``hidden_stats`` is the definition (reused by experiments); ``HiddenStateMonitor`` logs it for every hidden
sequence a module exposes through the monitoring contract (src/monitoring.py), from the training step's own
forward pass.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_utilities.core.apply_func import apply_to_collection
from torch import Tensor

from src.callbacks.charts import GAP, WHITE, levels, palette_image
from src.callbacks.tensorboard_output import (
    add_layout,
    flush_scalars,
    log_scalars,
    run_dir,
    tensorboard_writer,
    write_histogram,
    write_image,
)
from src.callbacks.trace_arming import TraceArmingCallback, check_every_n_steps
from src.models.recurrent_trace import RecurrentTrace, is_traceable
from src.utils.errors import UserInputError

STATS = ("saturation", "mean_abs", "std", "temporal_variance")


def hidden_stats(hidden: Tensor, mask: Tensor, threshold: float = 0.9) -> dict[str, float]:
    """Statistics of one hidden sequence over its valid positions (all units pooled), in float32.

    hidden: ``[B, T, H]``; mask: ``[B, T]`` bool, True at valid positions (padding, which may hold any finite
    value, is ignored).
    saturation: share of values with ``|h| > threshold`` (near +-1, where tanh's derivative is ~0 and the
        gradient through the unit vanishes). mean_abs: mean ``|h|``. std: population std of h.
    temporal_variance: mean over units and over consecutive valid pairs (t, t+1) of ``(h_{t+1} - h_t)^2``;
        near 0 means the state has stopped responding to its input. NaN when no sequence has two valid steps.
    """
    return stats_from_sums(hidden_sums(hidden, mask, threshold).tolist())


def hidden_sums(hidden: Tensor, mask: Tensor, threshold: float = 0.9) -> Tensor:
    """The sums ``hidden_stats`` divides: ``[6]`` float32 on the hidden state's device (no sync), so that a callback
    can keep them and copy the sums of many steps to the host at once. See ``stats_from_sums``.

    Masking is a multiplication by a 0/1 weight and the threshold test a clamp: on CPU, operations that make or
    read bool tensors (``h[mask]``, ``>``) cost 5-10x a float one on a training step's small tensors.
    """
    h = hidden.detach().float()
    weight = mask.to(h.device, torch.float32)[..., None]  # [B, T, 1]: 1 at valid positions
    pair = weight[:, 1:] * weight[:, :-1]  # [B, T-1, 1]: both ends valid
    units = h.shape[-1]
    count = weight.sum() * units
    valid = h * weight
    magnitude = valid.abs()
    saturated = (magnitude - threshold).clamp_(min=0.0).sign_()  # 1 where |h| > threshold, else 0
    centred = (h - valid.sum() / count) * weight  # two passes: no cancellation in the variance
    change = (h[:, 1:] - h[:, :-1]) * pair
    return torch.stack([count, saturated.sum(), magnitude.sum(), centred.square().sum(), pair.sum() * units,
                        change.square().sum()])


def stats_from_sums(sums: Sequence[float]) -> dict[str, float]:
    """``hidden_sums`` (as floats) -> ``{"saturation", "mean_abs", "std", "temporal_variance"}``."""
    n, n_saturated, abs_sum, squares, n_pairs, change_squares = sums
    if n == 0:
        return {name: float("nan") for name in STATS}
    return {"saturation": n_saturated / n, "mean_abs": abs_sum / n, "std": math.sqrt(squares / n),
            "temporal_variance": change_squares / n_pairs if n_pairs else float("nan")}


def cell_norm(cell: Tensor) -> float:
    """``[B, H]`` final LSTM cell states -> mean over the batch of their L2 norms. The cell state is not
    squashed, so a norm growing over training means the forget gates keep everything."""
    return mean_cell_norm(cell).item()


def mean_cell_norm(cell: Tensor) -> Tensor:
    """``cell_norm`` as a 0-d float32 tensor on the cell's device (no sync)."""
    return torch.linalg.vector_norm(cell.detach(), dim=-1, dtype=torch.float32).mean()


class HiddenStateMonitor(TraceArmingCallback):
    """Logs ``hidden/<name>/{saturation,mean_abs,std,temporal_variance}`` (and ``hidden/<name>/cell_norm`` where
    the trace has the LSTM cell state) every ``every_n_steps`` optimizer steps; per epoch a histogram
    ``hidden/<name>/values`` of the last logged step's valid hidden values and an image ``hidden/example`` of
    one fixed validation sequence's hidden states (``hidden_raster``: a row per unit, a column per time step,
    blue -1 / white 0 / red +1, one band per layer); and ``hidden_state.npz`` in the run folder.

    Args:
        every_n_steps: log on optimizer steps 0, n, 2n, ... (see GradientFlowMonitor).
        threshold: ``|h|`` above which a unit counts as saturated (0.9, as in the reference notebooks).
        histograms: log the per-epoch histograms.
        example_image: log, at the end of each validation, the image of the first sequence of the first validation
            batch (seen at the sanity check or the first validation; the same sequence every epoch, in eval mode).
        max_histogram_values: random subsample of the values put in a histogram (bounds its work on long batches).
        save_arrays: write ``hidden_state.npz`` at the end of training (also when it stops on an exception).
    """

    def __init__(self, every_n_steps: int = 25, threshold: float = 0.9, histograms: bool = True,
                 example_image: bool = True, max_histogram_values: int = 50_000, save_arrays: bool = True):
        super().__init__()
        if not threshold > 0:
            raise UserInputError(f"HiddenStateMonitor threshold={threshold} must be > 0 (e.g. 0.9)")
        self.every_n_steps = check_every_n_steps(every_n_steps)
        self.threshold, self.histograms, self.example_image = threshold, histograms, example_image
        self.max_histogram_values, self.save_arrays = max_histogram_values, save_arrays
        self.records: list[dict] = []  # per logged step: step, epoch, {"<name>/<stat>": value}
        self._histogram_values: dict[str, tuple[Tensor, Tensor]] = {}  # name -> (h [B,T,H], mask [B,T])
        # self._pending (see TraceArmingCallback): (step, epoch, sums, cell norms) per held step
        self._example = None  # the first sequence of the first validation batch, on the module's device

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        writer = tensorboard_writer(trainer) if trainer.is_global_zero else None
        if writer is not None:
            add_layout(writer, "hidden states", {f"{stat} (all layers)": [rf"hidden/.*/{stat}"]
                                                 for stat in (*STATS, "cell_norm")})

    def on_after_backward(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not self.disarm(trainer):
            return
        trace: Optional[RecurrentTrace] = getattr(pl_module, "last_trace", None)
        if trace is None:
            return
        # The sums now, on the device (the hidden states are freed after the step); divided with the other
        # pending steps' after one copy to the host.
        sums = {name: hidden_sums(h, trace.mask, self.threshold) for name, h in trace.hidden.items()}
        cells = {name: mean_cell_norm(c) for name, c in trace.cell.items()}
        self._pending.add((trainer.global_step, trainer.current_epoch, sums, cells))
        if self.histograms:
            # Kept by reference; masked and subsampled only at the epoch end, for the last logged step.
            self._histogram_values = {name: (h.detach(), trace.mask) for name, h in trace.hidden.items()}

    def compute_pending(self, trainer: "pl.Trainer") -> None:
        """The held steps' sums, copied to the host at once -> statistics, records and scalars."""
        pending = self._pending.take()
        if not pending:
            return
        tensors = [t for _, _, sums, cells in pending for t in (*sums.values(), *cells.values())]
        values = iter(torch.cat([t.reshape(-1) for t in tensors]).tolist() if tensors else [])
        for step, epoch, sums, cells in pending:
            scalars = {}
            for name, step_sums in sums.items():
                for stat, value in stats_from_sums([next(values) for _ in range(step_sums.numel())]).items():
                    scalars[f"{name}/{stat}"] = value
            for name in cells:
                scalars[f"{name}/cell_norm"] = next(values)
            self.records.append({"step": step, "epoch": epoch, "values": scalars})
            log_scalars(trainer, {f"hidden/{k}": v for k, v in scalars.items()}, step)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._example is None and batch_idx == 0 and dataloader_idx == 0 and self.example_image:
            # Only its first sequence: the per-epoch forward pass then costs one sequence, not a batch.
            self._example = apply_to_collection(batch, Tensor, lambda t: t[:1] if t.dim() else t)

    def on_validation_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        # Drawn here rather than at the training epoch's end: the module is already in eval mode, without grad.
        if (not trainer.is_global_zero or trainer.sanity_checking or not self.example_image or self._example is None
                or not is_traceable(pl_module)):
            return
        writer = tensorboard_writer(trainer)
        hidden = self.example_states(pl_module) if writer is not None else None
        if hidden:
            write_image(writer, "hidden/example", hidden_raster(hidden), trainer.global_step)

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero:
            return
        flush_scalars(trainer)
        writer = tensorboard_writer(trainer)
        if writer is not None:
            for name, (hidden, mask) in self._histogram_values.items():
                values = self._sample(hidden[mask.to(hidden.device).bool()])
                write_histogram(writer, f"hidden/{name}/values", values, trainer.global_step)
        self._histogram_values = {}

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero:
            return
        flush_scalars(trainer)
        if self.save_arrays and self.records:
            self.save(run_dir(trainer) / "hidden_state.npz")

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)

    def example_states(self, pl_module: "pl.LightningModule") -> dict[str, np.ndarray]:
        """name -> ``[H, L]`` hidden states of the fixed validation sequence (its L valid steps), eval mode."""
        was_training = pl_module.training
        if was_training:
            pl_module.eval()
        try:
            with torch.no_grad():
                trace: RecurrentTrace = pl_module.trace(self._example)
        finally:
            if was_training:
                pl_module.train()
        valid = trace.mask[0].bool()
        return {name: h[0][valid.to(h.device)].float().T.cpu().numpy() for name, h in trace.hidden.items()}

    def save(self, path) -> None:
        """``steps``, ``epochs`` and one array per ``<name>/<stat>`` (NaN where a step lacks it)."""
        keys = sorted({k for r in self.records for k in r["values"]})
        columns = {k.replace("/", "__"): np.array([r["values"].get(k, np.nan) for r in self.records], dtype=np.float32)
                   for k in keys}
        np.savez_compressed(path, steps=np.array([r["step"] for r in self.records]),
                            epochs=np.array([r["epoch"] for r in self.records]), threshold=np.array(self.threshold),
                            **columns)

    def _sample(self, values: Tensor) -> Tensor:
        flat = values.float().flatten()
        if flat.numel() > self.max_histogram_values:
            # A fixed generator: the same positions every time, so histograms of different epochs compare.
            # Drawn with replacement: randperm over all values cost ~5 ms per epoch on a long batch.
            generator = torch.Generator().manual_seed(0)
            picks = torch.randint(flat.numel(), (self.max_histogram_values,), generator=generator)
            flat = flat[picks.to(flat.device)]
        return flat


def hidden_raster(hidden: dict[str, np.ndarray], min_width: int = 240, unit_pixels: int = 2):
    """name -> ``[H, L]`` states -> a palette image: each state a ``unit_pixels``-high, at least
    ``min_width / L``-wide cell coloured blue (-1) / white (0) / red (+1), layers stacked with a grey band.

    Values beyond +-1 (ReLU RNNs) are clipped to the end colours.
    """
    bands = []
    for h in hidden.values():
        width = max(1, -(-min_width // max(h.shape[1], 1)))  # ceil: short sequences get wide columns
        bands.append(levels(np.clip(h, -1.0, 1.0), -1.0, 1.0).repeat(unit_pixels, axis=0).repeat(width, axis=1))
    widest = max(b.shape[1] for b in bands)
    gap = np.full((4, widest), GAP, dtype=np.uint8)
    padded = [np.pad(b, ((0, 0), (0, widest - b.shape[1])), constant_values=WHITE) for b in bands]
    return palette_image(np.concatenate([part for band in padded for part in (band, gap)][:-1]), "RdBu_r")
