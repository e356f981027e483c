"""``train.py`` with ``configs/dynamics.yaml`` on two GPUs (DDP): training finishes, the callbacks write from rank
zero only (one event file), every scalar finite."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from tests.common import ROOT
from tests.gpu.cuda_runs import GPU, PREFIXES, run_args, scalar_events

TWO_GPUS = torch.cuda.is_available() and torch.cuda.device_count() >= 2
pytestmark = [*GPU, pytest.mark.skipif(not TWO_GPUS, reason="DDP needs 2 CUDA devices; this machine has fewer")]


def test_dynamics_callbacks_under_ddp_on_two_gpus(tmp_path):
    args = run_args("TextClassifier", tmp_path)
    args[2:2] = ["--config", "configs/dynamics.yaml"]
    # A process of its own: Lightning's DDP launcher starts the second rank by running the same command again.
    result = subprocess.run([sys.executable, "train.py", "fit", *args, "--trainer.accelerator", "gpu",
                             "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_epochs", "2"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted((tmp_path / "lightning_logs").glob("version_*"))
    assert len(runs) == 1, runs
    files = list(runs[0].glob("events.out.tfevents.*"))
    assert len(files) == 1, files  # rank zero writes, the other rank does not
    events = scalar_events(runs[0])
    for prefix in PREFIXES:
        assert any(tag.startswith(prefix) for tag in events), (prefix, sorted(events))
    assert all(math.isfinite(v) for values in events.values() for _, v in values)
    assert (runs[0] / "checkpoints" / "last.ckpt").is_file()
