"""TextClassifier: the LightningModule that trains an RNNClassifier on 0/1 labels."""

from __future__ import annotations

from typing import Optional, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryF1Score

from data_modules.batching import TextBatch
from data_modules.vocabulary import Vocabulary
from src.callbacks.prediction_writer import ClassifierPredictionWriter
from src.lightning_modules.checkpoint_identity import CheckpointIdentity
from src.lightning_modules.data_vocabulary import data_vocabulary
from src.lightning_modules.finite_loss import stop_if_not_finite
from src.lightning_modules.optimization import configure_optimizers
from src.models.recurrent_stack import Cell, Nonlinearity
from src.models.recurrent_trace import RecurrentTrace
from src.models.rnn_classifier import Pooling, RNNClassifier
from src.serving.prediction import Prediction
from src.serving.pytorch_classifier import PyTorchClassifier
from src.serving.word_importance import Explanation, explain
from src.utils.errors import UserInputError, check_positive, check_range


class TextClassifier(CheckpointIdentity, pl.LightningModule):
    """Binary text classifier with BCE-with-logits; val/test accuracy, F1 and AUROC.

    ``vocab_size`` and ``pad_index`` come from the DataModule (linked in train.py). The vocabulary, label
    names and ``max_len`` are taken from the DataModule at setup and stored in every checkpoint as plain
    data, so ``TextClassifier.load_from_checkpoint(p).predict_texts([...])`` needs nothing else.

    Args:
        cell: ``rnn`` | ``lstm`` | ``gru``; ``nonlinearity`` (tanh|relu) applies to ``rnn``.
        pooling: ``last`` | ``mean`` | ``max`` over valid positions.
        pack: run every layer on packed sequences (the reference pipeline's way; slower on a CPU, where the padded
            run gives the same outputs at valid positions; see RecurrentStack).
        keep_gate_bias: added to the LSTM forget / GRU update gate biases at initialisation (Jozefowicz et al. 2015
            recommend 1; 3 keeps most of the state at each step, see docs/dynamics.md). lstm and gru only.
        optimizer, scheduler: from the config (LightningCLI callables); a scheduler steps per epoch on val/loss.
        glove_path: optional GloVe text file (``word v1 ... vD``) to initialise the embedding; D must equal
            ``embedding_dim``.
    """

    def __init__(
        self,
        vocab_size: int = 2,
        pad_index: int = 0,
        cell: Cell = "lstm",
        embedding_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: Pooling = "last",
        nonlinearity: Nonlinearity = "tanh",
        pack: bool = False,
        keep_gate_bias: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: Optional[LRSchedulerCallable] = None,
        glove_path: Optional[str] = None,
    ):
        super().__init__()
        check_positive(vocab_size=vocab_size, embedding_dim=embedding_dim, hidden_size=hidden_size,
                       num_layers=num_layers)
        check_range("pad_index", pad_index, 0, vocab_size)
        check_range("dropout", dropout, 0.0, 1.0, example="0.2")
        # Optimizer callables are configuration, not model data: keeping them out of the hyperparameters
        # keeps every checkpoint loadable with torch.load(weights_only=True).
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        if keep_gate_bias and cell not in ("lstm", "gru"):
            raise UserInputError(f"keep_gate_bias={keep_gate_bias} applies to --model.cell lstm or gru, not {cell}")
        self.net = RNNClassifier(vocab_size, embedding_dim, hidden_size, num_layers, cell, bidirectional, dropout,
                                 pooling, pad_index, nonlinearity, pack, keep_gate_bias)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.loss_fn = nn.BCEWithLogitsLoss()
        metrics = MetricCollection({"acc": BinaryAccuracy(), "f1": BinaryF1Score(), "auroc": BinaryAUROC()})
        self.val_metrics, self.test_metrics = metrics.clone(prefix="val/"), metrics.clone(prefix="test/")
        self.vocabulary: Optional[Vocabulary] = None
        self.label_names: list[str] = ["negative", "positive"]
        self.max_len: Optional[int] = None
        self.trace_requested = False  # monitoring contract (src/models/recurrent_trace.py)
        self.last_trace: Optional[RecurrentTrace] = None

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens ``[B, T]``, lengths ``[B]`` -> logits ``[B]``."""
        return self.net(tokens, lengths).logits

    # -- data the checkpoint carries ----------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule, vocabulary = data_vocabulary(self, "vocabulary entries")
        if vocabulary is None:
            return
        self.vocabulary, self.label_names = vocabulary, list(datamodule.label_names)
        self.max_len = datamodule.max_len
        if stage == "fit" and self.hparams.glove_path and not self._restoring():
            self._init_embedding_from_glove(self.hparams.glove_path)

    def _restoring(self) -> bool:
        return self._trainer is not None and self.trainer.ckpt_path is not None

    def _init_embedding_from_glove(self, path: str) -> None:
        from data_modules.glove import read_glove

        words, vectors = read_glove(path, words=set(self.vocabulary.tokens))
        if vectors.shape[1] != self.hparams.embedding_dim:
            raise UserInputError(f"GloVe file {path} has {vectors.shape[1]}-d vectors but embedding_dim="
                                 f"{self.hparams.embedding_dim}; set --model.embedding_dim {vectors.shape[1]}")
        weight = self.net.embedding.weight
        with torch.no_grad():
            rows = torch.tensor([self.vocabulary.index[w] for w in words], dtype=torch.long)
            weight[rows] = torch.as_tensor(vectors, dtype=weight.dtype)
        self.print(f"GloVe: initialised {len(words)} of {len(self.vocabulary)} embedding rows from {path}")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["vocabulary"] = self.vocabulary.tokens if self.vocabulary is not None else None
        checkpoint["label_names"] = self.label_names
        checkpoint["max_len"] = self.max_len

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        tokens = checkpoint.get("vocabulary")
        if tokens is not None:
            if self.vocabulary is not None and self.vocabulary.tokens != tokens:
                raise UserInputError("the checkpoint's vocabulary differs from the one built from this data; "
                                     "evaluate with the --data options it was trained with (path, max_vocab_size, "
                                     "min_freq, seed)")
            self.vocabulary = Vocabulary(tokens)
        self.label_names = list(checkpoint.get("label_names", self.label_names))
        self.max_len = checkpoint.get("max_len")

    # -- training -----------------------------------------------------------------------------------------
    def _step(self, batch: TextBatch, stage: str) -> torch.Tensor:
        watch = stage == "train" and self.trace_requested
        out = self.net(batch.tokens, batch.lengths, watch_inputs=watch)
        logits = out.logits.float()
        loss = self.loss_fn(logits, batch.labels)
        size = len(batch.labels)
        if stage == "train":
            stop_if_not_finite(loss, self.global_step)
            if watch:
                self.last_trace = out.trace
            self.log("train/loss", loss, prog_bar=True, batch_size=size)
        else:
            metrics = self.val_metrics if stage == "val" else self.test_metrics
            metrics.update(torch.sigmoid(logits), batch.labels.long())
            self.log(f"{stage}/loss", loss, batch_size=size, sync_dist=True)
            self.log_dict(metrics, batch_size=size, prog_bar=stage == "val")
        return loss

    def training_step(self, batch: TextBatch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: TextBatch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: TextBatch, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: TextBatch, batch_idx: int) -> torch.Tensor:
        return torch.sigmoid(self(batch.tokens, batch.lengths).float())

    def trace(self, batch: TextBatch) -> RecurrentTrace:
        """Monitoring contract: a forward pass for inspection only."""
        return self.net(batch.tokens.to(self.device), batch.lengths).trace

    def configure_callbacks(self):
        return [ClassifierPredictionWriter()]  # acts in `train.py predict` only

    def configure_optimizers(self):
        return configure_optimizers(self.parameters(), self.optimizer_factory, self.scheduler_factory)

    # -- inference ------------------------------------------------------------------------------------------
    def served(self) -> PyTorchClassifier:
        """This module's network with its vocabulary, as the serving code runs it (src/serving/)."""
        if self.vocabulary is None:
            raise UserInputError("this model has no vocabulary: load it from a checkpoint written by train.py")
        return PyTorchClassifier(self.net, self.vocabulary, self.label_names, self.max_len, dict(self.hparams))

    def predict_proba(self, texts: Sequence[str], batch_size: int = 256) -> list[float]:
        """P(label 1) per text (see ``ServedClassifier.predict_proba``)."""
        return self.served().predict_proba(texts, batch_size)

    def predict_texts(self, texts: Sequence[str], batch_size: int = 256, threshold: float = 0.5) -> list[Prediction]:
        return self.served().predict_texts(texts, batch_size, threshold)

    def explain(self, text: str, n_steps: int = 50) -> Explanation:
        """Word importance for one text: Integrated Gradients and occlusion per token
        (src/serving/word_importance.py)."""
        return explain(self.served(), text, n_steps)
