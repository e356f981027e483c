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
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
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


def pre_activations(layer: LayerInputs, hidden: Tensor, mask: Tensor, rows: int) -> Tensor:
    """``[B, T, rows]`` float32 pre-activations of the first ``rows`` gate rows at every position: one matrix
    product of ``[x_t, h_{t-1}]`` with ``[W_ih, W_hh]``."""
    x = layer.inputs.detach().float()
    previous = previous_states(hidden.detach().float(), mask, layer.initial, layer.reverse)
    weight = torch.cat([layer.weight_ih[:rows], layer.weight_hh[:rows]], dim=1).detach().float()  # [rows, D + H]
    bias = None
    if layer.bias_ih is not None:
        bias = (layer.bias_ih[:rows] + layer.bias_hh[:rows]).detach().float()
    return F.linear(torch.cat([x, previous], dim=-1), weight, bias)


def gate_activations(layer: LayerInputs, hidden: Tensor, mask: Tensor) -> Tensor:
    """``[B, T, G, H]`` float32 gate activations in [0, 1], in the order of ``GATES[layer.cell]`` (the LSTM's
    candidate rescaled, see ``GATES``). hidden: ``[B, T, H]`` the layer's output sequence; mask: ``[B, T]`` valid
    positions (``layer.stepped`` where the layer stepped through more)."""
    gates = len(GATES[layer.cell])
    size = layer.weight_hh.shape[0] // (4 if layer.cell == "lstm" else 3)
    stepped = mask if layer.stepped is None else layer.stepped
    pre = pre_activations(layer, hidden, stepped, gates * size).unflatten(-1, (gates, size))
    if layer.cell == "gru":
        return torch.sigmoid(pre)
    acts = torch.sigmoid(pre)
    acts[:, :, 2] = torch.tanh(pre[:, :, 2]) * 0.5 + 0.5
    return acts


def gate_sums(acts: Tensor, mask: Tensor) -> Tensor:
    """``[B, T, G, H]`` activations and ``[B, T]`` valid mask -> ``[4, G, H]`` float32 on their device: per gate
    and unit, the count of valid positions left-saturated (< 0.1), right-saturated (> 0.9), the sum of the
    activations, and the number of valid positions. Thresholds by clamp and sign, masking by a 0/1 weight (bool
    tensors cost several times a float operation on CPU)."""
    weight = mask.to(acts.device, torch.float32)[:, :, None, None]
    left = (LEFT - acts).clamp_(min=0.0).sign_().mul_(weight).sum((0, 1))
    right = (acts - RIGHT).clamp_(min=0.0).sign_().mul_(weight).sum((0, 1))
    total = (acts * weight).sum((0, 1))
    return torch.stack([left, right, total, weight.sum().expand_as(total)])


def final_cell(layer: LayerInputs, hidden: Tensor, mask: Tensor) -> Tensor:
    """``[B, H]`` float32 LSTM cell state after each sequence's last step (the reverse direction's: after its
    first position), from the gates: ``c = sum_t i_t g_t prod_{s after t} f_s + c_0 prod_s f_s``, with the
    products as exponentials of sums of log-sigmoids (float64 sums: exact to float32 rounding over long sequences).

    mask: ``[B, T]`` valid positions. A padded (not packed) layer's reverse direction also steps through the
    padding first (``layer.stepped``), and its cell state holds what it read there.
    """
    size = layer.weight_hh.shape[0] // 4
    stepped = mask if layer.stepped is None else layer.stepped
    pre = pre_activations(layer, hidden, stepped, 3 * size).unflatten(-1, (3, size))
    weight = (stepped if layer.reverse else mask).to(pre.device, torch.float64)[..., None]  # [B, T, 1]
    log_forget = F.logsigmoid(pre[:, :, 1].double()) * weight
    written = torch.sigmoid(pre[:, :, 0]).double() * torch.tanh(pre[:, :, 2]).double() * weight  # i_t g_t
    sums = log_forget.cumsum(1)
    total = sums[:, -1:]
    kept = (sums - log_forget) if layer.reverse else (total - sums)  # log prod of f over the steps after t
    cell = (written * kept.exp()).sum(1)
    if layer.initial_cell is not None:
        cell = cell + layer.initial_cell.detach().double() * total[:, 0].exp()
    return cell.float()
