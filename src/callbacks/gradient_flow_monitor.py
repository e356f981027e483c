"""Per-timestep gradient norms ||dLoss/dx_t||: where the gradient vanishes or explodes through time.

The functions at the top are the definitions (reused by experiments and reports); ``GradientFlowMonitor``
computes them inside training from the same backward pass that trains the model: on a logged step the input
sequence of the recurrent layers keeps its gradient (through the monitoring contract of
src/models/recurrent_trace.py on our models, through forward hooks on any other), read after backward. No extra
forward or backward pass.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from src.callbacks.charts import LineChart, heatmap
from src.callbacks.diagnosis import write_diagnosis
from src.callbacks.tensorboard_output import (
    add_layout,
    flush_scalars,
    log10,
    log_scalars,
    run_dir,
    tensorboard_writer,
    write_image,
)
from src.callbacks.trace_arming import TraceArmingCallback, check_every_n_steps, pad_stack, release_trace, step_trace
from src.utils.errors import UserInputError

ALIGNMENTS = ("end", "start")
# The pictures' fixed scale: log10 of the norm relative to the last valid position, so that runs compare side by
# side (0: as large as at the last token; -8: eight decades lost on the way back; +2: a hundred times larger).
RELATIVE_RANGE = (-12.0, 4.0)


# -- definitions ----------------------------------------------------------------------------------------------
def timestep_grad_norms(grad: Tensor, mask: Tensor) -> dict[str, np.ndarray]:
    """Mean over the batch of the L2 norm of the input gradient at each time step, valid positions only, in both
    alignments.

    grad: ``[B, T, D]`` dLoss/dx. mask: ``[B, T]`` bool, True at valid positions.
    Returns ``{"start": [T], "end": [T]}`` float32 numpy:
    ``start`` -- index t is position t of every sequence;
    ``end`` -- sequences are right-aligned on their last valid token: index ``T-1`` is each sequence's last valid
        token, ``T-1-k`` the token k steps before it. This is the axis along which vanishing shows for
        variable-length text: the loss is read at (or pooled up to) the end, so "how far back" is distance from
        the end, not from the start.
    NaN at an index no sequence reaches.
    """
    return aligned_means(position_norms(grad).cpu().numpy(), mask.cpu().numpy())


def position_norms(grad: Tensor) -> Tensor:
    """``[B, T, D]`` -> ``[B, T]`` L2 norms, in float32 whatever the gradient's dtype (bf16/fp16 would round small
    norms to zero), on the gradient's device."""
    return torch.linalg.vector_norm(grad.detach(), dim=-1, dtype=torch.float32)


def aligned_means(values: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """``[..., B, T]`` per-position values and valid mask -> ``{"start": [..., T], "end": [..., T]}`` means over
    the sequences valid at each index of that alignment (see ``timestep_grad_norms``); NaN where none is."""
    mask = mask.astype(bool, copy=False)
    steps = mask.shape[-1]
    weighted = np.where(mask, values, np.float32(0.0))  # padding may hold anything, NaN included
    counts = mask.astype(np.float32)
    # Right-aligned on the end: index j reads position j + last + 1 - T (mod T), ``last`` being the row's last valid
    # position (works for left padding too); the wrapped-around indices read padding, which carries zero weight.
    last = steps - 1 - np.argmax(mask[..., ::-1], axis=-1)  # [..., B]
    source = (np.arange(steps) + last[..., None] + 1) % steps  # [..., B, T]
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 = NaN where no sequence is valid
        start = weighted.sum(-2) / counts.sum(-2)
        end = np.take_along_axis(weighted, source, -1).sum(-2) / np.take_along_axis(counts, source, -1).sum(-2)
    return {"start": start.astype(np.float32, copy=False), "end": end.astype(np.float32, copy=False)}


def valid_span(curve) -> np.ndarray:
    """The curve without its leading and trailing NaN (indices no sequence reached), as numpy."""
    c = np.asarray(curve.detach().cpu() if isinstance(curve, Tensor) else curve)
    finite = np.flatnonzero(~np.isnan(c))
    return c[finite[0]:finite[-1] + 1] if finite.size else c[:0]


def early_late_ratio(curve, early: float = 0.1, late: float = 0.9) -> float:
    """Norm at ``early`` of the curve's length over the norm at ``late`` (indices rounded; NaN ends dropped).

    Below 1: the gradient reaching early steps is smaller than at late ones (vanishing; < 0.01 is severe);
    above 1: it grows going back in time (exploding). NaN for curves shorter than 2 or a zero late norm.
    """
    return _early_late_ratio(valid_span(curve), early, late)


def _early_late_ratio(c: np.ndarray, early: float = 0.1, late: float = 0.9) -> float:
    if c.size < 2:
        return float("nan")
    i, j = round(early * (c.size - 1)), round(late * (c.size - 1))
    return float(c[i]) / float(c[j]) if c[j] > 0 else float("nan")


def gradient_horizon(curve, threshold: float = 1e-3) -> int:
    """How many positions back from the last one gradient of a non-negligible size still arrives: the count
    from the last position back to the EARLIEST position whose norm is >= ``threshold`` x the curve's maximum.

    For a vanishing curve (rising towards the end) this is how many steps back the norm stays above the
    threshold. The curve's length means the gradient at the first position is still above the threshold: the
    sequence ended before the gradient decayed, so the true horizon is unknown and at least that long (censored;
    ``horizon_censored``). 0 means an all-zero gradient. Counting to the earliest such position, rather than
    stopping at the first dip, keeps an exploding curve (small at the end, huge at the start) from reading as a
    horizon of 0.
    """
    return _gradient_horizon(valid_span(curve), threshold)


def _gradient_horizon(c: np.ndarray, threshold: float) -> int:
    peak = np.nanmax(c) if c.size else 0.0
    if not peak > 0:
        return 0
    above = np.flatnonzero(c >= threshold * peak)
    return int(c.size - above[0])


def horizon_censored(curve, threshold: float = 1e-3) -> bool:
    """True when the norm at the first position is still >= ``threshold`` x the curve's maximum: the gradient did
    not decay below the threshold within the sequence, and the horizon (= the length) is a lower bound."""
    c = valid_span(curve)
    return bool(c.size) and _gradient_horizon(c, threshold) == c.size


def summarize(curve, horizon_threshold: float = 1e-3) -> dict[str, float]:
    """The figures of one curve: norm at the first, middle and last index, early/late ratio, horizon (in steps
    and as a fraction of the length: 1.0 when censored, see ``gradient_horizon``), and the length."""
    c = valid_span(curve)
    if c.size == 0:
        return {}
    horizon = _gradient_horizon(c, horizon_threshold)
    return {"first": float(c[0]), "middle": float(c[c.size // 2]), "last": float(c[-1]),
            "early_late_ratio": _early_late_ratio(c), "horizon": float(horizon),
            "horizon_fraction": horizon / c.size, "length": float(c.size)}


def log10_scalars(summary: dict[str, float]) -> dict[str, float]:
    """``summarize``'s figures -> the logged scalars: magnitudes spanning decades as their log10 (the unit in the
    name, so that TensorBoard's linear axis reads them), steps and fractions as they are."""
    scalars = {f"{k}_log10": log10(summary[k]) for k in ("first", "middle", "last") if k in summary}
    if "early_late_ratio" in summary:
        scalars["early_late_log10"] = log10(summary["early_late_ratio"])
    scalars.update({k: summary[k] for k in ("horizon", "horizon_fraction") if k in summary})
    return scalars


def relative_log10(curve: np.ndarray) -> np.ndarray:
    """``[T]`` norms -> log10 of each over the last one (0 there); -inf where a norm underflowed to 0 (drawn on the
    pictures' floor), NaN where undefined (no sequence there, or a zero last norm)."""
    c = np.asarray(curve, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.log10(c / c[-1]) if c.size else c
    return np.where(np.isnan(values) | np.isposinf(values), np.nan, values)


def stack_curves(curves: list[np.ndarray], right_aligned: bool) -> np.ndarray:
    """Curves of different lengths -> ``[N, T_max]`` padded with NaN; on the left when ``right_aligned``
    (so the last column is every curve's last token), else on the right."""
    width = max((len(c) for c in curves), default=0)
    out = np.full((len(curves), width), np.nan, dtype=np.float32)
    for row, c in enumerate(curves):
        if right_aligned:
            out[row, width - len(c):] = c
        else:
            out[row, :len(c)] = c
    return out


# -- the callback -----------------------------------------------------------------------------------------------
class GradientFlowMonitor(TraceArmingCallback):
    """Logs ``gradflow/{first,middle,last}_log10``, ``gradflow/early_late_log10``, ``gradflow/horizon`` and
    ``gradflow/horizon_fraction`` every ``every_n_steps`` optimizer steps; an image ``gradflow/per_timestep`` per
    epoch (the gradient at each time step relative to the last one, at the first logged step and averaged over
    this epoch's, on a fixed scale);
    ``gradflow/heatmap`` at the end of training (training step x time step, same scale); the text
    ``dynamics/diagnosis`` at each validation end (with the other dynamics callbacks' figures, see
    src/callbacks/diagnosis.py); and ``gradient_flow.npz`` in the run folder (the raw norms of every logged step
    in both alignments).

    Works on any model: our own through the monitoring contract, any other through forward hooks on its first
    ``nn.RNN/LSTM/GRU`` (src/callbacks/recurrent_hooks.py).

    Args:
        every_n_steps: log on optimizer steps 0, n, 2n, ...; other steps cost one modulo.
        alignment: ``end`` (default: distance from each sequence's last valid token, where vanishing in
            variable-length text shows) or ``start`` (position from the start) for the scalars and images;
            the .npz holds both.
        horizon_threshold: the horizon counts steps whose norm is >= this fraction of the curve's maximum.
        images: log the per-epoch and end-of-training images.
        save_arrays: write ``gradient_flow.npz`` at the end of training (also when it stops on an exception).
    """

    def __init__(self, every_n_steps: int = 25, alignment: str = "end", horizon_threshold: float = 1e-3,
                 images: bool = True, save_arrays: bool = True):
        super().__init__()
        if alignment not in ALIGNMENTS:
            raise UserInputError(f"GradientFlowMonitor alignment={alignment!r} is not one of {list(ALIGNMENTS)}")
        if not 0.0 < horizon_threshold < 1.0:
            raise UserInputError(f"horizon_threshold={horizon_threshold} must be in (0, 1), e.g. 1e-3")
        self.every_n_steps = check_every_n_steps(every_n_steps)
        self.alignment, self.horizon_threshold = alignment, horizon_threshold
        self.images, self.save_arrays = images, save_arrays
        self.records: list[dict] = []  # per logged step: step, epoch, norms_start, norms_end (numpy [T]), summary
        self._chart: Optional[LineChart] = None  # made at the first image, its frame kept while the curves fit
        # self._pending (see TraceArmingCallback): (step, epoch, norms [B, T], mask, loss scale) per held step
        self._no_grad_warned = False

    # Lightning hooks ------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        writer = tensorboard_writer(trainer) if trainer.is_global_zero else None
        if writer is not None:
            threshold = f"{self.horizon_threshold:g}"
            add_layout(writer, "gradient through time", {
                "log10 early/late: dLoss/dx at 10% of the sequence over 90% (-8 = eight decades lost)":
                    ["gradflow/early_late_log10"],
                "log10 ||dLoss/dx_t|| at the first, middle and last position": [
                    "gradflow/first_log10", "gradflow/middle_log10", "gradflow/last_log10"],
                f"horizon / length: share of the steps reached by >= {threshold} of the peak gradient "
                "(1.0 = censored: no decay below that within the sequence)": ["gradflow/horizon_fraction"],
            })

    def on_after_backward(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not self.disarm(trainer):
            return
        trace = step_trace(pl_module)
        grad = trace.gradient() if trace is not None else None
        if grad is None:
            if not self._no_grad_warned:
                rank_zero_warn(f"GradientFlowMonitor: {type(pl_module).__name__}'s recurrent input kept no gradient "
                               "on a logged step (a contract model sets last_trace in training_step when "
                               "trace_requested is True); nothing logged for it")
                self._no_grad_warned = True
            return
        # The [B, T] norms now (the gradient is freed after the step); aligned with the other pending steps.
        self._pending.add((trainer.global_step, trainer.current_epoch, position_norms(grad), trace.mask,
                           _loss_scale(trainer)))

    def compute_pending(self, trainer: "pl.Trainer") -> None:
        """Both alignments of the held steps' norms at once (one copy to the host) -> records and scalars."""
        pending = self._pending.take()
        if not pending:
            return
        norms = pad_stack([norms for _, _, norms, _, _ in pending])  # [K, B, T]
        masks = pad_stack([mask.cpu() for _, _, _, mask, _ in pending], torch.bool)  # aligned on the host
        curves = aligned_means(norms.cpu().numpy(), masks.numpy())  # alignment -> [K, T]
        for row, (step, epoch, _, _, scale) in enumerate(pending):
            record = {"step": step, "epoch": epoch,
                      **{f"norms_{a}": valid_span(c[row] / np.float32(scale)) for a, c in curves.items()}}
            record["summary"] = summarize(self._curve(record), self.horizon_threshold)
            self.records.append(record)
            log_scalars(trainer, {f"gradflow/{k}": v for k, v in log10_scalars(record["summary"]).items()}, step)

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero:
            return
        flush_scalars(trainer)
        epoch = trainer.current_epoch
        curves = [self._curve(r) for r in self.records if r["epoch"] == epoch]
        writer = tensorboard_writer(trainer)
        if not curves or not self.images or writer is None:
            return
        with np.errstate(all="ignore"):  # all-NaN columns stay NaN
            mean = np.nanmean(stack_curves(curves, self.alignment == "end"), axis=0)
        lines = [(_x_axis(len(c), self.alignment)[0], relative_log10(c)) for c in (self._curve(self.records[0]), mean)]
        low = min(float(x[0]) for x, _ in lines) - 0.5
        high = max(float(x[-1]) for x, _ in lines) + 0.5
        if self._chart is None or low < self._chart.axes.xlim[0] or high > self._chart.axes.xlim[1]:
            labels = (f"step {self.records[0]['step']} (first logged)", "this epoch (mean of its logged steps)")
            self._chart = curve_chart(self.alignment, (low, high), labels)
        write_image(writer, "gradflow/per_timestep", self._chart.draw(lines), trainer.global_step)

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            write_diagnosis(trainer)

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero:
            return
        flush_scalars(trainer)
        if not self.records:
            return
        writer = tensorboard_writer(trainer)
        if self.images and writer is not None:
            write_image(writer, "gradflow/heatmap", heatmap_image(self.steps(), self.matrix(), self.alignment),
                        trainer.global_step)
        if self.save_arrays:
            self.save(run_dir(trainer) / "gradient_flow.npz")

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        # A run that diverges (FloatingPointError) is the one whose gradients matter most: keep what was seen.
        release_trace(pl_module)
        if trainer.is_global_zero:
            flush_scalars(trainer)
            if self.save_arrays and self.records:
                self.save(run_dir(trainer) / "gradient_flow.npz")

    # results ---------------------------------------------------------------------------------------------------
    def diagnosis_figures(self, since: Optional[int]) -> dict:
        """The logged steps after ``since`` (all when None; the last one if none is newer): their ``summarize``
        figures, for src/callbacks/diagnosis.py."""
        window = [r for r in self.records if since is None or r["step"] > since] or self.records[-1:]
        return {"flow": [r["summary"] for r in window if r["summary"]],
                "horizon_threshold": self.horizon_threshold}

    def steps(self) -> np.ndarray:
        return np.array([r["step"] for r in self.records], dtype=np.int64)

    def matrix(self, alignment: Optional[str] = None) -> np.ndarray:
        """``[logged steps, T_max]`` norms, NaN-padded (on the left for the ``end`` alignment)."""
        alignment = alignment or self.alignment
        return stack_curves([r[f"norms_{alignment}"] for r in self.records], alignment == "end")

    def save(self, path) -> None:
        np.savez_compressed(path, steps=self.steps(), epochs=np.array([r["epoch"] for r in self.records]),
                            norms_start=self.matrix("start"), norms_end=self.matrix("end"),
                            alignment=np.array(self.alignment), horizon_threshold=np.array(self.horizon_threshold))

    def _curve(self, record: dict) -> np.ndarray:
        return record["norms_end"] if self.alignment == "end" else record["norms_start"]


def _loss_scale(trainer: "pl.Trainer") -> float:
    """fp16 AMP scales the loss, so the input gradient (which the scaler never unscales) carries the scale."""
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    if scaler is not None and scaler.is_enabled():
        return float(scaler.get_scale())
    return 1.0


# -- pictures ---------------------------------------------------------------------------------------------------
def _x_axis(length: int, alignment: str) -> tuple[np.ndarray, str]:
    if alignment == "end":
        return np.arange(-(length - 1), 1), "time step relative to the last valid token (0)"
    return np.arange(length), "time step from the start"


RELATIVE_LABEL = "log10 ( ||dLoss/dx_t|| / ||dLoss/dx_last|| )"


def curve_chart(alignment: str, xlim: tuple[float, float],
                labels: tuple[str, ...] = ("first epoch", "this epoch")) -> LineChart:
    """The per-epoch chart: mean ||dLoss/dx_t|| relative to the last position against the time step, on the fixed
    ``RELATIVE_RANGE``."""
    return LineChart(labels, _x_axis(1, alignment)[1], RELATIVE_LABEL, xlim, RELATIVE_RANGE,
                     title="gradient reaching each step, relative to the last (0 = as large, -8 = 8 decades lost)")


def heatmap_image(steps: np.ndarray, matrix: np.ndarray, alignment: str = "end"):
    """log10 norm relative to each step's last position, over (logged training step x time step), on the fixed
    ``RELATIVE_RANGE``; white where no sequence reached."""
    values = np.array([_relative_row(row) for row in matrix], dtype=np.float64).reshape(matrix.shape)
    x, xlabel = _x_axis(matrix.shape[1], alignment)
    return heatmap(values, x, [str(s) for s in steps], xlabel, "training step", RELATIVE_LABEL,
                   value_range=RELATIVE_RANGE, title="gradient per time step and training step, relative to the last")


def _relative_row(row: np.ndarray) -> np.ndarray:
    """A NaN-padded row (on either side) -> log10 of each value over the row's last finite one."""
    finite = np.flatnonzero(np.isfinite(row))
    if not finite.size:
        return row
    return relative_log10(row[:finite[-1] + 1]).tolist() + [np.nan] * (row.size - finite[-1] - 1)
