"""A stack of RNN/LSTM/GRU layers that exposes every layer's hidden-state sequence.

`nn.LSTM(num_layers=k)` returns only the top layer's outputs; the dynamics callbacks need each layer, so
the stack runs one cuDNN call per layer instead. Every layer runs on the padded batch: padding sits after
each sequence's last token, so the outputs at valid positions never see it. The reverse direction of a
bidirectional layer is a second unidirectional RNN run on each sequence reversed within its own length
(padding stays at the end), so it never reads padding first either; this is as exact as packing and runs
as fast as the padded forward direction (packed sequences are many times slower on CPU).
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Optional, get_args

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from src.models.recurrent_trace import LayerInputs

# The choices, as the types the configs are checked against (LightningCLI lists them in --help).
Cell = Literal["rnn", "lstm", "gru"]
Nonlinearity = Literal["tanh", "relu"]
CELLS = dict(zip(get_args(Cell), (nn.RNN, nn.LSTM, nn.GRU)))
NONLINEARITIES = get_args(Nonlinearity)


def check_choice(name: str, value: str, options) -> str:
    if value not in options:
        raise ValueError(f"{name}={value!r} is not one of {sorted(options)}")
    return value


class RecurrentOutput(NamedTuple):
    output: Tensor  # [B, T, H * dirs] top layer, zero at padded positions only on the packed path
    hidden: dict[str, Tensor]  # name -> [B, T, H], e.g. lstm_l0, lstm_l0_reverse
    final_hidden: Tensor  # [layers * dirs, B, H], each sequence's state after its last valid token
    final_cell: Optional[Tensor]  # [layers * dirs, B, H] for LSTM where exact (packed, or no lengths), else None
    layers: dict[str, LayerInputs]  # name -> what that layer's gates are computed from (gate statistics)

    def cells(self, names: list[str]) -> dict[str, Tensor]:
        """``names`` (``RecurrentStack.state_names()``) -> ``[B, H]`` final LSTM cell states; {} where not exact."""
        return {} if self.final_cell is None else dict(zip(names, self.final_cell))


class RecurrentStack(nn.Module):
    """``x [B, T, D]`` (+ ``lengths [B]``) -> per-layer hidden sequences and final states.

    cell: ``rnn`` (``nonlinearity`` tanh or relu), ``lstm`` or ``gru``. ``dropout`` acts between layers, as in
    ``nn.LSTM``. ``pack=True`` packs every layer instead (the reference pipeline's way; slower, and needed
    only when an exact final LSTM cell state of a padded batch matters; the dynamics callbacks compute it from the
    gates instead).
    name: prefix of the layers' names where a model has several stacks (``encoder`` -> ``encoder_gru_l0``); None
    names them by the cell alone (``lstm_l0``, ``lstm_l0_reverse``).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        nonlinearity: str = "tanh",
        pack: bool = False,
        name: Optional[str] = None,
    ):
        super().__init__()
        rnn_cls = CELLS[check_choice("cell", cell, CELLS)]
        check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.name = f"{name}_{cell}" if name else cell
        self.directions = 2 if bidirectional else 1
        self.pack = pack
        extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        sizes = [input_size if i == 0 else hidden_size * self.directions for i in range(num_layers)]
        self.layers = nn.ModuleList(rnn_cls(n, hidden_size, batch_first=True, **extra) for n in sizes)
        self.reverse_layers = nn.ModuleList(
            rnn_cls(n, hidden_size, batch_first=True, **extra) for n in (sizes if bidirectional else []))
        self.dropout = nn.Dropout(dropout)

    def state_names(self) -> list[str]:
        """The layers' names in the order of ``final_hidden``'s first axis: ``lstm_l0``, ``lstm_l0_reverse``, ..."""
        return [f"{self.name}_l{i}" + ("_reverse" if j else "") for i in range(self.num_layers)
                for j in range(self.directions)]

    def forward(self, x: Tensor, lengths: Optional[Tensor] = None, state=None) -> RecurrentOutput:
        """x ``[B, T, D]``; lengths ``[B]`` (None: all T valid); state: initial ``h0`` or ``(h0, c0)``,
        each ``[layers * dirs, B, H]`` as for ``nn.LSTM``."""
        batch, steps, _ = x.shape
        h0, c0 = (state if isinstance(state, tuple) else (state, None)) if state is not None else (None, None)
        hidden, finals_h, finals_c, layers = {}, [], [], {}
        d = self.directions
        reversal = reverse_index(lengths, steps, x.device) if d == 2 and lengths is not None else None
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)
            states = [None] * d
            if h0 is not None:
                states = [h0[i * d + j][None].contiguous() for j in range(d)]
                if self.cell == "lstm":
                    states = [(h, c0[i * d + j][None].contiguous()) for j, h in enumerate(states)]
            out, h_n, c_n = self._run(layer, x, lengths, states[0])
            outputs, names = [out], [f"{self.name}_l{i}"]
            _add_layer(layers, names[0], layer_inputs(self.cell, layer, x, states[0]))
            if d == 2:
                x_rev = x.flip(1) if reversal is None else x.gather(1, reversal.expand(-1, -1, x.size(-1)))
                out_rev, h_rev, c_rev = self._run(self.reverse_layers[i], x_rev, lengths, states[1])
                if reversal is None:
                    out_rev = out_rev.flip(1)
                else:
                    out_rev = out_rev.gather(1, reversal.expand(-1, -1, out_rev.size(-1)))
                outputs.append(out_rev)
                names.append(f"{self.name}_l{i}_reverse")
                reverse = layer_inputs(self.cell, self.reverse_layers[i], x, states[1], reverse=True)
                _add_layer(layers, names[1], reverse)
                h_n = torch.cat([h_n, h_rev])
                c_n = torch.cat([c_n, c_rev]) if c_n is not None and c_rev is not None else None
            hidden.update(zip(names, outputs))
            x = torch.cat(outputs, dim=-1) if d == 2 else out
            finals_h.append(h_n)
            finals_c.append(c_n)
        final_cell = torch.cat(finals_c) if all(c is not None for c in finals_c) else None
        return RecurrentOutput(x, hidden, torch.cat(finals_h), final_cell, layers)

    def _run(self, layer: nn.Module, x: Tensor, lengths: Optional[Tensor], state):
        """One unidirectional layer -> output ``[B, T, H]``, and ``h_n``/``c_n`` ``[1, B, H]`` after each sequence's
        last valid token."""
        steps = x.size(1)
        if self.pack and lengths is not None:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, last = layer(packed, state)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)
            h_n, c_n = last if isinstance(last, tuple) else (last, None)
            return out, h_n, c_n
        out, last = layer(x, state)
        h_n, c_n = last if isinstance(last, tuple) else (last, None)
        if lengths is not None:
            # The padded run's h_n is the state after the padding; the state after each sequence's last
            # valid token is its output there. (c_n has no such exact counterpart on this path.)
            h_n, c_n = last_valid(out, lengths)[None], None
        return out, h_n, c_n


def layer_inputs(cell: str, layer: nn.Module, x: Tensor, state=None, reverse: bool = False) -> Optional[LayerInputs]:
    """A one-layer ``nn.RNN/LSTM/GRU`` that read ``x [B, T, D]`` from ``state`` (``h0`` or ``(h0, c0)``, each
    ``[1, B, H]``; None: zeros) -> its ``LayerInputs`` (references, no copies); None for a layer without float
    weights (an int8 one)."""
    if not isinstance(getattr(layer, "weight_ih_l0", None), Tensor):
        return None
    h0, c0 = (state if isinstance(state, tuple) else (state, None)) if state is not None else (None, None)
    return LayerInputs(cell, x, layer.weight_ih_l0, layer.weight_hh_l0, getattr(layer, "bias_ih_l0", None),
                       getattr(layer, "bias_hh_l0", None), None if h0 is None else h0[0],
                       None if c0 is None else c0[0], reverse)


def _add_layer(layers: dict, name: str, inputs: Optional[LayerInputs]) -> None:
    if inputs is not None:
        layers[name] = inputs


def reverse_index(lengths: Tensor, steps: int, device: Optional[torch.device] = None) -> Tensor:
    """``[B, T, 1]`` gather index that reverses each sequence within its length and leaves padding in place, on
    ``device`` (default: the lengths'; serving passes the lengths on the CPU with the tokens on a GPU).

    Applying it twice is the identity, so the same index turns the reverse direction's outputs back.
    """
    positions = torch.arange(steps, device=device or lengths.device)[None, :]
    lengths = lengths.to(positions.device)[:, None]
    return torch.where(positions < lengths, lengths - 1 - positions, positions).unsqueeze(-1)


def last_valid(seq: Tensor, lengths: Tensor) -> Tensor:
    """``[B, T, H]``, ``[B]`` -> ``[B, H]``: each sequence's vector at position ``length - 1``."""
    index = (lengths.to(seq.device) - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, seq.size(-1))
    return seq.gather(1, index).squeeze(1)
