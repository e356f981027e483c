"""Stop training inside the step whose loss is NaN or infinite."""

from __future__ import annotations

import torch


def stop_if_not_finite(loss: torch.Tensor, step: int) -> None:
    """Raise on a NaN or infinite training loss: stopping inside the step means no checkpoint of the broken
    weights is ever written, so the last good one stays."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss became {loss.item()} at step {step}; the last good checkpoint is "
                                 "kept. Lower the learning rate or set --trainer.gradient_clip_val")
