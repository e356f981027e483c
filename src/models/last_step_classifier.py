"""Many-to-one sequence classifier: embedding -> recurrent stack -> class logits from the last step.

Plain PyTorch, no loss. Used for the memory task (data_modules/memory_task.py), where the answer has to be
read from the state after the last token, and for the initialization experiment, which swaps the recurrent
weight matrix of a vanilla RNN for one of the schemes in ``RECURRENT_INITS`` (src/models/recurrent_init.py).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from src.models.recurrent_init import add_keep_gate_bias, init_recurrent_weights
from src.models.recurrent_stack import RecurrentStack, last_valid
from src.models.recurrent_trace import RecurrentTrace, mask_from_lengths, watch_gradient


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
        trace = RecurrentTrace(embedded, mask_from_lengths(lengths, steps), rec.hidden,
                               rec.cells(self.rnn.state_names()), rec.layers)
        return SequenceOutput(self.head(last), trace)
