"""What the three dynamics callbacks share: where to write (TensorBoard writer, run folder), the
custom-scalars layout, writing scalars, images and histograms as events, holding logged steps to compute their
statistics together, and the one-time contract warning.

Plain functions, plus ``PendingSteps`` (the held steps) and ``TraceArmingCallback`` (the arming step the two
trace-reading callbacks share).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from src.errors import UserInputError
from src.monitoring import is_traceable


def tensorboard_writer(trainer: "pl.Trainer"):
    """The ``SummaryWriter`` of the run's first TensorBoardLogger, or None (no logger, CSV only, ...)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def run_dir(trainer: "pl.Trainer") -> Path:
    """The run's log folder (``lightning_logs/version_N``). Not ``trainer.log_dir``: that broadcasts across
    ranks, and the callbacks call this on rank zero only."""
    logger = trainer.logger
    folder = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None) or trainer.default_root_dir
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


FLUSH_SECONDS = 10.0  # the longest a logged step's scalars wait (TensorBoard's own writer flushes every 120 s)
MAX_PENDING_STEPS = 64  # logged steps whose statistics a callback holds to compute them together


class PendingSteps:
    """The logged steps a callback holds, as the small tensors it computed from them on the device, until
    ``flush_scalars`` finishes them together: at each epoch end, or at the end of a training batch after which
    one callback's are ``full`` (not sooner: then every callback has added that step, and its scalars share
    one event).

    Why: finishing a step (copying its figures to the host, turning sums into statistics, curves into
    summaries, building the TensorBoard values) is a few dozen small operations. Done right after backward, on a
    CPU whose caches the training step has just filled with other things, each costs several times what it costs
    in a loop over many steps, and on a GPU each copy to the host is a sync that stalls the step. Held, they cost
    one copy and one warm loop per flush.
    """

    def __init__(self) -> None:
        self.items: list = []
        self._since = 0.0

    def add(self, item) -> None:
        if not self.items:
            self._since = time.monotonic()
        self.items.append(item)

    def full(self) -> bool:
        return bool(self.items) and (len(self.items) >= MAX_PENDING_STEPS
                                     or time.monotonic() - self._since > FLUSH_SECONDS)

    def take(self) -> list:
        items, self.items = self.items, []
        return items


def pad_stack(tensors: Sequence[Tensor], dtype: torch.dtype = torch.float32) -> Tensor:
    """K tensors of one rank and different sizes (``[B_k, T_k, ...]``) -> ``[K, max B, max T, ...]`` of ``dtype``,
    zero-padded at the end of every dimension, on the first tensor's device."""
    if len(tensors) == 1:
        return tensors[0].to(dtype)[None]
    shape = [max(sizes) for sizes in zip(*(t.shape for t in tensors))]
    stacked = tensors[0].new_zeros((len(tensors), *shape), dtype=dtype)
    for k, t in enumerate(tensors):
        stacked[(k, *(slice(0, n) for n in t.shape))] = t
    return stacked


def log_scalars(trainer: "pl.Trainer", metrics: dict[str, float], step: int) -> None:
    """Log scalars at ``step`` (non-finite values are skipped) to every logger.

    Not ``pl_module.log``: that would average them into Lightning's own ``log_every_n_steps`` rhythm, and a
    callback that logs every N steps wants its exact step. TensorBoard gets them held back and written by
    ``flush_scalars`` as ONE event per step for all three callbacks: every write wakes the writer's thread, and
    an event costs ~0.06 ms (a third of it TensorBoard's pure-Python CRC32C), which at every step was 5% of the
    default run's epoch when each callback wrote its own.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary

    finite = {k: float(v) for k, v in metrics.items() if math.isfinite(v)}
    if not finite:
        return
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            values = logger.experiment.__dict__.setdefault("_rnn_lab_pending", {}).setdefault(step, [])
            values.extend(Summary.Value(tag=k, simple_value=v) for k, v in finite.items())
        else:
            logger.log_metrics(finite, step=step)


def flush_scalars(trainer: "pl.Trainer") -> None:
    """Have every callback of the run compute its pending steps (``compute_pending``), then write the scalars
    ``log_scalars`` held back, one event per step."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    for callback in trainer.callbacks:
        compute_pending = getattr(callback, "compute_pending", None)
        if compute_pending is not None:
            compute_pending(trainer)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment
            pending = writer.__dict__.get("_rnn_lab_pending", {})
            for step in sorted(pending):
                _file_writer(writer).add_summary(Summary(value=pending[step]), step)
            pending.clear()


def write_image(writer, tag: str, image, step: int) -> None:
    """A PIL image (the palette images of src/callbacks/charts.py) or an ``[H, W, 3]`` uint8 array -> a
    TensorBoard image event. Encoded here at PNG level 1: ``add_image`` takes only arrays (an RGB PNG costs
    ~2 ms, a palette one ~0.25 ms) and compresses at level 6, and an image is written every epoch."""
    import io

    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    encoded = Summary.Image(height=image.height, width=image.width, colorspace=3,
                            encoded_image_string=buffer.getvalue())
    _file_writer(writer).add_summary(Summary(value=[Summary.Value(tag=tag, image=encoded)]), step)


def write_histogram(writer, tag: str, values: Tensor, step: int, bins: int = 64) -> None:
    """A TensorBoard histogram of ``values`` in ``bins`` equal buckets, computed where the values are (one copy of
    the counts to the host). Built here rather than with ``add_histogram``, which copies every value to numpy and
    whose float64 ``dot`` goes through the BLAS thread pool (~8 ms on a busy machine for 20k values)."""
    from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary

    values = values.detach().float().flatten()
    values = values[torch.isfinite(values)]
    if values.numel() == 0:
        return
    low, high, total, squares = torch.stack([*torch.aminmax(values), values.sum(), values.square().sum()]).tolist()
    lower, upper = (low, high) if high > low else (low - 0.5, high + 0.5)  # numpy's range for a single value
    counts = torch.histc(values, bins, lower, upper).tolist()
    edges = np.linspace(lower, upper, bins + 1)[1:].tolist()
    histogram = HistogramProto(min=low, max=high, num=float(values.numel()), sum=total, sum_squares=squares,
                               bucket_limit=edges, bucket=counts)
    _file_writer(writer).add_summary(Summary(value=[Summary.Value(tag=tag, histo=histogram)]), step)


def _file_writer(writer):
    return writer.file_writer or writer._get_file_writer()


def add_layout(writer, category: str, charts: dict[str, list[str]]) -> None:
    """Add ``category`` to the run's custom-scalars layout (TensorBoard's CUSTOM SCALARS tab).

    TensorBoard keeps only the last layout a run writes, so the categories of every callback are merged on
    the writer and the whole layout is written again. ``charts``: chart title -> tag regexes on one chart.
    """
    layout = getattr(writer, "_rnn_lab_layout", {})
    layout[category] = {title: ["Multiline", tags] for title, tags in charts.items()}
    writer._rnn_lab_layout = layout
    writer.add_custom_scalars(layout)


def supports_contract(pl_module: "pl.LightningModule", callback: object, warned: bool) -> bool:
    """True when the module implements src/monitoring.py's contract; otherwise warn (only if not ``warned``
    yet) and return False, so the callback stays silent and training goes on."""
    if is_traceable(pl_module):
        return True
    if not warned:
        rank_zero_warn(f"{type(callback).__name__}: {type(pl_module).__name__} does not implement the monitoring "
                       "contract of src/monitoring.py (trace_requested, last_trace, trace); this callback logs "
                       "nothing for it")
    return False


def due(trainer: "pl.Trainer", every_n_steps: int, last_step: Optional[int]) -> bool:
    """A callback logs at optimizer steps 0, n, 2n, ... once each (several accumulated batches share a step),
    and on rank zero only."""
    step = trainer.global_step
    return trainer.is_global_zero and step % every_n_steps == 0 and step != last_step


def check_every_n_steps(every_n_steps: int) -> int:
    if every_n_steps < 1:
        raise UserInputError(f"every_n_steps={every_n_steps} must be >= 1 (e.g. 25)")
    return every_n_steps


class TraceArmingCallback(pl.Callback):
    """Base of the callbacks that read a module's ``RecurrentTrace``: on the training steps they log (``due``), it
    sets ``pl_module.trace_requested`` and marks itself armed; the subclass reads the trace after backward when
    ``disarm(trainer)`` is True, and the trace is dropped when the batch ends.

    A subclass sets ``every_n_steps``, calls ``super().__init__()``, and adds what it reads from a step to
    ``self._pending``, which is finished (``compute_pending``) when ``flush_scalars`` runs.
    """

    every_n_steps: int

    def __init__(self) -> None:
        self._armed = False
        self._last_step: Optional[int] = None
        self._unsupported_warned = False
        self._pending = PendingSteps()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if not due(trainer, self.every_n_steps, self._last_step):
            return
        if not supports_contract(pl_module, self, self._unsupported_warned):
            self._unsupported_warned = True
            return
        pl_module.trace_requested = True
        self._armed = True

    def disarm(self, trainer: "pl.Trainer") -> bool:
        """Called after backward: True (once) when this step was armed, and the step is noted as logged."""
        if not self._armed:
            return False
        self._armed = False
        self._last_step = trainer.global_step
        return True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # Drop the trace (and the input gradient it holds) once every callback had its look after backward.
        if getattr(pl_module, "trace_requested", False) or getattr(pl_module, "last_trace", None) is not None:
            pl_module.trace_requested = False
            pl_module.last_trace = None
        self._armed = False
        if self._pending.full():
            flush_scalars(trainer)
