"""A stack of RNN/LSTM/GRU layers that exposes every layer's hidden-state sequence.

`nn.LSTM(num_layers=k)` returns only the top layer's outputs; the dynamics callbacks need each layer, so
the stack runs one cuDNN call per layer instead. Unidirectional layers run on the padded batch: padding
sits after each sequence's last token, so the outputs at valid positions never see it. Bidirectional
layers are packed, because the reverse direction would otherwise read the padding first.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def check_choice(name: str, value: str, options) -> str:
    if value not in options:
        raise ValueError(f"{name}={value!r} is not one of {sorted(options)}")
    return value


class RecurrentOutput(NamedTuple):
    output: Tensor  # [B, T, H * dirs] top layer, zero at padded positions only on the packed path
    hidden: dict[str, Tensor]  # name -> [B, T, H], e.g. rnn_l0, rnn_l0_reverse
    final_hidden: Tensor  # [layers * dirs, B, H], each sequence's state after its last valid token
    final_cell: Optional[Tensor]  # [layers * dirs, B, H] for LSTM, else None


class RecurrentStack(nn.Module):
    """``x [B, T, D]`` (+ ``lengths [B]``) -> per-layer hidden sequences and final states.

    cell: ``rnn`` (``nonlinearity`` tanh or relu), ``lstm`` or ``gru``. ``dropout`` acts between layers, as in
    ``nn.LSTM``. ``pack=True`` packs unidirectional layers too (the reference pipeline's way; slower, and
    needed only when an exact final LSTM cell state of a padded batch matters).
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
        name: str = "rnn",
    ):
        super().__init__()
        rnn_cls = CELLS[check_choice("cell", cell, CELLS)]
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.cell, self.hidden_size, self.num_layers, self.name = cell, hidden_size, num_layers, name
        self.directions = 2 if bidirectional else 1
        self.pack = pack or bidirectional
        extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        self.layers = nn.ModuleList(
            rnn_cls(input_size if i == 0 else hidden_size * self.directions, hidden_size, batch_first=True,
                    bidirectional=bidirectional, **extra)
            for i in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, lengths: Optional[Tensor] = None, state=None) -> RecurrentOutput:
        """x ``[B, T, D]``; lengths ``[B]`` (None: all T valid); state: initial ``h0`` or ``(h0, c0)``,
        each ``[layers * dirs, B, H]`` as for ``nn.LSTM``."""
        batch, steps, _ = x.shape
        h0, c0 = (state if isinstance(state, tuple) else (state, None)) if state is not None else (None, None)
        hidden, finals_h, finals_c = {}, [], []
        d = self.directions
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)
            layer_state = None
            if h0 is not None:
                layer_state = h0[i * d:(i + 1) * d].contiguous()
                if self.cell == "lstm":
                    layer_state = (layer_state, c0[i * d:(i + 1) * d].contiguous())
            if self.pack and lengths is not None:
                packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
                out, last = layer(packed, layer_state)
                x, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)
                h_n, c_n = last if isinstance(last, tuple) else (last, None)
            else:
                x, last = layer(x, layer_state)
                h_n, c_n = last if isinstance(last, tuple) else (last, None)
                if lengths is not None:
                    # The padded run's h_n is the state after the padding; the state after each sequence's
                    # last valid token is its output there. (c_n has no such exact counterpart.)
                    h_n = last_valid(x, lengths)[None]
                    c_n = None
            if self.directions == 1:
                hidden[f"{self.name}_l{i}"] = x
            else:
                hidden[f"{self.name}_l{i}"] = x[..., : self.hidden_size]
                hidden[f"{self.name}_l{i}_reverse"] = x[..., self.hidden_size:]
            finals_h.append(h_n)
            finals_c.append(c_n)
        final_cell = torch.cat(finals_c) if all(c is not None for c in finals_c) else None
        return RecurrentOutput(x, hidden, torch.cat(finals_h), final_cell)


def last_valid(seq: Tensor, lengths: Tensor) -> Tensor:
    """``[B, T, H]``, ``[B]`` -> ``[B, H]``: each sequence's vector at position ``length - 1``."""
    index = (lengths.to(seq.device) - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, seq.size(-1))
    return seq.gather(1, index).squeeze(1)
