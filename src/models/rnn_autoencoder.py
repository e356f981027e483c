"""Sequence autoencoder for word-vector sequences: encoder RNN -> bottleneck z -> decoder RNN. No loss here.

    x [B, T, D] --encoder--> h at each sequence's last valid token [B, H] --linear--> z [B, Z]
    z --linear, tanh--> decoder state h0 [layers, B, H] --decoder--> h_t [B, T, H] --linear--> x_hat [B, T, D]

What the decoder reads at step t (``decoder_input``):

- ``previous_output``: its own output x_hat_{t-1} (zeros at t=0), as in the reference notebook. Inherently
  step by step: a loop of fused cell ops (``torch.gru_cell`` ...) on the decoder's cuDNN-layer weights.
- ``teacher_forcing``: the true x_{t-1} (zeros at t=0): one cuDNN call over the whole sequence in training.
  ``teacher_forcing_ratio`` < 1 feeds the true vector with that probability per step and sequence, else the
  model's own output (scheduled sampling; step by step). Without targets (validation, encoding) the
  decoder runs free on its own outputs, since a real reconstruction only has z.
- ``bottleneck``: z at every step: one cuDNN call, with or without targets.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Optional, get_args

import torch
from torch import Tensor, nn

from src.models.recurrent_stack import RecurrentOutput, RecurrentStack, check_choice, layer_inputs
from src.models.recurrent_trace import LayerInputs, RecurrentTrace, mask_from_lengths, watch_gradient

DecoderInput = Literal["previous_output", "teacher_forcing", "bottleneck"]
DECODER_INPUTS = get_args(DecoderInput)


class AutoencoderOutput(NamedTuple):
    reconstruction: Tensor  # [B, T, D]
    z: Tensor  # [B, Z]
    trace: RecurrentTrace  # inputs [B, T, D], mask [B, T], hidden encoder_<cell>_l*/decoder_<cell>_l* [B, T, H]


class Decoded(NamedTuple):
    reconstruction: Tensor  # [B, T, D]
    hidden: dict[str, Tensor]  # decoder_gru_l0, ... -> [B, T, H]
    cell: dict[str, Tensor]  # LSTM: decoder_lstm_l0, ... -> final cell state [B, H]
    layers: dict[str, LayerInputs]  # decoder_gru_l0, ... -> what its gates read


class RNNAutoencoder(nn.Module):
    """``x [B, T, D]`` + ``lengths [B]`` -> reconstruction ``[B, T, D]`` and code ``z [B, Z]``.

    Padding-aware: z depends only on each sequence's valid positions (the encoder output is gathered at
    position ``length - 1``), and the decoder is causal, so outputs at valid positions never depend on padding.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_size: int = 64,
        bottleneck_dim: int = 16,
        cell: str = "rnn",
        num_layers: int = 1,
        decoder_input: str = "previous_output",
        teacher_forcing_ratio: float = 1.0,
        dropout: float = 0.0,
        nonlinearity: str = "tanh",
    ):
        super().__init__()
        self.decoder_input = check_choice("decoder_input", decoder_input, DECODER_INPUTS)
        if not 0.0 <= teacher_forcing_ratio <= 1.0:
            raise ValueError(f"teacher_forcing_ratio={teacher_forcing_ratio} must be in [0, 1]")
        self.input_dim, self.hidden_size, self.num_layers, self.cell = input_dim, hidden_size, num_layers, cell
        self.teacher_forcing_ratio = teacher_forcing_ratio
        self.encoder = RecurrentStack(input_dim, hidden_size, num_layers, cell, dropout=dropout,
                                      nonlinearity=nonlinearity, name="encoder")
        self.to_bottleneck = nn.Linear(hidden_size, bottleneck_dim)
        # h0 (and c0 for an LSTM) of every decoder layer from z.
        self.states = 2 if cell == "lstm" else 1
        self.from_bottleneck = nn.Linear(bottleneck_dim, self.states * num_layers * hidden_size)
        step_input = bottleneck_dim if decoder_input == "bottleneck" else input_dim
        self.decoder = RecurrentStack(step_input, hidden_size, num_layers, cell, dropout=dropout,
                                      nonlinearity=nonlinearity, name="decoder")
        self.output = nn.Linear(hidden_size, input_dim)

    # -- the two halves ---------------------------------------------------------------------------------
    def encode(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """x ``[B, T, D]``, lengths ``[B]`` -> (z ``[B, Z]``, encoder hidden sequences ``[B, T, H]`` by name)."""
        z, rec = self._encode(x, lengths)
        return z, rec.hidden

    def _encode(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, RecurrentOutput]:
        rec = self.encoder(x, lengths)
        # final_hidden[-1] is the top layer's output at each sequence's last valid token, not after the padding.
        return self.to_bottleneck(rec.final_hidden[-1]), rec

    def initial_state(self, z: Tensor):
        """z ``[B, Z]`` -> h0 ``[layers, B, H]`` (LSTM: (h0, c0))."""
        states = self.from_bottleneck(z).view(z.size(0), self.states, self.num_layers, self.hidden_size)
        states = states.permute(1, 2, 0, 3)  # [states, layers, B, H]
        h0 = torch.tanh(states[0]).contiguous()  # tanh keeps h0 in the range the cell's own states live in
        return (h0, states[1].contiguous()) if self.states == 2 else h0

    def decode(self, z: Tensor, length: int, targets: Optional[Tensor] = None) -> Decoded:
        """z ``[B, Z]`` -> ``length`` vectors ``[B, length, D]``.

        targets ``[B, length, D]`` enable teacher forcing (mode ``teacher_forcing``); without them every mode
        decodes from z alone.
        """
        state = self.initial_state(z)
        if self.decoder_input == "bottleneck":
            rec = self.decoder(z.unsqueeze(1).expand(-1, length, -1), state=state)
            return Decoded(self.output(rec.output), rec.hidden, rec.cells(self.decoder.state_names()), rec.layers)
        if self.decoder_input == "teacher_forcing" and targets is not None and self.teacher_forcing_ratio == 1.0:
            # The true previous vector at every step: one cuDNN call over the shifted targets.
            shifted = torch.cat([targets.new_zeros(targets.size(0), 1, targets.size(2)), targets[:, :-1]], dim=1)
            rec = self.decoder(shifted, state=state)
            return Decoded(self.output(rec.output), rec.hidden, rec.cells(self.decoder.state_names()), rec.layers)
        return self._decode_stepwise(z, state, length, targets if self.decoder_input == "teacher_forcing" else None)

    def _decode_stepwise(self, z: Tensor, state, length: int, targets: Optional[Tensor]) -> Decoded:
        """One step at a time, feeding back x_hat_{t-1} (or, with targets, x_{t-1} with probability ratio).

        Each step calls the fused cell op (``torch.gru_cell`` ...) on the decoder layers' own weights: the same
        arithmetic as a one-step ``nn.GRU`` call, without that module's per-call overhead, which dominates at
        these sizes (a step is a few [B, H] x [H, H] products).
        """
        batch = z.size(0)
        h = list(state[0] if isinstance(state, tuple) else state)  # per layer [B, H]
        c = list(state[1]) if isinstance(state, tuple) else None
        cell = self._cell_function()
        weights = [(layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0)
                   for layer in self.decoder.layers]
        step_input = z.new_zeros(batch, self.input_dim)
        initial = (list(h), None if c is None else list(c))
        outputs, hidden, inputs = [], [[] for _ in range(self.num_layers)], [[] for _ in range(self.num_layers)]
        for t in range(length):
            x = step_input
            for i, w in enumerate(weights):
                if i > 0:
                    x = self.decoder.dropout(x)
                inputs[i].append(x)
                if c is not None:
                    h[i], c[i] = cell(x, (h[i], c[i]), *w)
                else:
                    h[i] = cell(x, h[i], *w)
                x = h[i]  # [B, H]
                hidden[i].append(x)
            out = self.output(x)  # [B, D]
            outputs.append(out)
            step_input = out
            if targets is not None and t + 1 < length:
                # Scheduled sampling: per sequence, the true vector with probability teacher_forcing_ratio.
                use_true = torch.rand(batch, 1, device=z.device) < self.teacher_forcing_ratio
                step_input = torch.where(use_true, targets[:, t], out)
        names = self.decoder.state_names()
        cells = dict(zip(names, c)) if c is not None else {}
        layers = {}
        for i, name in enumerate(names):
            state = initial[0][i][None] if c is None else (initial[0][i][None], initial[1][i][None])
            recorded = layer_inputs(self.cell, self.decoder.layers[i], torch.stack(inputs[i], dim=1), state)
            if recorded is not None:
                layers[name] = recorded
        return Decoded(torch.stack(outputs, dim=1), {n: torch.stack(s, dim=1) for n, s in zip(names, hidden)}, cells,
                       layers)

    def _cell_function(self):
        if self.cell == "lstm":
            return torch.lstm_cell
        if self.cell == "gru":
            return torch.gru_cell
        return torch.rnn_relu_cell if self.decoder.layers[0].nonlinearity == "relu" else torch.rnn_tanh_cell

    def forward(self, x: Tensor, lengths: Tensor, teacher_forcing: bool = True,
                watch_inputs: bool = False) -> AutoencoderOutput:
        """x ``[B, T, D]``, lengths ``[B]`` -> reconstruction ``[B, T, D]``, z ``[B, Z]`` and the trace.

        teacher_forcing: let the ``teacher_forcing`` mode read x (training); False decodes from z alone.
        watch_inputs: keep dLoss/dx in ``trace.inputs.grad`` (monitoring contract). Only the encoder's
        copy of x is watched, so the gradient is the one that flows through the recurrence, not the
        direct derivative of the loss with respect to its own target.
        """
        encoder_input = watch_gradient(x) if watch_inputs else x
        z, encoded = self._encode(encoder_input, lengths)
        decoded = self.decode(z, x.size(1), x.detach() if teacher_forcing else None)
        mask = mask_from_lengths(lengths.to(x.device), x.size(1))
        # The decoder runs every step (no lengths): its states after padding are not the poem's, so only the
        # encoder's exact final cell states are kept (the decoder's are computed from its gates over the mask).
        trace = RecurrentTrace(encoder_input, mask, {**encoded.hidden, **decoded.hidden},
                               encoded.cells(self.encoder.state_names()), {**encoded.layers, **decoded.layers})
        return AutoencoderOutput(decoded.reconstruction, z, trace)
