"""Reading a checkpoint file with errors a user can act on, and the class stamp every checkpoint carries.

Plain ``torch.load(weights_only=True)``: no Lightning here, so serving code can read a checkpoint too.
"""

from __future__ import annotations

import os
import pickle
import re
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
    """``torch.load(weights_only=True)`` with one-line errors for a missing, truncated, foreign or pickled file, or
    one whose weights are not finite."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserInputError(f"checkpoint {p} is a folder; give the .ckpt file in it (e.g. {p}/last.ckpt)")
    if not p.is_file():
        raise UserInputError(f"checkpoint not found: {p} (look under lightning_logs/.../checkpoints/)")
    try:
        checkpoint = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's own message suggests weights_only=False, i.e. running the file's code: never ours to offer.
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" (it asks for {found.group(1)})" if found else ""
        raise UserInputError(f"checkpoint {p} holds Python objects, not only tensors and plain data{what}; refused: "
                             "use a checkpoint written by train.py") from None
    except Exception as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserInputError(f"checkpoint {p} cannot be read ({first}); it may be truncated or not a Lightning "
                             "checkpoint: use another one, e.g. last.ckpt") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserInputError(f"{p} is not a Lightning checkpoint (no state_dict)")
    broken = non_finite_tensors(checkpoint["state_dict"])
    if broken:
        raise UserInputError(f"checkpoint {p} holds non-finite weights ({', '.join(broken[:3])}"
                             f"{', ...' if len(broken) > 3 else ''}): it comes from a diverged run; use an earlier "
                             "checkpoint")
    return checkpoint


def non_finite_tensors(state_dict: dict) -> list[str]:
    """Names of the floating-point tensors holding NaN or an infinity."""
    return [name for name, value in state_dict.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()]


def check_model_class(checkpoint: dict, expected: str, where: str = "checkpoint", hint: str = "") -> None:
    """Fail in one line unless the checkpoint's class stamp is ``expected``; the hint names what to do instead
    (by default, the command that serves the class it does hold)."""
    found = checkpoint.get(MODEL_CLASS_KEY)
    if found == expected:
        return
    if not hint:
        hint = f"use {TOOL_FOR_CLASS[found]} for it" if found in TOOL_FOR_CLASS else "pick a checkpoint of that model"
    raise UserInputError(f"{where} holds a {found or 'model of unknown class'}, not a {expected}; {hint}")
