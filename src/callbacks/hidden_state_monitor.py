"""Hidden states and gates: how many units sit at the flat ends of tanh/sigmoid, how much they still move, how
open the gates are.

``hidden_stats`` is the definition (reused by experiments); ``HiddenStateMonitor`` logs it for every hidden
sequence of a model (through the monitoring contract of src/models/recurrent_trace.py on our models, through forward
hooks on any other), with the gate statistics of src/callbacks/gate_statistics.py, from the training step's own
forward pass.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_utilities.core.apply_func import apply_to_collection
from torch import Tensor

from src.callbacks.charts import RasterChart, ScatterChart
from src.callbacks.diagnosis import write_diagnosis
from src.callbacks.gate_statistics import (
    GATES,
    LEFT,
    MEMORY_GATE,
    RIGHT,
    final_cell,
    first_sequences,
    gate_activations,
    gate_sums,
)
from src.callbacks.recurrent_hooks import HookTrace
from src.callbacks.tensorboard_output import (
    add_layout,
    flush_scalars,
    log_scalars,
    run_dir,
    tensorboard_writer,
    write_histogram,
    write_image,
)
from src.callbacks.trace_arming import TraceArmingCallback, check_every_n_steps, release_trace, step_trace
from src.models.recurrent_trace import RecurrentTrace, is_traceable
from src.utils.errors import UserInputError

STATS = ("saturation", "mean_abs", "std", "temporal_variance")


def hidden_stats(hidden: Tensor, mask: Tensor, threshold: float = 0.9) -> dict[str, float]:
    """Statistics of one hidden sequence over its valid positions (all units pooled), in float32.

    hidden: ``[B, T, H]``; mask: ``[B, T]`` bool, True at valid positions (padding, which may hold any finite
    value, is ignored).
    saturation: share of values with ``|h| > threshold`` (near +-1, where tanh's derivative is ~0 and the
        gradient through the unit vanishes). mean_abs: mean ``|h|``. std: population std of h.
    temporal_variance: mean over units and over consecutive valid pairs (t, t+1) of ``(h_{t+1} - h_t)^2``;
        near 0 means the state has stopped responding to its input. NaN when no sequence has two valid steps.
    """
    return stats_from_sums(hidden_sums(hidden, mask, threshold).tolist())


def hidden_sums(hidden: Tensor, mask: Tensor, threshold: float = 0.9) -> Tensor:
    """The sums ``hidden_stats`` divides: ``[6]`` float32 on the hidden state's device (no sync), so that a callback
    can keep them and copy the sums of many steps to the host at once. See ``stats_from_sums``.

    Masking is a multiplication by a 0/1 weight and the threshold test a clamp: on CPU, operations that make or
    read bool tensors (``h[mask]``, ``>``) cost 5-10x a float one on a training step's small tensors.
    """
    h = hidden.detach().float()
    weight = mask.to(h.device, torch.float32)[..., None]  # [B, T, 1]: 1 at valid positions
    pair = weight[:, 1:] * weight[:, :-1]  # [B, T-1, 1]: both ends valid
    units = h.shape[-1]
    count = weight.sum() * units
    valid = h * weight
    magnitude = valid.abs()
    saturated = (magnitude - threshold).clamp_(min=0.0).sign_()  # 1 where |h| > threshold, else 0
    centred = (h - valid.sum() / count) * weight  # two passes: no cancellation in the variance
    change = (h[:, 1:] - h[:, :-1]) * pair
    return torch.stack([count, saturated.sum(), magnitude.sum(), centred.square().sum(), pair.sum() * units,
                        change.square().sum()])


def stats_from_sums(sums: Sequence[float]) -> dict[str, float]:
    """``hidden_sums`` (as floats) -> ``{"saturation", "mean_abs", "std", "temporal_variance"}``."""
    n, n_saturated, abs_sum, squares, n_pairs, change_squares = sums
    if n == 0:
        return {name: float("nan") for name in STATS}
    return {"saturation": n_saturated / n, "mean_abs": abs_sum / n, "std": math.sqrt(squares / n),
            "temporal_variance": change_squares / n_pairs if n_pairs else float("nan")}


def cell_norm(cell: Tensor) -> float:
    """``[B, H]`` final LSTM cell states -> mean over the batch of their L2 norms. The cell state is not
    squashed, so a norm growing over training means the forget gates keep everything."""
    return mean_cell_norm(cell).item()


def mean_cell_norm(cell: Tensor) -> Tensor:
    """``cell_norm`` as a 0-d float32 tensor on the cell's device (no sync)."""
    return torch.linalg.vector_norm(cell.detach(), dim=-1, dtype=torch.float32).mean()


class HiddenStateMonitor(TraceArmingCallback):
    """Logs ``hidden/<layer>/{saturation,mean_abs,std,temporal_variance}`` (and ``hidden/<layer>/cell_norm`` for an
    LSTM layer) every ``every_n_steps`` optimizer steps, with the gate statistics of every LSTM and GRU layer:
    ``gates/<layer>/<gate>/left`` and ``/right`` (share of the gate's activations below 0.1 / above 0.9 over valid
    positions; LSTM gates input, forget, candidate, output; GRU gates reset, update) and the mean forget (update)
    gate ``gates/<layer>/forget/mean``. Per epoch: a histogram ``hidden/<layer>/values`` of the last logged step's
    valid hidden values, an image ``gates/saturation`` (each unit's left- against right-saturated share over the
    epoch's logged steps, one panel per gate, as in Karpathy et al. 2015), and an image ``hidden/example`` of one
    fixed validation sequence's hidden states (a panel per layer, unit x time step, blue -1 / white 0 / red +1);
    and ``hidden_state.npz`` in the run folder.

    Layers are named by what they are (``lstm_l0``, ``gru_l1_reverse``, ``encoder_gru_l0``). Works on any model:
    our own through the monitoring contract, any other through forward hooks on its ``nn.RNN/LSTM/GRU`` modules.

    Args:
        every_n_steps: log on optimizer steps 0, n, 2n, ... (see GradientFlowMonitor).
        threshold: ``|h|`` above which a unit counts as saturated (0.9, as in the reference notebooks).
        gates: log the gate statistics and their picture (LSTM and GRU layers).
        gates_every_n_steps: compute the gates on the logged steps that are also multiples of this (default 25: as
            often as the other statistics at their default, and no more often when ``every_n_steps`` is lowered).
            On the default run they cost ~0.2 ms a step, a tenth of a training step (docs/benchmarks.md).
        gate_sequences: the gates are computed on the first this many sequences of a logged batch (training batches
            are shuffled: a random sample). Their matrix product is as large as the layer's own input projection,
            about a third of its forward and backward work. The same sequences give an LSTM's ``cell_norm`` where
            the model does not return the cell state after each sequence's last token (a padded batch), on the same
            steps. None: every sequence.
        histograms: log the per-epoch histograms.
        images: log the per-epoch pictures: ``hidden/example`` at the end of each validation (the first sequence of
            the first validation batch: the same sequence every epoch, in eval mode) and ``gates/saturation``.
        max_histogram_values: random subsample of the values put in a histogram (bounds its work on long batches).
        save_arrays: write ``hidden_state.npz`` at the end of training (also when it stops on an exception).
    """

    def __init__(self, every_n_steps: int = 25, threshold: float = 0.9, gates: bool = True,
                 gates_every_n_steps: int = 25, gate_sequences: Optional[int] = 8, histograms: bool = True,
                 images: bool = True, max_histogram_values: int = 50_000, save_arrays: bool = True):
        super().__init__()
        if not threshold > 0:
            raise UserInputError(f"HiddenStateMonitor threshold={threshold} must be > 0 (e.g. 0.9)")
        if gate_sequences is not None and gate_sequences < 1:
            raise UserInputError(f"HiddenStateMonitor gate_sequences={gate_sequences} must be >= 1 (or null: all)")
        self.gate_sequences = gate_sequences
        self.gates_every_n_steps = check_every_n_steps(gates_every_n_steps)
        self.every_n_steps = check_every_n_steps(every_n_steps)
        self.threshold, self.gates, self.histograms, self.images = threshold, gates, histograms, images
        self.max_histogram_values, self.save_arrays = max_histogram_values, save_arrays
        self.records: list[dict] = []  # per logged step: step, epoch, {"<layer>/<stat>" or "gates/...": value}
        self._histogram_values: dict[str, tuple[Tensor, Tensor]] = {}  # layer -> (h [B,T,H], mask [B,T])
        # self._pending (see TraceArmingCallback): (step, epoch, {layer: [6] sums}, {layer: cell norm},
        # {layer: (cell, [4, G, H] gate sums)}) per held step
        self._epoch_gates: dict[str, tuple[str, np.ndarray]] = {}  # layer -> (cell, [4, G, H]) summed this epoch
        self._example = None  # contract models: the first sequence of the first validation batch, on the device
        self._example_hooks: Optional[HookTrace] = None  # other models: hooks on that batch's forward pass
        self._example_states: dict[str, np.ndarray] = {}
        self._example_chart = RasterChart((-1.0, 1.0), "time step", "unit", "hidden state h")
        self._gate_chart = gate_chart()

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        writer = tensorboard_writer(trainer) if trainer.is_global_zero else None
        if writer is None:
            return
        add_layout(writer, "hidden states", {
            f"saturation: share of hidden values beyond +-{self.threshold:g}": [r"hidden/.*/saturation"],
            "cell_norm: mean L2 norm of the LSTM cell state after the last step": [r"hidden/.*/cell_norm"],
            "temporal_variance: mean squared change of h per step (0 = the state ignores its input)":
                [r"hidden/.*/temporal_variance"],
            "mean_abs and std of h": [r"hidden/.*/mean_abs", r"hidden/.*/std"]})
        if self.gates:
            add_layout(writer, "gates", {
                f"forget (LSTM) / update (GRU) gate right-saturated (> {RIGHT:g}: the unit keeps its state)":
                    [r"gates/.*/(forget|update)/right"],
                f"forget / update gate left-saturated (< {LEFT:g}: the unit overwrites its state)":
                    [r"gates/.*/(forget|update)/left"],
                "mean forget / update gate": [r"gates/.*/(forget|update)/mean"],
                f"other gates right-saturated (> {RIGHT:g})": [r"gates/.*/(input|candidate|output|reset)/right"]})

    def on_after_backward(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not self.disarm(trainer):
            return
        trace: Optional[RecurrentTrace] = step_trace(pl_module)
        if trace is None:
            return
        # The sums now, on the device (the hidden states are freed after the step); divided with the other
        # pending steps' after one copy to the host.
        sums, cells, gates = {}, {}, {}
        gate_step = trainer.global_step % self.gates_every_n_steps == 0
        for name, h in trace.hidden.items():
            mask = trace.mask_of(name)
            sums[name] = hidden_sums(h, mask, self.threshold)
            if name in trace.cell:
                cells[name] = mean_cell_norm(trace.cell[name])
            layer = trace.layers.get(name)
            wanted = self.gates or (layer is not None and layer.cell == "lstm" and name not in cells)
            if layer is None or layer.cell not in GATES or not wanted or not gate_step:
                continue
            count = self.gate_sequences or h.size(0)
            layer, h, mask = first_sequences(layer, count), h[:count], mask[:count]
            acts = gate_activations(layer, h, mask)  # [b, T, G, H], computed once for the statistics and the cell
            if self.gates:
                gates[name] = (layer.cell, gate_sums(acts, mask))
            if layer.cell == "lstm" and name not in cells:  # a padded path that does not return it: from the gates
                cells[name] = mean_cell_norm(final_cell(layer, h, mask, acts))
        self._pending.add((trainer.global_step, trainer.current_epoch, sums, cells, gates))
        if self.histograms:
            # Kept by reference; masked and subsampled only at the epoch end, for the last logged step.
            self._histogram_values = {name: (h.detach(), trace.mask_of(name)) for name, h in trace.hidden.items()}

    def compute_pending(self, trainer: "pl.Trainer") -> None:
        """The held steps' sums, copied to the host at once -> statistics, records and scalars."""
        pending = self._pending.take()
        if not pending:
            return
        tensors = [t.reshape(-1) for _, _, sums, cells, gates in pending
                   for t in (*sums.values(), *cells.values(), *(g for _, g in gates.values()))]
        host = torch.cat(tensors).numpy(force=True) if tensors else np.zeros(0)
        offset = 0

        def take(shape) -> np.ndarray:
            nonlocal offset
            size = int(np.prod(shape))
            values = host[offset:offset + size].reshape(shape)
            offset += size
            return values

        for step, epoch, sums, cells, gates in pending:
            scalars = {}
            for name in sums:
                for stat, value in stats_from_sums(take(6).tolist()).items():
                    scalars[f"{name}/{stat}"] = value
            for name in cells:
                scalars[f"{name}/cell_norm"] = float(take(1)[0])
            gate_scalars = {}
            for name, (cell, device_sums) in gates.items():
                counts = take(device_sums.shape)  # [4, G, H]: left, right, activation sum, valid positions
                gate_scalars.update(gate_summary(name, cell, counts))
                previous = self._epoch_gates.get(name)
                self._epoch_gates[name] = (cell, counts.copy() if previous is None else previous[1] + counts)
            self.records.append({"step": step, "epoch": epoch, "values": {**scalars, **gate_scalars}})
            log_scalars(trainer, {**{f"hidden/{k}": v for k, v in scalars.items()}, **gate_scalars}, step)

    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._epoch_gates = {}

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not (self.images and batch_idx == 0 and dataloader_idx == 0 and trainer.is_global_zero):
            return
        if is_traceable(pl_module):
            if self._example is None:
                # Only its first sequence: the per-epoch forward pass then costs one sequence, not a batch.
                self._example = apply_to_collection(batch, Tensor, lambda t: t[:1] if t.dim() else t)
        elif not trainer.sanity_checking:
            # Any other model: hooks on this batch's own forward pass (no extra pass), sequence 0 kept.
            self._example_hooks = self._example_hooks or HookTrace(pl_module, watch_input=False)
            if self._example_hooks.modules:
                self._example_hooks.attach()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        hooks = self._example_hooks
        if hooks is None or not hooks.attached:
            return
        hooks.detach()
        trace = hooks.trace()
        self._example_states = first_sequence(trace) if trace is not None else {}
        hooks.clear()

    def on_validation_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        # Drawn here rather than at the training epoch's end: the module is already in eval mode, without grad.
        if not trainer.is_global_zero or trainer.sanity_checking or not self.images:
            return
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        hidden = self._example_states
        if is_traceable(pl_module) and self._example is not None:
            hidden = self.example_states(pl_module)
        if hidden:
            write_image(writer, "hidden/example", self._example_chart.draw(hidden), trainer.global_step)

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            write_diagnosis(trainer)

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero:
            return
        flush_scalars(trainer)
        writer = tensorboard_writer(trainer)
        if writer is not None:
            for name, (hidden, mask) in self._histogram_values.items():
                values = self._sample(hidden[mask.to(hidden.device).bool()])
                write_histogram(writer, f"hidden/{name}/values", values, trainer.global_step)
            if self.gates and self.images and self._epoch_gates:
                write_image(writer, "gates/saturation", gate_picture(self._epoch_gates, self._gate_chart),
                            trainer.global_step)
        self._histogram_values = {}

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero:
            return
        flush_scalars(trainer)
        if self.save_arrays and self.records:
            self.save(run_dir(trainer) / "hidden_state.npz")

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        release_trace(pl_module)
        if self._example_hooks is not None:
            self._example_hooks.detach()
        self.on_train_end(trainer, pl_module)

    def diagnosis_figures(self, since: Optional[int]) -> dict:
        """The last logged step's saturation share per layer, and the latest mean forget (update) gate per layer,
        for src/callbacks/diagnosis.py."""
        if not self.records:
            return {}
        values = self.records[-1]["values"]
        memory = {}
        for record in self.records[::-1]:  # the gates' cadence may skip the last logged step
            memory = {k.split("/")[1]: (k.split("/")[2], v) for k, v in record["values"].items()
                      if k.startswith("gates/") and k.endswith("/mean")}
            if memory:
                break
        return {"saturation": {k[:-len("/saturation")]: v for k, v in values.items() if k.endswith("/saturation")
                               and math.isfinite(v)}, "threshold": self.threshold, "memory_gates": memory}

    def example_states(self, pl_module: "pl.LightningModule") -> dict[str, np.ndarray]:
        """layer -> ``[H, L]`` hidden states of the fixed validation sequence (its L valid steps), eval mode."""
        was_training = pl_module.training
        if was_training:
            pl_module.eval()
        try:
            with torch.no_grad():
                trace: RecurrentTrace = pl_module.trace(self._example)
        finally:
            if was_training:
                pl_module.train()
        return first_sequence(trace)

    def save(self, path) -> None:
        """``steps``, ``epochs`` and one array per ``<layer>/<stat>`` and ``gates/<layer>/<gate>/<left|right|mean>``
        ("/" written as "__"; NaN where a step lacks it)."""
        keys = sorted({k for r in self.records for k in r["values"]})
        columns = {k.replace("/", "__"): np.array([r["values"].get(k, np.nan) for r in self.records], dtype=np.float32)
                   for k in keys}
        np.savez_compressed(path, steps=np.array([r["step"] for r in self.records]),
                            epochs=np.array([r["epoch"] for r in self.records]), threshold=np.array(self.threshold),
                            **columns)

    def _sample(self, values: Tensor) -> Tensor:
        flat = values.float().flatten()
        if flat.numel() > self.max_histogram_values:
            # A fixed generator: the same positions every time, so histograms of different epochs compare.
            # Drawn with replacement: randperm over all values cost ~5 ms per epoch on a long batch.
            generator = torch.Generator().manual_seed(0)
            picks = torch.randint(flat.numel(), (self.max_histogram_values,), generator=generator)
            flat = flat[picks.to(flat.device)]
        return flat


def gate_summary(name: str, cell: str, counts: np.ndarray) -> dict[str, float]:
    """``[4, G, H]`` gate counts of one layer (left, right, activation sum, valid positions) -> the scalars
    ``gates/<layer>/<gate>/left|right`` (shares over units and valid positions) and ``gates/<layer>/<memory
    gate>/mean``."""
    valid = float(counts[3, 0].sum())  # valid positions x units (the same for every gate)
    if valid == 0:
        return {}
    scalars = {}
    for index, gate in enumerate(GATES[cell]):
        scalars[f"gates/{name}/{gate}/left"] = float(counts[0, index].sum()) / valid
        scalars[f"gates/{name}/{gate}/right"] = float(counts[1, index].sum()) / valid
    memory = GATES[cell].index(MEMORY_GATE[cell])
    scalars[f"gates/{name}/{MEMORY_GATE[cell]}/mean"] = float(counts[2, memory].sum()) / valid
    return scalars


def gate_picture(epoch_gates: dict[str, tuple[str, np.ndarray]], chart: Optional[ScatterChart] = None):
    """layer -> (cell, ``[4, G, H]`` counts summed over the epoch's logged steps) -> Karpathy et al.'s picture:
    per gate, each unit's share of left-saturated (< 0.1) against right-saturated (> 0.9) activations, a colour
    per layer."""
    cells = {cell for cell, _ in epoch_gates.values()}
    panels: dict[str, list] = {gate: [] for cell in ("lstm", "gru") if cell in cells for gate in GATES[cell]}
    for cell, counts in epoch_gates.values():
        valid = np.maximum(counts[3], 1.0)
        for index, gate in enumerate(GATES[cell]):
            panels[gate].append((counts[0, index] / valid[index], counts[1, index] / valid[index]))
    return (chart or gate_chart()).draw(panels, list(epoch_gates))


def gate_chart() -> ScatterChart:
    """Per unit: the share of its activations below 0.1 (the gate shut) across, above 0.9 (wide open) up."""
    return ScatterChart(f"share < {LEFT:g} (shut)", f"share > {RIGHT:g} (open)")


def first_sequence(trace: RecurrentTrace) -> dict[str, np.ndarray]:
    """layer -> ``[H, L]`` hidden states of the trace's first sequence over its L valid steps."""
    states = {}
    for name, h in trace.hidden.items():
        valid = trace.mask_of(name)[0].bool().to(h.device)
        states[name] = h[0][valid].float().T.cpu().numpy()
    return states


def hidden_raster(hidden: dict[str, np.ndarray]):
    """layer -> ``[H, L]`` states -> one panel per layer (unit x time step), blue -1 / white 0 / red +1 on a fixed
    scale (values beyond +-1, e.g. of a ReLU RNN, take the end colours), with a colour bar."""
    return RasterChart((-1.0, 1.0), "time step", "unit", "hidden state h").draw(hidden)
