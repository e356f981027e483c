"""Gate statistics: one matrix product per layer gives what a step-by-step nn.LSTMCell / nn.GRUCell gives."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from data_modules.batching import TextBatch
from src.callbacks import HiddenStateMonitor
from src.callbacks.gate_statistics import GATES, final_cell, gate_activations, gate_sums
from src.lightning_modules.text_classifier import TextClassifier
from src.models.recurrent_stack import RecurrentStack
from src.models.recurrent_trace import mask_from_lengths

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, accelerator="cpu",
             devices=1, logger=False)


def cell_of(layer: nn.RNNBase, kind: str) -> nn.Module:
    """An nn.LSTMCell / nn.GRUCell holding a one-layer module's weights."""
    cell = (nn.LSTMCell if kind == "lstm" else nn.GRUCell)(layer.input_size, layer.hidden_size)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(layer, f"{name}_l0"))
    return cell


def reference_gates(cell: nn.Module, kind: str, x: torch.Tensor, length: int, reverse: bool,
                    previous: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence ``x [T, D]`` stepped by ``cell`` over its ``length`` valid steps (backwards if ``reverse``) ->
    ``[T, G, H]`` gate activations in [0, 1] (NaN at padding) and the final cell state (LSTM). ``previous``
    ``[T, H]``: feed these states as h_{t-1} instead of the cell's own (to check a trace computed in another
    precision), else the cell runs its own recurrence."""
    size = cell.hidden_size
    h, c = torch.zeros(1, size), torch.zeros(1, size)
    gates = torch.full((x.size(0), len(GATES[kind]), size), float("nan"))
    order = range(length - 1, -1, -1) if reverse else range(length)
    for step, t in enumerate(order):
        if previous is not None and step > 0:
            h = previous[t + 1 if reverse else t - 1][None]
        pre_x = x[t][None] @ cell.weight_ih.T + cell.bias_ih
        pre_h = h @ cell.weight_hh.T + cell.bias_hh
        if kind == "lstm":
            i, f, g, o = (pre_x + pre_h).chunk(4, dim=-1)
            gates[t] = torch.cat([i.sigmoid(), f.sigmoid(), g.tanh() * 0.5 + 0.5, o.sigmoid()])
            h, c = cell(x[t][None], (h, c))
        else:
            r, z = (pre_x[:, :2 * size] + pre_h[:, :2 * size]).chunk(2, dim=-1)
            gates[t] = torch.cat([r.sigmoid(), z.sigmoid()])
            h = cell(x[t][None], h)
    return gates, c[0]


def counts(gates: torch.Tensor) -> np.ndarray:
    """``[..., G, H]`` activations (NaN: not a valid position) -> ``[2, G, H]`` counts below 0.1 and above 0.9."""
    valid = ~torch.isnan(gates)
    return np.stack([((gates < 0.1) & valid).sum(0).numpy(), ((gates > 0.9) & valid).sum(0).numpy()])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gate_activations_and_counts_equal_a_cell_loop_bidirectional_two_layers(kind):
    torch.manual_seed(0)
    stack = RecurrentStack(5, 6, num_layers=2, cell=kind, bidirectional=True)
    with torch.no_grad():  # wide weights: many activations land beyond 0.1 / 0.9
        for p in stack.parameters():
            p.mul_(3.0)
    lengths = torch.tensor([9, 4, 1, 7])
    mask = mask_from_lengths(lengths, 9)
    out = stack(torch.randn(4, 9, 5), lengths)
    assert set(out.layers) == {f"{kind}_l0", f"{kind}_l0_reverse", f"{kind}_l1", f"{kind}_l1_reverse"}
    for name, layer in out.layers.items():
        module = (stack.reverse_layers if layer.reverse else stack.layers)[int(name.split("_l")[1][0])]
        cell = cell_of(module, kind)
        acts = gate_activations(layer, out.hidden[name], mask)  # [B, T, G, H]
        sums = gate_sums(acts, mask)  # [4, G, H]
        reference = []
        for b, length in enumerate(lengths.tolist()):
            gates, c_last = reference_gates(cell, kind, layer.inputs[b].detach(), length, layer.reverse)
            torch.testing.assert_close(acts[b, :length], gates[:length], atol=2e-6, rtol=0)
            if kind == "lstm":  # the cell state in closed form from the gates, after the sequence's last step
                torch.testing.assert_close(final_cell(layer, out.hidden[name], mask)[b], c_last, atol=2e-6, rtol=0)
            reference.append(gates)
        expected = counts(torch.cat(reference))
        assert 0 < expected.sum() < expected[0].size * lengths.sum() * 2  # some saturated, not all
        np.testing.assert_array_equal(sums[:2].numpy(), expected)
        assert sums[3].unique().tolist() == [float(lengths.sum())]  # valid positions, per gate and unit
        assert (sums[2] <= sums[3]).all() and (sums[2] >= 0).all()  # activation sums of values in [0, 1]


def test_final_cell_from_the_gates_equals_the_packed_lstm_state_with_an_initial_state():
    torch.manual_seed(1)
    packed = RecurrentStack(3, 4, num_layers=2, cell="lstm", bidirectional=True, pack=True)
    lengths = torch.tensor([6, 2, 5])
    h0, c0 = torch.randn(4, 3, 4), torch.randn(4, 3, 4)
    out = packed(torch.randn(3, 6, 3), lengths, state=(h0, c0))
    mask = mask_from_lengths(lengths, 6)
    for name, exact in out.cells(packed.state_names()).items():
        torch.testing.assert_close(final_cell(out.layers[name], out.hidden[name], mask), exact, atol=2e-6, rtol=0)


class OneBatch(pl.LightningDataModule):
    def __init__(self, batch: TextBatch):
        super().__init__()
        self.batch = batch

    def train_dataloader(self):
        return DataLoader([self.batch], batch_size=None)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_callbacks_gate_shares_equal_the_cell_loop_on_the_training_step(cell):
    """HiddenStateMonitor's logged shares of a training step of a bidirectional 2-layer classifier (padded batch)
    against the step-by-step reference on the same weights."""
    torch.manual_seed(0)
    lengths = torch.tensor([6, 3, 9, 1, 5])
    batch = TextBatch(torch.randint(2, 30, (5, 9)) * mask_from_lengths(lengths, 9), lengths, torch.ones(5))
    model = TextClassifier(vocab_size=30, cell=cell, embedding_dim=6, hidden_size=8, num_layers=2, bidirectional=True,
                           optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    before = copy.deepcopy(model.net).eval()  # dropout is 0: train and eval forward passes are the same
    monitor = HiddenStateMonitor(every_n_steps=1, histograms=False, images=False, save_arrays=False)
    pl.Trainer(max_steps=1, callbacks=[monitor], limit_val_batches=0, **QUIET).fit(model, datamodule=OneBatch(batch))
    values = monitor.records[0]["values"]
    trace = before(batch.tokens, batch.lengths).trace
    for name, layer in trace.layers.items():
        module = (before.rnn.reverse_layers if layer.reverse else before.rnn.layers)[int(name.split("_l")[1][0])]
        step_by_step = cell_of(module, cell)
        reference = torch.cat([reference_gates(step_by_step, cell, layer.inputs[b].detach(), n, layer.reverse)[0]
                               for b, n in enumerate(lengths.tolist())])
        left, right = counts(reference) / float(lengths.sum())
        for g, gate in enumerate(GATES[cell]):
            assert values[f"gates/{name}/{gate}/left"] == pytest.approx(left[g].mean(), abs=1e-6)
            assert values[f"gates/{name}/{gate}/right"] == pytest.approx(right[g].mean(), abs=1e-6)
        memory = "forget" if cell == "lstm" else "update"
        valid = ~torch.isnan(reference[:, GATES[cell].index(memory)])
        mean = reference[:, GATES[cell].index(memory)][valid].mean().item()
        assert values[f"gates/{name}/{memory}/mean"] == pytest.approx(mean, abs=1e-5)


def test_gate_statistics_are_float32_from_a_bf16_mixed_forward_pass():
    """Under bf16 autocast the hidden states are bfloat16; the gates are computed from them in float32, exactly as
    a float32 cell fed the same (bf16-rounded) previous states computes them."""
    torch.manual_seed(0)
    model = TextClassifier(vocab_size=30, cell="lstm", embedding_dim=6, hidden_size=8).net
    lengths = torch.tensor([7, 4])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trace = model(torch.randint(2, 30, (2, 7)) * mask_from_lengths(lengths, 7), lengths).trace
    hidden, layer = trace.hidden["lstm_l0"], trace.layers["lstm_l0"]
    assert hidden.dtype == torch.bfloat16
    acts = gate_activations(layer, hidden, trace.mask)
    assert acts.dtype == torch.float32 and gate_sums(acts, trace.mask).dtype == torch.float32
    cell = cell_of(model.rnn.layers[0], "lstm")
    for b, n in enumerate(lengths.tolist()):
        reference, _ = reference_gates(cell, "lstm", layer.inputs[b].detach().float(), n, False,
                                       previous=hidden[b].detach().float())
        torch.testing.assert_close(acts[b, :n], reference[:n], atol=2e-6, rtol=0)


def test_gates_follow_their_own_cadence_however_often_the_rest_is_logged():
    torch.manual_seed(0)
    lengths = torch.tensor([4, 2])
    batch = TextBatch(torch.randint(2, 30, (2, 4)) * mask_from_lengths(lengths, 4), lengths, torch.ones(2))
    model = TextClassifier(vocab_size=30, cell="lstm", embedding_dim=4, hidden_size=3)
    monitor = HiddenStateMonitor(every_n_steps=1, gates_every_n_steps=2, histograms=False, images=False,
                                 save_arrays=False)
    data = OneBatch(batch)
    data.train_dataloader = lambda: DataLoader([batch] * 3, batch_size=None)
    pl.Trainer(max_steps=3, callbacks=[monitor], limit_val_batches=0, **QUIET).fit(model, datamodule=data)
    has_gates = [any(k.startswith("gates/") for k in r["values"]) for r in monitor.records]
    has_cell = ["lstm_l0/cell_norm" in r["values"] for r in monitor.records]  # padded: from the gates, same steps
    assert has_gates == has_cell == [True, False, True]
