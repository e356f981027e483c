"""The dynamics callbacks on a user's own LightningModule (no monitoring contract): forward hooks on its
nn.RNN / nn.LSTM / nn.GRU modules give the same figures as a direct computation, and the same names as ours."""

from __future__ import annotations

import copy
import glob

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils.data import DataLoader

from src.callbacks import GradientFlowMonitor, GradientNormMonitor, HiddenStateMonitor
from src.callbacks.recurrent_hooks import HookTrace
from src.callbacks.recurrent_modules import parameter_groups, recurrent_modules, run_name
from src.lightning_modules.text_classifier import TextClassifier
from src.models.recurrent_trace import mask_from_lengths
from tests.common import reference_curves, scalars

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, accelerator="cpu",
             devices=1)
CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
LENGTHS = torch.tensor([6, 3, 9, 1, 5])


def padded_tokens(lengths: torch.Tensor = LENGTHS, vocab: int = 30) -> torch.Tensor:
    return torch.randint(1, vocab, (len(lengths), int(lengths.max()))) * mask_from_lengths(lengths, int(lengths.max()))


class UserTagger(pl.LightningModule):
    """A user's classifier that knows nothing of this project: embedding (pad 0) -> nn.LSTM/GRU/RNN -> the output at
    each sequence's last token -> one logit. ``layout``: batch_first, time_major (both padded tensors) or packed."""

    def __init__(self, cell: str = "lstm", layout: str = "batch_first", num_layers: int = 1,
                 bidirectional: bool = False, hidden: int = 8):
        super().__init__()
        self.layout = layout
        self.embedding = nn.Embedding(30, 6, padding_idx=0)
        self.rnn = CELLS[cell](6, hidden, num_layers, batch_first=layout != "time_major", bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), 1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, embedded: torch.Tensor | None = None):
        x = self.embedding(tokens) if embedded is None else embedded  # [B, T, E]
        if self.layout == "packed":
            out, _ = self.rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
            out, _ = pad_packed_sequence(out, batch_first=True)
        elif self.layout == "time_major":
            out = self.rnn(x.transpose(0, 1))[0].transpose(0, 1)
        else:
            out = self.rnn(x)[0]
        return self.head(out[torch.arange(len(lengths)), lengths - 1]).squeeze(-1)

    def training_step(self, batch, batch_idx):
        tokens, lengths, labels = batch
        return nn.functional.binary_cross_entropy_with_logits(self(tokens, lengths), labels)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(model: pl.LightningModule, batch, callbacks, steps: int = 1, **kwargs) -> pl.Trainer:
    trainer = pl.Trainer(max_steps=steps, callbacks=callbacks, limit_val_batches=0, **{"logger": False, **QUIET},
                         **kwargs)
    trainer.fit(model, DataLoader([batch] * steps, batch_size=None))
    return trainer


@pytest.mark.parametrize("layout", ["batch_first", "time_major", "packed"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_hooked_timestep_norms_equal_autograd_on_the_input(layout, cell):
    torch.manual_seed(0)
    tokens, labels = padded_tokens(), torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    model = UserTagger(cell, layout, num_layers=2, bidirectional=True)
    before = copy.deepcopy(model)
    monitor = GradientFlowMonitor(every_n_steps=1, images=False, save_arrays=False)
    fit(model, (tokens, LENGTHS, labels), [monitor])
    x = before.embedding(tokens).detach().requires_grad_(True)  # [B, T, E]
    loss = nn.functional.binary_cross_entropy_with_logits(before(tokens, LENGTHS, embedded=x), labels)
    (grad,) = torch.autograd.grad(loss, x)
    start, end = reference_curves(grad, LENGTHS.tolist())  # the padding (zero input vectors) is not a position
    np.testing.assert_allclose(monitor.records[0]["norms_start"], start, rtol=1e-5)
    np.testing.assert_allclose(monitor.records[0]["norms_end"], end, rtol=1e-5)
    assert not model.rnn._forward_hooks and not model.rnn._forward_pre_hooks  # removed after the step


@pytest.mark.parametrize("cell, num_layers, bidirectional", [("lstm", 1, False), ("gru", 1, True), ("lstm", 2, True),
                                                             ("rnn", 2, False)])
def test_a_users_module_and_ours_get_the_same_layer_names(cell, num_layers, bidirectional):
    torch.manual_seed(0)
    batch = (padded_tokens(), LENGTHS, torch.ones(5))
    user, ours = HiddenStateMonitor(every_n_steps=1, histograms=False, images=False, save_arrays=False), \
        HiddenStateMonitor(every_n_steps=1, histograms=False, images=False, save_arrays=False)
    fit(UserTagger(cell, "packed", num_layers, bidirectional), batch, [user])
    from data_modules.batching import TextBatch

    fit(TextClassifier(vocab_size=30, cell=cell, embedding_dim=6, hidden_size=8, num_layers=num_layers,
                       bidirectional=bidirectional), TextBatch(*batch), [ours])
    layers = [f"{cell}_l{k}" + suffix for k in range(num_layers) for suffix in ("", "_reverse")[:1 + bidirectional]]
    expected = {f"{name}/{stat}" for name in layers for stat in ("saturation", "mean_abs", "std", "temporal_variance")}
    if cell == "lstm":
        expected |= {f"{name}/cell_norm" for name in layers}
    if cell != "rnn":
        gates = {"lstm": ("input", "forget", "candidate", "output"), "gru": ("reset", "update")}[cell]
        memory = "forget" if cell == "lstm" else "update"
        expected |= {f"gates/{name}/{gate}/{side}" for name in layers for gate in gates for side in ("left", "right")}
        expected |= {f"gates/{name}/{memory}/mean" for name in layers}
    assert set(user.records[0]["values"]) == set(ours.records[0]["values"]) == expected


def test_hooks_see_every_layer_of_a_two_layer_module_as_it_ran():
    """nn.LSTM(num_layers=2) returns only its top layer; the lower layer's sequence is recomputed from its own
    weights, and its final cell state from the gates equals the one the module returned."""
    from src.callbacks.gate_statistics import final_cell

    torch.manual_seed(0)
    model = UserTagger("lstm", "packed", num_layers=2, bidirectional=True)
    hooks = HookTrace(model)
    hooks.attach()
    out = model(padded_tokens(), LENGTHS)
    hooks.detach()
    trace = hooks.trace()
    lower = nn.LSTM(6, 8, batch_first=True, bidirectional=True)  # layer 0 alone, with the module's weights
    lower.load_state_dict({k: v for k, v in model.rnn.state_dict().items() if "_l0" in k})
    packed = pack_padded_sequence(trace.inputs, LENGTHS, batch_first=True, enforce_sorted=False)
    expected, _ = pad_packed_sequence(lower(packed)[0], batch_first=True)
    mask = trace.mask
    torch.testing.assert_close(trace.hidden["lstm_l0"][mask], expected[..., :8][mask])
    torch.testing.assert_close(trace.hidden["lstm_l0_reverse"][mask], expected[..., 8:][mask])
    for name in ("lstm_l0", "lstm_l0_reverse", "lstm_l1", "lstm_l1_reverse"):
        computed = final_cell(trace.layers[name], trace.hidden[name], mask)
        torch.testing.assert_close(computed, trace.cell[name], atol=2e-6, rtol=0)
    assert out.shape == (5,)


class EncoderDecoder(pl.LightningModule):
    """Two recurrent modules: an LSTM encoder (batch-first) whose final state starts a GRU decoder (time-major) that
    reads a second, shorter sequence and predicts one label from its last output."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(30, 6, padding_idx=0)
        self.encoder = nn.Module()
        self.encoder.rnn = nn.LSTM(6, 8, batch_first=True)
        self.decoder = nn.Module()
        self.decoder.rnn = nn.GRU(6, 8)
        self.head = nn.Linear(8, 1)

    def training_step(self, batch, batch_idx):
        source, target, labels = batch
        _, (h, _) = self.encoder.rnn(self.embedding(source))
        out, _ = self.decoder.rnn(self.embedding(target).transpose(0, 1), h)  # [T', B, H]
        return nn.functional.binary_cross_entropy_with_logits(self.head(out[-1]).squeeze(-1), labels)

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.training_step(batch, batch_idx))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def test_a_user_module_with_an_encoder_and_a_decoder_gets_both_through_trainer_callbacks(tmp_path):
    torch.manual_seed(0)
    batch = (torch.randint(1, 30, (8, 12)), torch.randint(1, 30, (8, 5)), torch.ones(8))
    model = EncoderDecoder()
    callbacks = [GradientFlowMonitor(every_n_steps=2), HiddenStateMonitor(every_n_steps=2, gates_every_n_steps=2),
                 GradientNormMonitor(2)]

    class HooksOnlyOnLoggedSteps(pl.Callback):
        attached: list[bool] = []

        def on_before_backward(self, trainer, pl_module, loss):
            self.attached.append(bool(model.encoder.rnn._forward_hooks))

    watch = HooksOnlyOnLoggedSteps()
    trainer = pl.Trainer(max_epochs=2, callbacks=[*callbacks, watch], logger=TensorBoardLogger(tmp_path),
                         limit_train_batches=4, log_every_n_steps=1, **QUIET)
    trainer.fit(model, DataLoader([batch] * 4, batch_size=None), DataLoader([batch], batch_size=None))
    assert watch.attached == [True, False] * 4  # steps 0, 2, 4, 6 logged; the others run without hooks
    tags = scalars(tmp_path)
    for name, gate in (("encoder_lstm_l0", "forget"), ("decoder_gru_l0", "update")):
        assert f"hidden/{name}/saturation" in tags and f"gates/{name}/{gate}/right" in tags
        assert f"gradnorm/{name}_log10" in tags
    assert "hidden/encoder_lstm_l0/cell_norm" in tags  # from the gates: the batch has no padding, so also exact
    assert len(tags["gradflow/first_log10"]) == 4  # the encoder's input: the first module's
    flow = callbacks[0].records[0]
    assert len(flow["norms_start"]) == 12  # the encoder's sequence, not the decoder's 5 steps
    hidden_records = callbacks[1].records[0]["values"]
    assert {"encoder_lstm_l0/std", "decoder_gru_l0/std"} <= set(hidden_records)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(glob.glob(f"{tmp_path}/**/events.out.tfevents.*", recursive=True)[0],
                              size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    assert {"hidden/example", "gates/saturation", "gradflow/per_timestep"} <= set(events.Tags()["images"])
    assert events.Images("hidden/example")[-1].height > 2 * 120  # a panel per module: caught from validation
    assert events.Tensors("dynamics/diagnosis/text_summary")  # one line per validation


def test_names_and_groups_of_parameters_and_runs():
    model = EncoderDecoder()
    assert [m.name for m in recurrent_modules(model)] == ["encoder_lstm", "decoder_gru"]
    groups = parameter_groups(model)
    assert groups["encoder.rnn.weight_hh_l0"] == "encoder_lstm_l0"
    assert groups["decoder.rnn.bias_ih_l0"] == "decoder_gru_l0"
    assert groups["embedding.weight"] == "embedding" and groups["head.bias"] == "head"
    tagger = UserTagger("gru", num_layers=2, bidirectional=True)
    assert set(parameter_groups(tagger).values()) == {"embedding", "gru_l0", "gru_l0_reverse", "gru_l1",
                                                      "gru_l1_reverse", "head"}
    ours = TextClassifier(vocab_size=30, cell="gru", num_layers=2, bidirectional=True)
    assert set(parameter_groups(ours).values()) == set(parameter_groups(tagger).values())
    assert run_name(ours) == "text_classifier-gru"  # the model's own `cell` hyperparameter
    assert run_name(EncoderDecoder()) == "encoder_decoder-lstm+gru"  # found in the module tree
    assert run_name(nn.Linear(2, 2)) == "linear"
