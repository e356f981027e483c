"""Initialization (reference notebook 001, section 8, whose comparison is a simulation): the vanilla RNN's
recurrent weights drawn four ways, trained on the memory task at lengths 20 and 50.

Schemes (``src.models.last_step_classifier.init_recurrent_weights``): PyTorch's default U(-1/sqrt(H), 1/sqrt(H)),
orthogonal, identity with ReLU (IRNN, Le et al. 2015) and a Gaussian N(0, 1/H). Each run carries the
``GradientFlowMonitor`` callback; its gradient horizon (steps back from the last token over which
||dLoss/dx_t|| stays above 1e-3 of its maximum) is read at the first training step and at the last logged one.

    python -m src.experiments.initialization [--quick] [--output DIR]
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from src.callbacks.gradient_flow_monitor import GradientFlowMonitor, summarize
from src.experiments.memory import CHANCE, Settings, Variant, final_accuracy, memory_run, slug
from src.experiments.report import (
    QUICK_NOTE,
    machine,
    mean_std,
    new_figure,
    save_figure,
    settings_table,
    table,
    write_report,
)
from src.experiments.runner import main

NAME = "initialization"
HORIZON_THRESHOLD = 1e-3


@dataclass
class InitSettings:
    task: Settings
    lengths: tuple[int, ...] = (20, 50)
    flow_every_n_steps: int = 50  # GradientFlowMonitor cadence: 20 curves over the 1,000 steps
    schemes: list[Variant] = field(default_factory=lambda: [
        Variant("default U(+-1/sqrt(H)), tanh", "rnn", ()),
        Variant("orthogonal, tanh", "rnn", (), recurrent_init="orthogonal"),
        Variant("identity (IRNN), ReLU", "rnn", (), nonlinearity="relu", recurrent_init="identity"),
        Variant("Gaussian N(0, 1/H), tanh", "rnn", (), recurrent_init="gaussian"),
    ])


FULL = InitSettings(task=Settings(variants=[], seeds=[0, 1, 2]))
QUICK = InitSettings(task=Settings(variants=[], seeds=[0], n_train=640, n_val=200, validations=2), lengths=(5, 10),
                     flow_every_n_steps=5)


def run(args) -> Path:
    s = QUICK if args.quick else FULL
    start = time.perf_counter()
    info = machine()
    rows, curves = [], {}
    for scheme in s.schemes:
        for length in s.lengths:
            accs, first, last, diverged, steps = [], [], [], [], 0
            for seed in s.task.seeds:
                monitor = GradientFlowMonitor(every_n_steps=s.flow_every_n_steps, horizon_threshold=HORIZON_THRESHOLD)
                name = slug(scheme.recurrent_init + "_" + scheme.nonlinearity)
                result = memory_run(replace(scheme, lengths=(length,)), length, seed, s.task, args.log_dir,
                                    args.accelerator, callbacks=[monitor], run_name=f"{name}_T{length}_seed{seed}")
                accs.append(final_accuracy(result))
                steps = result.steps
                if result.diverged:
                    diverged.append(f"seed {seed}: {result.diverged}")
                records = monitor.records
                first.append(summarize(records[0]["norms_end"], HORIZON_THRESHOLD) if records else {})
                last.append(summarize(records[-1]["norms_end"], HORIZON_THRESHOLD) if records else {})
                if seed == s.task.seeds[0] and records:
                    curves[f"{scheme.label}|{length}"] = {"first_step": records[0]["norms_end"].tolist(),
                                                          "last_step": records[-1]["norms_end"].tolist(),
                                                          "last_logged_step": int(records[-1]["step"])}
            mean, std = mean_std(accs)
            row = {"scheme": scheme.label, "init": scheme.recurrent_init, "nonlinearity": scheme.nonlinearity,
                   "length": length, "accuracy": accs, "mean": mean, "std": std, "steps": steps, "diverged": diverged}
            for when, summaries in (("start", first), ("end", last)):
                row[f"horizon_{when}"] = [d.get("horizon", float("nan")) for d in summaries]
                row[f"first_over_last_{when}"] = [d["first"] / d["last"] if d and d["last"] > 0 else float("nan")
                                                  for d in summaries]
            rows.append(row)
            print(f"{scheme.label:>32} T={length:<3} acc {mean:.3f} +- {std:.3f} horizon "
                  f"{mean_std(row['horizon_start'])[0]:.1f} -> {mean_std(row['horizon_end'])[0]:.1f}", flush=True)
    wall = time.perf_counter() - start
    args.output.mkdir(parents=True, exist_ok=True)
    save_figure(plot_accuracy(rows, s), args.output / "accuracy_by_init.png")
    save_figure(plot_gradients(curves, s), args.output / "gradient_per_timestep.png")
    body = [intro(s, args.quick), results_section(rows, s), observations(rows, s), settings_section(s, info, wall)]
    return write_report(args.output, "Initialization of the vanilla RNN's recurrent weights", body,
                        {"rows": rows, "curves_seed0": curves})


def geometric_mean(values: Sequence[float]) -> float:
    """Ratios spanning orders of magnitude average on a log scale."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x) and x > 0], dtype=np.float64)
    return float(np.exp(np.log(v).mean())) if v.size else float("nan")


def intro(s: InitSettings, quick: bool) -> str:
    t = s.task
    text = (f"A vanilla RNN ({t.hidden_size} units) on the memory task of `reports/memory/` (name the first of "
            f"`length` symbols after the last; chance {CHANCE:.0%}) at lengths {', '.join(map(str, s.lengths))}, "
            f"with its recurrent matrix W_hh initialised four ways; input weights keep PyTorch's default. Same budget "
            f"as the memory experiment: one pass over {t.n_train:,} fresh sequences ({t.n_train // t.batch_size:,} "
            f"Adam steps, lr {t.lr}, gradient norm clipped at {t.gradient_clip_val}), {len(t.seeds)} seed(s). The "
            f"`GradientFlowMonitor` callback (src/callbacks/gradient_flow_monitor.py) records ||dLoss/dx_t|| per time "
            f"step every {s.flow_every_n_steps} steps; the **gradient horizon** is how many steps back from the last "
            f"token the norm stays >= {HORIZON_THRESHOLD:g} x its maximum (the full length: the first token still gets "
            "a gradient); **first/last** is the norm at the first token over the norm at the last (geometric mean "
            "over seeds). Plots: `accuracy_by_init.png`, `gradient_per_timestep.png` (seed 0, first and last "
            "logged step).")
    if quick:
        text = QUICK_NOTE + text
    return text


def results_section(rows: list[dict], s: InitSettings) -> str:
    table_rows = []
    for r in rows:
        table_rows.append([r["scheme"], r["length"], r["mean"], r["std"], *r["accuracy"],
                           mean_std(r["horizon_start"])[0], mean_std(r["horizon_end"])[0],
                           geometric_mean(r["first_over_last_start"]), geometric_mean(r["first_over_last_end"]),
                           "; ".join(r["diverged"]) or "-"])
    seed_cols = [f"acc seed {seed}" for seed in s.task.seeds]
    return ("## Measured accuracy and gradient horizon\n\n"
            + table(["W_hh init", "length", "mean acc", "std", *seed_cols, "horizon at step 0", "horizon at end",
                     "first/last at step 0", "first/last at end", "diverged"], table_rows))


def observations(rows: list[dict], s: InitSettings) -> str:
    lines = ["## What the numbers show", ""]
    longest = max(s.lengths)
    ranked = sorted((r for r in rows if r["length"] == longest), key=lambda r: -np.nan_to_num(r["mean"], nan=-1))
    if ranked:
        lines.append(f"- At length {longest}, by mean accuracy: "
                     + "; ".join(f"{r['scheme']} {r['mean']:.1%}" for r in ranked) + ".")
    for r in rows:
        if r["length"] != longest:
            continue
        h0, h1 = mean_std(r["horizon_start"])[0], mean_std(r["horizon_end"])[0]
        full = "the whole sequence" if h0 >= r["length"] else f"{h0:.1f} of {r['length']} steps"
        lines.append(f"- {r['scheme']}: at step 0 the gradient reaches back {full}; after training the horizon "
                     f"is {h1:.1f}.")
    lines += ["", "Expectation (notebook 001 section 8, Le et al. 2015, Saxe et al. 2014): recurrent matrices whose "
              "singular values sit near 1 (orthogonal, identity) keep the gradient from the last step alive back to "
              "the first token, so they should learn longer delays than the default uniform init, whose spectral "
              "radius ~0.58 shrinks the gradient geometrically. Compare the horizon columns with the accuracy."]
    return "\n".join(lines)


def settings_section(s: InitSettings, info: dict[str, str], wall: float) -> str:
    settings = {k: v for k, v in asdict(s.task).items() if k != "variants"}
    settings["lengths"] = list(s.lengths)
    settings["schemes"] = [f"{v.label}: recurrent_init={v.recurrent_init}, nonlinearity={v.nonlinearity}, "
                           f"init_scale={v.init_scale}" for v in s.schemes]
    settings["GradientFlowMonitor"] = (f"every_n_steps={s.flow_every_n_steps}, alignment=end, "
                                       f"horizon_threshold={HORIZON_THRESHOLD:g}")
    return "## Settings, seeds, machine\n\n" + settings_table(settings, info, wall)


def plot_accuracy(rows: list[dict], s: InitSettings):
    schemes = list(dict.fromkeys(r["scheme"] for r in rows))
    figure = new_figure(7.0, 4.2)
    ax = figure.add_subplot()
    width = 0.8 / len(s.lengths)
    for j, length in enumerate(s.lengths):
        mine = [next(r for r in rows if r["scheme"] == name and r["length"] == length) for name in schemes]
        x = np.arange(len(schemes)) + (j - (len(s.lengths) - 1) / 2) * width
        ax.bar(x, [np.nan_to_num(r["mean"]) for r in mine], width, yerr=[np.nan_to_num(r["std"]) for r in mine],
               capsize=3, label=f"length {length}", color=f"C{j}", alpha=0.8)
        for xi, r in zip(x, mine):
            ax.scatter([xi] * len(r["accuracy"]), np.nan_to_num(r["accuracy"]), s=10, color="black", zorder=3)
    ax.axhline(CHANCE, color="gray", linestyle="--", label="chance")
    ax.set_xticks(np.arange(len(schemes)), ["\n".join(name.rsplit(", ", 1)) for name in schemes], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("validation accuracy (bars: mean +- std; dots: seeds)")
    ax.set_title("Vanilla RNN on the memory task, by W_hh initialisation", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def plot_gradients(curves: dict, s: InitSettings):
    length = max(s.lengths)
    figure = new_figure(9.0, 3.8)
    axes = figure.subplots(1, 2, sharey=True)
    for ax, key, title in ((axes[0], "first_step", "at the first training step"),
                           (axes[1], "last_step", "at the last logged step")):
        for i, scheme in enumerate(s.schemes):
            curve = curves.get(f"{scheme.label}|{length}", {}).get(key)
            if curve:
                c = np.asarray(curve, dtype=float)
                ax.plot(np.arange(-(len(c) - 1), 1), np.where(c > 0, c, np.nan), label=scheme.label, color=f"C{i}")
        ax.set_yscale("log")
        ax.set_title(f"length {length}, seed {s.task.seeds[0]}, {title}", fontsize=9)
        ax.set_xlabel("time step relative to the last token")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("mean ||dLoss/dx_t|| (GradientFlowMonitor)")
    axes[1].legend(fontsize=7)
    figure.tight_layout()
    return figure


def cli(argv: Optional[Sequence[str]] = None) -> Path:
    return main(run, NAME, "Vanilla RNN recurrent-weight initialisations on the memory task: accuracy and gradient "
                "horizon.", argv=argv)


if __name__ == "__main__":
    cli()
