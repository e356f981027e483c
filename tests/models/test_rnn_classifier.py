import pytest
import torch

from src.models.recurrent_stack import RecurrentStack, last_valid
from src.models.rnn_classifier import RNNClassifier


def pad_to(ids, length):
    return torch.cat([ids, torch.zeros(length - len(ids), dtype=torch.long)])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_logit_does_not_depend_on_padding(cell, pooling, bidirectional):
    torch.manual_seed(0)
    model = RNNClassifier(50, 8, 6, num_layers=2, cell=cell, bidirectional=bidirectional, pooling=pooling).eval()
    review = torch.randint(2, 50, (7,))
    other = torch.randint(2, 50, (12,))
    short = model(torch.stack([pad_to(review, 12), other]), torch.tensor([7, 12])).logits[0]
    long = model(torch.stack([pad_to(review, 30), pad_to(other, 30)]), torch.tensor([7, 12])).logits[0]
    alone = model(review[None], torch.tensor([7])).logits[0]
    torch.testing.assert_close(short, long, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(short, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padded_run_equals_packed_run_at_valid_positions(cell, bidirectional):
    torch.manual_seed(1)
    padded = RecurrentStack(5, 7, num_layers=2, cell=cell, bidirectional=bidirectional)
    packed = RecurrentStack(5, 7, num_layers=2, cell=cell, bidirectional=bidirectional, pack=True)
    packed.load_state_dict(padded.state_dict())
    x, lengths = torch.randn(4, 9, 5), torch.tensor([9, 3, 1, 6])
    a, b = padded(x, lengths), packed(x, lengths)
    torch.testing.assert_close(a.final_hidden, b.final_hidden, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(last_valid(a.output, lengths), last_valid(b.output, lengths))
    for name in a.hidden:  # valid positions agree; the packed path zeroes padding
        mask = torch.arange(9)[None, :] < lengths[:, None]
        torch.testing.assert_close(a.hidden[name][mask], b.hidden[name][mask])


def test_reverse_direction_matches_torch_bidirectional_lstm_on_packed_input():
    torch.manual_seed(2)
    ours = RecurrentStack(4, 3, cell="lstm", bidirectional=True)
    reference = torch.nn.LSTM(4, 3, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name, p in ours.layers[0].named_parameters():
            getattr(reference, name).copy_(p)
            getattr(reference, name + "_reverse").copy_(getattr(ours.reverse_layers[0], name))
    x, lengths = torch.randn(3, 6, 4), torch.tensor([6, 2, 4])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, (h_n, _) = reference(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
    mine = ours(x, lengths)
    mask = torch.arange(6)[None, :] < lengths[:, None]
    torch.testing.assert_close(mine.output[mask], out[mask])
    torch.testing.assert_close(mine.final_hidden, h_n)


def test_trace_exposes_inputs_mask_and_per_layer_hidden_sequences():
    model = RNNClassifier(20, 4, 3, num_layers=2, cell="lstm", bidirectional=True, pack=True)
    out = model(torch.randint(2, 20, (2, 5)), torch.tensor([5, 2]), watch_inputs=True)
    trace = out.trace
    assert trace.inputs.shape == (2, 5, 4) and trace.mask.tolist()[1] == [True, True, False, False, False]
    assert set(trace.hidden) == {"lstm_l0", "lstm_l0_reverse", "lstm_l1", "lstm_l1_reverse"} == set(trace.layers)
    assert all(h.shape == (2, 5, 3) for h in trace.hidden.values())
    out.logits.sum().backward()
    assert trace.inputs.grad is not None and trace.inputs.grad.shape == (2, 5, 4)


def test_bad_choices_name_the_options():
    with pytest.raises(ValueError, match="pooling='avg' is not one of"):
        RNNClassifier(10, pooling="avg")
    with pytest.raises(ValueError, match="cell='transformer'"):
        RNNClassifier(10, cell="transformer")


def test_keep_gate_bias_opens_every_layers_forget_gate():
    torch.manual_seed(0)
    plain = RNNClassifier(20, 4, 3, num_layers=2, cell="lstm", bidirectional=True)
    torch.manual_seed(0)
    opened = RNNClassifier(20, 4, 3, num_layers=2, cell="lstm", bidirectional=True, keep_gate_bias=3.0)
    for a, b in zip((*plain.rnn.layers, *plain.rnn.reverse_layers), (*opened.rnn.layers, *opened.rnn.reverse_layers)):
        shift = b.bias_ih_l0 - a.bias_ih_l0  # gates i, f, g, o: only the forget block moves
        assert torch.allclose(shift[3:6], torch.full((3,), 3.0)) and shift[:3].abs().max() == shift[6:].abs().max() == 0
