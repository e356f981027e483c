"""Measured reproductions of the classic RNN experiments (reference notebooks 001 and 002), one command each:

    python -m src.experiments.seq_length       # IMDB accuracy vs. review length, RNN / LSTM / GRU
    python -m src.experiments.gradient_flow    # per-timestep gradient norms at length 200, RNN vs. LSTM
    python -m src.experiments.hidden_dynamics  # hidden- and cell-state norms over a review, saturation
    python -m src.experiments.memory           # remember the first token: accuracy vs. delay, 3 seeds
    python -m src.experiments.initialization   # vanilla RNN recurrent inits on the memory task

Each trains through Lightning (a TensorBoard log per run under ``--log-dir``) and writes ``report.md`` (tables
of the measured numbers, the settings, seeds, machine and wall time), ``results.json`` (the same numbers, for
comparison across runs) and PNG plots to ``--output`` (default ``reports/<name>/``). ``--quick`` is a tiny CPU
variant that finishes in seconds. Numbers come from the runs; the same seeds on the same machine reproduce them
exactly (one CPU thread, ``deterministic=True``, seeded data).

This module holds what the five share: the command line, one training run, the machine description and the
markdown/JSON/PNG writers. Plain functions; each experiment reads top to bottom on its own.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from src.errors import UserInputError, exit_on_user_error

ROOT = Path(__file__).resolve().parents[2]
IMDB_DEFAULT = ROOT.parent / "shared" / "data" / "imdb" / "train.parquet"


# -- command line ---------------------------------------------------------------------------------------------
def parse_args(name: str, description: str, argv: Optional[Sequence[str]] = None, imdb: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m src.experiments.{name}", description=description)
    parser.add_argument("--quick", action="store_true", help="tiny CPU variant (seconds): checks the pipeline, "
                        "its numbers mean nothing")
    parser.add_argument("--output", default=str(ROOT / "reports" / name),
                        help="folder for report.md, results.json and the PNGs (default: reports/%(prog)s)")
    parser.add_argument("--log-dir", default=None,
                        help="TensorBoard runs go here (default: lightning_logs/experiments/<name>, or "
                             "<output>/tensorboard with --quick)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: exact reproducibility, and no oversubscription on a "
                             "shared machine)")
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator (cpu, gpu, auto)")
    if imdb:
        parser.add_argument("--data", default=os.environ.get("RNN_LAB_IMDB", str(IMDB_DEFAULT)),
                            help="IMDB reviews: a parquet/CSV with text/label columns, an aclImdb folder, or 'hf' "
                                 "(default: $RNN_LAB_IMDB or ../shared/data/imdb/train.parquet)")
        parser.add_argument("--cache-dir", default=str(ROOT / ".cache" / "rnn_lab"), help="encoded-data cache")
    args = parser.parse_args(argv)
    if args.threads < 1:
        raise UserInputError(f"--threads {args.threads} must be >= 1")
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise UserInputError(f"--output {output} is a file; pass a folder (it is created if missing)")
    if imdb and args.data != "hf" and not Path(args.data).expanduser().exists():
        raise UserInputError(f"IMDB data not found: {args.data}; pass --data with a parquet/CSV of text,label rows, "
                             "an aclImdb folder, or hf")
    args.output = output
    args.log_dir = Path(args.log_dir) if args.log_dir else (
        output / "tensorboard" if args.quick else ROOT / "lightning_logs" / "experiments" / name)
    return args


def main(run: Callable[[argparse.Namespace], Path], name: str, description: str, imdb: bool = False,
         argv: Optional[Sequence[str]] = None) -> Path:
    """Parse, run, print where the report is; a UserInputError becomes ``error: ...`` and exit status 2."""
    threads = torch.get_num_threads()
    try:
        with exit_on_user_error(FloatingPointError):
            args = parse_args(name, description, argv, imdb)
            torch.set_num_threads(args.threads)
            report = run(args)
    finally:
        torch.set_num_threads(threads)  # a caller in the same process (a test) keeps its own setting
    print(f"wrote {report}")
    return report


# -- one training run -----------------------------------------------------------------------------------------
@dataclass
class RunResult:
    metrics: dict[str, float]  # the trainer's callback_metrics after fit (val/acc of the last epoch, ...)
    history: list[dict[str, float]]  # per validation epoch: epoch, step and every val/* value
    wall_s: float
    steps: int
    diverged: Optional[str] = None  # the error message when the loss became non-finite
    log_dir: str = ""


class _History(pl.Callback):
    def __init__(self):
        self.rows: list[dict[str, float]] = []

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        row |= {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.rows.append(row)


def fit(module: pl.LightningModule, datamodule: pl.LightningDataModule, *, seed: int, max_epochs: int,
        log_dir: Path, run_name: str, callbacks: Sequence[pl.Callback] = (), gradient_clip_val: float = 1.0,
        val_check_interval: float = 1.0, accelerator: str = "cpu") -> RunResult:
    """Train ``module`` on ``datamodule`` for ``max_epochs`` with Lightning and a TensorBoard logger; validate after
    every epoch (or every ``val_check_interval`` of it). The module must be built after ``pl.seed_everything(seed)`` by the caller (its initial weights
    depend on the global RNG); the seed is set again here so the training itself starts from the same state.
    A non-finite loss ends the run as ``diverged`` instead of ending the experiment."""
    pl.seed_everything(seed, workers=True, verbose=False)
    history = _History()
    logger = TensorBoardLogger(save_dir=str(log_dir), name=run_name)
    trainer = pl.Trainer(max_epochs=max_epochs, accelerator=accelerator, devices=1, deterministic=True,
                         gradient_clip_val=gradient_clip_val, logger=logger, callbacks=[history, *callbacks],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, log_every_n_steps=10, val_check_interval=val_check_interval)
    start = time.perf_counter()
    diverged = None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\).*")
        try:
            trainer.fit(module, datamodule=datamodule)
        except FloatingPointError as e:
            diverged = str(e).split(";")[0]
    wall = time.perf_counter() - start
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return RunResult(metrics, history.rows, wall, trainer.global_step, diverged, logger.log_dir)


# -- the machine ----------------------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    """What the numbers were measured on: CPU model, cores, threads used, load, library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": str(os.cpu_count()), "torch threads": str(torch.get_num_threads()),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none used",
            "python": platform.python_version(), "torch": torch.__version__, "lightning": pl.__version__,
            "os": platform.platform()}
    if hasattr(os, "getloadavg"):
        info["load average at start (1 min)"] = f"{os.getloadavg()[0]:.1f}"
    return info


# -- writing --------------------------------------------------------------------------------------------------
def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "n/a"
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e5):
            return f"{value:.{max(digits - 1, 1)}e}"
        return f"{value:.{digits}f}"
    return str(value)


def table(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A markdown table; floats get ``fmt``; a ``|`` inside a cell is escaped so it does not split the cell."""
    def cell(v) -> str:
        return (v if isinstance(v, str) else fmt(v)).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, columns)) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def settings_table(settings: dict, info: dict[str, str], wall_s: float) -> str:
    rows = [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in settings.items()]
    rows += [[f"machine: {k}", v] for k, v in info.items()]
    rows.append(["wall time of this command", f"{wall_s:.0f} s ({wall_s / 60:.1f} min)"])
    return table(["setting", "value"], rows)


def save_figure(figure, path: Path) -> Path:
    """Save a ``matplotlib.figure.Figure`` (built without pyplot, so no display or global backend) as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=110)
    return path


def new_figure(width: float = 6.4, height: float = 4.2):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def write_report(output: Path, title: str, body: Sequence[str], results: dict) -> Path:
    """``report.md`` (title + sections) and ``results.json`` (the measured numbers, NaN as null) in ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(_plain(results), indent=1, sort_keys=True) + "\n")
    path = output / "report.md"
    path.write_text(f"# {title}\n\n" + "\n\n".join(s.strip() for s in body) + "\n")
    return path


def _plain(value):
    """Numbers and containers as JSON-ready plain data (NaN -> None, numpy scalars -> Python)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std of the finite values (NaN if none)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    return (float(v.mean()), float(v.std())) if v.size else (float("nan"), float("nan"))

