"""Checkpoints written by ``train.py`` on CUDA serve in a process that has no GPU (``CUDA_VISIBLE_DEVICES=""``):
``src.predict``, ``src.explain``, ``src.export``, ``src.encode``, ``src.sample``; and ``src.sample --device cuda``
gives the text the CPU gives for the same seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from src.sample import main as sample_main
from tests.common import ROOT
from tests.gpu.cuda_runs import GPU, configured, fit, project_file

pytestmark = GPU
ON_CUDA = ["--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.max_epochs", "1",
           "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2"]
REVIEWS = ["a wonderful film with a great plot", "dull and boring, the worst acting", "an ok film"]


def without_gpu(*args: str) -> subprocess.CompletedProcess:
    """``python -m <args>`` in a fresh process that sees no CUDA device."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """module name -> (the trained LightningModule, its last.ckpt written on CUDA)."""
    runs = {}
    for module in ("TextClassifier", "CurriculumAutoencoder", "CharLanguageModel"):
        tmp = tmp_path_factory.mktemp(module)
        cli = configured(module, tmp, *ON_CUDA)
        run = fit(cli)
        runs[module] = cli.model, run / "checkpoints" / "last.ckpt"
    check = "import torch; assert not torch.cuda.is_available(), 'CUDA_VISIBLE_DEVICES= should hide the GPU'"
    without_gpu("-c", check)
    return runs


def test_a_classifier_trained_on_cuda_predicts_explains_and_exports_without_a_gpu(trained, tmp_path):
    model, ckpt = trained["TextClassifier"]
    texts = tmp_path / "reviews.txt"
    texts.write_text("\n".join(REVIEWS) + "\n", encoding="utf-8")
    without_gpu("-m", "src.predict", "--ckpt_path", str(ckpt), "--input", str(texts), "--output",
                str(tmp_path / "preds.csv"))
    on_cpu = pd.read_csv(tmp_path / "preds.csv")["probability"].to_numpy()
    np.testing.assert_allclose(on_cpu, model.to("cuda").predict_proba(REVIEWS), atol=1e-4)
    explained = without_gpu("-m", "src.explain", "--ckpt_path", str(ckpt), "--text", REVIEWS[0], "--output",
                            str(tmp_path / "page.html"), "--steps", "8")
    assert (tmp_path / "page.html").stat().st_size > 0 and explained.stdout.count("\t") >= 2
    without_gpu("-m", "src.export", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "exported"), "--quantize")
    assert {"model.onnx", "vocab.json", "model_int8.pt", "model_int8.onnx"} <= {
        p.name for p in (tmp_path / "exported").iterdir()}
    assert json.loads((tmp_path / "exported" / "vocab.json").read_text())


def test_an_autoencoder_trained_on_cuda_encodes_without_a_gpu(trained, tmp_path):
    _, ckpt = trained["CurriculumAutoencoder"]
    without_gpu("-m", "src.encode", "--ckpt_path", str(ckpt), "--input",
                project_file("data", "poems", "poems_default.jsonl.gz"), "--output", str(tmp_path), "--no_projector")
    latents = np.load(tmp_path / "latents.npy")
    assert latents.ndim == 2 and len(latents) > 100 and np.isfinite(latents).all()


def test_a_char_lm_trained_on_cuda_samples_without_a_gpu_and_on_cuda_alike(trained, capsys):
    _, ckpt = trained["CharLanguageModel"]
    args = ["--ckpt_path", str(ckpt), "--prime", "the ", "--length", "80", "--temperature", "0.8", "--seed", "3"]
    on_cpu = without_gpu("-m", "src.sample", *args).stdout
    sample_main([*args, "--device", "cuda"])
    assert capsys.readouterr().out == on_cpu and len(on_cpu) == len("the ") + 80 + 1


def test_sample_loads_the_model_onto_the_device_asked_for(trained, capsys):
    from src.lightning_modules.char_language_model import CharLanguageModel
    from src.sample import check_device
    from src.utils.errors import UserInputError

    _, ckpt = trained["CharLanguageModel"]
    assert CharLanguageModel.from_checkpoint(ckpt, map_location=check_device("cuda:0")).device.type == "cuda"
    with pytest.raises(UserInputError, match="CUDA device"):
        check_device("cuda:99")
    greedy = {}
    for device in ("cuda", "cpu"):
        sample_main(["--ckpt_path", str(ckpt), "--length", "40", "--temperature", "0", "--device", device])
        greedy[device] = capsys.readouterr().out
    assert greedy["cuda"] == greedy["cpu"]
