"""The experiments of src/experiments/: the memory task, the recurrent initialisations, the report writers, and
the tiny (--quick) variant of each experiment end to end, including exact reproducibility with the same seed."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from data_modules.memory_task import MemoryTaskDataModule, memory_sequences
from src.experiments.gradient_flow import mean_curve
from src.experiments.report import fmt, table
from src.models.last_step_classifier import LastStepClassifier
from src.models.recurrent_init import add_keep_gate_bias, init_recurrent_weights
from src.utils.errors import UserInputError
from tests.common import QUIET, ROOT, run_dir


# -- the memory task --------------------------------------------------------------------------------------------
def test_memory_sequences_label_is_the_first_token_and_seeded():
    a = memory_sequences(500, 12, 10, seed=3)
    assert a.tokens.shape == (500, 12) and a.tokens.dtype == torch.int64
    assert torch.equal(a.targets, a.tokens[:, 0])
    assert int(a.tokens.min()) >= 0 and int(a.tokens.max()) == 9
    assert torch.equal(a.tokens, memory_sequences(500, 12, 10, seed=3).tokens)
    assert not torch.equal(a.tokens, memory_sequences(500, 12, 10, seed=4).tokens)
    # distractors are uniform over all symbols, so the last token says nothing about the first
    assert (a.tokens[:, -1] == a.targets).float().mean() < 0.2


def test_memory_datamodule_splits_are_independent_draws_and_batches_are_ordered_by_seed():
    dm = MemoryTaskDataModule(seq_length=8, n_train=256, n_val=64, n_test=64, batch_size=32, seed=1)
    dm.setup()
    assert dm.vocab_size == 10 and dm.chance == pytest.approx(0.1)
    train, val = dm.datasets["train"].data.tokens, dm.datasets["val"].data.tokens
    assert not torch.equal(train[:64], val)
    first = next(iter(dm.train_dataloader()))
    again = next(iter(MemoryTaskDataModule(seq_length=8, n_train=256, n_val=64, n_test=64, batch_size=32,
                                           seed=1).train_dataloader()))
    assert first.tokens.shape == (32, 8) and torch.equal(first.tokens, again.tokens)
    assert torch.equal(first.targets, first.tokens[:, 0])


@pytest.mark.parametrize("kwargs", [{"seq_length": 1}, {"num_symbols": 1}, {"n_train": 0}])
def test_memory_datamodule_rejects_impossible_settings(kwargs):
    with pytest.raises(UserInputError):
        MemoryTaskDataModule(**kwargs)


# -- recurrent initialisations ----------------------------------------------------------------------------------
def test_orthogonal_init_gives_orthogonal_gate_blocks_with_the_scale():
    torch.manual_seed(0)
    layer = nn.LSTM(4, 16, batch_first=True)
    init_recurrent_weights(layer, "orthogonal", scale=0.5)
    for block in layer.weight_hh_l0.detach().split(16):
        assert torch.allclose(block @ block.T, 0.25 * torch.eye(16), atol=1e-5)


def test_identity_init_is_the_irnn_and_default_leaves_pytorch_weights():
    layer = nn.RNN(4, 8, nonlinearity="relu", batch_first=True)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    init_recurrent_weights(layer, "default")
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())
    init_recurrent_weights(layer, "identity")
    assert torch.equal(layer.weight_hh_l0, torch.eye(8))
    assert not layer.bias_hh_l0.any() and not layer.bias_ih_l0.any()
    assert torch.equal(layer.weight_ih_l0, before["weight_ih_l0"])  # only the recurrence changes
    # with zero input the IRNN copies its state forward unchanged
    h0 = torch.rand(1, 1, 8)
    _, h = layer(torch.zeros(1, 5, 4), h0)
    assert torch.allclose(h, h0)


def test_gaussian_init_has_std_scale_over_sqrt_h_and_bad_scheme_is_rejected():
    torch.manual_seed(0)
    layer = nn.RNN(4, 256)
    init_recurrent_weights(layer, "gaussian", scale=1.0)
    assert layer.weight_hh_l0.std().item() == pytest.approx(1 / 16, rel=0.03)
    with pytest.raises(ValueError, match="recurrent_init"):
        init_recurrent_weights(layer, "xavier")


def test_keep_gate_bias_raises_exactly_the_forget_gate():
    layer = nn.LSTM(3, 5)
    before = layer.bias_ih_l0.detach().clone()
    add_keep_gate_bias(layer, 3.0)
    delta = layer.bias_ih_l0.detach() - before
    assert torch.allclose(delta[5:10], torch.full((5,), 3.0)) and not delta[:5].any() and not delta[10:].any()
    with pytest.raises(ValueError):
        add_keep_gate_bias(nn.RNN(3, 5), 1.0)


def test_last_step_classifier_shapes_trace_and_gradient_to_the_first_token():
    torch.manual_seed(0)
    net = LastStepClassifier(vocab_size=10, num_classes=10, hidden_size=8, cell="lstm", keep_gate_bias=1.0)
    tokens = torch.randint(0, 10, (4, 7))
    out = net(tokens, watch_inputs=True)
    assert out.logits.shape == (4, 10)
    assert out.trace.mask.all() and out.trace.hidden["lstm_l0"].shape == (4, 7, 8)
    assert out.trace.cell["lstm_l0"].shape == (4, 8)  # exact final cell state: no padding, no lengths
    nn.functional.cross_entropy(out.logits, tokens[:, 0]).backward()
    assert out.trace.inputs.grad[:, 0].abs().sum() > 0


# -- writers and helpers ----------------------------------------------------------------------------------------
def test_table_formats_numbers_and_escapes_pipes():
    text = table(["a", "b |x|"], [["r|1", 0.5], ["r2", float("nan")], ["r3", 3e-9]])
    lines = text.splitlines()
    assert lines[0] == "| a | b \\|x\\| |" and lines[2] == "| r\\|1 | 0.500 |"
    assert "n/a" in lines[3] and "3.00e-09" in lines[4]
    assert fmt(7) == "7" and fmt(None) == "-"


def test_mean_curve_right_aligns_records_on_the_last_token():
    records = [{"norms_end": np.array([1.0, 2.0, 3.0])}, {"norms_end": np.array([5.0])}]
    curve = mean_curve(records, 4)
    assert np.isnan(curve[0]) and curve[1:].tolist() == [1.0, 2.0, 4.0]


# -- end to end (tiny) ------------------------------------------------------------------------------------------
def measured_rows(report: Path) -> list[str]:
    """The table lines of the measured-results section (the settings table holds wall times)."""
    text = report.read_text().split("## Settings")[0]
    return [line for line in text.splitlines() if line.startswith("|")]


@pytest.mark.slow
def test_memory_quick_writes_report_and_reproduces_exactly(tmp_path):
    from src.experiments import memory

    reports = [memory.cli(["--quick", "--output", str(tmp_path / name)]) for name in ("a", "b")]
    rows = measured_rows(reports[0])
    assert [r.split("|")[1:3] for r in rows[2:]] == [[" rnn ", " 5 "], [" rnn ", " 10 "], [" lstm ", " 5 "]]
    assert rows == measured_rows(reports[1])
    results = [json.loads((tmp_path / n / "results.json").read_text()) for n in ("a", "b")]
    assert results[0]["curves"] == results[1]["curves"]
    assert [r["accuracy"] for r in results[0]["rows"]] == [r["accuracy"] for r in results[1]["rows"]]
    for png in ("accuracy_vs_length.png", "learning_curves.png"):
        assert (tmp_path / "a" / png).stat().st_size > 10_000
    assert "machine: cpu" in reports[0].read_text() and "wall time" in reports[0].read_text()
    events = list((tmp_path / "a" / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(events) == 3  # one TensorBoard run per (model, length, seed)
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    assert "val/acc" in acc.Tags()["scalars"]


@pytest.mark.slow
def test_initialization_quick_reports_accuracy_and_callback_horizon(tmp_path):
    from src.experiments import initialization

    report = initialization.cli(["--quick", "--output", str(tmp_path)])
    rows = measured_rows(report)[2:]
    assert len(rows) == 8 and {r.split("|")[1].strip() for r in rows} == {
        "default U(+-1/sqrt(H)), tanh", "orthogonal, tanh", "identity (IRNN), ReLU", "Gaussian N(0, 1/H), tanh"}
    results = json.loads((tmp_path / "results.json").read_text())
    for row in results["rows"]:
        assert all(1 <= h <= row["length"] for h in row["horizon_start"])  # the callback's horizon, in steps
    assert (tmp_path / "accuracy_by_init.png").is_file() and (tmp_path / "gradient_per_timestep.png").is_file()


@pytest.fixture(scope="module")
def tiny_reviews(tmp_path_factory):
    """200 labelled reviews of 40+ tokens each (positive and negative phrases), as a CSV with text,label."""
    rng = np.random.default_rng(0)
    good, bad = "great wonderful superb loved brilliant".split(), "awful boring terrible hated dull".split()
    filler = "the movie plot actor scene film story and it was".split()
    rows = []
    for i in range(200):
        words = [rng.choice(filler) for _ in range(45)]
        for j in rng.choice(45, 5, replace=False):
            words[j] = rng.choice(good if i % 2 else bad)
        rows.append({"text": " ".join(words), "label": i % 2})
    path = tmp_path_factory.mktemp("reviews") / "reviews.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name, pngs, n_rows", [
    ("seq_length", ["accuracy_vs_length.png"], 4),
    ("gradient_flow", ["gradient_per_timestep.png", "heatmap_rnn.png", "heatmap_lstm.png"], 4),
    ("hidden_dynamics", ["hidden_state_dynamics.png"], 3 + 2),
])
def test_imdb_experiments_quick_write_tables_and_plots(tmp_path, tiny_reviews, name, pngs, n_rows):
    import importlib

    module = importlib.import_module(f"src.experiments.{name}")
    report = module.cli(["--quick", "--output", str(tmp_path / "out"), "--data", str(tiny_reviews),
                         "--cache-dir", str(tmp_path / "cache")])
    rows = [r for r in measured_rows(report) if not r.startswith("|---") and not r.startswith("| cell")]
    assert len(rows) == n_rows
    assert "Quick variant" in report.read_text()
    for png in pngs:
        assert (tmp_path / "out" / png).stat().st_size > 5_000


def test_cell_norms_stepped_by_hand_end_in_the_lstm_final_cell_state():
    from data_modules.batching import pad_collate
    from src.experiments.hidden_dynamics import state_norms
    from src.lightning_modules.text_classifier import TextClassifier

    torch.manual_seed(0)
    model = TextClassifier(vocab_size=20, cell="lstm", embedding_dim=6, hidden_size=5)
    batch = pad_collate([([3, 4, 5, 6, 7], 1.0), ([8, 9, 10, 11, 12], 0.0)])
    trace, norms = state_norms(model, batch)
    _, (_, c_n) = model.net.rnn.layers[0](model.net.embedding(batch.tokens))
    assert torch.allclose(norms["cell"][:, -1], c_n[0].norm(dim=-1), atol=1e-6)
    assert torch.allclose(norms["hidden"], trace.hidden["lstm_l0"].norm(dim=-1))


def test_experiment_cli_reports_missing_data_in_one_line(tmp_path, capsys):
    from src.experiments import seq_length

    with pytest.raises(SystemExit) as exit_info:
        seq_length.cli(["--quick", "--data", str(tmp_path / "missing.parquet"), "--output", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: IMDB data not found") and len(err.splitlines()) == 1


@pytest.mark.slow
def test_memory_task_trains_from_train_py_and_checkpoint_loads_weights_only(tmp_path):
    from src.lightning_modules.sequence_classifier import SequenceClassifier
    from train import cli_main

    cli_main(["fit", "--config", str(ROOT / "configs/memory_task.yaml"), "--trainer.default_root_dir", str(tmp_path),
              "--trainer.max_epochs", "1", "--data.n_train", "256", "--data.n_val", "64", "--data.seq_length", "6",
              "--model.cell", "gru", "--trainer.log_every_n_steps", "1", *QUIET])
    run = run_dir(tmp_path)
    raw = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert raw["model_class"] == "SequenceClassifier" and raw["hyper_parameters"]["vocab_size"] == 10
    model = SequenceClassifier.from_checkpoint(run / "checkpoints" / "last.ckpt")
    assert model.hparams.cell == "gru" and model(torch.zeros(2, 6, dtype=torch.long)).shape == (2, 10)
    acc = EventAccumulator(str(next(run.glob("events.out.tfevents.*"))))
    acc.Reload()
    assert {"train/loss", "val/acc", "val/loss"} <= set(acc.Tags()["scalars"])
