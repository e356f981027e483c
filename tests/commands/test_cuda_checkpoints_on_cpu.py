"""A checkpoint written on a GPU serves on a machine without one, and ``src.sample --device`` says in one line what
this machine lacks.

A CUDA run stores its tensors with the location ``cuda:0``, and ``torch.load`` without ``map_location`` then fails
on a CPU-only machine. Here (no GPU in CI) real checkpoints of tiny ``train.py`` runs are written again with that
location, through torch's own serialization hook (``register_package``); a plain load of them fails, and every
loader of the commands reads them: ``PyTorchClassifier`` (predict, explain and export), the autoencoder (encode),
the char LM (sample). tests/gpu/ trains on CUDA for real and runs the commands with the GPU hidden.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from src.encode import encode_file
from src.explain import main as explain_main
from src.predict import main as predict_main
from src.sample import main as sample_main
from src.sample import sample
from src.serving.pytorch_classifier import PyTorchClassifier
from tests.gpu.cuda_runs import configured, fit, project_file

SHORT = ["--trainer.accelerator", "cpu", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
         "--trainer.limit_val_batches", "1"]
REVIEWS = ["a wonderful film with a great plot", "dull and boring, the worst acting"]
_AS_IF_ON_CUDA = {"on": False}


def _cuda_location(storage):
    return "cuda:0" if _AS_IF_ON_CUDA["on"] else None  # None: torch's own taggers decide


torch.serialization.register_package(0, _cuda_location, lambda storage, location: None)


def save_as_if_on_cuda(checkpoint: dict, path) -> None:
    """``torch.save`` with every tensor's location recorded as ``cuda:0``, as a CUDA run's checkpoint has them."""
    _AS_IF_ON_CUDA["on"] = True
    try:
        torch.save(checkpoint, path)
    finally:
        _AS_IF_ON_CUDA["on"] = False


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """module name -> (its last.ckpt from a CPU run, the same checkpoint with CUDA locations)."""
    found = {}
    for module in ("TextClassifier", "CurriculumAutoencoder", "CharLanguageModel"):
        tmp = tmp_path_factory.mktemp(module)
        original = fit(configured(module, tmp, *SHORT)) / "checkpoints" / "last.ckpt"
        tagged = tmp / "from_cuda.ckpt"
        save_as_if_on_cuda(torch.load(original, weights_only=True), tagged)
        found[module] = original, tagged
    return found


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA here, a cuda:0 checkpoint loads without mapping")
def test_a_plain_load_of_such_a_checkpoint_fails_on_a_cpu_only_machine(checkpoints):
    _, tagged = checkpoints["CharLanguageModel"]
    with pytest.raises(RuntimeError, match="CUDA device"):
        torch.load(tagged, weights_only=True)


def test_predict_and_explain_read_it(checkpoints, tmp_path, capsys):
    original, tagged = checkpoints["TextClassifier"]
    expected = PyTorchClassifier.from_checkpoint(original).predict_proba(REVIEWS)
    assert PyTorchClassifier.from_checkpoint(tagged).predict_proba(REVIEWS) == expected  # export loads it so too
    (tmp_path / "in.txt").write_text("\n".join(REVIEWS) + "\n", encoding="utf-8")
    predict_main(["--ckpt_path", str(tagged), "--input", str(tmp_path / "in.txt"), "--output",
                  str(tmp_path / "out.csv")])
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")["probability"], expected, rtol=1e-6)
    capsys.readouterr()
    explain_main(["--ckpt_path", str(tagged), "--text", REVIEWS[0], "--output", str(tmp_path / "page.html"),
                  "--steps", "4", "--top", "3"])
    assert [line.count("\t") for line in capsys.readouterr().out.splitlines()] == [2, 2, 2]  # token, IG, occlusion


def test_encode_reads_it(checkpoints, tmp_path):
    poems = project_file("data", "poems", "poems_default.jsonl.gz")
    for name, ckpt in zip(("original", "tagged"), checkpoints["CurriculumAutoencoder"]):
        encode_file(str(ckpt), poems, str(tmp_path / name), projector=False)
    np.testing.assert_array_equal(np.load(tmp_path / "tagged" / "latents.npy"),
                                  np.load(tmp_path / "original" / "latents.npy"))


def test_sample_reads_it(checkpoints):
    original, tagged = checkpoints["CharLanguageModel"]
    texts = [sample(str(ckpt), "the ", 40, 0.8, seed=1, device="cpu") for ckpt in (original, tagged)]
    assert texts[0] == texts[1] and len(texts[0]) == 44


@pytest.mark.parametrize("device, message", [
    ("cuda", "--device cuda: this machine has no CUDA device available"),
    ("cuda:1", "--device cuda:1: this machine has no CUDA device available"),
    ("tpu", "--device 'tpu' is not a device; use cpu, cuda or cuda:N"),
    ("gpu0", "--device 'gpu0' is not a device"),
])
def test_sample_refuses_a_device_this_machine_lacks_in_one_line(device, message, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # any machine: as if it had no GPU
    with pytest.raises(SystemExit) as stop:  # checked before the checkpoint is even looked for
        sample_main(["--ckpt_path", "no/such.ckpt", "--device", device])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1
