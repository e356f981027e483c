"""What every served text classifier does the same way, whatever runs its network: turn texts into token ids,
batch them by length, read P(label 1) from the logits, and name the label.

``ServedClassifier`` is the base of ``PyTorchClassifier`` (a checkpoint's network in PyTorch) and
``OnnxClassifier`` (an exported model in ONNX Runtime); a subclass provides ``logits`` only.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch

from data_modules.batching import pad_collate
from data_modules.vocabulary import Vocabulary
from src.utils.errors import UserInputError


class Prediction(NamedTuple):
    probability: float  # P(label 1)
    label: str  # the training data's own name for the predicted class


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """In float64, written through tanh: no overflow for large ``|logit|``."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype=np.float64)))


class ServedClassifier:
    """A binary text classifier ready to serve: its vocabulary, label names and ``max_len`` (the tokens it reads
    of each text), and a network behind ``logits``."""

    def __init__(self, vocabulary: Vocabulary, label_names: Sequence[str], max_len: Optional[int]):
        self.vocabulary, self.label_names, self.max_len = vocabulary, list(label_names), max_len

    @property
    def pad_index(self) -> int:
        return self.vocabulary.pad_index

    def logits(self, tokens: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
        """tokens ``[B, T]`` int64 (padded with ``pad_index``), lengths ``[B]`` int64 -> logits ``[B]``."""
        raise NotImplementedError

    def encode_texts(self, texts: Sequence[str]) -> list[list[int]]:
        """Texts -> token ids, cut to ``max_len``; an empty text is ``[<unk>]``."""
        return [self.vocabulary.encode_text(t, self.max_len) for t in texts]

    def predict_proba(self, texts: Sequence[str], batch_size: int = 256) -> list[float]:
        """P(label 1) per text, in input order. Texts are batched by length (little padding); empty or all-unknown
        texts get a probability too."""
        encoded = self.encode_texts(texts)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        probabilities = [0.0] * len(encoded)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = pad_collate([(encoded[i], 0.0) for i in rows], self.pad_index)
            values = sigmoid(self.logits(batch.tokens, batch.lengths))
            if not np.isfinite(values).all():
                raise UserInputError(f"the model gives NaN for {int((~np.isfinite(values)).sum())} text(s): its "
                                     "weights are not finite (a diverged run); use an earlier checkpoint")
            for i, value in zip(rows, values.tolist()):
                probabilities[i] = value
        return probabilities

    def predict_texts(self, texts: Sequence[str], batch_size: int = 256, threshold: float = 0.5) -> list[Prediction]:
        return [Prediction(p, self.label_names[int(p >= threshold)]) for p in self.predict_proba(texts, batch_size)]
