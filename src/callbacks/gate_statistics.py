"""Gate saturation of LSTM and GRU layers, computed from what a forward pass already holds.

Karpathy, Johnson & Fei-Fei (2015), "Visualizing and Understanding Recurrent Networks", count how often each
unit's gate is *left-saturated* (activation < 0.1: the gate is shut) or *right-saturated* (> 0.9: wide open); a
forget gate right-saturated most of the time is a unit that keeps its memory over long spans. They measure it after
training, on dumped states. Here it is measured inside training, on the steps a callback logs.

A layer's gates at step t depend only on its input ``x_t`` and its previous state ``h_{t-1}``, and the trace holds
both sequences (``LayerInputs.inputs`` and the hidden sequence), so every gate of every position is ONE matrix
product over all steps: ``[x_t, h_{t-1}] @ [W_ih, W_hh]^T + b``. No step-by-step loop, no second run of the cell.
The LSTM's cell state after each sequence's last valid step follows from the gates in closed form as well
(``c_T = sum_t i_t g_t prod_{s>t} f_s + c_0 prod_s f_s``), so it is known on paths that do not return it.

Cost: the product is as large as the layer's own input projection (about a third of the layer's forward and
backward work), so the callback computes it on a bounded number of a logged batch's sequences
(``HiddenStateMonitor(gate_sequences=8)``; training batches are shuffled, so they are a random sample), and on
every 25th step by default (``gates_every_n_steps``) however often the other statistics are logged.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch
from torch import Tensor

from src.models.recurrent_trace import LayerInputs

# PyTorch's gate order in weight_ih / weight_hh. The LSTM's cell candidate g is a tanh: it is rescaled to [0, 1]
# ((g + 1) / 2) so that "the outer tenth of the range" means the same for every gate (g < -0.8 or g > 0.8).
GATES = {"lstm": ("input", "forget", "candidate", "output"), "gru": ("reset", "update")}
MEMORY_GATE = {"lstm": "forget", "gru": "update"}  # near 1: the unit keeps its state (GRU: h = (1-z) n + z h_prev)
LEFT, RIGHT = 0.1, 0.9


def previous_states(hidden: Tensor, mask: Tensor, initial: Optional[Tensor], reverse: bool) -> Tensor:
    """``[B, T, H]`` states -> ``[B, T, H]`` the state each position's step started from: ``h_{t-1}`` (``h_{t+1}``
    for a reverse direction), the initial state (zeros if None) at the first step a sequence takes. ``mask [B, T]``
    marks the positions the layer stepped through (a reverse direction starts at each sequence's last one)."""
    start = torch.zeros_like(hidden[:, :1]) if initial is None else initial[:, None].to(hidden.dtype)
    if not reverse:
        return torch.cat([start.expand(-1, 1, -1), hidden[:, :-1]], dim=1)
    following = torch.cat([hidden[:, 1:], torch.zeros_like(hidden[:, :1])], dim=1)
    first_step = ~torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)  # the last position stepped through
    return torch.where(first_step[..., None].to(hidden.device), start, following)


def gate_activations(layer: LayerInputs, hidden: Tensor, mask: Tensor) -> Tensor:
    """``[B, T, G, H]`` float32 gate activations in [0, 1] at every position, in the order of ``GATES[layer.cell]``
    (the LSTM's candidate as ``(tanh(g) + 1) / 2``). hidden: ``[B, T, H]`` the layer's output sequence; mask:
    ``[B, T]`` valid positions (the layer stepped through all of them and, ``through_padding``, the padding too).

    ``x_t W_ih^T + h_{t-1} W_hh^T + b`` for all positions at once (the GRU's first two gates only), then one
    sigmoid: the candidate's pre-activations are doubled, as ``(tanh(g) + 1) / 2 = sigmoid(2 g)``. Written as few
    tensor operations as it takes: on a training step's small tensors each costs a few microseconds of overhead.
    """
    kind = layer.cell
    gates = len(GATES[kind])
    size = layer.weight_hh.shape[0] // (4 if kind == "lstm" else 3)
    rows = gates * size
    stepped = torch.ones_like(mask) if layer.through_padding else mask
    previous = previous_states(hidden.detach().float(), stepped, layer.initial, layer.reverse)  # [B, T, H]
    inputs = layer.inputs.detach().float()
    batch, steps = inputs.shape[:2]
    weight_ih, weight_hh = layer.weight_ih.detach()[:rows].float(), layer.weight_hh.detach()[:rows].float()
    if layer.bias_ih is None:
        pre = inputs.reshape(batch * steps, -1) @ weight_ih.t()
    else:
        bias = (layer.bias_ih.detach()[:rows] + layer.bias_hh.detach()[:rows]).float()
        pre = torch.addmm(bias, inputs.reshape(batch * steps, -1), weight_ih.t())
    pre.addmm_(previous.reshape(batch * steps, -1), weight_hh.t())  # [B * T, G * H]
    if kind == "lstm":
        pre[:, 2 * size:3 * size] *= 2.0
    return torch.sigmoid_(pre).view(batch, steps, gates, size)


def gate_sums(acts: Tensor, mask: Tensor) -> Tensor:
    """``[B, T, G, H]`` activations and ``[B, T]`` valid mask -> ``[4, G, H]`` float32 on their device: per gate
    and unit, the count of valid positions left-saturated (< 0.1), right-saturated (> 0.9), the sum of the
    activations, and the number of valid positions. Thresholds by clamp and sign, masking by a 0/1 weight: on CPU
    a comparison or ``where`` on these small tensors costs about twice the float operations (measured)."""
    weight = mask.to(acts.device, torch.float32)[:, :, None, None]
    left = (LEFT - acts).clamp_(min=0.0).sign_().mul_(weight).sum((0, 1))
    right = (acts - RIGHT).clamp_(min=0.0).sign_().mul_(weight).sum((0, 1))
    total = (acts * weight).sum((0, 1))
    return torch.stack([left, right, total, weight.sum().expand_as(total)])


def final_cell(layer: LayerInputs, hidden: Tensor, mask: Tensor, acts: Optional[Tensor] = None) -> Tensor:
    """``[B, H]`` float32 LSTM cell state after each sequence's last step (the reverse direction's: after its
    first position), from the gates: ``c = sum_t i_t g_t prod_{s after t} f_s + c_0 prod_s f_s``; the products
    are cumulative products over time (float32, no logarithms: a product of numbers in [0, 1] loses no digits).

    mask: ``[B, T]`` valid positions. A padded (not packed) layer's reverse direction also steps through the
    padding first (``layer.through_padding``), and its cell state holds what it read there. acts: ``gate_activations``
    of the same arguments, if already computed.
    """
    acts = gate_activations(layer, hidden, mask) if acts is None else acts
    stepped = torch.ones_like(mask) if layer.through_padding else mask
    chain = (stepped if layer.reverse else mask).to(acts.device, torch.float32)[..., None]  # [B, T, 1] its steps
    forget = acts[:, :, 1] * chain + (1.0 - chain)  # 1 where the chain does not step: the product skips it
    written = acts[:, :, 0] * (2.0 * acts[:, :, 2] - 1.0) * chain  # i_t g_t
    if layer.reverse:  # from the last position back to the first: what is written at t decays over s < t
        through = torch.cumprod(forget, dim=1)
        cell = written[:, 0] + (written[:, 1:] * through[:, :-1]).sum(1)
        total = through[:, -1]
    else:
        through = torch.cumprod(forget.flip(1), dim=1).flip(1)  # prod over s >= t
        cell = written[:, -1] + (written[:, :-1] * through[:, 1:]).sum(1)
        total = through[:, 0]
    if layer.initial_cell is not None:
        cell = cell + layer.initial_cell.detach().float() * total
    return cell


def first_sequences(layer: LayerInputs, count: int) -> LayerInputs:
    """The ``LayerInputs`` of the first ``count`` sequences of the batch."""
    if count >= layer.inputs.size(0):
        return layer
    pick = (lambda t: None if t is None else t[:count])  # noqa: E731
    return replace(layer, inputs=layer.inputs[:count], initial=pick(layer.initial),
                   initial_cell=pick(layer.initial_cell))
