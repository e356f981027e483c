"""SequenceClassifier: the LightningModule that trains a LastStepClassifier with cross-entropy (memory task)."""

from __future__ import annotations

from typing import Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import OptimizerCallable
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from data_modules.memory_task import MemoryBatch
from src.lightning_modules.checkpoint_identity import CheckpointIdentity
from src.lightning_modules.finite_loss import stop_if_not_finite
from src.lightning_modules.optimization import configure_optimizers
from src.models.last_step_classifier import LastStepClassifier
from src.models.recurrent_init import RecurrentInit
from src.models.recurrent_stack import Cell, Nonlinearity
from src.models.recurrent_trace import RecurrentTrace
from src.utils.errors import UserInputError, check_positive, check_range


class SequenceClassifier(CheckpointIdentity, pl.LightningModule):
    """Many-to-one classification of fixed-length token sequences: ``train/loss``, ``train/acc``, ``val/loss``,
    ``val/acc``, ``test/acc``. Implements the monitoring contract (src/models/recurrent_trace.py), so the
    gradient-flow and hidden-state callbacks see each of its layers.

    ``vocab_size`` comes from the DataModule (linked in train.py); ``num_classes`` defaults to it (the memory
    task's label is one of its symbols). See ``LastStepClassifier`` for the other arguments.
    """

    def __init__(
        self,
        vocab_size: int = 10,
        num_classes: Optional[int] = None,
        cell: Cell = "rnn",
        embedding_dim: int = 16,
        hidden_size: int = 64,
        num_layers: int = 1,
        nonlinearity: Nonlinearity = "tanh",
        recurrent_init: RecurrentInit = "default",
        init_scale: float = 1.0,
        keep_gate_bias: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
    ):
        super().__init__()
        check_positive(vocab_size=vocab_size, num_classes=num_classes, embedding_dim=embedding_dim,
                       hidden_size=hidden_size, num_layers=num_layers)
        check_range("init_scale", init_scale, 0.0, float("inf"), example="1.0")
        check_range("keep_gate_bias", keep_gate_bias, -float("inf"), float("inf"), low_closed=False, example="1.0")
        if keep_gate_bias and cell == "rnn":
            raise UserInputError(f"keep_gate_bias={keep_gate_bias} needs a gate: use --model.cell lstm or gru, or "
                                 "leave keep_gate_bias at 0")
        self.save_hyperparameters(ignore=["optimizer"])  # callables would break torch.load(weights_only=True)
        classes = num_classes or vocab_size
        self.net = LastStepClassifier(vocab_size, classes, embedding_dim, hidden_size, num_layers, cell, nonlinearity,
                                      recurrent_init, init_scale, keep_gate_bias)
        self.optimizer_factory = optimizer
        self.loss_fn = nn.CrossEntropyLoss()
        self.train_acc = MulticlassAccuracy(classes, average="micro")
        self.val_acc = MulticlassAccuracy(classes, average="micro")
        self.test_acc = MulticlassAccuracy(classes, average="micro")
        self.trace_requested = False  # monitoring contract (src/models/recurrent_trace.py)
        self.last_trace: Optional[RecurrentTrace] = None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens ``[B, T]`` -> logits ``[B, C]``."""
        return self.net(tokens).logits

    def _step(self, batch: MemoryBatch, stage: str) -> torch.Tensor:
        watch = stage == "train" and self.trace_requested
        out = self.net(batch.tokens, watch_inputs=watch)
        logits = out.logits.float()
        loss = self.loss_fn(logits, batch.targets)
        size = len(batch.targets)
        if stage == "train":
            stop_if_not_finite(loss, self.global_step)
            if watch:
                self.last_trace = out.trace
        metric = {"train": self.train_acc, "val": self.val_acc, "test": self.test_acc}[stage]
        metric(logits, batch.targets)
        self.log(f"{stage}/loss", loss, batch_size=size, prog_bar=stage == "train")
        self.log(f"{stage}/acc", metric, batch_size=size, prog_bar=stage == "val")
        return loss

    def training_step(self, batch: MemoryBatch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: MemoryBatch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: MemoryBatch, batch_idx: int) -> None:
        self._step(batch, "test")

    def trace(self, batch: MemoryBatch) -> RecurrentTrace:
        """Monitoring contract: a forward pass for inspection only."""
        return self.net(batch.tokens.to(self.device)).trace

    def configure_optimizers(self):
        return configure_optimizers(self.parameters(), self.optimizer_factory)

