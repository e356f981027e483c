"""The dynamics/diagnosis line: right on hand-made curves and norms, and on the showcase's two memory-task runs."""

from __future__ import annotations

import glob

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from src.callbacks.diagnosis import diagnose
from src.callbacks.gradient_flow_monitor import summarize
from tests.common import QUIET, ROOT, run_dir, scalars

LENGTH = 50


def flow(curve: np.ndarray, steps: int = 3) -> dict:
    return {"flow": [summarize(curve)] * steps, "horizon_threshold": 1e-3}


@pytest.mark.parametrize("curve, verdict", [
    (np.geomspace(1e-10, 1.0, LENGTH), "vanishing"),  # ten decades lost from the last step back to the first
    (np.geomspace(1e-2, 1.0, LENGTH), "decaying"),  # two
    (np.ones(LENGTH), "healthy"),  # flat
    (np.geomspace(10.0, 1.0, LENGTH), "healthy"),  # growing one decade going back: a loss that reads early steps
    (np.geomspace(1e5, 1.0, LENGTH), "exploding"),  # growing five decades going back
])
def test_the_verdict_on_hand_made_per_timestep_curves(curve, verdict):
    kinds, line = diagnose(flow(curve))
    assert kinds == (verdict,) and line.startswith(verdict)
    if verdict == "healthy":  # a line that names no problem it does not see
        assert "vanish" not in line and "explod" not in line and "horizon censored" in line


def test_a_gradient_that_underflowed_to_zero_is_vanishing_not_a_gap():
    curve = np.concatenate([np.zeros(20), np.geomspace(1e-30, 1.0, 30)])
    kinds, line = diagnose(flow(curve))
    assert kinds == ("vanishing",) and "is 0, underflowed" in line and "inf" not in line


def test_vanishing_needs_no_saturation_and_saturation_is_reported_beside_it():
    """A contracting tanh RNN vanishes with its units near zero (the memory task's RNN: saturation 0)."""
    decaying = flow(np.geomspace(1e-10, 1.0, LENGTH))
    kinds, line = diagnose({**decaying, "saturation": {"rnn_l0": 0.0}, "threshold": 0.9})
    assert kinds == ("vanishing",) and "saturation at most 0%" in line
    # 1e-3 of the peak is the last 3 of the 10 decades: positions 35-49, where -10 + 10 i / 49 >= -3
    assert "only the last 15 of 50 steps" in line
    kinds, line = diagnose({"flow": [summarize(np.ones(LENGTH))], "saturation": {"rnn_l0": 0.7, "rnn_l1": 0.1}})
    assert kinds == ("saturated",) and "70% of rnn_l0's hidden values" in line
    # A gated layer that vanishes: the line says how much state its forget gate keeps per step.
    kinds, line = diagnose({**decaying, "memory_gates": {"lstm_l0": ("forget", 0.5), "lstm_l1": ("forget", 0.9)}})
    assert kinds == ("vanishing",) and "mean forget gate 0.50 in lstm_l0: it keeps about 50% of its state" in line
    assert "forget gate" not in diagnose({"flow": [summarize(np.ones(LENGTH))], "memory_gates": {"x": ("f", 0.5)}})[1]


def test_exploding_is_judged_against_the_runs_own_clipping_threshold():
    calm = flow(np.ones(LENGTH))
    kinds, line = diagnose({**calm, "totals": [2.5, 3.3, 1.0]}, clip=1.0)  # clipping doing its job: not exploding
    assert kinds == ("healthy",) and "clipped at 1 on 2 of 3 logged steps" in line
    assert diagnose({**calm, "totals": [2.5, 3.3, 1.0]}, clip=0.1)[0] == ("exploding",)  # 25x its threshold
    kinds, line = diagnose({**calm, "totals": [40.0, 60.0]}, clip=5.0)
    assert kinds == ("exploding",) and "10x the clipping threshold 5" in line
    assert diagnose({**calm, "totals": [float("nan"), 1.0]}, clip=5.0)[0] == ("exploding",)
    # Without clipping: a total norm that grew three decades over its first logged values.
    assert diagnose({**calm, "totals": [30.0], "baseline": [0.02]})[0] == ("exploding",)
    assert diagnose({**calm, "totals": [30.0], "baseline": [1.0]})[0] == ("healthy",)


@pytest.mark.slow
def test_the_showcase_memory_task_runs_are_diagnosed_right_and_name_themselves(tmp_path, caplog):
    """docs/dynamics.md's first pair of commands, on a quarter of the steps: the vanilla RNN at length 50 vanishes,
    the LSTM with keep_gate_bias 3 does not (and nothing explodes, though its norm is clipped at 1)."""
    from train import cli_main

    common = ["fit", "--config", str(ROOT / "configs/memory_task.yaml"),
              "--config", str(ROOT / "configs/dynamics.yaml"), "--data.seq_length", "50", "--data.n_train", "3200",
              "--data.n_val", "200",
              "--trainer.val_check_interval", "1.0", *QUIET]
    diagnoses = {}
    for cell, extra in (("rnn", []), ("lstm", ["--model.keep_gate_bias", "3"])):
        with caplog.at_level("INFO"):
            cli_main([*common, "--model.cell", cell, *extra, "--trainer.default_root_dir", str(tmp_path / cell)])
        run = run_dir(tmp_path / cell)
        assert run.parent.name == f"sequence_classifier-{cell}"  # lightning_logs/<model>-<cell>/version_0
        events = EventAccumulator(str(next(run.glob("events.out.tfevents.*"))), size_guidance={"tensors": 0})
        events.Reload()
        texts = [b"".join(e.tensor_proto.string_val).decode()
                 for e in events.Tensors("dynamics/diagnosis/text_summary")]
        diagnoses[cell] = texts[-1]
        tags = scalars(run)
        assert "hp_metric" not in tags and "epoch" not in tags
        assert tags["best/val_acc"][-1] == max(tags["val/acc"])  # the HParams metric: the run's best
        if cell == "lstm":  # HParams marks what this run's config changed, so TensorBoard shows those columns first
            from tensorboard.plugins.hparams import plugin_data_pb2

            content = events.SummaryMetadata("_hparams_/experiment").plugin_data.content
            infos = plugin_data_pb2.HParamsPluginData.FromString(content).experiment.hparam_infos
            changed = {"cell", "keep_gate_bias", "seq_length", "n_train", "n_val", "n_test"}  # memory_task.yaml's
            assert {i.name for i in infos if i.differs} == changed
            assert "lr" in {i.name for i in infos}
        printed = [r.message for r in caplog.records if r.message.startswith("dynamics at step")]
        assert printed and printed[-1].endswith(texts[-1])  # the console says it too (once per change)
        caplog.clear()
    assert diagnoses["rnn"].startswith("vanishing through time")
    assert "vanish" not in diagnoses["lstm"] and "explod" not in diagnoses["lstm"]
    assert diagnoses["lstm"].startswith("healthy") and "clipped at 1" in diagnoses["lstm"]


@pytest.mark.slow
def test_a_users_logger_choice_wins_over_the_named_default(tmp_path):
    from train import cli_main

    cli_main(["fit", "--config", str(ROOT / "configs/memory_task.yaml"), "--data.n_train", "128", "--data.n_val", "64",
              "--trainer.default_root_dir", str(tmp_path), *QUIET,
              "--trainer.logger", "pytorch_lightning.loggers.TensorBoardLogger",
              "--trainer.logger.save_dir", str(tmp_path / "mine"), "--trainer.logger.name", "custom"])
    assert glob.glob(f"{tmp_path}/mine/custom/version_0/events.out.tfevents.*")
    assert not (tmp_path / "lightning_logs").exists()
