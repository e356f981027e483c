"""Sequence length (reference notebook 002, experiment A): IMDB accuracy of a vanilla RNN, an LSTM and a GRU when
every review is cut to its first 50, 100, 200 or 400 tokens.

The classifier reads the review and decides from its state after the last token (``pooling="last"``, as in
the notebook), so whatever it learned early in a long review has to survive to the end. Runs on a stratified
subset of the IMDB train split with a validation split carved from it (sizes in the report).

    python -m src.experiments.seq_length [--quick] [--output DIR] [--data PATH]
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch

from data_modules.imdb import IMDBDataModule
from src.experiments.report import machine, new_figure, save_figure, settings_table, table, write_report
from src.experiments.runner import RunResult, fit, main
from src.lightning_modules.text_classifier import TextClassifier

NAME = "seq_length"


@dataclass
class ImdbSettings:
    """What the three IMDB experiments share: data subset, model size, optimisation."""

    limit: int = 10000  # reviews kept from the train half of the file (stratified), before the val split
    test_fraction: float = 0.5  # the single file is halved; only its first half is used (train + val)
    val_fraction: float = 0.2
    max_vocab_size: int = 20000
    min_freq: int = 2
    batch_size: int = 64
    embedding_dim: int = 64
    hidden_size: int = 64
    lr: float = 0.002
    gradient_clip_val: float = 5.0
    max_epochs: int = 4
    seed: int = 42


@dataclass
class LengthSettings:
    imdb: ImdbSettings
    cells: list[str] = field(default_factory=lambda: ["rnn", "lstm", "gru"])
    lengths: list[int] = field(default_factory=lambda: [50, 100, 200, 400])


FULL = LengthSettings(imdb=ImdbSettings())
QUICK = LengthSettings(imdb=ImdbSettings(limit=300, max_epochs=1, batch_size=32, embedding_dim=16, hidden_size=16),
                       cells=["rnn", "lstm"], lengths=[20, 40])


def imdb_data(source: str, s: ImdbSettings, max_len: int, cache_dir: str) -> IMDBDataModule:
    """The IMDB DataModule of these experiments: each review keeps its first ``max_len`` tokens."""
    data = IMDBDataModule(source=source, limit=s.limit, test_fraction=s.test_fraction, batch_size=s.batch_size,
                          max_len=max_len, max_vocab_size=s.max_vocab_size, min_freq=s.min_freq,
                          val_fraction=s.val_fraction, seed=s.seed, cache_dir=cache_dir)
    data.load()
    return data


def imdb_model(s: ImdbSettings, cell: str, data: IMDBDataModule) -> TextClassifier:
    return TextClassifier(vocab_size=data.vocab_size, pad_index=data.pad_index, cell=cell,
                          embedding_dim=s.embedding_dim, hidden_size=s.hidden_size, pooling="last",
                          optimizer=partial(torch.optim.Adam, lr=s.lr))


def imdb_run(args, s: ImdbSettings, cell: str, max_len: int, run_name: str,
             callbacks: Sequence[pl.Callback] = ()) -> tuple[RunResult, TextClassifier, IMDBDataModule]:
    data = imdb_data(args.data, s, max_len, args.cache_dir)
    pl.seed_everything(s.seed, verbose=False)
    model = imdb_model(s, cell, data)
    result = fit(model, data, seed=s.seed, max_epochs=s.max_epochs, log_dir=args.log_dir, run_name=run_name,
                 callbacks=callbacks, gradient_clip_val=s.gradient_clip_val, accelerator=args.accelerator)
    return result, model, data


def data_summary(data: IMDBDataModule, max_len: int) -> dict[str, float]:
    lengths = {split: data.datasets[split].lengths for split in ("train", "val")}
    return {"train reviews": len(lengths["train"]), "val reviews": len(lengths["val"]),
            "vocabulary": len(data.vocabulary),
            "mean tokens (train)": float(lengths["train"].mean()),
            "share cut at max_len (train)": float((lengths["train"] >= max_len).mean())}


def run(args) -> Path:
    s = QUICK if args.quick else FULL
    start = time.perf_counter()
    info = machine()
    rows = []
    for max_len in s.lengths:
        for cell in s.cells:
            result, _, data = imdb_run(args, s.imdb, cell, max_len, f"{cell}_len{max_len}")
            accs = [h.get("val/acc", float("nan")) for h in result.history]
            best = int(np.nanargmax(accs)) if accs and not np.all(np.isnan(accs)) else None
            rows.append({"cell": cell, "max_len": max_len, "val_acc": accs[-1] if accs else float("nan"),
                         "best_val_acc": accs[best] if best is not None else float("nan"),
                         "best_epoch": best, "val_acc_per_epoch": accs, "wall_s": result.wall_s,
                         "steps": result.steps, "diverged": result.diverged, **data_summary(data, max_len)})
            print(f"{cell:>4} max_len={max_len:<4} val acc {rows[-1]['val_acc']:.3f} ({result.wall_s:.0f} s)",
                  flush=True)
    wall = time.perf_counter() - start
    args.output.mkdir(parents=True, exist_ok=True)
    save_figure(plot_accuracy(rows, s), args.output / "accuracy_vs_length.png")
    body = [intro(s, args), results_section(rows), observations(rows, s), settings_section(s, args, info, wall)]
    return write_report(args.output, "Sequence length: IMDB accuracy vs. review length", body, {"rows": rows})


def size_note(s: ImdbSettings, quick: bool) -> str:
    if quick:
        return "**Quick variant (`--quick`): a pipeline check on a few hundred reviews; the numbers mean nothing.**"
    return (f"**Reduced size (CPU-only session, 2 shared cores):** a stratified subset of {s.limit:,} reviews of the "
            f"IMDB train split (the file is halved first; {1 - s.val_fraction:.0%} of the subset trains, "
            f"{s.val_fraction:.0%} validates), {s.max_epochs} epochs, {s.hidden_size} hidden units, one seed. "
            "Notebook 002 uses 30,000 reviews and 10 epochs; the full-size run needs only larger settings in this "
            "file (`ImdbSettings`).")


def intro(s: LengthSettings, args) -> str:
    return (size_note(s.imdb, args.quick) + "\n\n"
            + f"Every review is **truncated to its first** {', '.join(map(str, s.lengths))} tokens (shorter reviews "
              "stay whole; the tokens after the cut are dropped, never the start). Each (cell, length) trains a fresh "
              "1-layer classifier that predicts from the hidden state after the review's last token (no pooling "
              "over time), so the signal from early words has to survive to the end. Validation accuracy is read "
              f"after every epoch; the table gives the last epoch's and the best. Data: `{Path(args.data).name}`. "
              "Plot: `accuracy_vs_length.png`.")


def results_section(rows: list[dict]) -> str:
    table_rows = [[r["cell"], r["max_len"], r["val_acc"], r["best_val_acc"],
                   r["best_epoch"] + 1 if r["best_epoch"] is not None else "-", r["mean tokens (train)"],
                   r["share cut at max_len (train)"], r["wall_s"], r["diverged"] or "-"] for r in rows]
    return ("## Measured validation accuracy\n\n"
            + table(["cell", "max tokens", "val acc (last epoch)", "best val acc", "best epoch",
                     "mean tokens/review", "share of reviews cut", "train time (s)", "diverged"], table_rows))


def observations(rows: list[dict], s: LengthSettings) -> str:
    lines = ["## What the numbers show", ""]
    short, long = min(s.lengths), max(s.lengths)
    for cell in s.cells:
        a = next(r for r in rows if r["cell"] == cell and r["max_len"] == short)["val_acc"]
        b = next(r for r in rows if r["cell"] == cell and r["max_len"] == long)["val_acc"]
        trend = "falls" if b < a - 0.02 else "rises" if b > a + 0.02 else "stays within 2 points"
        lines.append(f"- **{cell}**: {a:.1%} at {short} tokens, {b:.1%} at {long}: accuracy {trend} as reviews get "
                     "longer.")
    lines += ["", "Literature (notebook 002, Bengio et al. 1994): the vanilla RNN's accuracy falls as reviews get "
              "longer, while the LSTM and GRU hold or improve, because the gated cells carry information across "
              "hundreds of steps and the vanilla RNN's gradient vanishes over a few dozen. Longer reviews also hold "
              "more evidence, so a model that can use it should gain from the longer cut."]
    return "\n".join(lines)


def settings_section(s: LengthSettings, args, info: dict[str, str], wall: float) -> str:
    settings = asdict(s.imdb) | {"cells": s.cells, "max tokens": s.lengths, "data": str(args.data),
                                 "model": "embedding -> 1-layer RNN/LSTM/GRU -> last valid state -> linear",
                                 "optimizer": "Adam, constant learning rate; gradient norm clipped",
                                 "seeds": f"{s.imdb.seed} (data split, vocabulary, weights, batch order)"}
    return "## Settings, seeds, machine\n\n" + settings_table(settings, info, wall)


def plot_accuracy(rows: list[dict], s: LengthSettings):
    figure = new_figure()
    ax = figure.add_subplot()
    for i, cell in enumerate(s.cells):
        mine = [r for r in rows if r["cell"] == cell]
        ax.plot([r["max_len"] for r in mine], [r["val_acc"] for r in mine], marker="o", label=f"{cell} (last epoch)",
                color=f"C{i}")
        ax.plot([r["max_len"] for r in mine], [r["best_val_acc"] for r in mine], linestyle=":", color=f"C{i}",
                label=f"{cell} (best epoch)")
    ax.axhline(0.5, color="gray", linestyle="--", label="chance")
    ax.set_xscale("log")
    ax.set_xticks(s.lengths, [str(v) for v in s.lengths])
    ax.set_xlabel("review truncated to its first N tokens")
    ax.set_ylabel("validation accuracy")
    ax.set_title("IMDB: accuracy vs. review length (prediction from the last state)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def cli(argv: Optional[Sequence[str]] = None) -> Path:
    return main(run, NAME, "IMDB validation accuracy of RNN, LSTM and GRU at review lengths 50-400.", imdb=True,
                argv=argv)


if __name__ == "__main__":
    cli()
