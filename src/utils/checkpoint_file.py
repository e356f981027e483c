"""Reading a checkpoint file with errors a user can act on, and the class stamp every checkpoint carries.

Plain ``torch.load(weights_only=True)``: no Lightning here, so serving code can read a checkpoint too.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from src.utils.errors import UserInputError

MODEL_CLASS_KEY = "model_class"  # the LightningModule class name (src/lightning_modules/checkpoint_identity.py)

# The command that serves each of the project's models, for "this checkpoint holds another model" errors.
TOOL_FOR_CLASS = {
    "TextClassifier": "python -m src.predict",
    "CurriculumAutoencoder": "python -m src.encode",
    "CharLanguageModel": "python -m src.sample",
}


def read_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load(weights_only=True)`` with one-line errors for a missing, truncated or foreign file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserInputError(f"checkpoint not found: {p} (look under lightning_logs/.../checkpoints/)")
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
    """Fail in one line unless the checkpoint's class stamp is ``expected``; the hint names what to do instead
    (by default, the command that serves the class it does hold)."""
    found = checkpoint.get(MODEL_CLASS_KEY)
    if found == expected:
        return
    if not hint:
        hint = f"use {TOOL_FOR_CLASS[found]} for it" if found in TOOL_FOR_CLASS else "pick a checkpoint of that model"
    raise UserInputError(f"{where} holds a {found or 'model of unknown class'}, not a {expected}; {hint}")
