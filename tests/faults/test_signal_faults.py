"""A run stopped by a scheduler (SIGTERM), by Ctrl-C (SIGINT) or by kill -9, then resumed, on the tiny data.
SIGTERM and SIGINT are sent by the training process to itself mid-epoch (in-process, deterministic); kill -9
needs a process of its own."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.common import ROOT, run_dir
from tests.faults.fault_harness import TINY, loadable_checkpoints, run_command
from train import cli_main

STEPS_PER_EPOCH = 6  # 200 reviews: 162 for training (after 10% test, 10% val) in batches of 32


def start_fit(root: Path, epochs: int, env=None) -> subprocess.Popen:
    args = ["fit", *TINY, "--trainer.max_epochs", str(epochs), "--trainer.default_root_dir", str(root),
            "--data.cache_dir", str(root / "cache")]
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def resume(root: Path, epochs: int, capfd) -> dict:
    code, lines = run_command(capfd, cli_main, ["fit", *TINY, "--trainer.max_epochs", epochs, "--ckpt_path", "last",
                                                "--trainer.default_root_dir", root, "--data.cache_dir", root / "cache"])
    assert code == 0, lines
    newest = max(root.glob("lightning_logs/*/version_*/checkpoints/last.ckpt"), key=lambda f: f.stat().st_mtime)
    return torch.load(newest, weights_only=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_run_saves_the_interrupted_epoch_exits_non_zero_and_resumes(signum, tmp_path, capfd):
    """The signal arrives after step 9, in the middle of epoch 1 (6 steps per epoch): Lightning's own SIGTERM
    handling stops at the end of that batch with exit 0 and no checkpoint of the interrupted epoch."""
    stop = json.dumps({"class_path": "tests.faults.fault_harness.SignalAtStep",
                       "init_args": {"signum": int(signum), "step": 9}})
    code, lines = run_command(capfd, cli_main, ["fit", *TINY, "--trainer.max_epochs", "50", "--trainer.callbacks+",
                                                stop, "--trainer.default_root_dir", tmp_path,
                                                "--data.cache_dir", tmp_path / "cache"])
    assert code == 128 + signum and lines[-1].startswith(f"stopped by {signum.name} in epoch 1 at step 9"), lines
    assert not any("Traceback" in line for line in lines)
    stopped = torch.load(run_dir(tmp_path) / "checkpoints/last.ckpt", weights_only=True)
    assert stopped["global_step"] == 9 and stopped["epoch"] == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    finished = resume(tmp_path, 3, capfd)
    # the interrupted epoch was finished, not restarted or skipped: exactly 3 epochs of steps in all
    assert finished["epoch"] == 2 and finished["global_step"] == 3 * STEPS_PER_EPOCH


KILL_ON_SAVE = """
import os, signal, torch
real_save, calls = torch.save, [0]
def save(obj, f, *args, **kwargs):
    calls[0] += 1
    if calls[0] == int(os.environ["KILL_ON_SAVE"]):
        import io
        buffer = io.BytesIO()
        real_save(obj, buffer)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)
torch.save = save
"""


def test_kill_9_in_the_middle_of_a_save_leaves_the_last_checkpoint_whole(tmp_path, capfd):
    """kill -9 half-way through writing epoch 1's last.ckpt: epoch 0's is whole and the run resumes from it."""
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(KILL_ON_SAVE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "inject"), str(ROOT)]), KILL_ON_SAVE="3")
    process = start_fit(tmp_path, epochs=5, env=env)
    process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL
    saved = loadable_checkpoints(tmp_path / "lightning_logs")  # none is truncated
    assert {Path(p).name: c["epoch"] for p, c in saved.items()}["last.ckpt"] == 0
    finished = resume(tmp_path, 2, capfd)
    assert finished["epoch"] == 1 and finished["global_step"] == 2 * STEPS_PER_EPOCH
