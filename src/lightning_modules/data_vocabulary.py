"""The vocabulary a model's DataModule fitted, checked against the size the model was built with."""

from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl

from src.utils.errors import UserInputError


def data_vocabulary(module: pl.LightningModule, entries: str = "entries") -> tuple[Optional[Any], Optional[Any]]:
    """(the trainer's DataModule, its ``vocabulary``) once its size is checked against ``hparams.vocab_size`` (linked
    from the data by train.py); (None, None) when there is no trainer, DataModule or vocabulary (a model loaded from a
    checkpoint alone keeps the vocabulary the checkpoint carries)."""
    datamodule = getattr(module.trainer, "datamodule", None) if module._trainer is not None else None
    vocabulary = getattr(datamodule, "vocabulary", None)
    if vocabulary is None:
        return None, None
    if len(vocabulary) != module.hparams.vocab_size:
        raise UserInputError(f"the data has {len(vocabulary)} {entries} but the model expects "
                             f"{module.hparams.vocab_size}; keep --model.vocab_size linked to the data")
    return datamodule, vocabulary
