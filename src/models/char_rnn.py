"""Character-level language model: embedding -> recurrent stack -> next-character logits. Plain PyTorch, no loss.

Also the two pieces of arithmetic every bpc figure of the project goes through: ``bits_per_char`` (the LSTM and
the baselines alike) and ``add_one_log_probs`` (the unigram and bigram baselines).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.models.recurrent_stack import RecurrentStack
from src.models.recurrent_trace import RecurrentTrace, watch_gradient

State = Union[Tensor, tuple[Tensor, Tensor]]  # h [layers, B, H], or (h, c) for LSTM


class CharLMOutput(NamedTuple):
    logits: Tensor  # [B, T, V] scores of the next character at every position
    state: State  # the state after the last position, to carry into the next call
    trace: RecurrentTrace


class CharRNN(nn.Module):
    """tokens ``[B, T]`` (+ initial state) -> logits ``[B, T, V]`` and the final state.

    Many-to-many: every position predicts the next character, so the loss reaches each step directly and the
    gradient that flows back in time adds to it (unlike a classifier, whose loss enters only at the end).

    tie_weights: the output layer reuses the embedding matrix (fewer parameters, often better bpc); when
    ``hidden_size != embedding_dim`` a linear projection maps the top hidden state to ``embedding_dim`` first.
    """

    def __init__(self, vocab_size: int, embedding_dim: int = 64, hidden_size: int = 256, num_layers: int = 1,
                 cell: str = "lstm", dropout: float = 0.0, tie_weights: bool = False, nonlinearity: str = "tanh"):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = RecurrentStack(embedding_dim, hidden_size, num_layers, cell, dropout=dropout,
                                  nonlinearity=nonlinearity)
        self.dropout = nn.Dropout(dropout)
        project = tie_weights and hidden_size != embedding_dim
        self.projection = nn.Linear(hidden_size, embedding_dim) if project else nn.Identity()
        self.decoder = nn.Linear(embedding_dim if tie_weights else hidden_size, vocab_size)
        if tie_weights:
            self.decoder.weight = self.embedding.weight

    def forward(self, tokens: Tensor, state: Optional[State] = None, watch_inputs: bool = False) -> CharLMOutput:
        embedded = self.dropout(self.embedding(tokens))  # [B, T, E]
        if watch_inputs:
            embedded = watch_gradient(embedded)
        rec = self.rnn(embedded, state=state)  # no lengths: every window is full, h_n and c_n are exact
        logits = self.decoder(self.projection(self.dropout(rec.output)))  # [B, T, V]
        final = (rec.final_hidden, rec.final_cell) if rec.final_cell is not None else rec.final_hidden
        mask = torch.ones(tokens.shape, dtype=torch.bool, device=tokens.device)  # [B, T] no padding
        trace = RecurrentTrace(embedded, mask, rec.hidden, rec.cells(self.rnn.state_names()), rec.layers)
        return CharLMOutput(logits, final, trace)


def bits_per_char(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy in bits: logits ``[..., V]`` (or log-probabilities), targets ``[...]`` -> scalar."""
    nats = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))
    return nats / math.log(2)


def add_one_log_probs(counts: Tensor) -> Tensor:
    """Add-one (Laplace) smoothed log-probabilities along the last axis.

    counts ``[V]`` (unigram) -> ``[V]``; counts ``[V, V]`` of (previous, next) (bigram) -> ``[V, V]`` rows of
    log P(next | previous). Every character keeps a non-zero probability, so unseen validation pairs cost a
    finite number of bits.
    """
    counts = counts.double() + 1.0
    return (counts.log() - counts.sum(-1, keepdim=True).log()).float()
