"""Training-dynamics callbacks: the definitions against direct computations, the callbacks inside real fits."""

from __future__ import annotations

import copy
import glob
import math
import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from data_modules.batching import TextBatch
from src.callbacks import GradientFlowMonitor, GradientNormMonitor, HiddenStateMonitor
from src.callbacks.gradient_flow_monitor import (
    early_late_ratio,
    gradient_horizon,
    horizon_censored,
    log10_scalars,
    summarize,
    timestep_grad_norms,
)
from src.callbacks.gradient_norm_monitor import layer_grad_norms
from src.callbacks.hidden_state_monitor import cell_norm, hidden_stats
from src.lightning_modules.text_classifier import TextClassifier
from src.models.recurrent_stack import RecurrentStack
from src.models.recurrent_trace import mask_from_lengths
from tests.common import reference_curves, run_dir

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, accelerator="cpu",
             devices=1)


def event_accumulator(root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = glob.glob(f"{root}/**/events.out.tfevents.*", recursive=True)
    assert len(files) == 1, files
    ea = EventAccumulator(files[0], size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0})
    ea.Reload()
    return ea


# -- per-timestep gradient norms --------------------------------------------------------------------------------
def test_timestep_norms_ignore_padding_whatever_its_gradient():
    torch.manual_seed(0)
    lengths = [5, 2, 7, 3]
    grad = torch.randn(4, 7, 3) * 10  # garbage at padded positions too: it must not count
    mask = mask_from_lengths(torch.tensor(lengths), 7)
    start, end = reference_curves(grad, lengths)
    curves = timestep_grad_norms(grad, mask)
    np.testing.assert_allclose(curves["start"], start, rtol=1e-5)
    np.testing.assert_allclose(curves["end"], end, rtol=1e-5)
    # Left padding: the same sequences at the end of their rows give the same curves.
    left = torch.stack([torch.roll(g, 7 - n, dims=0) for g, n in zip(grad, lengths)])
    left_mask = torch.stack([torch.roll(m, 7 - n) for m, n in zip(mask, lengths)])
    np.testing.assert_allclose(timestep_grad_norms(left, left_mask)["end"], end, rtol=1e-5)
    # A batch padded beyond its longest sequence: NaN where no sequence reaches.
    wide = torch.cat([grad, torch.randn(4, 3, 3)], dim=1)
    curve = timestep_grad_norms(wide, mask_from_lengths(torch.tensor(lengths), 10))["start"]
    assert np.isnan(curve[7:]).all() and np.isfinite(curve[:7]).all()


class OneBatch(pl.LightningDataModule):
    """The same padded batch every step (train and val)."""

    def __init__(self, batch: TextBatch, steps: int = 1):
        super().__init__()
        self.batch, self.steps = batch, steps

    def train_dataloader(self):
        return DataLoader([self.batch] * self.steps, batch_size=None)

    def val_dataloader(self):
        return DataLoader([self.batch], batch_size=None)


def padded_batch() -> TextBatch:
    lengths = torch.tensor([6, 3, 9, 1, 5])
    tokens = torch.randint(2, 30, (5, 9)) * mask_from_lengths(lengths, 9)  # pad_index 0 after each sequence
    return TextBatch(tokens, lengths, torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0]))


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_norms_from_the_training_backward_equal_autograd_on_the_input(cell, tmp_path):
    torch.manual_seed(0)
    batch = padded_batch()
    model = TextClassifier(vocab_size=30, cell=cell, embedding_dim=6, hidden_size=8, pooling="mean",
                           optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    before = copy.deepcopy(model.net)
    monitor = GradientFlowMonitor(every_n_steps=1, images=False, save_arrays=False)
    trainer = pl.Trainer(max_steps=1, logger=False, callbacks=[monitor], limit_val_batches=0,
                         default_root_dir=tmp_path, **QUIET)
    trainer.fit(model, datamodule=OneBatch(batch))
    # Directly: the same weights, the embedded input as a leaf, autograd.grad of the same loss.
    x = before.embedding(batch.tokens).detach().requires_grad_(True)  # [B, T, E]
    mask = mask_from_lengths(batch.lengths, 9)
    rec = before.rnn(x, batch.lengths)
    logits = before.head(before.pool(rec, batch.lengths, mask)).squeeze(-1)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, batch.labels)
    (grad,) = torch.autograd.grad(loss, x)
    assert grad[~mask].abs().max() == 0  # padded positions get no gradient from this model either
    start, end = reference_curves(grad, batch.lengths.tolist())
    record = monitor.records[0]
    np.testing.assert_allclose(record["norms_start"], start, rtol=1e-4)
    np.testing.assert_allclose(record["norms_end"], end, rtol=1e-4)
    # The module's trace is released after the step.
    assert model.trace_requested is False and model.last_trace is None


def test_curve_summaries_follow_their_definitions():
    curve = 2.0 ** np.arange(-20, 1)  # 21 points, halving at each step back from the end
    assert early_late_ratio(curve) == pytest.approx(2.0 ** (2 - 18))  # index 2 over index 18
    assert gradient_horizon(curve, 1e-3) == 10  # 2^-9 >= 1e-3 > 2^-10: the last 10 positions stay above
    assert summarize(curve)["horizon_fraction"] == pytest.approx(10 / 21)
    assert gradient_horizon(curve[::-1], 1e-3) == 21  # growing backwards: reaches the first step
    dip = np.array([1e-9, 1.0, 1e-9, 1e-9, 0.5])
    assert gradient_horizon(dip, 1e-3) == 4  # counts back to the earliest large norm, across the dip
    assert gradient_horizon(np.zeros(5)) == 0
    with_nan_edges = np.concatenate([[np.nan, np.nan], curve])
    assert summarize(with_nan_edges) == summarize(curve)
    assert summarize(curve)["first"] == curve[0] and summarize(curve)["last"] == 1.0
    scalars = log10_scalars(summarize(curve))
    assert scalars["first_log10"] == pytest.approx(-20 * np.log10(2)) and scalars["last_log10"] == 0.0
    assert scalars["early_late_log10"] == pytest.approx(-16 * np.log10(2)) and scalars["horizon"] == 10
    underflowed = log10_scalars(summarize(np.array([0.0, 1e-30, 1.0])))  # float32 ran out of range: a floor
    assert underflowed["first_log10"] == underflowed["early_late_log10"] == -45.0


@pytest.mark.parametrize("floor, censored", [(1e-3, True), (0.99e-3, False), (0.5, True), (1e-12, False)])
def test_horizon_is_censored_exactly_when_the_norm_never_falls_below_the_threshold(floor, censored):
    """A curve decaying from 1 at the last step to ``floor`` at the first: censored iff floor >= 1e-3 x the peak,
    and then the horizon is the whole length (fraction 1.0)."""
    curve = np.geomspace(floor, 1.0, 30)
    never_below = bool(np.all(curve >= 1e-3 * curve.max()))
    assert never_below == censored == horizon_censored(curve, 1e-3)
    figures = summarize(curve, 1e-3)
    assert (figures["horizon_fraction"] == 1.0) == censored and (figures["horizon"] == 30) == censored
    flat = np.ones(30)  # nothing decays: censored
    assert horizon_censored(flat) and summarize(flat)["horizon_fraction"] == 1.0


@pytest.mark.parametrize("spectral_norm, falls", [(0.5, True), (1.5, False)])
def test_vanilla_rnn_gradient_vanishes_below_spectral_norm_one_and_grows_above(spectral_norm, falls):
    torch.manual_seed(0)
    steps, size = 50, 32
    rnn = RecurrentStack(size, size, cell="rnn", nonlinearity="tanh")
    layer = rnn.layers[0]
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(size, size))
        layer.weight_hh_l0.copy_(q * spectral_norm)  # every singular value = spectral_norm
        layer.bias_hh_l0.zero_()
        layer.bias_ih_l0.zero_()
    assert torch.linalg.matrix_norm(layer.weight_hh_l0, 2).item() == pytest.approx(spectral_norm, rel=1e-5)
    x = (0.1 * torch.randn(8, steps, size)).requires_grad_(True)
    out = rnn(x)
    loss = out.hidden["rnn_l0"][:, -1].sum()  # read at the last step only; no clipping anywhere
    loss.backward()
    curve = timestep_grad_norms(x.grad, torch.ones(8, steps, dtype=torch.bool))["start"]
    ratio = early_late_ratio(curve)
    if falls:
        assert ratio < 0.01
        assert np.all(np.diff(curve[-20:]) > 0)  # monotone towards the end
        assert gradient_horizon(curve) < steps
    else:
        assert ratio > 1.0  # larger at 10% of the sequence than at 90%: growth going back in time
        assert curve[0] > curve[-1]


# -- hidden-state statistics ------------------------------------------------------------------------------------
def test_hidden_stats_equal_a_direct_count():
    h = torch.tensor([[[0.95, -0.2], [-0.99, 0.5], [0.1, 0.91]],      # length 3
                      [[0.3, -0.92], [7.0, 7.0], [7.0, 7.0]]])         # length 1; padding holds junk
    mask = mask_from_lengths(torch.tensor([3, 1]), 3)
    stats = hidden_stats(h, mask, threshold=0.9)
    valid = [0.95, -0.2, -0.99, 0.5, 0.1, 0.91, 0.3, -0.92]
    assert stats["saturation"] == pytest.approx(4 / 8)  # 0.95, -0.99, 0.91, -0.92
    assert stats["mean_abs"] == pytest.approx(np.mean(np.abs(valid)))
    assert stats["std"] == pytest.approx(np.std(valid))
    # Consecutive valid pairs only: (0->1) and (1->2) of sequence 0; sequence 1 has none.
    changes = [(-0.99 - 0.95) ** 2, (0.5 + 0.2) ** 2, (0.1 + 0.99) ** 2, (0.91 - 0.5) ** 2]
    assert stats["temporal_variance"] == pytest.approx(np.mean(changes))
    assert cell_norm(torch.tensor([[3.0, 4.0], [0.0, 1.0]])) == pytest.approx(3.0)
    assert math.isnan(hidden_stats(h[1:], mask[1:])["temporal_variance"])


def test_histogram_events_hold_numpys_counts(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from src.callbacks.tensorboard_output import write_histogram

    values = torch.tensor([0.5, -1.0, 2.0, 0.25, 0.25, float("nan"), 1.75, -0.5])
    with SummaryWriter(str(tmp_path)) as writer:
        write_histogram(writer, "h", values, step=3, bins=4)
        write_histogram(writer, "single", torch.full((5,), 0.3), step=3, bins=4)
    event = event_accumulator(tmp_path).Histograms("h")[0]
    finite = values[torch.isfinite(values)].numpy().astype(np.float64)
    counts, edges = np.histogram(finite, bins=4)
    assert event.step == 3 and event.histogram_value.bucket == counts.tolist()
    np.testing.assert_allclose(event.histogram_value.bucket_limit, edges[1:])
    assert (event.histogram_value.min, event.histogram_value.max, event.histogram_value.num) == (-1.0, 2.0, 7)
    assert event.histogram_value.sum_squares == pytest.approx(np.sum(finite ** 2))
    single = event_accumulator(tmp_path).Histograms("single")[0].histogram_value
    assert single.bucket == np.histogram(np.full(5, 0.3), bins=4)[0].tolist()


# -- parameter gradient norms -----------------------------------------------------------------------------------
def test_layer_grad_norms_combine_tensors_as_if_concatenated():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
    net(torch.randn(5, 4)).sum().backward()
    norms = layer_grad_norms(net)
    first = torch.cat([net[0].weight.grad.flatten(), net[0].bias.grad])
    everything = torch.cat([p.grad.flatten() for p in net.parameters()])
    assert set(norms) == {"0", "2", "total"}
    assert norms["0"] == pytest.approx(first.norm().item(), rel=1e-6)
    assert norms["total"] == pytest.approx(everything.norm().item(), rel=1e-6)
    assert set(layer_grad_norms(net, per_tensor=True)) == {"0.weight", "0.bias", "2.weight", "2.bias", "total"}
    assert layer_grad_norms(net, float("inf"))["total"] == pytest.approx(everything.abs().max().item())


@pytest.mark.parametrize("norm_type", [1.0, 2.0, float("inf")])
def test_layer_grad_norms_per_tensor_equal_lightnings_grad_norm(norm_type):
    from pytorch_lightning.utilities import grad_norm

    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(10, 4), nn.LSTM(4, 3, batch_first=True))
    net[1](net[0](torch.randint(0, 10, (2, 5))))[0].sum().backward()
    lightning = grad_norm(net, norm_type)
    ours = layer_grad_norms(list(net.named_parameters()), norm_type, per_tensor=True)
    prefix = f"grad_{norm_type}_norm/"
    assert {k[len(prefix):] for k in lightning if k.startswith(prefix)} | {"total"} == set(ours)
    for name, value in lightning.items():
        key = name[len(prefix):] if name.startswith(prefix) else "total"
        assert ours[key] == pytest.approx(float(value), rel=1e-5)


# -- the callbacks inside training ------------------------------------------------------------------------------
class PlainRegression(pl.LightningModule):
    """A module without the monitoring contract and without a recurrent module."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_callbacks_stay_silent_on_a_module_without_a_recurrent_layer(tmp_path):
    flow, hidden = GradientFlowMonitor(every_n_steps=1), HiddenStateMonitor(every_n_steps=1)
    norms = GradientNormMonitor(every_n_steps=1)
    trainer = pl.Trainer(max_steps=4, default_root_dir=tmp_path, callbacks=[flow, hidden, norms], log_every_n_steps=1,
                         **QUIET)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(PlainRegression(), DataLoader(torch.randn(16, 3), batch_size=4))
    messages = [str(w.message) for w in caught]
    assert trainer.global_step == 4  # training went on
    unsupported = [m for m in messages if "holds no nn.RNN" in m]
    assert len(unsupported) == 2 and any("GradientFlowMonitor" in m for m in unsupported)  # once per callback
    assert flow.records == [] and hidden.records == []
    assert len(norms.records) == 4 and set(norms.records[0]["norms"]) == {"layer", "total"}  # needs no recurrence
    assert not glob.glob(f"{tmp_path}/**/gradient_flow.npz", recursive=True)
    assert glob.glob(f"{tmp_path}/**/gradient_norms.npz", recursive=True)


@pytest.mark.slow
def test_train_py_with_dynamics_yaml_writes_tensorboard_panels(tmp_path):
    from tensorboard.plugins.custom_scalar import layout_pb2

    from train import cli_main

    cli_main(["fit", "--config", "configs/reviews.yaml", "--config", "configs/dynamics.yaml",
              "--data.n_samples", "200", "--data.batch_size", "8", "--data.cache_dir", str(tmp_path / "cache"),
              "--trainer.max_epochs", "2",
              "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)])
    ea = event_accumulator(tmp_path)
    tags = ea.Tags()
    for tag in ["gradflow/first_log10", "gradflow/middle_log10", "gradflow/last_log10", "gradflow/early_late_log10",
                "gradflow/horizon", "gradflow/horizon_fraction", "hidden/lstm_l0/saturation", "hidden/lstm_l0/mean_abs",
                "hidden/lstm_l0/std", "hidden/lstm_l0/temporal_variance", "hidden/lstm_l0/cell_norm",
                "gradnorm/total_log10", "gradnorm/lstm_l0_log10", "gradnorm/embedding_log10", "gradnorm/head_log10",
                "gates/lstm_l0/forget/right", "gates/lstm_l0/candidate/left", "gates/lstm_l0/forget/mean"]:
        assert tag in tags["scalars"], tag
    assert not any(t in tags["scalars"] for t in ("gradflow/first", "gradnorm/total", "hp_metric", "epoch"))
    # 162 training reviews in batches of 8: 21 steps per epoch, logged at steps 0 and 25 of 42 by default
    assert [e.step for e in ea.Scalars("gradflow/first_log10")] == [0, 25]
    assert all(math.isfinite(e.value) and 0 <= e.value <= 1 for e in ea.Scalars("hidden/lstm_l0/saturation"))
    assert {"gradflow/per_timestep", "gradflow/heatmap", "hidden/example", "gates/saturation"} <= set(tags["images"])
    assert len(ea.Images("hidden/example")) == 2 and len(ea.Images("gates/saturation")) == 2  # one per epoch
    assert [e.step for e in ea.Images("gradflow/per_timestep")] == [21, 42]  # at each epoch's end
    assert ea.Images("gradflow/heatmap")[0].width >= 500 and ea.Images("hidden/example")[0].width >= 600
    assert "hidden/lstm_l0/values" in tags["histograms"]
    histogram = ea.Histograms("hidden/lstm_l0/values")[-1].histogram_value
    assert -1 <= histogram.min < histogram.max <= 1 and sum(histogram.bucket) == histogram.num > 0
    diagnoses = [b"".join(e.tensor_proto.string_val).decode() for e in ea.Tensors("dynamics/diagnosis/text_summary")]
    assert len(diagnoses) == 2 and all(d.startswith(("healthy", "decaying")) for d in diagnoses)  # one per validation
    layout = layout_pb2.Layout.FromString(ea.Tensors("custom_scalars__config__")[-1].tensor_proto.string_val[0])
    assert [c.title for c in layout.category] == ["gradient through time", "parameter gradient norms",
                                                  "hidden states", "gates"]  # the question's answer first
    run = run_dir(tmp_path)
    assert run.parent.name == "text_classifier-lstm"  # the run names what it trained
    flow = np.load(f"{run}/gradient_flow.npz")
    assert flow["steps"].tolist() == [0, 25] and flow["norms_end"].shape[0] == 2
    assert np.isfinite(flow["norms_end"][:, -1]).all()  # last column = every sequence's last token
    # The log10 tags are the log10 of the raw arrays the run keeps.
    first_valid = [row[np.isfinite(row)][0] for row in flow["norms_end"]]
    np.testing.assert_allclose([e.value for e in ea.Scalars("gradflow/first_log10")], np.log10(first_valid),
                               rtol=1e-5)
    np.testing.assert_allclose([e.value for e in ea.Scalars("gradflow/last_log10")],
                               np.log10(flow["norms_end"][:, -1]), rtol=1e-5)
    norms = np.load(f"{run}/gradient_norms.npz")
    np.testing.assert_allclose([e.value for e in ea.Scalars("gradnorm/total_log10")], np.log10(norms["total"]),
                               rtol=1e-5)
    np.testing.assert_allclose([e.value for e in ea.Scalars("gradnorm/lstm_l0_log10")], np.log10(norms["lstm_l0"]),
                               rtol=1e-5)
    hidden = np.load(f"{run}/hidden_state.npz")
    assert hidden["lstm_l0__saturation"].shape == (2,) and hidden["gates__lstm_l0__forget__right"].shape == (2,)


@pytest.mark.slow
def test_dynamics_yaml_on_the_autoencoder_shows_encoder_and_decoder(tmp_path):
    """The same callbacks on another module of the contract: a PoemBatch, two named hidden sequences."""
    from train import cli_main

    cli_main(["fit", "--config", "configs/poetry_autoencoder.yaml", "--config", "configs/dynamics.yaml",
              "--data.max_poems", "32", "--data.max_len", "8", "--data.cache_dir", str(tmp_path / "cache"),
              "--model.hidden_size", "8", "--model.curriculum", "[[4, 1], [8, 1]]", "--trainer.max_epochs", "2",
              "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)])
    tags = event_accumulator(tmp_path).Tags()
    for name in ("encoder_lstm_l0", "decoder_lstm_l0"):
        assert f"hidden/{name}/saturation" in tags["scalars"] and f"hidden/{name}/values" in tags["histograms"]
        assert f"hidden/{name}/cell_norm" in tags["scalars"] and f"gates/{name}/forget/right" in tags["scalars"]
        assert f"gradnorm/{name}_log10" in tags["scalars"]
    assert {"gradflow/first_log10", "gradflow/horizon", "gradnorm/total_log10"} <= set(tags["scalars"])
    assert not any(t.startswith("data/") for t in tags["scalars"])  # the data's constant summary is text
    assert {"gradflow/per_timestep", "gradflow/heatmap", "hidden/example", "gates/saturation"} <= set(tags["images"])


def test_bf16_mixed_precision_norms_are_float32_and_finite(tmp_path):
    torch.manual_seed(0)
    model = TextClassifier(vocab_size=30, cell="gru", embedding_dim=6, hidden_size=8)
    flow = GradientFlowMonitor(every_n_steps=1, images=False, save_arrays=False)
    hidden = HiddenStateMonitor(every_n_steps=1, gates_every_n_steps=1)
    trainer = pl.Trainer(max_steps=2, precision="bf16-mixed", logger=False, callbacks=[flow, hidden],
                         limit_val_batches=0, default_root_dir=tmp_path, **QUIET)
    trainer.fit(model, datamodule=OneBatch(padded_batch(), steps=2))
    assert len(flow.records) == 2 and all(r["norms_end"].dtype == np.float32 for r in flow.records)
    assert all(np.isfinite(r["norms_end"]).all() and (r["norms_end"] > 0).any() for r in flow.records)
    assert all(math.isfinite(r["values"]["gru_l0/saturation"]) for r in hidden.records)
    assert all(0 <= r["values"]["gates/gru_l0/update/right"] <= 1 for r in hidden.records)


def test_held_steps_are_finished_when_full_and_written_as_one_event_per_step(tmp_path, monkeypatch):
    from pytorch_lightning.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    from src.callbacks import trace_arming

    monkeypatch.setattr(trace_arming, "MAX_PENDING_STEPS", 2)
    torch.manual_seed(0)
    callbacks = [GradientFlowMonitor(every_n_steps=1, images=False, save_arrays=False),
                 HiddenStateMonitor(every_n_steps=1, gates_every_n_steps=1, histograms=False, images=False,
                                    save_arrays=False),
                 GradientNormMonitor(every_n_steps=1, save_arrays=False)]
    finished_before_epoch_end = []

    class Watch(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            finished_before_epoch_end.append([len(c.records) for c in callbacks])

    trainer = pl.Trainer(max_epochs=1, logger=TensorBoardLogger(tmp_path), callbacks=[*callbacks, Watch()],
                         limit_val_batches=0, log_every_n_steps=100, default_root_dir=tmp_path, **QUIET)
    packed_lstm = TextClassifier(vocab_size=30, cell="lstm", embedding_dim=6, hidden_size=8, pack=True)  # has c_n
    trainer.fit(packed_lstm, datamodule=OneBatch(padded_batch(), steps=5))
    # Two held steps are finished together, for all three callbacks, without waiting for the epoch's end.
    assert finished_before_epoch_end == [[0, 0, 0], [2, 2, 2], [2, 2, 2], [4, 4, 4], [4, 4, 4]]
    assert all(len(c.records) == 5 for c in callbacks)
    events = [e for e in EventFileLoader(glob.glob(f"{tmp_path}/**/events.out.tfevents.*", recursive=True)[0]).Load()
              if e.HasField("summary") and any(v.tag == "gradflow/first_log10" for v in e.summary.value)]
    assert [e.step for e in events] == [0, 1, 2, 3, 4]
    for event in events:  # every callback's scalars of a step in its one event
        tags = {v.tag for v in event.summary.value}
        assert {"gradflow/horizon", "hidden/lstm_l0/saturation", "hidden/lstm_l0/cell_norm", "gradnorm/total_log10",
                "gates/lstm_l0/forget/right"} <= tags
