"""CurriculumAutoencoder: masked loss, curriculum, overfitting eight poems, the monitoring contract."""

from __future__ import annotations

import pytest
import torch

from data_modules.poetry import PoemBatch
from src.lightning_modules.curriculum_autoencoder import (
    CurriculumAutoencoder,
    ReconstructionScores,
    check_curriculum,
    curriculum_at,
    masked_mse,
)
from src.models.rnn_autoencoder import RNNAutoencoder
from src.utils.errors import UserInputError
from tests.common import padded_vectors


def test_masked_mse_ignores_padded_values():
    target, lengths, mask = padded_vectors()
    prediction = torch.randn_like(target)
    loss = masked_mse(prediction, target, mask)
    garbage = prediction.clone()
    garbage[~mask] = float("nan")  # even NaN in the padding changes nothing
    assert torch.equal(masked_mse(garbage, target, mask), loss)
    expected = sum(((prediction[b, :n] - target[b, :n]) ** 2).sum() for b, n in enumerate(lengths.tolist()))
    assert loss.item() == pytest.approx(expected.item() / (int(lengths.sum()) * target.size(-1)), rel=1e-6)


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
    x, lengths, mask = padded_vectors()
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
    dm = PoetryEmbeddingsDataModule(max_poems=9, max_len=12, val_fraction=0.1, batch_size=8, cache_dir=cache_dir)
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


def test_monitoring_contract_fills_the_trace_of_a_training_step():
    torch.manual_seed(0)
    module = CurriculumAutoencoder(input_dim=5, hidden_size=8, bottleneck_dim=3, cell="lstm", curriculum=None,
                                   decoder_input="teacher_forcing")
    x, lengths, mask = padded_vectors()
    batch = PoemBatch(x, mask, mask.long() * 5, lengths, torch.arange(3))
    module.trace_requested = True
    with pytest.warns(UserWarning):  # self.log without a Trainer: Lightning warns and goes on
        loss = module.training_step(batch, 0)
    loss.backward()
    trace = module.last_trace
    # Both run padded: their cell states after each poem's last word come from their gates (HiddenStateMonitor).
    assert set(trace.hidden) == {"encoder_lstm_l0", "decoder_lstm_l0"} == set(trace.layers) and trace.cell == {}
    grad = trace.inputs.grad
    assert grad is not None and grad[mask].abs().sum() > 0 and grad[~mask].abs().sum() == 0
    assert module.trace(batch).hidden["decoder_lstm_l0"].shape == (3, 7, 8)
