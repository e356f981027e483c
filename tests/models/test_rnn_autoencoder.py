"""RNNAutoencoder: last-valid encoding, teacher forcing as one call, decoder modes and padding."""

from __future__ import annotations

import pytest
import torch

from src.models.rnn_autoencoder import RNNAutoencoder
from tests.common import padded_vectors


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_encoder_uses_the_last_valid_state(cell):
    torch.manual_seed(0)
    net = RNNAutoencoder(5, hidden_size=8, bottleneck_dim=3, cell=cell, num_layers=2)
    x, lengths, mask = padded_vectors()
    z, hidden = net.encode(x, lengths)
    noisy = x + 10 * torch.randn_like(x) * (~mask)[..., None]
    longer = torch.cat([noisy, torch.randn(3, 4, 5)], dim=1)  # more padding after every poem
    assert torch.allclose(net.encode(longer, lengths)[0], z, atol=1e-6)
    top = hidden[f"encoder_{cell}_l1"]  # [B, T, H]
    expected = net.to_bottleneck(top[torch.arange(3), lengths - 1])
    assert torch.allclose(z, expected, atol=1e-6)
    alone = net.encode(x[1:2, :4], lengths[1:2])[0]  # the second poem without any padding
    assert torch.allclose(alone, z[1:2], atol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_teacher_forcing_single_call_equals_the_step_loop(cell):
    torch.manual_seed(0)
    net = RNNAutoencoder(5, hidden_size=8, bottleneck_dim=3, cell=cell, num_layers=2,
                         decoder_input="teacher_forcing").eval()
    x, lengths, _ = padded_vectors()
    z, _ = net.encode(x, lengths)
    one_call = net.decode(z, 7, targets=x)
    step_loop = net._decode_stepwise(z, net.initial_state(z), 7, x)  # ratio 1: always the true vector
    assert torch.allclose(one_call.reconstruction, step_loop.reconstruction, atol=1e-5)
    name = f"decoder_{cell}_l1"
    assert torch.allclose(one_call.hidden[name], step_loop.hidden[name], atol=1e-5)
    # The step loop records what each layer read, as the single call does: the gate statistics see the same.
    assert torch.allclose(one_call.layers[name].inputs, step_loop.layers[name].inputs, atol=1e-5)
    free = net.decode(z, 7)  # no targets: its own outputs
    assert free.reconstruction.shape == (3, 7, 5) and not torch.allclose(free.reconstruction, one_call.reconstruction)


@pytest.mark.parametrize("mode", ["previous_output", "teacher_forcing", "bottleneck"])
def test_decoder_modes_shapes_and_padding_independence(mode):
    torch.manual_seed(0)
    net = RNNAutoencoder(5, hidden_size=8, bottleneck_dim=3, cell="gru", decoder_input=mode)
    x, lengths, mask = padded_vectors()
    out = net(x, lengths)
    assert out.reconstruction.shape == x.shape and out.z.shape == (3, 3)
    assert set(out.trace.hidden) == {"encoder_gru_l0", "decoder_gru_l0"} == set(out.trace.layers)
    assert out.trace.hidden["decoder_gru_l0"].shape == (3, 7, 8)
    noisy = x + 10 * torch.randn_like(x) * (~mask)[..., None]
    assert torch.allclose(net(noisy, lengths).reconstruction[mask], out.reconstruction[mask], atol=1e-5)
