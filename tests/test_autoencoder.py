"""Curriculum autoencoder: masked loss, last-valid encoding, decoder modes, curriculum and resume, overfitting,
checkpoint round trip, the monitoring contract and the encode CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from data_modules.poem_files import read_poems
from data_modules.poetry import DEFAULT_POEMS, PoemBatch
from src.lightning_modules.curriculum_autoencoder import (
    CurriculumAutoencoder,
    ReconstructionScores,
    check_curriculum,
    curriculum_at,
    masked_mse,
)
from src.models.recurrent_trace import mask_from_lengths
from src.models.rnn_autoencoder import RNNAutoencoder
from src.utils.errors import UserInputError


def padded(batch: int = 3, steps: int = 7, dim: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, dim, generator=g)
    lengths = torch.tensor([steps, 4, 2][:batch])
    mask = mask_from_lengths(lengths, steps)
    return x * mask[..., None], lengths, mask


# -- loss and encoder ------------------------------------------------------------------------------------
def test_masked_mse_ignores_padded_values():
    target, lengths, mask = padded()
    prediction = torch.randn_like(target)
    loss = masked_mse(prediction, target, mask)
    garbage = prediction.clone()
    garbage[~mask] = float("nan")  # even NaN in the padding changes nothing
    assert torch.equal(masked_mse(garbage, target, mask), loss)
    expected = sum(((prediction[b, :n] - target[b, :n]) ** 2).sum() for b, n in enumerate(lengths.tolist()))
    assert loss.item() == pytest.approx(expected.item() / (int(lengths.sum()) * target.size(-1)), rel=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_encoder_uses_the_last_valid_state(cell):
    torch.manual_seed(0)
    net = RNNAutoencoder(5, hidden_size=8, bottleneck_dim=3, cell=cell, num_layers=2)
    x, lengths, mask = padded()
    z, hidden = net.encode(x, lengths)
    noisy = x + 10 * torch.randn_like(x) * (~mask)[..., None]
    longer = torch.cat([noisy, torch.randn(3, 4, 5)], dim=1)  # more padding after every poem
    assert torch.allclose(net.encode(longer, lengths)[0], z, atol=1e-6)
    top = hidden["encoder_l1"]  # [B, T, H]
    expected = net.to_bottleneck(top[torch.arange(3), lengths - 1])
    assert torch.allclose(z, expected, atol=1e-6)
    alone = net.encode(x[1:2, :4], lengths[1:2])[0]  # the second poem without any padding
    assert torch.allclose(alone, z[1:2], atol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_teacher_forcing_single_call_equals_the_step_loop(cell):
    torch.manual_seed(0)
    net = RNNAutoencoder(5, hidden_size=8, bottleneck_dim=3, cell=cell, num_layers=2,
                         decoder_input="teacher_forcing").eval()
    x, lengths, _ = padded()
    z, _ = net.encode(x, lengths)
    one_call = net.decode(z, 7, targets=x)
    step_loop = net._decode_stepwise(z, net.initial_state(z), 7, x)  # ratio 1: always the true vector
    assert torch.allclose(one_call.reconstruction, step_loop.reconstruction, atol=1e-5)
    assert torch.allclose(one_call.hidden["decoder_l1"], step_loop.hidden["decoder_l1"], atol=1e-5)
    free = net.decode(z, 7)  # no targets: its own outputs
    assert free.reconstruction.shape == (3, 7, 5) and not torch.allclose(free.reconstruction, one_call.reconstruction)


@pytest.mark.parametrize("mode", ["previous_output", "teacher_forcing", "bottleneck"])
def test_decoder_modes_shapes_and_padding_independence(mode):
    torch.manual_seed(0)
    net = RNNAutoencoder(5, hidden_size=8, bottleneck_dim=3, cell="gru", decoder_input=mode)
    x, lengths, mask = padded()
    out = net(x, lengths)
    assert out.reconstruction.shape == x.shape and out.z.shape == (3, 3)
    assert set(out.trace.hidden) == {"encoder_l0", "decoder_l0"} and out.trace.hidden["decoder_l0"].shape == (3, 7, 8)
    noisy = x + 10 * torch.randn_like(x) * (~mask)[..., None]
    assert torch.allclose(net(noisy, lengths).reconstruction[mask], out.reconstruction[mask], atol=1e-5)


# -- curriculum --------------------------------------------------------------------------------------------
def test_curriculum_max_len_per_epoch():
    phases = [[20, 15], [35, 20], [50, 15]]
    got = [curriculum_at(phases, e) for e in range(52)]
    assert got[:15] == [(1, 20)] * 15 and got[15:35] == [(2, 35)] * 20 and got[35:50] == [(3, 50)] * 15
    assert got[50:] == [(3, 50)] * 2  # after the last phase its length stays
    assert curriculum_at(None, 7) == (0, None)
    with pytest.raises(UserInputError, match="max_len, epochs"):
        check_curriculum([[20, 0]])


def test_batch_truncation_clips_lengths():
    x, lengths, mask = padded()
    batch = PoemBatch(x, mask, mask.long() * 5, lengths, torch.arange(3)).truncate(3)
    assert batch.embeddings.shape == (3, 3, 5) and batch.lengths.tolist() == [3, 3, 2]
    assert torch.equal(batch.mask, mask[:, :3])


# -- learning ----------------------------------------------------------------------------------------------
def test_overfits_eight_poems(cache_dir):
    """8 real poems, 12 words each, 50-d GloVe: reconstructed from z alone to cosine > 0.9."""
    from data_modules.poetry import PoetryEmbeddingsDataModule

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: on a busy CPU, 2 threads make this 10-50x slower
    torch.manual_seed(0)
    dm = PoetryEmbeddingsDataModule(max_poems=9, seq_len=12, val_fraction=0.1, batch_size=8, cache_dir=cache_dir)
    dm.setup("fit")
    batch = dm.datasets["train"].collate(list(range(8)))
    net = RNNAutoencoder(50, hidden_size=64, bottleneck_dim=16, cell="gru", decoder_input="bottleneck")
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    try:
        for _ in range(200):
            loss = masked_mse(net(batch.embeddings, batch.lengths).reconstruction, batch.embeddings, batch.mask)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    scores = ReconstructionScores()
    with torch.no_grad():
        scores.update(net(batch.embeddings, batch.lengths, teacher_forcing=False).reconstruction, batch.embeddings,
                      batch.mask, batch.tokens)
    assert scores.compute()["cosine"] > 0.9
    before = ReconstructionScores()  # the same check fails for an untrained model
    with torch.no_grad():
        fresh = RNNAutoencoder(50, hidden_size=64, bottleneck_dim=16, cell="gru", decoder_input="bottleneck")
        before.update(fresh(batch.embeddings, batch.lengths).reconstruction, batch.embeddings, batch.mask, batch.tokens)
    assert before.compute()["cosine"] < 0.5


# -- end to end: train.py, resume in mid-phase, checkpoint, encode ---------------------------------------
def scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = []
    for f in sorted(run_dir.glob("events.out.tfevents.*")):
        ea = EventAccumulator(str(f), size_guidance={"scalars": 0})
        ea.Reload()
        if tag in ea.Tags()["scalars"]:
            values += [e.value for e in ea.Scalars(tag)]
    return values


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run of 1 epoch, then a resume from its last.ckpt to 4 epochs (phase 1 has 2 epochs)."""
    from train import cli_main

    root = tmp_path_factory.mktemp("ae")
    args = ["fit", "--config", "configs/poetry_autoencoder.yaml", "--trainer.default_root_dir", str(root),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.accelerator", "cpu", "--data.max_poems", "24", "--data.seq_len", "9", "--data.batch_size", "8",
            "--data.cache_dir", str(root / "cache"), "--model.hidden_size", "16", "--model.bottleneck_dim", "4",
            "--model.cell", "gru", "--model.curriculum", "[[4, 2], [7, 2]]"]
    cli_main(args + ["--trainer.max_epochs", "1"])
    first = root / "lightning_logs" / "version_0"
    cli = cli_main(args + ["--trainer.max_epochs", "4", "--ckpt_path", str(first / "checkpoints" / "last.ckpt")])
    return root, first, root / "lightning_logs" / "version_1", cli


@pytest.mark.slow
def test_resume_in_mid_phase_continues_the_phase(trained):
    _, first, resumed, _ = trained
    assert scalars(first, "curriculum/max_len") == [4.0]
    # Epoch 1 is still phase 1 (max_len 4); epochs 2-3 are phase 2 (7).
    assert scalars(resumed, "curriculum/max_len") == [4.0, 7.0, 7.0]
    assert scalars(resumed, "curriculum/phase") == [1.0, 2.0, 2.0]
    for tag in ("val/mse", "val/cosine", "val/word_recovery", "val/baseline_cosine", "val/baseline_word_recovery"):
        assert len(scalars(resumed, tag)) == 3, tag


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
            "--trainer.accelerator", "cpu", "--data.max_poems", "16", "--data.seq_len", "6", "--data.cache_dir",
            str(root / "cache"), "--model.hidden_size", "8", "--model.bottleneck_dim", "auto", "--model.curriculum",
            "null", "--trainer.max_epochs", "1"]
    cli = cli_main(args + ["--data.glove_path", str(glove)])
    assert cli.model.hparams.bottleneck_dim == cli.datamodule.report["pca_dim_90"] <= 4
    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["bottleneck_dim"] == cli.model.hparams.bottleneck_dim
    with pytest.raises(SystemExit) as stop:
        cli_main(args + ["--trainer.max_epochs", "2", "--ckpt_path", str(ckpt)])
    assert stop.value.code == 2
    assert "trained on 4-d word vectors but this data has 50-d" in capsys.readouterr().err


def test_monitoring_contract_fills_the_trace_of_a_training_step():
    torch.manual_seed(0)
    module = CurriculumAutoencoder(input_dim=5, hidden_size=8, bottleneck_dim=3, cell="lstm", curriculum=None,
                                   decoder_input="teacher_forcing")
    x, lengths, mask = padded()
    batch = PoemBatch(x, mask, mask.long() * 5, lengths, torch.arange(3))
    module.trace_requested = True
    with pytest.warns(UserWarning):  # self.log without a Trainer: Lightning warns and goes on
        loss = module.training_step(batch, 0)
    loss.backward()
    trace = module.last_trace
    assert set(trace.hidden) == {"encoder_l0", "decoder_l0"} and set(trace.cell) == {"decoder_l0"}
    grad = trace.inputs.grad
    assert grad is not None and grad[mask].abs().sum() > 0 and grad[~mask].abs().sum() == 0
    assert module.trace(batch).hidden["decoder_l0"].shape == (3, 7, 8)


def test_default_poems_file_is_read_by_the_encode_reader():
    assert len(read_poems(DEFAULT_POEMS)) == 1500
