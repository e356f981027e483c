"""Many-to-one sequence classifier: embedding -> recurrent stack -> class logits from the last step.

Plain PyTorch, no loss. Used for the memory task (data_modules/memory_task.py), where the answer has to be
read from the state after the last token, and for the initialization experiment, which swaps the recurrent
weight matrix of a vanilla RNN for one of the schemes in ``RECURRENT_INITS``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from src.models.recurrent import RecurrentStack, check_choice, last_valid
from src.monitoring import RecurrentTrace, mask_from_lengths, watch_gradient

RECURRENT_INITS = ("default", "orthogonal", "identity", "gaussian")


def init_recurrent_weights(layer: nn.RNNBase, scheme: str = "default", scale: float = 1.0) -> None:
    """Re-initialise the hidden-to-hidden matrices ``W_hh`` (``[gates * H, H]``) of one ``nn.RNN/LSTM/GRU`` layer.

    default: leave PyTorch's U(-1/sqrt(H), 1/sqrt(H)) (spectral radius ~ 0.58 for a square matrix, so
        gradients shrink by roughly that factor per step at the start).
    orthogonal: ``scale`` x a random orthogonal matrix per gate block (Saxe et al. 2014): every singular value
        is ``scale``, so at init a linear RNN neither shrinks nor grows the gradient.
    identity: ``scale`` x I and zero recurrent/input biases -- the IRNN of Le, Jaitly & Hinton (2015), meant
        for ``nonlinearity="relu"``: the state is copied forward unchanged until the inputs change it.
    gaussian: i.i.d. N(0, scale^2 / H): spectral radius ~ ``scale`` (circular law), the "edge of chaos" at 1.
    Input weights keep PyTorch's default in every scheme, so only the recurrence differs.
    """
    check_choice("recurrent_init", scheme, RECURRENT_INITS)
    if scheme == "default":
        return
    hidden = layer.hidden_size
    with torch.no_grad():
        for name, weight in layer.named_parameters():
            if not name.startswith("weight_hh"):
                continue
            for block in weight.split(hidden, dim=0):  # one [H, H] block per gate
                if scheme == "orthogonal":
                    nn.init.orthogonal_(block, gain=scale)
                elif scheme == "identity":
                    block.copy_(scale * torch.eye(hidden, dtype=block.dtype))
                else:
                    nn.init.normal_(block, 0.0, scale / math.sqrt(hidden))
        if scheme == "identity":
            for name, bias in layer.named_parameters():
                if name.startswith("bias"):
                    bias.zero_()


def add_keep_gate_bias(layer: nn.RNNBase, value: float) -> None:
    """Add ``value`` to the bias of the gate that keeps the previous state: the LSTM forget gate (Gers, Schmidhuber
    & Cummins 2000; Jozefowicz et al. 2015 recommend 1) or the GRU update gate ``z``. PyTorch's default draws
    these biases around 0, so a fresh LSTM keeps only about half of its cell state per step (0.5^50 ~ 1e-15
    after 50 steps); Hochreiter & Schmidhuber's 1997 LSTM had no forget gate at all, i.e. kept everything.
    Both cells keep this gate's bias in the second ``[H]`` block (LSTM gates i,f,g,o; GRU r,z,n)."""
    if value == 0.0:
        return
    if not isinstance(layer, (nn.LSTM, nn.GRU)):
        raise ValueError(f"keep_gate_bias applies to lstm and gru layers, not {type(layer).__name__}")
    hidden = layer.hidden_size
    with torch.no_grad():
        for name, bias in layer.named_parameters():
            if name.startswith("bias_ih"):
                bias[hidden:2 * hidden] += value


class SequenceOutput(NamedTuple):
    logits: Tensor  # [B, C]
    trace: RecurrentTrace


class LastStepClassifier(nn.Module):
    """tokens ``[B, T]`` (+ lengths ``[B]``, None: all T valid) -> logits ``[B, num_classes]`` from the top
    layer's state after each sequence's last valid token.

    cell: ``rnn`` | ``lstm`` | ``gru``; ``nonlinearity`` (tanh|relu) applies to ``rnn``.
    recurrent_init, init_scale: see ``init_recurrent_weights`` (applied to every layer).
    keep_gate_bias: see ``add_keep_gate_bias`` (lstm and gru only; 0 keeps PyTorch's initialisation).
    """

    def __init__(self, vocab_size: int, num_classes: int, embedding_dim: int = 16, hidden_size: int = 64,
                 num_layers: int = 1, cell: str = "rnn", nonlinearity: str = "tanh", recurrent_init: str = "default",
                 init_scale: float = 1.0, keep_gate_bias: float = 0.0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = RecurrentStack(embedding_dim, hidden_size, num_layers, cell, nonlinearity=nonlinearity)
        for layer in self.rnn.layers:
            init_recurrent_weights(layer, recurrent_init, init_scale)
            add_keep_gate_bias(layer, keep_gate_bias)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, tokens: Tensor, lengths: Optional[Tensor] = None, watch_inputs: bool = False) -> SequenceOutput:
        embedded = self.embedding(tokens)  # [B, T, E]
        if watch_inputs:
            embedded = watch_gradient(embedded)
        batch, steps = tokens.shape
        # Without lengths every step is valid and the stack keeps the exact final LSTM cell state.
        rec = self.rnn(embedded, lengths)
        if lengths is None:
            lengths = torch.full((batch,), steps, dtype=torch.long, device=tokens.device)
        last = last_valid(rec.output, lengths)  # [B, H]
        cells = {}
        if rec.final_cell is not None:
            cells = {f"rnn_l{i}": c for i, c in enumerate(rec.final_cell)}
        trace = RecurrentTrace(embedded, mask_from_lengths(lengths, steps), rec.hidden, cells)
        return SequenceOutput(self.head(last), trace)
