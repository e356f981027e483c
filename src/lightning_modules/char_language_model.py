"""CharLanguageModel: the LightningModule that trains a CharRNN and samples text from it."""

from __future__ import annotations

import math
import warnings
from typing import Optional, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torchmetrics import MeanMetric

from data_modules.char_text import UNK, CharBatch
from src.lightning_modules.checkpoint_identity import CheckpointIdentity
from src.lightning_modules.data_vocabulary import data_vocabulary
from src.lightning_modules.finite_loss import stop_if_not_finite
from src.lightning_modules.optimization import configure_optimizers
from src.models.char_rnn import CharRNN, add_one_log_probs, bits_per_char
from src.models.recurrent_stack import Cell, Nonlinearity
from src.models.recurrent_trace import RecurrentTrace
from src.utils.errors import UserInputError, check_positive, check_range

UNK_INDEX = 0  # CharTextDataModule puts <unk> first


class CharLanguageModel(CheckpointIdentity, pl.LightningModule):
    """Next-character cross-entropy at every position; ``val/loss`` (nats), ``val/bpc``, ``val/perplexity``.

    ``vocab_size`` comes from the DataModule (linked in train.py). The character vocabulary and the
    lowercasing flag are taken from the DataModule at setup and stored in every checkpoint as plain data, so
    ``CharLanguageModel.from_checkpoint(p).generate(...)`` needs nothing else. The DataModule's unigram and
    bigram counts become the two baselines ``val/baseline_unigram_bpc`` and ``val/baseline_bigram_bpc``, scored
    on the same validation targets by the same ``bits_per_char``.

    Args:
        cell: ``rnn`` | ``lstm`` | ``gru``; ``nonlinearity`` (tanh|relu) applies to ``rnn``.
        tie_weights: share the embedding matrix with the output layer.
        sample_prime, sample_length, sample_temperatures, sample_seed: the text samples logged to TensorBoard
            (``samples/temperature_<t>``) after every validation epoch; a fixed seed, so the change from one
            epoch to the next is the model's, not the random draw's.
        optimizer, scheduler: from the config (LightningCLI callables); a scheduler steps per epoch on val/loss.
    """

    def __init__(
        self,
        vocab_size: int = 2,
        cell: Cell = "lstm",
        embedding_dim: int = 64,
        hidden_size: int = 256,
        num_layers: int = 1,
        dropout: float = 0.0,
        tie_weights: bool = False,
        nonlinearity: Nonlinearity = "tanh",
        sample_prime: str = "the ",
        sample_length: int = 200,
        sample_temperatures: Sequence[float] = (0.5, 1.0, 1.5),
        sample_seed: int = 0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: Optional[LRSchedulerCallable] = None,
    ):
        super().__init__()
        check_positive(vocab_size=vocab_size, embedding_dim=embedding_dim, hidden_size=hidden_size,
                       num_layers=num_layers)
        check_range("dropout", dropout, 0.0, 1.0, example="0.2")
        check_range("sample_length", sample_length, 0, float("inf"), example="200")
        for temperature in sample_temperatures:
            check_range("sample_temperatures", temperature, 0.0, float("inf"), example="[0.5, 1.0]")
        # Optimizer callables are configuration, not model data: keeping them out of the hyperparameters
        # keeps every checkpoint loadable with torch.load(weights_only=True).
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.hparams.sample_temperatures = [float(t) for t in sample_temperatures]  # plain list in the checkpoint
        self.net = CharRNN(vocab_size, embedding_dim, hidden_size, num_layers, cell, dropout, tie_weights, nonlinearity)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.val_nats, self.val_unigram_bpc, self.val_bigram_bpc = MeanMetric(), MeanMetric(), MeanMetric()
        # Baseline tables come from the data at setup; not persistent, so the checkpoint holds only the model.
        self.register_buffer("unigram_log_probs", None, persistent=False)  # [V]
        self.register_buffer("bigram_log_probs", None, persistent=False)  # [V, V] log P(next | previous)
        self.vocabulary: Optional[list[str]] = None
        self.lowercase = False
        self.trace_requested = False  # monitoring contract (src/models/recurrent_trace.py)
        self.last_trace: Optional[RecurrentTrace] = None

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens ``[B, T]`` -> next-character logits ``[B, T, V]``."""
        return self.net(tokens).logits

    # -- data the checkpoint carries ----------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule, vocabulary = data_vocabulary(self, "characters")
        if vocabulary is None:
            return
        self.vocabulary, self.lowercase = list(vocabulary), bool(datamodule.lowercase)
        self.unigram_log_probs = add_one_log_probs(torch.as_tensor(datamodule.unigram_counts))
        self.bigram_log_probs = add_one_log_probs(torch.as_tensor(datamodule.bigram_counts))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["vocabulary"] = self.vocabulary
        checkpoint["lowercase"] = self.lowercase

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        vocabulary = checkpoint.get("vocabulary")
        if vocabulary is not None:
            if len(vocabulary) != self.hparams.vocab_size:
                raise UserInputError(f"the checkpoint is inconsistent: {len(vocabulary)} characters but a model of "
                                     f"{self.hparams.vocab_size}; use an unmodified checkpoint")
            if self.vocabulary is not None and self.vocabulary != vocabulary:
                raise UserInputError("the checkpoint's characters differ from those of this data; use the --data "
                                     "options it was trained with (path, lowercase, val_fraction, num_blocks, seed)")
            self.vocabulary = list(vocabulary)
        self.lowercase = bool(checkpoint.get("lowercase", False))

    # -- training -----------------------------------------------------------------------------------------
    def training_step(self, batch: CharBatch, batch_idx: int) -> Tensor:
        watch = self.trace_requested
        out = self.net(batch.inputs, watch_inputs=watch)
        loss = bits_per_char(out.logits, batch.targets) * math.log(2)  # nats, the usual cross-entropy
        stop_if_not_finite(loss, self.global_step)
        if watch:
            self.last_trace = out.trace
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.inputs.size(0))
        self.log("train/bpc", loss / math.log(2), batch_size=batch.inputs.size(0))
        return loss

    def validation_step(self, batch: CharBatch, batch_idx: int) -> None:
        inputs, targets = batch
        chars = targets.numel()
        self.val_nats.update(bits_per_char(self(inputs), targets) * math.log(2), weight=chars)
        if self.bigram_log_probs is not None:
            unigram = self.unigram_log_probs.expand(*inputs.shape, -1)  # [B, T, V], the same row everywhere
            self.val_unigram_bpc.update(bits_per_char(unigram, targets), weight=chars)
            self.val_bigram_bpc.update(bits_per_char(self.bigram_log_probs[inputs], targets), weight=chars)

    def on_validation_epoch_end(self) -> None:
        # Averaged over characters first, then converted: perplexity is exp(mean nats), not a mean of exps.
        nats = self.val_nats.compute()
        self.log_dict({"val/loss": nats, "val/bpc": nats / math.log(2), "val/perplexity": torch.exp(nats)},
                      prog_bar=True)
        if self.bigram_log_probs is not None:
            self.log_dict({"val/baseline_unigram_bpc": self.val_unigram_bpc.compute(),
                           "val/baseline_bigram_bpc": self.val_bigram_bpc.compute()})
        for metric in (self.val_nats, self.val_unigram_bpc, self.val_bigram_bpc):
            metric.reset()
        if not self.trainer.sanity_checking:
            self._log_samples()

    def _log_samples(self) -> None:
        writer = getattr(self.logger, "experiment", None) if self.logger is not None else None
        if self.vocabulary is None or not hasattr(writer, "add_text") or self.global_rank != 0:
            return
        for temperature in self.hparams.sample_temperatures:
            text = self.generate(self.hparams.sample_prime, self.hparams.sample_length, temperature,
                                 seed=self.hparams.sample_seed)
            # Indented lines are a Markdown code block: TensorBoard then keeps the line breaks and spaces.
            writer.add_text(f"samples/temperature_{temperature:g}",
                            "\n".join("    " + line for line in text.split("\n")), self.global_step)

    def trace(self, batch) -> RecurrentTrace:
        """Monitoring contract: a forward pass for inspection only. batch: ``CharBatch`` or tokens ``[B, T]``."""
        tokens = batch if isinstance(batch, Tensor) else batch[0]
        return self.net(tokens.to(self.device)).trace

    def configure_optimizers(self):
        return configure_optimizers(self.parameters(), self.optimizer_factory, self.scheduler_factory)

    # -- sampling from a checkpoint alone -----------------------------------------------------------------

    def encode_prime(self, prime: str) -> list[int]:
        """Characters -> ids; characters the vocabulary lacks become ``<unk>``, with one warning per call."""
        if self.vocabulary is None:
            raise UserInputError("this model has no vocabulary: load it from a checkpoint written by train.py")
        index = {c: i for i, c in enumerate(self.vocabulary) if i != UNK_INDEX}
        text = prime.lower() if self.lowercase else prime
        ids = [index.get(c, UNK_INDEX) for c in text]
        unknown = sorted({c for c in text if c not in index})
        if unknown:
            warnings.warn(f"the prime has {len(unknown)} character(s) the vocabulary lacks "
                          f"({''.join(unknown)[:40]!r}); they are read as {UNK}", stacklevel=3)
        return ids

    @torch.no_grad()
    def generate(self, prime: str, length: int, temperature: float = 1.0, top_k: Optional[int] = None,
                 seed: Optional[int] = None) -> str:
        """``prime`` followed by ``length`` sampled characters.

        temperature: divides the logits; 0 picks the most likely character (greedy), > 1 flattens.
        top_k: sample among the k most likely characters only. seed: the same seed gives the same text.
        The prime runs through the network in one call; its final state is then carried one character at a
        time (each step needs the character sampled before it, so this loop is inherent). ``<unk>`` is never
        generated.
        """
        if not math.isfinite(temperature) or temperature < 0:
            raise UserInputError(f"temperature={temperature} must be a finite number >= 0 (0 = greedy, 1 = the "
                                 "model's own distribution, e.g. 0.8)")
        if length < 0:
            raise UserInputError(f"length={length} must be >= 0")
        if top_k is not None and top_k < 1:
            raise UserInputError(f"top_k={top_k} must be >= 1 (or None for all characters)")
        if not prime:
            raise UserInputError("the prime is empty: give at least one character, e.g. --prime 'the '")
        ids = self.encode_prime(prime)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        was_training = self.training
        self.eval()
        try:
            out = self.net(torch.tensor([ids], device=self.device))  # [1, P] -> logits [1, P, V]
            chars = []
            for step in range(length):
                next_id = self._pick(out.logits[0, -1], temperature, top_k, generator)
                chars.append(self.vocabulary[next_id])
                if step + 1 < length:
                    out = self.net(torch.tensor([[next_id]], device=self.device), out.state)
        finally:
            self.train(was_training)
        return prime + "".join(chars)

    @staticmethod
    def _pick(logits: Tensor, temperature: float, top_k: Optional[int], generator) -> int:
        """logits ``[V]`` -> one character id. Sampled on the CPU so a seed gives the same text on any device."""
        logits = logits.float().cpu().clone()
        if not torch.isfinite(logits).all():
            raise UserInputError("the model gives non-finite scores: its weights have diverged; use an earlier "
                                 "checkpoint")
        logits[UNK_INDEX] = -math.inf
        if temperature == 0:
            return int(logits.argmax())
        logits = logits / temperature
        if top_k is not None and top_k < logits.numel():
            logits[logits < logits.topk(top_k).values[-1]] = -math.inf
        probs = torch.softmax(logits, dim=-1)
        return int(torch.multinomial(probs, 1, generator=generator))
