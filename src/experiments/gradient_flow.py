"""Gradient flow (reference notebook 002, experiment B): how much of the loss gradient reaches each word of a
200-token review, for a vanilla RNN and an LSTM, early in training and after it.

The curves are the ``GradientFlowMonitor`` callback's (src/callbacks/gradient_flow_monitor.py): on every
``every_n_steps``-th training step it reads ||dLoss/dx_t|| of the embeddings from the step's own backward pass,
averaged over the batch, with reviews right-aligned on their last token. "Early" is the mean over the logged
steps up to ``early_steps``; "after training" the mean over the last epoch's logged steps.

    python -m src.experiments.gradient_flow [--quick] [--output DIR] [--data PATH]
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from src.callbacks.gradient_flow_monitor import GradientFlowMonitor, early_late_ratio, gradient_horizon, stack_curves
from src.experiments.report import machine, new_figure, save_figure, settings_table, table, write_report
from src.experiments.runner import main
from src.experiments.seq_length import ImdbSettings, imdb_run, size_note

NAME = "gradient_flow"


@dataclass
class FlowSettings:
    imdb: ImdbSettings
    cells: list[str] = field(default_factory=lambda: ["rnn", "lstm"])
    max_len: int = 200
    every_n_steps: int = 5
    # Logged steps 0..early_steps make the "early in training" curve (the first ~9% of the full run's 500 steps).
    # Ten logged batches, so that a few of them (length-bucketed) hold reviews that reach max_len tokens back.
    early_steps: int = 45
    positions: tuple[int, ...] = (10, 100, 190)  # t in the max_len window that ends at the last token
    horizon_threshold: float = 1e-3


FULL = FlowSettings(imdb=ImdbSettings())
QUICK = FlowSettings(imdb=ImdbSettings(limit=300, max_epochs=2, batch_size=32, embedding_dim=16, hidden_size=16),
                     max_len=40, every_n_steps=2, early_steps=2, positions=(2, 20, 38))


def mean_curve(records: list[dict], width: int) -> np.ndarray:
    """Mean over records of the end-aligned norm curves, as ``[width]`` with index ``width - 1`` = last token
    (NaN where no logged review reaches that far back)."""
    if not records:
        return np.full(width, np.nan)
    with np.errstate(all="ignore"):
        mean = np.nanmean(stack_curves([r["norms_end"] for r in records], right_aligned=True), axis=0)
    full = np.full(width, np.nan)
    full[width - min(width, len(mean)):] = mean[-width:]
    return full


def run(args) -> Path:
    s = QUICK if args.quick else FULL
    start = time.perf_counter()
    info = machine()
    args.output.mkdir(parents=True, exist_ok=True)
    rows, curves, accuracy = [], {}, {}
    for cell in s.cells:
        monitor = GradientFlowMonitor(every_n_steps=s.every_n_steps, alignment="end",
                                      horizon_threshold=s.horizon_threshold)
        result, _, _ = imdb_run(args, s.imdb, cell, s.max_len, f"{cell}_len{s.max_len}", callbacks=[monitor])
        accuracy[cell] = result.history[-1].get("val/acc", float("nan")) if result.history else float("nan")
        last_epoch = max(r["epoch"] for r in monitor.records)
        phases = {"early": [r for r in monitor.records if r["step"] <= s.early_steps],
                  "after training": [r for r in monitor.records if r["epoch"] == last_epoch]}
        for phase, records in phases.items():
            curve = mean_curve(records, s.max_len)
            curves[f"{cell}|{phase}"] = curve
            at = {t: float(curve[t - 1]) for t in s.positions}
            first, last = s.positions[0], s.positions[-1]
            rows.append({"cell": cell, "phase": phase, "logged steps": [int(r["step"]) for r in records],
                         **{f"norm at t={t}": v for t, v in at.items()},
                         f"t={first} / t={last}": at[first] / at[last] if at[last] > 0 else float("nan"),
                         "early/late ratio": early_late_ratio(curve),
                         "horizon": gradient_horizon(curve, s.horizon_threshold)})
        save_figure(plot_heatmap(monitor.steps(), monitor.matrix("end"), "end"), args.output / f"heatmap_{cell}.png")
        print(f"{cell}: val acc {accuracy[cell]:.3f}; early/late ratio "
              f"{rows[-2]['early/late ratio']:.3g} -> {rows[-1]['early/late ratio']:.3g} ({result.wall_s:.0f} s)",
              flush=True)
    wall = time.perf_counter() - start
    save_figure(plot_curves(curves, s), args.output / "gradient_per_timestep.png")
    body = [intro(s, args), results_section(rows, accuracy, s), observations(rows, s),
            settings_section(s, args, info, wall)]
    results = {"rows": rows, "val_acc": accuracy, "curves": {k: v for k, v in curves.items()}}
    return write_report(args.output, "Gradient flow through time: vanilla RNN vs. LSTM on IMDB", body, results)


def intro(s: FlowSettings, args) -> str:
    first = s.positions[0]
    return (size_note(s.imdb, args.quick) + "\n\n"
            + f"A 1-layer vanilla RNN and an LSTM classify IMDB reviews cut to their first {s.max_len} tokens, "
              "predicting from the state after the last token. The `GradientFlowMonitor` callback logs, every "
              f"{s.every_n_steps} training steps, the mean over the batch of ||dLoss/dx_t|| (x_t: the embedding of "
              "word t) from that step's own backward pass. Reviews are right-aligned on their last token, so "
              f"**t = {s.max_len} is the last token** and t = {first} is {s.max_len - first} tokens before it (for a "
              f"review of {s.max_len}+ tokens, its {first}th token, as in notebook 002). **Early**: mean over the "
              f"logged steps 0-{s.early_steps}; **after training**: mean over the last epoch's logged steps. "
              "**early/late ratio**: the callback's `early_late_ratio` (norm at 10% over norm at 90% of the window); "
              f"**horizon**: steps back from the last token while the norm stays >= {s.horizon_threshold:g} x its "
              "maximum. Plots: `gradient_per_timestep.png` (log axis), `heatmap_<cell>.png` (every logged step; "
              "the callback's own heatmap).")


def results_section(rows: list[dict], accuracy: dict[str, float], s: FlowSettings) -> str:
    first, last = s.positions[0], s.positions[-1]
    columns = ["cell", "phase", *[f"norm at t={t}" for t in s.positions], f"t={first} / t={last}",
               "early/late ratio", "horizon (steps)", "val acc after training"]
    table_rows = [[r["cell"], r["phase"], *[underflow(r[f"norm at t={t}"]) for t in s.positions],
                   underflow(r[f"t={first} / t={last}"]), underflow(r["early/late ratio"]), r["horizon"],
                   accuracy[r["cell"]]] for r in rows]
    return ("## Measured gradient norms per time step\n\n" + table(columns, table_rows)
            + "\n\n`0 (underflow)`: the gradient is below float32's smallest number (~1e-45) and rounds to exactly 0; "
              "`n/a`: no logged review reaches that far back in that phase.")


def underflow(value: float):
    """Exact zeros are float32 underflow, not a measured 0: say so in the table."""
    return "0 (underflow)" if value == 0 else value


def observations(rows: list[dict], s: FlowSettings) -> str:
    after = {r["cell"]: r["early/late ratio"] for r in rows if r["phase"] == "after training"}
    lines = ["## What the numbers show", ""]
    for cell, ratio in after.items():
        lines.append(f"- **{cell}** after training: early/late ratio {ratio:.3g}, i.e. the word at 10% of the "
                     f"window gets {ratio:.3g} x the gradient of the word at 90%.")
    lines += ["", "Notebook 002's bar: a ratio below 0.01 is severe vanishing (expected for the vanilla RNN), above "
              "0.1 is good gradient flow (expected for the LSTM)."]
    if "rnn" in after and "lstm" in after:
        rnn, lstm = after["rnn"], after["lstm"]
        verdict_rnn = "below 0.01: agrees" if rnn < 0.01 else "not below 0.01: differs"
        verdict_lstm = "above 0.1: agrees" if lstm > 0.1 else "not above 0.1: differs"
        lines.append(f"- Measured: vanilla RNN {rnn:.3g} ({verdict_rnn}); LSTM {lstm:.3g} ({verdict_lstm}); "
                     f"the LSTM's ratio is {lstm / rnn:.3g} x the RNN's." if rnn > 0 else
                     f"- Measured: vanilla RNN {rnn:.3g}; LSTM {lstm:.3g}.")
    return "\n".join(lines)


def settings_section(s: FlowSettings, args, info: dict[str, str], wall: float) -> str:
    settings = asdict(s.imdb) | {k: v for k, v in asdict(s).items() if k != "imdb"}
    settings |= {"data": str(args.data), "seeds": f"{s.imdb.seed} (data split, vocabulary, weights, batch order)",
                 "model": "embedding -> 1-layer RNN/LSTM -> last valid state -> linear"}
    return "## Settings, seeds, machine\n\n" + settings_table(settings, info, wall)


def plot_curves(curves: dict[str, np.ndarray], s: FlowSettings):
    figure = new_figure(7.0, 4.2)
    ax = figure.add_subplot()
    t = np.arange(1, s.max_len + 1)
    for i, cell in enumerate(s.cells):
        for phase, style in (("early", "--"), ("after training", "-")):
            curve = curves.get(f"{cell}|{phase}")
            if curve is not None:
                ax.plot(t, np.where(curve > 0, curve, np.nan), style, color=f"C{i}", label=f"{cell}, {phase}")
    for position in s.positions:
        ax.axvline(position, color="gray", alpha=0.3, linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel(f"t (word position in the {s.max_len}-token window; t = {s.max_len} is the last token)")
    ax.set_ylabel("mean ||dLoss/dx_t||")
    ax.set_title("Gradient reaching each word (GradientFlowMonitor)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_heatmap(steps: np.ndarray, matrix: np.ndarray, alignment: str = "end"):
    """log10 norm over (training step x time step), the report's version of the callback's gradflow/heatmap."""
    figure = new_figure(5.5, 3.6)
    ax = figure.add_subplot()
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.log10(matrix)
    width = matrix.shape[1]
    x = np.arange(-(width - 1), 1) if alignment == "end" else np.arange(width)
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", origin="lower", interpolation="nearest",
                      extent=(x[0] - 0.5, x[-1] + 0.5, -0.5, len(steps) - 0.5), cmap="viridis")
    ticks = np.linspace(0, len(steps) - 1, min(len(steps), 6)).round().astype(int)
    ax.set_yticks(ticks, [str(s) for s in steps[ticks]])
    ax.set_xlabel("time step relative to the last valid token" if alignment == "end" else "time step from the start")
    ax.set_ylabel("training step")
    figure.colorbar(image, ax=ax, label="log10 ||dLoss/dx_t||")
    figure.tight_layout()
    return figure


def cli(argv: Optional[Sequence[str]] = None) -> Path:
    return main(run, NAME, "Per-timestep gradient norms of a vanilla RNN and an LSTM on IMDB at length 200.",
                imdb=True, argv=argv)


if __name__ == "__main__":
    cli()
