"""CharRNN and the bpc arithmetic: bits per character, add-one baselines, cells and tied weights."""

import math

import pytest
import torch
import torch.nn.functional as F

from src.models.char_rnn import CharRNN, add_one_log_probs, bits_per_char


# -- arithmetic -----------------------------------------------------------------------------------------
def test_bpc_is_the_cross_entropy_in_nats_over_ln2_on_a_hand_computed_case():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])  # [B=1, T=2, V=2]
    targets = torch.tensor([[0, 0]])
    # position 1: p = 1/2 -> 1 bit; position 2: p = 3/4 -> log2(4/3) bits
    expected = (1.0 + math.log2(4 / 3)) / 2
    assert bits_per_char(logits, targets).item() == pytest.approx(expected, abs=1e-6)
    nats = F.cross_entropy(logits.view(-1, 2), targets.view(-1)).item()
    assert bits_per_char(logits, targets).item() == pytest.approx(nats / math.log(2), abs=1e-6)


def test_add_one_baselines_on_a_tiny_known_text():
    # vocabulary [<unk>, a, b]; training text "abab": unigram counts a=2, b=2; bigrams a->b twice, b->a once
    unigram = add_one_log_probs(torch.tensor([0, 2, 2])).exp()
    assert unigram.tolist() == pytest.approx([1 / 7, 3 / 7, 3 / 7])
    bigram = add_one_log_probs(torch.tensor([[0, 0, 0], [0, 0, 2], [0, 1, 0]]))
    assert bigram.exp()[1].tolist() == pytest.approx([1 / 5, 1 / 5, 3 / 5])
    assert bigram.exp()[2].tolist() == pytest.approx([1 / 4, 2 / 4, 1 / 4])
    # validation "aba": predict b after a, then a after b
    inputs, targets = torch.tensor([[1, 2]]), torch.tensor([[2, 1]])
    expected = (-math.log2(3 / 5) - math.log2(2 / 4)) / 2
    assert bits_per_char(bigram[inputs], targets).item() == pytest.approx(expected, abs=1e-6)
    assert bits_per_char(add_one_log_probs(torch.tensor([0, 2, 2])).expand(1, 2, 3), targets).item() == \
        pytest.approx(-math.log2(3 / 7), abs=1e-6)





@pytest.mark.parametrize("cell,tie", [("gru", True), ("rnn", False)])
def test_cells_and_tied_weights(cell, tie):
    net = CharRNN(30, embedding_dim=8, hidden_size=12, cell=cell, tie_weights=tie)
    out = net(torch.randint(0, 30, (3, 5)))
    assert out.logits.shape == (3, 5, 30) and out.state.shape == (1, 3, 12)
    assert (net.decoder.weight is net.embedding.weight) == tie
    carried = net(torch.randint(0, 30, (3, 1)), out.state)  # the state a generation step carries
    assert carried.logits.shape == (3, 1, 30)
