"""What the five experiments share to run: the command line (``parse_args``, ``main``) and one Lightning training
run (``fit``). See the package docstring for the experiments themselves."""

from __future__ import annotations

import argparse
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from src.utils.errors import UserInputError, exit_on_user_error

ROOT = Path(__file__).resolve().parents[2]
IMDB_HINT = ("pass --data with an aclImdb folder, a folder of train/test parquet files or one CSV/parquet of "
             "text,label rows (or set $RNN_LAB_IMDB)")


# -- command line ---------------------------------------------------------------------------------------------
def parse_args(name: str, description: str, argv: Optional[Sequence[str]] = None,
               imdb: bool = False) -> argparse.Namespace:
    """The options every experiment takes. A full run writes the committed report, ``reports/<name>/``; a
    ``--quick`` run (a pipeline check whose numbers mean nothing) writes to ``lightning_logs/experiments/<name>-quick/``
    unless ``--output`` says otherwise, so it never overwrites the committed report."""
    parser = argparse.ArgumentParser(prog=f"python -m src.experiments.{name}", description=description)
    parser.add_argument("--quick", action="store_true", help="tiny CPU variant (seconds): checks the pipeline, "
                        "its numbers mean nothing")
    parser.add_argument("--output", default=None,
                        help=f"folder for report.md, results.json and the PNGs (default: reports/{name}/, or "
                             f"lightning_logs/experiments/{name}-quick/ with --quick)")
    parser.add_argument("--log-dir", default=None,
                        help=f"TensorBoard runs go here (default: lightning_logs/experiments/{name}/, or "
                             "<output>/tensorboard with --quick)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: exact reproducibility, and no oversubscription on a "
                             "shared machine)")
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator (cpu, gpu, auto)")
    if imdb:
        parser.add_argument("--data", default=os.environ.get("RNN_LAB_IMDB", "hf"),
                            help="IMDB reviews: 'hf' (the Hugging Face Hub, cached by datasets after the first "
                                 "download), an aclImdb folder, a folder of train/test parquet files, or one "
                                 "CSV/parquet of text,label rows (default: $RNN_LAB_IMDB, else hf)")
        parser.add_argument("--cache-dir", default=str(ROOT / ".cache" / "rnn_lab"), help="encoded-data cache")
    args = parser.parse_args(argv)
    if args.threads < 1:
        raise UserInputError(f"--threads {args.threads} must be >= 1")
    scratch = ROOT / "lightning_logs" / "experiments" / f"{name}-quick"
    output = Path(args.output) if args.output else (scratch if args.quick else ROOT / "reports" / name)
    if output.exists() and not output.is_dir():
        raise UserInputError(f"--output {output} is a file; pass a folder (it is created if missing)")
    if imdb and args.data != "hf" and not Path(args.data).expanduser().exists():
        raise UserInputError(f"IMDB data not found: {args.data}; {IMDB_HINT}")
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
    every epoch (or every ``val_check_interval`` of it). The module must be built after ``pl.seed_everything(seed)``
    by the caller (its initial weights depend on the global RNG); the seed is set again here so the training itself
    starts from the same state.
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
