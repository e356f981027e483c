"""Serve a trained TextClassifier's network with plain PyTorch, from its checkpoint alone: no Lightning, no
config, no data.

    PyTorchClassifier.from_checkpoint("best.ckpt").predict_texts(["a fine film", "dull"])

The checkpoint (written by train.py, loaded with ``torch.load(weights_only=True)``) holds the network's
hyperparameters, its weights under ``net.``, the vocabulary, the label names and ``max_len``.
"""

from __future__ import annotations

import inspect
import os
from typing import Optional, Sequence

import numpy as np
import torch

from data_modules.vocabulary import Vocabulary
from src.models.rnn_classifier import RNNClassifier
from src.serving.prediction import ServedClassifier
from src.utils.checkpoint_file import check_model_class, read_checkpoint
from src.utils.errors import UserInputError

NET_PREFIX = "net."  # TextClassifier keeps its RNNClassifier as ``self.net``


class PyTorchClassifier(ServedClassifier):
    """An ``RNNClassifier`` with what it needs to read text. ``net`` may be the float network or its int8 copy
    (src/serving/int8.py)."""

    def __init__(self, net: torch.nn.Module, vocabulary: Vocabulary, label_names: Sequence[str],
                 max_len: Optional[int], hyper_parameters: Optional[dict] = None):
        super().__init__(vocabulary, label_names, max_len)
        self.net = net
        self.hyper_parameters = dict(hyper_parameters or {})  # what builds ``net`` again (``build_network``)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters(), torch.empty(0)).device

    @torch.no_grad()
    def logits(self, tokens: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
        was_training = self.net.training
        self.net.eval()
        try:
            return self.net(tokens.to(self.device), lengths).logits.float().cpu().numpy()
        finally:
            self.net.train(was_training)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> "PyTorchClassifier":
        """A TextClassifier checkpoint -> its network on the CPU, with one-line errors for a missing, truncated,
        foreign or tampered file."""
        checkpoint = read_checkpoint(path)
        check_model_class(checkpoint, "TextClassifier", f"checkpoint {path}")
        tokens = checkpoint.get("vocabulary")
        if not tokens:
            raise UserInputError(f"checkpoint {path} holds no vocabulary; use a checkpoint written by train.py")
        net = network_from_checkpoint(checkpoint, path)
        if net.embedding.num_embeddings != len(tokens):
            raise UserInputError(f"checkpoint {path} is inconsistent: its vocabulary has {len(tokens)} entries but its "
                                 f"embedding {net.embedding.num_embeddings} rows; use an unmodified checkpoint")
        try:
            vocabulary = Vocabulary(tokens)
        except ValueError as e:
            raise UserInputError(f"checkpoint {path} has a malformed vocabulary ({e})") from None
        label_names = list(checkpoint.get("label_names") or ["negative", "positive"])
        return cls(net, vocabulary, label_names, checkpoint.get("max_len"), checkpoint.get("hyper_parameters"))


def build_network(hyper_parameters: dict, where) -> RNNClassifier:
    """An untrained ``RNNClassifier`` from a TextClassifier's hyperparameters (the ones it accepts)."""
    accepted = inspect.signature(RNNClassifier).parameters
    try:
        return RNNClassifier(**{k: v for k, v in (hyper_parameters or {}).items() if k in accepted})
    except (TypeError, ValueError, RuntimeError) as e:
        raise UserInputError(f"{where} has hyperparameters no RNNClassifier can be built from ({e}); use an "
                             "unmodified file") from None


def network_from_checkpoint(checkpoint: dict, path) -> RNNClassifier:
    """The ``RNNClassifier`` a TextClassifier checkpoint describes: built from its hyperparameters, then its
    ``net.*`` weights loaded strictly."""
    net = build_network(checkpoint.get("hyper_parameters"), f"checkpoint {path}")
    weights = {k[len(NET_PREFIX):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(NET_PREFIX)}
    try:
        net.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0][:200]
        raise UserInputError(f"checkpoint {path}: its weights do not fit its hyperparameters ({first}); use an "
                             "unmodified checkpoint") from None
    return net.eval()
