"""configure_optimizers: the optimizer alone, or with a scheduler stepped on a monitored metric."""

from functools import partial

import torch

from src.lightning_modules.optimization import configure_optimizers


def test_optimizer_alone_or_with_a_monitored_scheduler():
    parameters = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(configure_optimizers(parameters, partial(torch.optim.Adam, lr=1e-3)), torch.optim.Adam)
    config = configure_optimizers(parameters, partial(torch.optim.SGD, lr=0.1),
                                  partial(torch.optim.lr_scheduler.ReduceLROnPlateau, factor=0.5))
    assert isinstance(config["optimizer"], torch.optim.SGD)
    assert config["lr_scheduler"]["monitor"] == "val/loss"
    assert config["lr_scheduler"]["scheduler"].optimizer is config["optimizer"]
