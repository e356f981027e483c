"""The networks compute the same on CUDA (cuDNN's fused RNN kernels, the fused cell ops of the stepwise decoder) as
on the CPU, from the same weights: outputs and every parameter's gradient, in float32 with TF32 off."""

from __future__ import annotations

import copy

import pytest
import torch

from src.models.char_rnn import CharRNN
from src.models.last_step_classifier import LastStepClassifier
from src.models.rnn_autoencoder import DECODER_INPUTS, RNNAutoencoder
from src.models.rnn_classifier import RNNClassifier
from tests.gpu.cuda_runs import GPU

pytestmark = GPU
CUDA = torch.device("cuda")
OUTPUT_TOLERANCE = dict(atol=1e-4, rtol=1e-4)
GRADIENT_TOLERANCE = dict(atol=1e-4, rtol=1e-3)


@pytest.fixture(autouse=True)
def float32_without_tf32():
    """TF32 matmuls keep 10 mantissa bits: compare the float32 arithmetic itself."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def same_on_cuda(net: torch.nn.Module, run, *inputs: torch.Tensor) -> None:
    """``run(net, *inputs)`` -> a tensor; the CUDA copy of ``net`` must match the CPU one in value and gradient."""
    on_gpu = copy.deepcopy(net).to(CUDA)
    results = []
    for model, args in ((net, inputs), (on_gpu, [x.to(CUDA) for x in inputs])):
        output = run(model, *args)
        output.float().square().mean().backward()
        results.append((output.detach().float().cpu(), {n: p.grad.cpu() for n, p in model.named_parameters()
                                                         if p.grad is not None}))
    (cpu_out, cpu_grads), (gpu_out, gpu_grads) = results
    torch.testing.assert_close(gpu_out, cpu_out, **OUTPUT_TOLERANCE)
    assert gpu_grads.keys() == cpu_grads.keys() and cpu_grads
    for name, grad in cpu_grads.items():
        torch.testing.assert_close(gpu_grads[name], grad, **GRADIENT_TOLERANCE, msg=name)


def tokens_and_lengths(vocab: int = 50, lengths=(9, 4, 7, 1, 9, 6)):
    generator = torch.Generator().manual_seed(1)
    lengths = torch.tensor(lengths)
    tokens = torch.randint(2, vocab, (len(lengths), int(lengths.max())), generator=generator)
    return tokens * (torch.arange(tokens.size(1))[None] < lengths[:, None]), lengths  # pad index 0 after each


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("pooling, layers, pack", [("last", 1, False), ("mean", 2, False), ("last", 1, True)],
                         ids=["last", "mean-2-layers", "packed"])
def test_classifier(cell, bidirectional, pooling, layers, pack):
    torch.manual_seed(0)
    net = RNNClassifier(50, 16, 24, layers, cell, bidirectional, pooling=pooling, pack=pack)
    tokens, lengths = tokens_and_lengths()
    # Lengths stay on the CPU, as serving passes them (PyTorchClassifier moves the tokens only); in training
    # Lightning moves them with the batch (test_cuda_training.py).
    same_on_cuda(net, lambda model, t: model(t, lengths).logits, tokens)


def test_last_step_classifier():
    torch.manual_seed(0)
    net = LastStepClassifier(10, 10, 8, 24, 2, "lstm")
    same_on_cuda(net, lambda model, t: model(t).logits, torch.randint(0, 10, (5, 12)))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("decoder_input", DECODER_INPUTS)
@pytest.mark.parametrize("teacher_forcing", [True, False], ids=["training", "from-z"])
def test_autoencoder(cell, decoder_input, teacher_forcing):
    torch.manual_seed(0)
    net = RNNAutoencoder(12, 16, 4, cell, 2, decoder_input)
    lengths = torch.tensor([7, 3, 5, 7])
    x = torch.randn(4, 7, 12) * (torch.arange(7)[None] < lengths[:, None])[..., None]
    same_on_cuda(net, lambda model, v: model(v, lengths.to(v.device), teacher_forcing).reconstruction, x)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_char_rnn_with_its_state_carried_into_the_next_window(cell):
    torch.manual_seed(0)
    net = CharRNN(30, 8, 32, 2, cell)
    windows = torch.randint(0, 30, (3, 2, 10))  # [B, 2 windows, T]

    def two_windows(model, w):
        first = model(w[:, 0])
        return torch.cat([first.logits, model(w[:, 1], first.state).logits], dim=1)

    same_on_cuda(net, two_windows, windows)
