"""End to end: train.py on the poetry autoencoder, resume in mid-phase, checkpoint round trip, python -m src.encode."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from data_modules.poem_files import read_poems
from data_modules.poetry import DEFAULT_POEMS
from src.lightning_modules.curriculum_autoencoder import CurriculumAutoencoder
from tests.common import run_dir, scalars


# -- end to end: train.py, resume in mid-phase, checkpoint, encode ---------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run of 1 epoch, then a resume from its last.ckpt to 4 epochs (phase 1 has 2 epochs)."""
    from train import cli_main

    root = tmp_path_factory.mktemp("ae")
    args = ["fit", "--config", "configs/poetry_autoencoder.yaml", "--trainer.default_root_dir", str(root),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.accelerator", "cpu", "--data.max_poems", "24", "--data.max_len", "9", "--data.batch_size", "8",
            "--data.cache_dir", str(root / "cache"), "--model.hidden_size", "16", "--model.bottleneck_dim", "4",
            "--model.cell", "gru", "--model.curriculum", "[[4, 2], [7, 2]]"]
    cli_main(args + ["--trainer.max_epochs", "1"])
    first = run_dir(root)
    cli = cli_main(args + ["--trainer.max_epochs", "4", "--ckpt_path", str(first / "checkpoints" / "last.ckpt")])
    return root, first, run_dir(root, 1), cli


@pytest.mark.slow
def test_resume_in_mid_phase_continues_the_phase(trained):
    _, first, resumed, _ = trained
    assert scalars(first)["curriculum/max_len"] == [4.0]
    # Epoch 1 is still phase 1 (max_len 4); epochs 2-3 are phase 2 (7).
    assert scalars(resumed)["curriculum/max_len"] == [4.0, 7.0, 7.0]
    assert scalars(resumed)["curriculum/phase"] == [1.0, 2.0, 2.0]
    for tag in ("val/mse", "val/cosine", "val/word_recovery", "val/baseline_cosine", "val/baseline_word_recovery"):
        assert len(scalars(resumed)[tag]) == 3, tag


@pytest.mark.slow
def test_checkpoint_gives_the_same_z_after_reload(trained):
    _, _, resumed, cli = trained
    path = resumed / "checkpoints" / "last.ckpt"
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw["model_class"] == "CurriculumAutoencoder" and raw["glove_path"].startswith("data/glove/")
    assert raw["vocab_vectors"].shape == (len(raw["vocabulary"]), 50)
    model = cli.model.eval()
    loaded = CurriculumAutoencoder.from_checkpoint(str(path)).eval()
    batch = cli.datamodule.datasets["val"].collate([0, 1])
    with torch.no_grad():
        assert torch.equal(model.encode(batch), loaded.encode(batch))
        assert loaded.decode(loaded.encode(batch), 9).shape == (2, 9, 50)
    assert loaded.vocabulary == cli.datamodule.vocabulary


@pytest.mark.slow
def test_encode_cli_writes_latents_metadata_and_projector(trained, tmp_path, capsys):
    from src.encode import main

    _, _, resumed, _ = trained
    ckpt = str(resumed / "checkpoints" / "last.ckpt")
    poems = tmp_path / "poems.jsonl"
    rows = [{"title": "one", "author": "a", "text": "the sea is wide and the night is long"},
            {"title": "none", "author": "b", "text": "qqqq zzzz"},
            {"title": "three\tx", "author": "c", "text": "o sweet is the song of the bird in spring"}]
    poems.write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(["--ckpt_path", ckpt, "--input", str(poems), "--output", str(tmp_path / "out")])
    assert "skipped 1 poem" in capsys.readouterr().out
    latents = np.load(tmp_path / "out" / "latents.npy")
    assert latents.shape == (2, 4) and latents.dtype == np.float32
    lines = (tmp_path / "out" / "metadata.tsv").read_text().splitlines()
    assert lines == ["title\tauthor\twords", "one\ta\t9", "three x\tc\t9"]
    assert list((tmp_path / "out" / "projector").rglob("projector_config.pbtxt"))
    # A GloVe file of another dimension than the checkpoint's: one line, exit status 2.
    other = tmp_path / "glove.3d.txt"
    other.write_text("the 1 2 3\nsea 1 2 3\n")
    with pytest.raises(SystemExit) as stop:
        main(["--ckpt_path", ckpt, "--input", str(poems), "--output", str(tmp_path / "o2"), "--glove_path", str(other)])
    assert stop.value.code == 2 and "3-d vectors but the checkpoint's model reads 50-d" in capsys.readouterr().err


@pytest.mark.slow
def test_auto_bottleneck_and_a_checkpoint_of_another_dimension(trained, tmp_path, capsys):
    """bottleneck_dim auto takes the data's PCA figure and is stored resolved; resuming that 4-d checkpoint
    on the 50-d default fails in one line before any weights are loaded."""
    from train import cli_main

    root, _, _, _ = trained
    glove = tmp_path / "glove.4d.txt"
    words = ["the", "and", "of", "to", "a", "in", "i", "my", "that", "with", "is", "his", "for", "on", "be"]
    rng = np.random.default_rng(0)
    glove.write_text("".join(f"{w} {' '.join(f'{v:.3f}' for v in rng.standard_normal(4))}\n" for w in words))
    args = ["fit", "--config", "configs/poetry_autoencoder.yaml", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.accelerator", "cpu", "--data.max_poems", "16", "--data.max_len", "6", "--data.cache_dir",
            str(root / "cache"), "--model.hidden_size", "8", "--model.bottleneck_dim", "auto", "--model.curriculum",
            "null", "--trainer.max_epochs", "1"]
    cli = cli_main(args + ["--data.glove_path", str(glove)])
    assert cli.model.hparams.bottleneck_dim == cli.datamodule.report["pca_dim_90"] <= 4
    ckpt = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["bottleneck_dim"] == cli.model.hparams.bottleneck_dim
    with pytest.raises(SystemExit) as stop:
        cli_main(args + ["--trainer.max_epochs", "2", "--ckpt_path", str(ckpt)])
    assert stop.value.code == 2
    assert "trained on 4-d word vectors but this data has 50-d" in capsys.readouterr().err



def test_default_poems_file_is_read_by_the_encode_reader():
    assert len(read_poems(DEFAULT_POEMS)) == 1500
