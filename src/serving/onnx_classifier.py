"""Serve an exported classifier with ONNX Runtime: ``OnnxClassifier("DIR/model.onnx").predict_texts(texts)``.

Needs no Lightning and no checkpoint: reads ``vocab.json``
beside the model (written by ``python -m src.export``) and tokenizes exactly as the checkpoint's model does, so its
probabilities equal the checkpoint's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from data_modules.vocabulary import Vocabulary
from src.serving.prediction import ServedClassifier
from src.serving.vocabulary_file import read_vocab
from src.utils.errors import UserInputError


class OnnxClassifier(ServedClassifier):
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
        super().__init__(Vocabulary(meta["tokens"]), meta["label_names"], meta["max_len"])
        self.session = onnx_session(self.path, threads)

    def logits(self, tokens: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
        try:
            return self.session.run(None, {"tokens": tokens.numpy(), "lengths": lengths.numpy()})[0]
        except Exception as e:  # ORT's own types; a token id past the embedding: vocab.json is not this model's
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise UserInputError(f"{self.path} cannot run on these texts ({first}); is the vocab.json beside it the "
                                 "one exported with it? Re-export the model with python -m src.export") from None


def onnx_session(path: str | Path, threads: Optional[int] = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # only errors: ORT's notes about unused initializers are noise here
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserInputError(f"{path} is not an ONNX model ONNX Runtime can load ({first}); "
                             "re-export it with python -m src.export") from None
