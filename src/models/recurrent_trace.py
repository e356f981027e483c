"""The monitoring contract between recurrent LightningModules and the training-dynamics callbacks.

A module that wants the callbacks in `src/callbacks/` to inspect it has three members:

- ``trace_requested: bool`` -- a callback sets it before a training step it wants to look at. Only then
  does the module keep the gradient of its input sequence, so steps that nobody inspects cost nothing.
- ``last_trace: RecurrentTrace | None`` -- the module's ``training_step`` stores the trace of that step
  here. The input gradient is filled in by the ordinary backward pass of training (no extra pass).
- ``trace(batch) -> RecurrentTrace`` -- a forward pass for inspection only (no loss, no logging), used on
  a fixed validation example.

That is all: no registry, no base class. ``is_traceable`` checks the three members.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class RecurrentTrace:
    """Tensors of one forward pass, as the dynamics callbacks read them.

    inputs: ``[B, T, D]`` the sequence fed to the first recurrent layer (e.g. the embeddings); during a
        traced training step its ``.grad`` holds dLoss/dx after backward.
    mask: ``[B, T]`` bool, True at valid (non-padding) positions.
    hidden: name -> ``[B, T, H]`` hidden-state sequence per layer and direction (``rnn_l0``,
        ``rnn_l0_reverse``, ``encoder_l0``, ``decoder_l0``, ...). Padded positions may hold anything.
    cell: name -> ``[B, H]`` final LSTM cell state per layer and direction, where the model has one.
    """

    inputs: Tensor
    mask: Tensor
    hidden: dict[str, Tensor]
    cell: dict[str, Tensor] = field(default_factory=dict)


def watch_gradient(x: Tensor) -> Tensor:
    """Return ``x`` so that ``x.grad`` is populated by the next backward pass.

    Embeddings are non-leaf tensors (``retain_grad``); raw input data such as word vectors are leaves that do
    not require grad, so they get a fresh leaf that does. Either way the training graph is unchanged.
    """
    if x.requires_grad:
        x.retain_grad()
        return x
    return x.detach().requires_grad_(True)


def is_traceable(module: object) -> bool:
    return (hasattr(module, "trace_requested") and hasattr(module, "last_trace")
            and callable(getattr(module, "trace", None)))


def mask_from_lengths(lengths: Tensor, max_len: int) -> Tensor:
    """``[B]`` lengths -> ``[B, T]`` bool mask, True where the position is < length."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
