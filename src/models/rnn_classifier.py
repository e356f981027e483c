"""Sequence classifier: embedding -> recurrent stack -> pooling -> one logit. Plain PyTorch, no loss."""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

import torch
from torch import Tensor, nn

from src.models.recurrent_init import add_keep_gate_bias
from src.models.recurrent_stack import RecurrentOutput, RecurrentStack, check_choice, last_valid
from src.models.recurrent_trace import RecurrentTrace, mask_from_lengths, watch_gradient

Pooling = Literal["last", "mean", "max"]
POOLINGS = get_args(Pooling)


class ClassifierOutput(NamedTuple):
    logits: Tensor  # [B]
    trace: RecurrentTrace


class RNNClassifier(nn.Module):
    """tokens ``[B, T]`` + lengths ``[B]`` -> logits ``[B]``.

    Padding-aware: the representation of a review never depends on its padding. ``last`` takes the top
    layer's output at each review's last valid token (for bidirectional models, concatenated with the
    reverse direction's output at the first token); ``mean`` and ``max`` pool over valid positions only.
    keep_gate_bias: added to every layer's forget (LSTM) or update (GRU) gate bias (``add_keep_gate_bias``).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: str = "last",
        pad_index: int = 0,
        nonlinearity: str = "tanh",
        pack: bool = False,
        keep_gate_bias: float = 0.0,
    ):
        super().__init__()
        self.pooling = check_choice("pooling", pooling, POOLINGS)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_index)
        self.rnn = RecurrentStack(embedding_dim, hidden_size, num_layers, cell, bidirectional, dropout,
                                  nonlinearity=nonlinearity, pack=pack)
        for layer in (*self.rnn.layers, *self.rnn.reverse_layers):
            add_keep_gate_bias(layer, keep_gate_bias)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size * self.rnn.directions, 1)

    def forward(self, tokens: Tensor, lengths: Tensor, watch_inputs: bool = False) -> ClassifierOutput:
        embedded = self.dropout(self.embedding(tokens))  # [B, T, E]
        if watch_inputs:
            embedded = watch_gradient(embedded)
        mask = mask_from_lengths(lengths.to(tokens.device), tokens.size(1))  # [B, T]
        rec = self.rnn(embedded, lengths)
        pooled = self.pool(rec, lengths, mask)  # [B, H * dirs]
        logits = self.head(self.dropout(pooled)).squeeze(-1)
        trace = RecurrentTrace(embedded, mask, rec.hidden, rec.cells(self.rnn.state_names()), rec.layers)
        return ClassifierOutput(logits, trace)

    def pool(self, rec: RecurrentOutput, lengths: Tensor, mask: Tensor) -> Tensor:
        out = rec.output  # [B, T, H * dirs]
        if self.pooling == "mean":
            m = mask.unsqueeze(-1).to(out.dtype)
            return (out * m).sum(1) / m.sum(1).clamp(min=1.0)
        if self.pooling == "max":
            return out.masked_fill(~mask.unsqueeze(-1), torch.finfo(out.dtype).min).amax(1)
        h = self.rnn.hidden_size
        forward_last = last_valid(out[..., :h], lengths)
        if self.rnn.directions == 1:
            return forward_last
        return torch.cat([forward_last, out[:, 0, h:]], dim=-1)
