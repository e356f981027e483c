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
from typing import Optional

import torch
from torch import Tensor


@dataclass
class LayerInputs:
    """What one recurrent layer (one direction) computed its gates from: enough to recompute every gate activation
    at every position with one matrix product, without running the cell again (src/callbacks/gate_statistics.py).

    cell: ``rnn`` | ``lstm`` | ``gru``.
    inputs: ``[B, T, D]`` the sequence the layer read, as it read it (after dropout between layers), in the
        sequence's own order also for a reverse direction.
    weight_ih ``[G*H, D]``, weight_hh ``[G*H, H]``, bias_ih / bias_hh ``[G*H]`` (None without bias): the layer's
        parameters in PyTorch's layout (LSTM gates i, f, g, o; GRU r, z, n).
    initial: ``[B, H]`` the state before the first step (None: zeros); initial_cell the LSTM's ``c`` before it.
    reverse: the layer reads each sequence from its last valid position back to its first.
    through_padding: the layer stepped through every position, its padding included (a padded tensor, not packed:
        a reverse direction then starts at the last position, not at each sequence's last valid one).
    """

    cell: str
    inputs: Tensor
    weight_ih: Tensor
    weight_hh: Tensor
    bias_ih: Optional[Tensor] = None
    bias_hh: Optional[Tensor] = None
    initial: Optional[Tensor] = None
    initial_cell: Optional[Tensor] = None
    reverse: bool = False
    through_padding: bool = False


@dataclass
class RecurrentTrace:
    """Tensors of one forward pass, as the dynamics callbacks read them.

    inputs: ``[B, T, D]`` the sequence fed to the first recurrent layer (e.g. the embeddings); during a
        traced training step its ``.grad`` holds dLoss/dx after backward.
    mask: ``[B, T]`` bool, True at valid (non-padding) positions.
    hidden: name -> ``[B, T, H]`` hidden-state sequence per layer and direction, named by what it is: the cell
        and the layer (``lstm_l0``, ``gru_l1_reverse``), prefixed by the part of the model where several stacks
        exist (``encoder_gru_l0``, ``decoder_gru_l0``). Padded positions may hold anything.
    cell: name -> ``[B, H]`` LSTM cell state after each sequence's last valid step, where the model has it exactly.
    layers: name -> ``LayerInputs`` of that hidden sequence, where the model provides them (for gate statistics,
        and an LSTM's final cell state where ``cell`` lacks it).
    masks: name -> ``[B', T']`` valid mask of a hidden sequence that does not share ``mask`` (a decoder reading
        sequences of another length).
    input_grad: ``[B, T, D]`` dLoss/dx where the trace is built after backward (forward hooks); None: read
        ``inputs.grad``.
    """

    inputs: Tensor
    mask: Tensor
    hidden: dict[str, Tensor]
    cell: dict[str, Tensor] = field(default_factory=dict)
    layers: dict[str, LayerInputs] = field(default_factory=dict)
    masks: dict[str, Tensor] = field(default_factory=dict)
    input_grad: Optional[Tensor] = None

    def gradient(self) -> Optional[Tensor]:
        """``[B, T, D]`` dLoss/dx after backward, or None when the input kept no gradient."""
        return self.input_grad if self.input_grad is not None else self.inputs.grad

    def mask_of(self, name: str) -> Tensor:
        return self.masks.get(name, self.mask)


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
