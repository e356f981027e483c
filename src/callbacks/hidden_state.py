"""Hidden-state saturation: how many units sit at the flat ends of tanh/sigmoid, and how much they still move.

``hidden_stats`` is the definition (reused by experiments); ``HiddenStateMonitor`` logs it for every hidden
sequence a module exposes through the monitoring contract (src/monitoring.py), from the training step's own
forward pass.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_utilities.core.apply_func import apply_to_collection
from torch import Tensor

from src.callbacks.charts import GAP, WHITE, levels, palette_image
from src.callbacks.common import (TraceArmingCallback, add_layout, check_every_n_steps, flush_scalars, log_scalars,
                                  run_dir, tensorboard_writer, write_histogram, write_image)
from src.errors import UserInputError
from src.monitoring import RecurrentTrace, is_traceable

STATS = ("saturation", "mean_abs", "std", "temporal_variance")


def hidden_stats(hidden: Tensor, mask: Tensor, threshold: float = 0.9) -> dict[str, float]:
    """Statistics of one hidden sequence over its valid positions (all units pooled), in float32.

    hidden: ``[B, T, H]``; mask: ``[B, T]`` bool, True at valid positions (padding is ignored).
    saturation: share of values with ``|h| > threshold`` (near +-1, where tanh's derivative is ~0 and the
        gradient through the unit vanishes). mean_abs: mean ``|h|``. std: population std of h.
    temporal_variance: mean over units and over consecutive valid pairs (t, t+1) of ``(h_{t+1} - h_t)^2``;
        near 0 means the state has stopped responding to its input. NaN when no sequence has two valid steps.
    """
    h = hidden.detach().float()
    mask = mask.to(h.device).bool()
    values = h[mask]  # [N valid positions, H]
    if values.numel() == 0:
        return {name: float("nan") for name in STATS}
    pairs = mask[:, 1:] & mask[:, :-1]  # [B, T-1] both ends valid
    change = (h[:, 1:] - h[:, :-1])[pairs]  # [N pairs, H]
    nan = torch.tensor(float("nan"), device=h.device)
    magnitude = values.abs()
    stats = torch.stack([(magnitude > threshold).float().mean(), magnitude.mean(), values.std(correction=0),
                         change.pow(2).mean() if change.numel() else nan])
    return dict(zip(STATS, stats.tolist()))  # one device sync for the four


def cell_norm(cell: Tensor) -> float:
    """``[B, H]`` final LSTM cell states -> mean over the batch of their L2 norms. The cell state is not
    squashed, so a norm growing over training means the forget gates keep everything."""
    return cell.detach().float().norm(dim=-1).mean().item()


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
        example_image: log the per-epoch image of the first sequence of the first validation batch (seen at the
            sanity check or the first validation; the same sequence every epoch, in eval mode).
        max_histogram_values: random subsample of the values put in a histogram (keeps event files small).
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
        scalars = {}
        for name, hidden in trace.hidden.items():
            for stat, value in hidden_stats(hidden, trace.mask, self.threshold).items():
                scalars[f"{name}/{stat}"] = value
            if self.histograms:
                # Kept by reference; masked and subsampled only at the epoch end, for the last logged step.
                self._histogram_values[name] = (hidden.detach(), trace.mask)
        for name, cell in trace.cell.items():
            scalars[f"{name}/cell_norm"] = cell_norm(cell)
        self.records.append({"step": trainer.global_step, "epoch": trainer.current_epoch, "values": scalars})
        log_scalars(trainer, {f"hidden/{k}": v for k, v in scalars.items()}, trainer.global_step)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._example is None and batch_idx == 0 and dataloader_idx == 0 and self.example_image:
            # Only its first sequence: the per-epoch forward pass then costs one sequence, not a batch.
            self._example = apply_to_collection(batch, Tensor, lambda t: t[:1] if t.dim() else t)

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero:
            return
        flush_scalars(trainer)
        if not is_traceable(pl_module):
            return
        writer = tensorboard_writer(trainer)
        if writer is not None:
            for name, (hidden, mask) in self._histogram_values.items():
                values = self._sample(hidden[mask.to(hidden.device).bool()])
                write_histogram(writer, f"hidden/{name}/values", values.numpy(), trainer.global_step)
            self._histogram_values = {}
            if self.example_image and self._example is not None:
                hidden = self.example_states(pl_module)
                if hidden:
                    write_image(writer, "hidden/example", hidden_raster(hidden), trainer.global_step)

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
        pl_module.eval()
        try:
            with torch.no_grad():
                trace: RecurrentTrace = pl_module.trace(self._example)
        finally:
            pl_module.train(was_training)
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
        return flat.cpu()


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
