"""What the three dynamics callbacks share: where to write (TensorBoard writer, run folder), the
custom-scalars layout, writing images and histograms as events, and the one-time contract warning.

Plain functions, plus ``TraceArmingCallback``: the arming step the two trace-reading callbacks share.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_warn

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


FLUSH_SECONDS = 10.0  # the longest buffered scalars wait (TensorBoard's own writer flushes every 120 s)


def log_scalars(trainer: "pl.Trainer", metrics: dict[str, float], step: int) -> None:
    """Log scalars at ``step`` (non-finite values are skipped) to every logger.

    Not ``pl_module.log``: that would average them into Lightning's own ``log_every_n_steps`` rhythm, and a
    callback that logs every N steps wants its exact step. TensorBoard gets them held back and written in a
    burst by ``flush_scalars`` (each epoch end, or after ``FLUSH_SECONDS``), as ONE event per step for all
    three callbacks: every write wakes the writer's thread (~0.4 ms on a busy 2-core machine, more than
    computing the statistics), and even in a burst an event costs ~0.04 ms, which at every step was 5% of
    the default run's epoch when each callback wrote its own.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary

    finite = {k: float(v) for k, v in metrics.items() if math.isfinite(v)}
    if not finite:
        return
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment
            values = writer.__dict__.setdefault("_rnn_lab_pending", {}).setdefault(step, [])
            values.extend(Summary.Value(tag=k, simple_value=v) for k, v in finite.items())
            if time.monotonic() - writer.__dict__.setdefault("_rnn_lab_flushed", time.monotonic()) > FLUSH_SECONDS:
                flush_scalars(trainer)
        else:
            logger.log_metrics(finite, step=step)


def flush_scalars(trainer: "pl.Trainer") -> None:
    """Write the scalars ``log_scalars`` held back (shared by all three callbacks: one burst per epoch)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment
            pending = writer.__dict__.get("_rnn_lab_pending", {})
            for step in sorted(pending):
                _file_writer(writer).add_summary(Summary(value=pending[step]), step)
            pending.clear()
            writer._rnn_lab_flushed = time.monotonic()


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


def write_histogram(writer, tag: str, values: np.ndarray, step: int, bins: int = 64) -> None:
    """A TensorBoard histogram of ``values`` in ``bins`` equal buckets. Built here rather than with
    ``add_histogram``, whose float64 ``dot`` goes through the BLAS thread pool and takes ~8 ms on a busy
    machine for 20k values."""
    from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary

    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    counts, edges = np.histogram(values, bins=bins)
    histogram = HistogramProto(min=float(values.min()), max=float(values.max()), num=float(values.size),
                               sum=float(values.sum()), sum_squares=float(np.sum(values * values)),
                               bucket_limit=edges[1:].tolist(), bucket=counts.astype(np.float64).tolist())
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

    A subclass sets ``every_n_steps`` and calls ``super().__init__()``.
    """

    every_n_steps: int

    def __init__(self) -> None:
        self._armed = False
        self._last_step: Optional[int] = None
        self._unsupported_warned = False

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
