"""Serve an exported classifier with ONNX Runtime: ``OnnxClassifier("DIR/model.onnx").predict_texts(texts)``.

Reads ``vocab.json`` beside the model (written by ``python -m src.export``) and tokenizes exactly as
``TextClassifier.encode_texts`` does, so its probabilities equal the checkpoint's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from data_modules.batching import pad_collate
from data_modules.text import Vocabulary
from src.classifier import Prediction
from src.errors import UserInputError
from src.export import VOCAB_FILE, VOCAB_FORMAT, onnx_session

REQUIRED_KEYS = ("tokens", "label_names", "max_len", "pad_index")


def read_vocab(onnx_path: Path) -> dict:
    path = onnx_path.with_name(VOCAB_FILE)
    if not path.is_file():
        raise UserInputError(f"no {VOCAB_FILE} beside {onnx_path}: the model needs the vocabulary it was exported "
                             f"with; keep the {VOCAB_FILE} that python -m src.export wrote in the same folder")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserInputError(f"{path} is not valid JSON ({e}); re-export the model with python -m src.export") from None
    missing = [k for k in REQUIRED_KEYS if k not in payload] if isinstance(payload, dict) else list(REQUIRED_KEYS)
    if missing or payload.get("format") != VOCAB_FORMAT:
        raise UserInputError(f"{path} is not a vocabulary written by python -m src.export (missing {missing or 'format'}); "
                             "re-export the model")
    return payload


class OnnxClassifier:
    """An exported TextClassifier run by ONNX Runtime on CPU.

    Args:
        path: ``model.onnx`` with ``vocab.json`` in the same folder.
        threads: ONNX Runtime intra-op threads (None: its default, all cores).
    """

    def __init__(self, path: str, threads: Optional[int] = None):
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise UserInputError(f"ONNX model not found: {self.path} (python -m src.export writes DIR/model.onnx)")
        meta = read_vocab(self.path)
        self.vocabulary = Vocabulary(meta["tokens"])
        self.label_names, self.max_len, self.pad_index = list(meta["label_names"]), meta["max_len"], int(meta["pad_index"])
        self.session = onnx_session(self.path, threads)

    def encode_texts(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.vocabulary.encode_text(t, self.max_len) for t in texts]

    def logits(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """tokens ``[B, T]`` int64 (padded with ``pad_index``), lengths ``[B]`` int64 -> logits ``[B]``."""
        return self.session.run(None, {"tokens": tokens, "lengths": lengths})[0]

    def predict_proba(self, texts: Sequence[str], batch_size: int = 256) -> list[float]:
        """P(label 1) per text; batched by length as ``TextClassifier.predict_proba`` does."""
        encoded = self.encode_texts(texts)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        probabilities = [0.0] * len(encoded)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = pad_collate([(encoded[i], 0.0) for i in rows], self.pad_index)
            logits = self.logits(batch.tokens.numpy(), batch.lengths.numpy()).astype(np.float64)
            # sigmoid written through tanh: no overflow for large |logit|.
            for i, value in zip(rows, (0.5 * (1.0 + np.tanh(0.5 * logits))).tolist()):
                probabilities[i] = value
        return probabilities

    def predict_texts(self, texts: Sequence[str], batch_size: int = 256, threshold: float = 0.5) -> list[Prediction]:
        return [Prediction(p, self.label_names[int(p >= threshold)]) for p in self.predict_proba(texts, batch_size)]
