"""Per-timestep gradient norms ||dLoss/dx_t||: where the gradient vanishes or explodes through time.

The functions at the top are the definitions (reused by experiments and reports); ``GradientFlowMonitor``
computes them inside training from the same backward pass that trains the model: on a logged step it asks
the module (monitoring contract, src/monitoring.py) to keep the gradient of its input sequence, and reads
``last_trace.inputs.grad`` after backward. No extra forward or backward pass.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from src.callbacks.common import (TraceArmingCallback, add_layout, check_every_n_steps, flush_scalars, log_scalars,
                                  new_figure, render, run_dir, tensorboard_writer, write_image)
from src.errors import UserInputError
from src.monitoring import RecurrentTrace

ALIGNMENTS = ("end", "start")


# -- definitions ----------------------------------------------------------------------------------------------
def timestep_grad_norms(grad: Tensor, mask: Tensor, alignment: str = "end") -> Tensor:
    """Mean over the batch of the L2 norm of the input gradient at each time step, valid positions only.

    grad: ``[B, T, D]`` dLoss/dx. mask: ``[B, T]`` bool, True at valid positions.
    alignment: ``start`` -- index t is position t of every sequence; ``end`` -- sequences are right-aligned
        on their last valid token: index ``T-1`` is each sequence's last valid token, ``T-1-k`` the token k
        steps before it. This is the axis along which vanishing shows for variable-length text: the loss
        is read at (or pooled up to) the end, so "how far back" is distance from the end, not from the start.
    Returns ``[T]`` float32; NaN at an index no sequence reaches. Computed in float32 whatever the gradient's
    dtype (bf16/fp16 gradients would round small norms to zero).
    """
    if alignment not in ALIGNMENTS:
        raise UserInputError(f"alignment={alignment!r} is not one of {list(ALIGNMENTS)}")
    return aligned_mean(grad.detach().float().norm(dim=-1), mask, alignment)


def aligned_mean(values: Tensor, mask: Tensor, alignment: str = "end") -> Tensor:
    """``[B, T]`` per-position values -> ``[T]`` mean over the sequences valid there, in the given alignment
    (see ``timestep_grad_norms``); NaN where none is."""
    batch, steps = values.shape
    mask = mask.to(values.device).bool()
    positions = torch.arange(steps, device=values.device).expand(batch, steps)  # [B, T]
    if alignment == "end":
        # Shift each row so its last valid position lands on T-1 (works for left padding too).
        last = torch.where(mask, positions, torch.zeros_like(positions)).amax(dim=1)  # [B]
        positions = positions + (steps - 1 - last)[:, None]
    index = positions[mask]
    total = torch.zeros(steps, device=values.device).index_add_(0, index, values[mask].float())
    count = torch.zeros(steps, device=values.device).index_add_(0, index, torch.ones_like(index, dtype=torch.float32))
    return total / count  # 0 / 0 = NaN where no sequence is valid


def trace_grad_norms(trace: RecurrentTrace, scale: float = 1.0) -> Optional[dict[str, Tensor]]:
    """``{"start": [T], "end": [T]}`` per-timestep input-gradient norms of a trace whose backward has run;
    ``scale`` divides out an AMP loss scale. None when the input has no gradient (the step was not traced,
    or the loss did not depend on it)."""
    grad = trace.inputs.grad
    if grad is None:
        return None
    norms = grad.detach().float().norm(dim=-1) / scale  # [B, T], float32 whatever the training precision
    # Both alignments in one pass: bins [0, T) by position from the start, [T, 2T) right-aligned on the end.
    batch, steps = norms.shape
    mask = trace.mask.to(norms.device).bool()
    positions = torch.arange(steps, device=norms.device).expand(batch, steps)  # [B, T]
    last = torch.where(mask, positions, torch.zeros_like(positions)).amax(dim=1, keepdim=True)  # [B, 1]
    index = torch.cat([positions[mask], (positions + 2 * steps - 1 - last)[mask]])
    values = norms[mask].repeat(2)
    total = torch.zeros(2 * steps, device=norms.device).index_add_(0, index, values)
    count = torch.zeros(2 * steps, device=norms.device).index_add_(0, index, torch.ones_like(values))
    both = total / count  # [2T]; NaN where no sequence is valid
    return {"start": both[:steps], "end": both[steps:]}


def valid_span(curve) -> np.ndarray:
    """The curve without its leading and trailing NaN (indices no sequence reached), as float64 numpy."""
    c = np.asarray(curve.detach().cpu() if isinstance(curve, Tensor) else curve, dtype=np.float64)
    finite = np.flatnonzero(~np.isnan(c))
    return c[finite[0]:finite[-1] + 1] if finite.size else c[:0]


def early_late_ratio(curve, early: float = 0.1, late: float = 0.9) -> float:
    """Norm at ``early`` of the curve's length over the norm at ``late`` (indices rounded; NaN ends dropped).

    Below 1: the gradient reaching early steps is smaller than at late ones (vanishing; < 0.01 is severe);
    above 1: it grows going back in time (exploding). NaN for curves shorter than 2 or a zero late norm.
    """
    c = valid_span(curve)
    if c.size < 2:
        return float("nan")
    i, j = round(early * (c.size - 1)), round(late * (c.size - 1))
    return float(c[i] / c[j]) if c[j] > 0 else float("nan")


def gradient_horizon(curve, threshold: float = 1e-3) -> int:
    """How many positions back from the last one gradient of a non-negligible size still arrives: the count
    from the last position back to the EARLIEST position whose norm is >= ``threshold`` x the curve's maximum.

    For a vanishing curve (rising towards the end) this is how many steps back the norm stays above the
    threshold. The curve's length means gradient of that size reaches the first step (nothing vanished, or
    it explodes going back); 0 means an all-zero gradient. Counting to the earliest such position, rather
    than stopping at the first dip, keeps an exploding curve (small at the end, huge at the start) from
    reading as a horizon of 0.
    """
    c = valid_span(curve)
    peak = np.nanmax(c) if c.size else 0.0
    if not peak > 0:
        return 0
    above = np.flatnonzero(c >= threshold * peak)
    return int(c.size - above[0])


def summarize(curve, horizon_threshold: float = 1e-3) -> dict[str, float]:
    """The scalars logged per step: norm at the first, middle and last index, early/late ratio, horizon."""
    c = valid_span(curve)
    if c.size == 0:
        return {}
    return {"first": float(c[0]), "middle": float(c[c.size // 2]), "last": float(c[-1]),
            "early_late_ratio": early_late_ratio(c), "horizon": float(gradient_horizon(c, horizon_threshold))}


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
    """Logs ``gradflow/{first,middle,last,early_late_ratio,horizon}`` every ``every_n_steps`` optimizer steps,
    an image ``gradflow/per_timestep`` per epoch (norm against time step, log scale, this epoch and the first),
    ``gradflow/heatmap`` at the end of training (training step x time step), and ``gradient_flow.npz`` in the
    run folder (both alignments of every logged step).

    Args:
        every_n_steps: log on optimizer steps 0, n, 2n, ...; other steps cost one modulo. 25 gives ~17 points
            over the default 8-epoch reviews run; a logged step costs the three callbacks ~0.5 ms on the CPU box,
            the per-epoch pictures a few ms (docs/benchmarks.md, bench/callback_overhead.py).
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
        self.records: list[dict] = []  # per logged step: step, epoch, norms_start, norms_end (numpy [T])
        self.first_epoch_curve: Optional[np.ndarray] = None
        self._plot: Optional[CurvePlot] = None  # made at the first image, redrawn every epoch
        self._no_grad_warned = False

    # Lightning hooks ------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        writer = tensorboard_writer(trainer) if trainer.is_global_zero else None
        if writer is not None:
            add_layout(writer, "gradient flow", {
                "dLoss/dx_t norm: first / middle / last index": ["gradflow/first", "gradflow/middle", "gradflow/last"],
                "early/late ratio (norm at 10% / 90% of the length)": ["gradflow/early_late_ratio"],
                "gradient horizon (steps)": ["gradflow/horizon"],
            })

    def on_after_backward(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not self._armed:
            return
        self._armed = False
        self._last_step = trainer.global_step
        trace: Optional[RecurrentTrace] = getattr(pl_module, "last_trace", None)
        curves = trace_grad_norms(trace, _loss_scale(trainer)) if trace is not None else None
        if curves is None:
            if not self._no_grad_warned:
                rank_zero_warn(f"GradientFlowMonitor: {type(pl_module).__name__}.last_trace has no input gradient "
                               "after backward; set last_trace in training_step when trace_requested is True")
                self._no_grad_warned = True
            return
        record = {"step": trainer.global_step, "epoch": trainer.current_epoch,
                  **{f"norms_{a}": valid_span(c).astype(np.float32) for a, c in curves.items()}}
        self.records.append(record)
        scalars = summarize(self._curve(record), self.horizon_threshold)
        log_scalars(trainer, {f"gradflow/{k}": v for k, v in scalars.items()}, trainer.global_step)

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero:
            return
        flush_scalars(trainer)
        epoch = trainer.current_epoch
        curves = [self._curve(r) for r in self.records if r["epoch"] == epoch]
        if curves:
            with np.errstate(all="ignore"):  # all-NaN columns stay NaN
                mean = np.nanmean(stack_curves(curves, self.alignment == "end"), axis=0)
            if self.first_epoch_curve is None:
                self.first_epoch_curve = mean
            writer = tensorboard_writer(trainer)
            if self.images and writer is not None:
                self._plot = self._plot or CurvePlot(self.alignment, (f"epoch {self._first_epoch()}", "this epoch"))
                image = self._plot.draw([self.first_epoch_curve, mean],
                                        note=f"epoch {epoch}, step {trainer.global_step}")
                write_image(writer, "gradflow/per_timestep", image, trainer.global_step)

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero:
            return
        flush_scalars(trainer)
        if not self.records:
            return
        writer = tensorboard_writer(trainer)
        if self.images and writer is not None:
            figure = plot_heatmap(self.steps(), self.matrix(), self.alignment)
            write_image(writer, "gradflow/heatmap", render(figure), trainer.global_step)
        if self.save_arrays:
            self.save(run_dir(trainer) / "gradient_flow.npz")

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        # A run that diverges (FloatingPointError) is the one whose gradients matter most: keep what was seen.
        if trainer.is_global_zero:
            flush_scalars(trainer)
            if self.save_arrays and self.records:
                self.save(run_dir(trainer) / "gradient_flow.npz")

    # results ---------------------------------------------------------------------------------------------------
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

    def _first_epoch(self) -> int:
        return self.records[0]["epoch"]


def _loss_scale(trainer: "pl.Trainer") -> float:
    """fp16 AMP scales the loss, so the input gradient (which the scaler never unscales) carries the scale."""
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    if scaler is not None and scaler.is_enabled():
        return float(scaler.get_scale())
    return 1.0


# -- pictures ---------------------------------------------------------------------------------------------------
def _x_axis(length: int, alignment: str) -> tuple[np.ndarray, str]:
    if alignment == "end":
        return np.arange(-(length - 1), 1), "time step relative to the last valid token"
    return np.arange(length), "time step from the start"


class CurvePlot:
    """Norm against time step on a log scale, one line per curve, as a figure that is redrawn every epoch.

    Drawing a labelled figure costs 20-40 ms here, mostly text, which is over 10% of an epoch of the default
    run. So the axes span whole decades and only grow, and the frame (ticks, labels, legend) is drawn once
    and kept as a bitmap; an epoch whose curves fit in it only restores that bitmap and draws the lines
    (~2 ms). log10 of the norm is plotted on a linear axis labelled ``1e-k``.
    """

    def __init__(self, alignment: str = "end", labels: tuple[str, ...] = ("first epoch", "this epoch")):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.ticker import FuncFormatter, MaxNLocator

        self.alignment = alignment
        self.figure = new_figure()
        self.canvas = FigureCanvasAgg(self.figure)
        self.ax = self.figure.add_subplot()
        self.lines = [self.ax.plot([], [], label=label, animated=True)[0] for label in labels]  # not in the frame
        self.note = self.ax.text(0.98, 0.04, "", transform=self.ax.transAxes, ha="right", fontsize=8, animated=True)
        self.ax.yaxis.set_major_locator(MaxNLocator(nbins=7, integer=True))
        self.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"1e{v:.0f}"))
        self.ax.set_xlabel(_x_axis(1, alignment)[1])
        self.ax.set_ylabel("mean ||dLoss/dx_t|| (log scale)")
        self.ax.grid(True, alpha=0.3)
        self.ax.legend(fontsize=8, loc="upper left")  # not "best": that searches for a free spot
        self.figure.subplots_adjust(left=0.16, right=0.97, bottom=0.16, top=0.96)  # fixed: tight_layout is 2 draws
        self._frame_limits = None
        self._frame = None

    def draw(self, curves: list[np.ndarray], note: str = "") -> np.ndarray:
        """One ``[T]`` curve per line (in the order of ``labels``) -> ``[H, W, 3]`` uint8 image."""
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = [np.log10(np.asarray(c, dtype=np.float64)) for c in curves]
        finite = np.concatenate([v[np.isfinite(v)] for v in logs] + [np.zeros(0)])
        low, high = (finite.min(), finite.max()) if finite.size else (-1.0, 0.0)
        xs = _x_axis(max((len(c) for c in curves), default=1), self.alignment)[0]
        limits = self._frame_limits
        if limits is None or low < limits[0] or high > limits[1] or xs[0] < limits[2] or xs[-1] > limits[3]:
            # Grow only, with room (three decades below, as norms mostly shrink while training, one above):
            # every new frame is a full draw.
            old = limits or (np.inf, -np.inf, np.inf, -np.inf)
            limits = (min(old[0], np.floor(low) - 3), max(old[1], np.ceil(high) + 1),
                      min(old[2], xs[0] - 0.5), max(old[3], xs[-1] + 0.5))
        if limits != self._frame_limits:
            self.ax.set_ylim(limits[0], limits[1])
            self.ax.set_xlim(limits[2], limits[3])
            self.canvas.draw()  # the frame only: the lines and the note are animated
            self._frame, self._frame_limits = self.canvas.copy_from_bbox(self.figure.bbox), limits
        else:
            self.canvas.restore_region(self._frame)
        for line, values in zip(self.lines, logs):
            line.set_data(_x_axis(len(values), self.alignment)[0], values)
            self.ax.draw_artist(line)
        self.note.set_text(note)
        self.ax.draw_artist(self.note)
        return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()


def plot_curves(curves: dict[str, np.ndarray], alignment: str = "end"):
    """Norm against time step on a log scale, one line per label (for reports). Returns (Figure, image)."""
    plot = CurvePlot(alignment, tuple(curves))
    return plot.figure, plot.draw(list(curves.values()))


def plot_heatmap(steps: np.ndarray, matrix: np.ndarray, alignment: str = "end"):
    """log10 norm over (training step x time step). Returns a matplotlib Figure."""
    figure = new_figure(5.5, 3.6)
    ax = figure.add_subplot()
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.log10(matrix)
    x, xlabel = _x_axis(matrix.shape[1], alignment)
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", origin="lower", interpolation="nearest",
                      extent=(x[0] - 0.5, x[-1] + 0.5, -0.5, len(steps) - 0.5), cmap="viridis")
    ticks = np.linspace(0, len(steps) - 1, min(len(steps), 6)).round().astype(int)
    ax.set_yticks(ticks, [str(s) for s in steps[ticks]])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("training step")
    figure.colorbar(image, ax=ax, label="log10 ||dLoss/dx_t||")
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.15, top=0.96)
    return figure
