"""The trace of any model, seen through forward hooks on its ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` modules.

A model that does not implement the monitoring contract (src/models/recurrent_trace.py) still gets the dynamics
callbacks: on a step they log, ``HookTrace`` hooks every recurrent module found in the model's tree
(src/callbacks/recurrent_modules.py), keeps each one's input, initial state and output of its first call, and
makes the first module's input keep its gradient from the ordinary backward pass; after the step the hooks are
removed, so other steps cost nothing. From these it builds the same ``RecurrentTrace`` a contract model stores.

What the hooks see, and what they cannot:

- batch-first or time-major tensors, unbatched ones, and ``PackedSequence`` inputs (exact lengths);
- a padded tensor (not packed) carries no lengths: trailing positions whose input vector is all zeros (what
  ``pad_sequence`` and an ``nn.Embedding(padding_idx=...)`` give) count as padding, otherwise every position counts;
- an ``nn.LSTM(num_layers=k)`` returns only its top layer's sequence. The lower layers' sequences (which their
  statistics and the upper layers' gates need) are recomputed from their own weights by one no-grad call per
  layer, on logged steps only; exact when the module's ``dropout`` is 0 (between-layer dropout cannot be
  replayed: the recomputed states are the undropped ones);
- a module called several times in one step (a decoder run step by step) is seen on its first call only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from src.callbacks.recurrent_modules import RecurrentModule, recurrent_modules
from src.models.recurrent_trace import LayerInputs, RecurrentTrace, mask_from_lengths, watch_gradient


@dataclass
class ModuleCall:
    """What one recurrent module got and returned on its first call of the step."""

    recurrent: RecurrentModule
    input: Any  # Tensor or PackedSequence, as the module read it
    hx: Any  # h0, (h0, c0) or None
    output: Any = None  # Tensor or PackedSequence
    final: Any = None  # h_n, (h_n, c_n)


class HookTrace:
    """Forward hooks on a model's recurrent modules for one step at a time.

    ``attach()`` before the forward pass, ``trace()`` after it (after backward for the input gradient),
    ``detach()`` when done. ``watch_input``: keep the gradient of the first module's input (training steps).
    """

    def __init__(self, root: nn.Module, watch_input: bool = True):
        self.modules = recurrent_modules(root)
        self.watch_input = watch_input
        self._handles: list = []
        self._calls: dict[int, ModuleCall] = {}
        self._watched: Optional[Tensor] = None
        self._trace: Optional[RecurrentTrace] = None
        self._single_layers: dict[tuple[int, int], nn.RNNBase] = {}

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> None:
        if self._handles:
            return
        self.clear()
        for recurrent in self.modules:
            self._handles.append(recurrent.module.register_forward_pre_hook(
                lambda m, args, kwargs, r=recurrent: self._before(r, m, args, kwargs), with_kwargs=True))
            self._handles.append(recurrent.module.register_forward_hook(self._after))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def clear(self) -> None:
        """Drop what the last step kept (its tensors and the input gradient)."""
        self._calls, self._watched, self._trace = {}, None, None

    def _before(self, recurrent: RecurrentModule, module: nn.Module, args: tuple, kwargs: dict):
        if id(module) in self._calls:
            return None
        x = args[0] if args else kwargs.get("input")
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        replaced = False
        if self.watch_input and self._watched is None and torch.is_grad_enabled():
            data = x.data if isinstance(x, PackedSequence) else x
            watched = watch_gradient(data)
            replaced = watched is not data
            if replaced:
                x = PackedSequence(watched, x.batch_sizes, x.sorted_indices, x.unsorted_indices) \
                    if isinstance(x, PackedSequence) else watched
            self._watched = watched
        self._calls[id(module)] = ModuleCall(recurrent, x, hx)
        if not replaced:
            return None
        if args:
            return (x, *args[1:]), kwargs
        return args, {**kwargs, "input": x}

    def _after(self, module: nn.Module, args: tuple, output) -> None:
        call = self._calls.get(id(module))
        if call is not None and call.output is None:
            call.output, call.final = output

    # -- the trace ----------------------------------------------------------------------------------------------
    def trace(self) -> Optional[RecurrentTrace]:
        """The ``RecurrentTrace`` of the step (built once), or None if no recurrent module ran."""
        if self._trace is None and any(c.output is not None for c in self._calls.values()):
            with torch.no_grad():
                self._trace = self._build()
        return self._trace

    def _build(self) -> RecurrentTrace:
        hidden, cells, layers, masks = {}, {}, {}, {}
        first = None
        for call in self._calls.values():
            if call.output is None:
                continue
            module, recurrent = call.recurrent.module, call.recurrent
            x, valid = batch_first(call.input, module.batch_first, infer_padding=True)
            out = batch_first(call.output, module.batch_first)[0]  # [B, T, H * dirs]
            # A padded tensor (not packed): the module stepped through its padding too, and its c_n is the state
            # after it, so the cell state after each sequence's last token comes from the gates instead.
            packed = isinstance(call.input, PackedSequence)
            if first is None:
                first = (x, valid, self._gradient(call, module.batch_first))
            h0, c0 = initial_states(call.hx, x.size(0))
            directions = 2 if module.bidirectional else 1
            width = out.size(-1) // directions
            top = module.num_layers - 1
            seq, layer_outputs = call.input, {}
            for k in range(top):  # the lower layers of a multi-layer module: not in its output, recomputed
                seq = self._run_layer(module, k, seq, h0, c0)
                layer_outputs[k] = batch_first(seq, module.batch_first)[0]
            layer_outputs[top] = out
            for k, sequence in layer_outputs.items():
                source = x if k == 0 else layer_outputs[k - 1]
                for d in range(directions):
                    name = recurrent.layer_name(k, d == 1)
                    index = k * directions + d
                    hidden[name] = sequence[..., d * width:(d + 1) * width]
                    masks[name] = valid
                    suffix = f"_l{k}" + ("_reverse" if d else "")
                    layers[name] = LayerInputs(
                        recurrent.cell, source, getattr(module, "weight_ih" + suffix),
                        getattr(module, "weight_hh" + suffix), getattr(module, "bias_ih" + suffix, None),
                        getattr(module, "bias_hh" + suffix, None), None if h0 is None else h0[index],
                        None if c0 is None else c0[index], d == 1, not packed)
                    if recurrent.cell == "lstm" and packed and isinstance(call.final, tuple):
                        cells[name] = unbatched_state(call.final[1], x.size(0))[index]
        x, valid, grad = first
        masks = {name: m for name, m in masks.items() if m is not valid}
        return RecurrentTrace(x, valid, hidden, cells, layers, masks, grad)

    def _gradient(self, call: ModuleCall, batch_first_layout: bool) -> Optional[Tensor]:
        if self._watched is None or self._watched.grad is None:
            return None
        grad = self._watched.grad
        if isinstance(call.input, PackedSequence):
            grad = PackedSequence(grad, call.input.batch_sizes, call.input.sorted_indices, call.input.unsorted_indices)
        return batch_first(grad, batch_first_layout)[0]

    def _run_layer(self, module: nn.RNNBase, k: int, seq, h0: Optional[Tensor], c0: Optional[Tensor]):
        """Layer ``k`` of ``module`` (both directions) on ``seq`` as the module lays it out, without grad."""
        single = self._single_layers.get((id(module), k))
        if single is None:
            single = self._single_layers[(id(module), k)] = one_layer(module, k)
        directions = 2 if module.bidirectional else 1
        weight = module.weight_ih_l0
        if isinstance(seq, PackedSequence):
            seq = PackedSequence(seq.data.to(weight.dtype), seq.batch_sizes, seq.sorted_indices, seq.unsorted_indices)
        else:
            seq = seq.to(weight.dtype)
        state = None
        if h0 is not None:
            unbatched = not isinstance(seq, PackedSequence) and seq.dim() == 2
            pick = slice(k * directions, (k + 1) * directions)
            h = h0[pick].to(weight.dtype)  # [dirs, B, H]
            state = h if c0 is None else (h, c0[pick].to(weight.dtype))
            if unbatched:
                state = state.squeeze(1) if isinstance(state, Tensor) else tuple(s.squeeze(1) for s in state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cuDNN: "weights are not part of single contiguous chunk" (shared)
            return single(seq, state)[0]


def one_layer(module: nn.RNNBase, k: int) -> nn.RNNBase:
    """A one-layer module of ``module``'s kind whose parameters ARE layer ``k``'s (shared, not copied)."""
    directions = 2 if module.bidirectional else 1
    out_size = getattr(module, "proj_size", 0) or module.hidden_size
    kwargs: dict[str, Any] = dict(num_layers=1, bias=module.bias, batch_first=module.batch_first,
                                  bidirectional=module.bidirectional, device="meta")
    if isinstance(module, nn.LSTM):
        kwargs["proj_size"] = module.proj_size
    if type(module) is nn.RNN:
        kwargs["nonlinearity"] = module.nonlinearity
    single = type(module)(module.input_size if k == 0 else out_size * directions, module.hidden_size, **kwargs)
    for name in single._flat_weights_names:
        setattr(single, name, getattr(module, name.replace("_l0", f"_l{k}")))
    return single


def batch_first(seq, is_batch_first: bool, infer_padding: bool = False) -> tuple[Tensor, Optional[Tensor]]:
    """A recurrent module's input or output -> (``[B, T, F]``, ``[B, T]`` valid mask). A packed sequence's mask
    comes from its lengths; a tensor's (only with ``infer_padding``; else None) ends after its last position whose
    vector is not all zeros. No value is read back to the host (on a GPU: no sync)."""
    if isinstance(seq, PackedSequence):
        padded, lengths = pad_packed_sequence(seq, batch_first=True)
        return padded, mask_from_lengths(lengths.to(padded.device), padded.size(1))
    x = seq[None] if seq.dim() == 2 else (seq if is_batch_first else seq.transpose(0, 1))
    if not infer_padding:
        return x, None
    # One past the last position whose vector is not all zeros: positions weighted by "non-zero", then the max.
    steps = x.size(1)
    nonzero = x.detach().abs().amax(-1).clamp_(max=1.0).ceil_()  # [B, T]: 1 where any value is non-zero
    lengths = (nonzero * torch.arange(1, steps + 1, device=x.device, dtype=nonzero.dtype)).amax(1).long()
    return x, mask_from_lengths(lengths, steps)


def unbatched_state(state: Tensor, batch: int) -> Tensor:
    """``[L * dirs, B, H]`` (or ``[L * dirs, H]`` for an unbatched call) -> ``[L * dirs, B, H]``."""
    return state[:, None] if state.dim() == 2 else state


def initial_states(hx, batch: int) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """A module's ``hx`` argument -> (h0, c0), each ``[L * dirs, B, H]`` (batch order as given) or None."""
    if hx is None:
        return None, None
    if isinstance(hx, tuple):
        return unbatched_state(hx[0], batch), unbatched_state(hx[1], batch)
    return unbatched_state(hx, batch), None
