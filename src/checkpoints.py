"""Loading checkpoints with errors a user can act on, and the plain-data extras every checkpoint carries."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from src.errors import UserInputError

MODEL_CLASS_KEY = "model_class"  # the LightningModule class name, stored by each module's on_save_checkpoint


def read_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load(weights_only=True)`` with one-line errors for a missing, truncated or foreign file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserInputError(f"checkpoint not found: {p} (look under lightning_logs/version_N/checkpoints/)")
    try:
        checkpoint = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserInputError(f"checkpoint {p} cannot be read ({first}); it may be truncated or not a Lightning "
                             "checkpoint: use another one, e.g. last.ckpt") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserInputError(f"{p} is not a Lightning checkpoint (no state_dict)")
    return checkpoint


def check_model_class(checkpoint: dict, expected: str, where: str = "checkpoint", hint: str = "") -> None:
    found = checkpoint.get(MODEL_CLASS_KEY)
    if found != expected:
        raise UserInputError(f"{where} holds a {found or 'model of unknown class'}, not a {expected}"
                             + (f"; {hint}" if hint else ""))


def stop_if_not_finite(loss: torch.Tensor, step: int) -> None:
    """Raise on a NaN or infinite training loss: stopping inside the step means no checkpoint of the broken
    weights is ever written, so the last good one stays."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss became {loss.item()} at step {step}; the last good checkpoint is "
                                 "kept. Lower the learning rate or set --trainer.gradient_clip_val")


TOOL_FOR_CLASS = {
    "TextClassifier": "python -m src.predict",
    "CurriculumAutoencoder": "python -m src.encode",
    "CharLanguageModel": "python -m src.sample",
}


def load_module(cls, path: str | os.PathLike, map_location="cpu"):
    """Load a LightningModule of class ``cls`` from a checkpoint, failing in one line if it is another class."""
    checkpoint = read_checkpoint(path)
    found = checkpoint.get(MODEL_CLASS_KEY)
    hint = f"use {TOOL_FOR_CLASS[found]} for it" if found in TOOL_FOR_CLASS else "pick a checkpoint of that model"
    check_model_class(checkpoint, cls.__name__, f"checkpoint {path}", hint)
    return cls.load_from_checkpoint(path, map_location=map_location, weights_only=True)
