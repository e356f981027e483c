"""What ``configure_optimizers`` returns for the optimizer and scheduler factories a config gives a module."""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch

from src.utils.errors import UserInputError, one_line


def configure_optimizers(parameters: Iterable[torch.nn.Parameter], optimizer_factory: Callable,
                         scheduler_factory: Optional[Callable] = None, monitor: str = "val/loss"):
    """The optimizer alone, or with its scheduler stepped on ``monitor`` (``ReduceLROnPlateau`` needs one).

    The factories carry the config's arguments, which torch checks only now (``lr=-1``, ``betas`` out of range):
    such a refusal is the config's mistake, one line."""
    optimizer = built(optimizer_factory, parameters, "--model.optimizer")
    if scheduler_factory is None:
        return optimizer
    scheduler = built(scheduler_factory, optimizer, "--model.scheduler")
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": monitor}}


def built(factory: Callable, argument, flag: str):
    try:
        return factory(argument)
    except (ValueError, TypeError) as e:
        raise UserInputError(f"{flag}: {one_line(e)}; fix its arguments in the config") from None
