"""Where and how the dynamics callbacks write: the run's TensorBoard writer and folder, scalars held back and
written as one event per step, images, histograms and the custom-scalars layout.

Everything that touches ``SummaryWriter`` beyond its public ``add_*`` methods is here: its file writer (to add
pre-built ``Summary`` protos, which the ``add_*`` methods would rebuild more slowly) and the per-run state the
callbacks share (held scalars, the merged layout), kept beside the writer rather than on it.
"""

from __future__ import annotations

import math
import weakref
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor


def tensorboard_writer(trainer: "pl.Trainer"):
    """The ``SummaryWriter`` of the run's first TensorBoardLogger, or None (no logger, CSV only, ...)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def run_dir(trainer: "pl.Trainer") -> Path:
    """The run's log folder (``lightning_logs/<model>-<cell>/version_N``). Not ``trainer.log_dir``: that broadcasts
    across ranks, and the callbacks call this on rank zero only."""
    logger = trainer.logger
    folder = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None) or trainer.default_root_dir
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


# log10 of float32's smallest positive number (1.4e-45): where a gradient norm underflowed to exactly 0 (a vanilla
# RNN over a few hundred steps), its log10 tag sits on this floor instead of leaving a gap in the chart.
LOG10_FLOOR = -45.0


def log10(value: float) -> float:
    """log10 of a magnitude for a ``_log10`` tag: ``LOG10_FLOOR`` for 0 (an underflowed norm, a bound rather than a
    measurement), NaN (left out by ``log_scalars``) for negatives, NaN and inf."""
    if value == 0:
        return LOG10_FLOOR
    return max(math.log10(value), LOG10_FLOOR) if 0 < value < math.inf else math.nan


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
            values = _shared(logger.experiment).pending.setdefault(step, [])
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
            pending = _shared(writer).pending
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
    if values.is_cuda and torch.are_deterministic_algorithms_enabled():
        values = values.cpu()  # CUDA's histc has no deterministic kernel and raises (trainer.deterministic: true)
    if values.numel() == 0:
        return
    figures = torch.stack([*torch.aminmax(values), values.sum(), values.square().sum()]).tolist()
    if not all(map(math.isfinite, figures)):  # a NaN or inf among them: only then filter (a bool op costs ~0.2 ms)
        values = values[torch.isfinite(values)]
        if values.numel() == 0:
            return
        figures = torch.stack([*torch.aminmax(values), values.sum(), values.square().sum()]).tolist()
    low, high, total, squares = figures
    lower, upper = (low, high) if high > low else (low - 0.5, high + 0.5)  # numpy's range for a single value
    counts = torch.histc(values, bins, lower, upper).tolist()
    edges = np.linspace(lower, upper, bins + 1)[1:].tolist()
    histogram = HistogramProto(min=low, max=high, num=float(values.numel()), sum=total, sum_squares=squares,
                               bucket_limit=edges, bucket=counts)
    _file_writer(writer).add_summary(Summary(value=[Summary.Value(tag=tag, histo=histogram)]), step)


def _file_writer(writer):
    """The writer's ``FileWriter`` (created on first use, as ``add_*`` would)."""
    return writer.file_writer or writer._get_file_writer()


class _RunOutput:
    """What the callbacks of one run share per writer: scalars held per step, and the custom-scalars layout."""

    def __init__(self) -> None:
        self.pending: dict[int, list] = {}
        self.layout: dict[str, dict] = {}


_RUNS: "weakref.WeakKeyDictionary[object, _RunOutput]" = weakref.WeakKeyDictionary()


def _shared(writer) -> _RunOutput:
    shared = _RUNS.get(writer)  # not setdefault(writer, _RunOutput()): that builds one on every logged step
    if shared is None:
        shared = _RUNS[writer] = _RunOutput()
    return shared


# The custom-scalars tab opens on its first category: the one that answers "why did my RNN fail?".
LAYOUT_ORDER = ("gradient through time", "parameter gradient norms", "hidden states", "gates")


def add_layout(writer, category: str, charts: dict[str, list[str]]) -> None:
    """Add ``category`` to the run's custom-scalars layout (TensorBoard's CUSTOM SCALARS tab), in
    ``LAYOUT_ORDER`` (others after).

    TensorBoard keeps only the last layout a run writes, so the categories of every callback are merged on
    the writer and the whole layout is written again. ``charts``: chart title -> tag regexes on one chart.
    """
    layout = _shared(writer).layout
    layout[category] = {title: ["Multiline", tags] for title, tags in charts.items()}
    rank = {name: i for i, name in enumerate(LAYOUT_ORDER)}
    ordered = sorted(layout, key=lambda name: rank.get(name, len(rank)))
    writer.add_custom_scalars({name: layout[name] for name in ordered})


