"""What the GPU tests share (and the CPU tests of the same designs): the skip that says why, tiny ``train.py`` runs of
each LightningModule, and the guard that fails a run whose dynamics callbacks read a value back to the host inside
a training step.

Not a test file: ``tests/gpu/test_*.py``, ``tests/callbacks/test_held_steps_read_nothing_back.py`` and
``tests/commands/test_cuda_checkpoints_on_cpu.py`` import it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from data_modules.char_text import read_corpus
from src.callbacks import GradientFlowMonitor, GradientNormMonitor, HiddenStateMonitor
from tests.common import ROOT
from train import cli_main

CUDA = torch.cuda.is_available()
NO_CUDA = (f"no CUDA device here (torch {torch.__version__}, torch.cuda.is_available() is False); these tests run "
           "where one is: python -m pytest -m gpu, or python bench/gpu_check.py")
GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason=NO_CUDA)]  # every tests/gpu file's pytestmark

MODULES = ("TextClassifier", "SequenceClassifier", "CurriculumAutoencoder", "CharLanguageModel")
DYNAMICS = (GradientFlowMonitor, HiddenStateMonitor, GradientNormMonitor)
PREFIXES = ("gradflow/", "hidden/", "gradnorm/")  # the three callbacks' tags (names below a prefix may change)


def run_args(module: str, tmp_path: Path) -> list[str]:
    """``train.py fit`` arguments (without ``fit``) of a seconds-long run of ``module``'s own config."""
    cache = ["--data.cache_dir", str(tmp_path / "cache")]
    if module == "TextClassifier":  # bidirectional LSTM: a reverse direction and final cell states in the trace
        config = ["--config", "configs/reviews.yaml", "--data.n_samples", "240", "--data.batch_size", "16",
                  "--data.max_len", "40", "--model.embedding_dim", "16", "--model.hidden_size", "16",
                  "--model.bidirectional", "true", *cache]
    elif module == "SequenceClassifier":  # its config trains with trainer.deterministic: true
        config = ["--config", "configs/memory_task.yaml", "--data.seq_length", "12", "--data.n_train", "256",
                  "--data.n_val", "64", "--data.n_test", "64", "--data.batch_size", "32", "--model.cell", "lstm",
                  "--model.hidden_size", "16", "--trainer.val_check_interval", "1.0"]
    elif module == "CurriculumAutoencoder":  # LSTM encoder and decoder, a two-phase curriculum
        config = ["--config", "configs/poetry_autoencoder.yaml", "--data.max_poems", "48", "--data.max_len", "8",
                  "--model.hidden_size", "8", "--model.curriculum", "[[4, 1], [8, 1]]", *cache]
    elif module == "CharLanguageModel":
        text = tmp_path / "chars.txt"
        text.write_text(read_corpus(None)[:20000], encoding="utf-8")
        config = ["--config", "configs/char_lm.yaml", "--data.path", str(text), "--data.window_len", "32",
                  "--data.batch_size", "16", "--model.embedding_dim", "16", "--model.hidden_size", "32",
                  "--model.sample_length", "20"]
    else:
        raise ValueError(module)
    return [*config, "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false"]


def configured(module: str, tmp_path: Path, *extra: str, dynamics: bool = False):
    """The LightningCLI of a tiny run of ``module`` (``--config configs/dynamics.yaml`` too if ``dynamics``),
    instantiated but not run: a test may change the trainer's callbacks before ``fit(cli)``."""
    args = run_args(module, tmp_path)
    if dynamics:
        args[2:2] = ["--config", "configs/dynamics.yaml"]  # after the module's own config, as a user adds it
    return cli_main([*args, *extra], run=False)


def fit(cli) -> Path:
    """Train as ``train.py fit`` would; -> the run's folder."""
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return Path(cli.trainer.log_dir)


def dynamics_callbacks(trainer) -> list:
    found = [c for c in trainer.callbacks if isinstance(c, DYNAMICS)]
    assert len(found) == 3, f"configs/dynamics.yaml should add the three callbacks, found {found}"
    return found


# -- reading a run back -----------------------------------------------------------------------------------------
def scalar_events(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag under ``run_dir`` -> its (step, value) events, read with TensorBoard's own reader."""
    events: dict[str, list[tuple[int, float]]] = {}
    for f in sorted(Path(run_dir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            events.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return events


def numbers(value) -> Iterator[float]:
    """Every number in a callback record (floats, numpy arrays, dicts and lists of them)."""
    if isinstance(value, dict):
        for v in value.values():
            yield from numbers(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from numbers(v)
    elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
        yield from value.ravel().tolist()
    elif isinstance(value, (float, np.floating)):
        yield float(value)


def held_tensors(callback) -> list[torch.Tensor]:
    """The tensors a dynamics callback holds for the steps it has not finished yet (``PendingSteps``)."""
    found: list[torch.Tensor] = []

    def walk(value) -> None:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(callback._pending.items)
    return found


class HeldSpy(pl.Callback):
    """Placed after the dynamics callbacks: at the end of every training batch, how many steps each holds, and the
    (dtype, device type) of every floating tensor they hold."""

    def __init__(self, callbacks: list):
        self.callbacks = callbacks
        self.held: list[list[int]] = []
        self.kinds: set[tuple[torch.dtype, str]] = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.held.append([len(c._pending.items) for c in self.callbacks])
        for callback in self.callbacks:
            self.kinds |= {(t.dtype, t.device.type) for t in held_tensors(callback) if t.is_floating_point()}


def guarded_dynamics_run(module: str, tmp_path: Path, device: torch.device, *extra: str):
    """A tiny run of ``module`` with configs/dynamics.yaml at every step, each callback's per-step hooks inside
    ``no_host_reads(device)`` and a ``HeldSpy`` after them; -> (run folder, the three callbacks, the spy). The
    caller has called ``hold_until_epoch_end``."""
    cli = configured(module, tmp_path, *extra, dynamics=True)
    callbacks = dynamics_callbacks(cli.trainer)
    for callback in callbacks:
        callback.every_n_steps = 1
        if hasattr(callback, "gates_every_n_steps"):  # the gates have their own cadence (25 by default)
            callback.gates_every_n_steps = 1
        guard_step_hooks(callback, device)
    spy = HeldSpy(callbacks)
    cli.trainer.callbacks.append(spy)
    return fit(cli), callbacks, spy


def check_dynamics_output(run_dir: Path, callbacks: list, steps: int) -> dict[str, list[tuple[int, float]]]:
    """What a run with the three callbacks at ``every_n_steps=1`` must have written: every scalar of the run
    finite, each callback's tags (by prefix) at every one of the ``steps`` training steps (a NaN or inf that the
    writer dropped would leave a step out), and finite numbers in what the callbacks recorded before writing."""
    events = scalar_events(run_dir)
    bad = {tag: [v for _, v in values if not math.isfinite(v)] for tag, values in events.items()}
    assert not any(bad.values()), {tag: values for tag, values in bad.items() if values}
    for prefix in PREFIXES:
        tags = [tag for tag in events if tag.startswith(prefix)]
        assert tags, f"no {prefix}* scalars in {run_dir}: {sorted(events)}"
        for tag in tags:
            assert sorted({step for step, _ in events[tag]}) == list(range(steps)), (tag, events[tag])
    for callback in callbacks:
        assert len(callback.records) == steps, (type(callback).__name__, len(callback.records))
        values = list(numbers(callback.records))
        assert values and all(math.isfinite(v) for v in values), type(callback).__name__
    return events


# -- host reads inside a training step ----------------------------------------------------------------------------
PER_STEP_HOOKS = ("on_train_batch_start", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
                  "on_before_zero_grad", "on_train_batch_end")
HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__")


class HostRead(AssertionError):
    """A callback read a tensor's value back to the host inside a training step."""


@contextmanager
def no_host_reads(device: torch.device) -> Iterator[None]:
    """Inside: any read of a tensor's value by the host fails.

    On CUDA, torch's sync debug mode ("error") makes every synchronizing call raise: ``.item()``, ``.tolist()``,
    ``.cpu()``, a blocking copy either way, ``nonzero``, a boolean mask... On a CPU nothing synchronizes, so the
    Python-level reads (``item``, ``tolist``, ``numpy``, ``cpu``, ``bool``/``float``/``int`` of a tensor) raise
    ``HostRead`` instead: the same rule, checked where CI runs.
    """
    if device.type == "cuda":
        before = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(before)
        return
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def refuse(name):
        def read(self, *args, **kwargs):
            raise HostRead(f"Tensor.{name}() inside a training step's callback hook")
        return read

    for name in HOST_READS:
        setattr(torch.Tensor, name, refuse(name))
    try:
        yield
    finally:
        for name, method in originals.items():
            setattr(torch.Tensor, name, method)


def guard_step_hooks(callback, device: torch.device):
    """Wrap ``callback``'s per-step hooks (on the instance) in ``no_host_reads``; -> the callback."""
    for name in PER_STEP_HOOKS:
        hook = getattr(callback, name, None)
        if hook is None:
            continue

        @wraps(hook)
        def guarded(*args, hook=hook, **kwargs):
            with no_host_reads(device):
                return hook(*args, **kwargs)

        setattr(callback, name, guarded)
    return callback


def hold_until_epoch_end(monkeypatch) -> None:
    """Held steps are finished (and copied to the host, on purpose) at the epoch end only: never at a batch end,
    which the guard would flag (the first CUDA steps can take seconds, past the 10 s a step may wait)."""
    from src.callbacks import trace_arming

    monkeypatch.setattr(trace_arming, "MAX_PENDING_STEPS", 10_000)
    monkeypatch.setattr(trace_arming, "FLUSH_SECONDS", math.inf)


def project_file(*parts: str) -> str:
    return str(ROOT.joinpath(*parts))
