"""Initialisations of a recurrent layer's memory: its hidden-to-hidden matrices (``init_recurrent_weights``) and
the bias of the gate that keeps the previous state (``add_keep_gate_bias``)."""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import nn

from src.models.recurrent_stack import check_choice

RecurrentInit = Literal["default", "orthogonal", "identity", "gaussian"]
RECURRENT_INITS = get_args(RecurrentInit)


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
