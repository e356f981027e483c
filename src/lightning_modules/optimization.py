"""What ``configure_optimizers`` returns for the optimizer and scheduler factories a config gives a module."""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch


def configure_optimizers(parameters: Iterable[torch.nn.Parameter], optimizer_factory: Callable,
                         scheduler_factory: Optional[Callable] = None, monitor: str = "val/loss"):
    """The optimizer alone, or with its scheduler stepped on ``monitor`` (``ReduceLROnPlateau`` needs one)."""
    optimizer = optimizer_factory(parameters)
    if scheduler_factory is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler_factory(optimizer), "monitor": monitor}}
