"""CurriculumAutoencoder: trains an RNNAutoencoder on poems' word vectors, short sequences first.

Loss: masked MSE (padding never counts). Validation decodes from z alone over the full length and logs, for
the model and for the trivial baseline that outputs the mean training vector at every position:

- ``val/mse``: masked MSE per vector component;
- ``val/cosine``: mean cosine similarity per valid known word;
- ``val/word_recovery``: share of valid known words whose reconstruction's nearest vocabulary vector (by cosine)
  is the original word.

Curriculum: phases of ``[max_len, epochs]``; in an epoch of phase k every training batch is cut to its first
``max_len`` positions. The phase follows ``trainer.current_epoch``, which a checkpoint restores, so a run
resumed in the middle of a phase finishes that phase. ``curriculum: null`` trains on full length throughout.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence, Union

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torchmetrics import Metric

from data_modules.poetry import PoemBatch
from src.lightning_modules.checkpoint_identity import CheckpointIdentity
from src.lightning_modules.finite_loss import stop_if_not_finite
from src.lightning_modules.optimization import configure_optimizers
from src.models.recurrent_stack import Cell, Nonlinearity
from src.models.recurrent_trace import RecurrentTrace
from src.models.rnn_autoencoder import DecoderInput, RNNAutoencoder
from src.utils.errors import UserInputError, check_positive, check_range

DEFAULT_CURRICULUM = [[20, 15], [35, 20], [50, 15]]  # the reference notebook's phases: (max_len, epochs)


def masked_mse(prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over valid positions only: ``[B, T, D]``, ``[B, T, D]``, ``[B, T]`` -> scalar.

    Padded positions are selected away (not multiplied by 0), so even NaN padding cannot reach the loss.
    """
    valid = mask.bool()
    return F.mse_loss(prediction[valid], target[valid])


def curriculum_at(curriculum: Optional[Sequence[Sequence[int]]], epoch: int) -> tuple[int, Optional[int]]:
    """(phase number from 1, max_len) for a 0-based epoch; after the last phase its max_len stays.
    No curriculum: (0, None), i.e. full length."""
    if not curriculum:
        return 0, None
    end = 0
    for phase, (max_len, epochs) in enumerate(curriculum, start=1):
        end += epochs
        if epoch < end:
            return phase, max_len
    return len(curriculum), curriculum[-1][0]


def check_curriculum(curriculum) -> Optional[list[list[int]]]:
    if curriculum is None:
        return None
    phases = [list(p) for p in curriculum]
    if not phases or any(len(p) != 2 or int(p[0]) < 1 or int(p[1]) < 1 for p in phases):
        raise UserInputError(f"curriculum={curriculum} must be a list of [max_len, epochs] pairs of positive "
                             f"integers, e.g. [[20, 15], [35, 20], [50, 15]], or null for full length")
    return [[int(a), int(b)] for a, b in phases]


def nearest_words(vectors: Tensor, unit_vocab: Tensor, penalty: Tensor, chunk: int = 4096) -> Tensor:
    """Index of the vocabulary row with the highest cosine for each of ``vectors [M, D]``.

    unit_vocab ``[V, D]`` unit-norm rows; penalty ``[V]`` is -inf on rows that are not words (<pad>, <unk>).
    """
    found = []
    for part in vectors.split(chunk):
        scores = F.normalize(part.float(), dim=-1) @ unit_vocab.T + penalty  # [m, V]
        found.append(scores.argmax(-1))
    return torch.cat(found) if found else vectors.new_zeros(0, dtype=torch.long)


class ReconstructionScores(Metric):
    """Sums for masked MSE, mean cosine and nearest-word recovery over an epoch (synced across devices)."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        for name in ("squared_error", "values", "cosine", "words", "recovered"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, prediction: Tensor, target: Tensor, mask: Tensor, tokens: Tensor,
               unit_vocab: Optional[Tensor] = None, penalty: Optional[Tensor] = None) -> None:
        """prediction, target ``[B, T, D]``; mask, tokens ``[B, T]``. Cosine and recovery count known words
        (id >= 2 with a non-zero vector); MSE counts every valid position."""
        valid = mask.bool()
        prediction, target = prediction.float(), target.float()
        self.squared_error += ((prediction[valid] - target[valid]) ** 2).sum().double()
        self.values += valid.sum() * target.size(-1)
        known = valid & (tokens >= 2) & (target.norm(dim=-1) > 0)
        self.cosine += F.cosine_similarity(prediction[known], target[known], dim=-1).sum().double()
        self.words += known.sum()
        if unit_vocab is not None:
            self.recovered += (nearest_words(prediction[known], unit_vocab, penalty) == tokens[known]).sum()

    def compute(self) -> dict[str, Tensor]:
        words = self.words.clamp(min=1)
        return {"mse": (self.squared_error / self.values.clamp(min=1)).float(),
                "cosine": (self.cosine / words).float(), "word_recovery": (self.recovered / words).float()}


class CurriculumAutoencoder(CheckpointIdentity, pl.LightningModule):
    """RNN autoencoder of word-vector sequences with a sequence-length curriculum.

    ``input_dim`` comes from the DataModule (``data.vector_dim``, linked in train.py). The vocabulary, its
    vectors, the mean training vector, the GloVe path and the tokenizer settings are taken from the
    DataModule at setup and stored in every checkpoint as plain data, so ``python -m src.encode`` needs only
    the checkpoint (and the GloVe file, for words the training poems lacked).

    Args:
        hidden_size, num_layers, cell (``rnn`` | ``lstm`` | ``gru``), nonlinearity (``rnn`` only), dropout.
        bottleneck_dim: size of z; ``auto``: the number of PCA components holding 90% of the training word
            vectors' variance (printed by the DataModule).
        decoder_input: ``previous_output`` | ``teacher_forcing`` | ``bottleneck`` (see src/models/rnn_autoencoder.py).
        teacher_forcing_ratio: with ``teacher_forcing``, the probability of feeding the true previous vector.
        curriculum: ``[[max_len, epochs], ...]``; null: full length from the start.
        projector: at the end of fit, write the validation poems' z to TensorBoard's projector.
    """

    def __init__(
        self,
        input_dim: int = 50,
        hidden_size: int = 64,
        bottleneck_dim: Union[int, Literal["auto"]] = 16,
        cell: Cell = "rnn",
        num_layers: int = 1,
        nonlinearity: Nonlinearity = "tanh",
        dropout: float = 0.0,
        decoder_input: DecoderInput = "previous_output",
        teacher_forcing_ratio: float = 1.0,
        curriculum: Optional[list[list[int]]] = DEFAULT_CURRICULUM,
        projector: bool = True,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: Optional[LRSchedulerCallable] = None,
    ):
        super().__init__()
        check_positive(input_dim=input_dim, hidden_size=hidden_size, num_layers=num_layers)
        check_range("dropout", dropout, 0.0, 1.0, example="0.2")
        check_range("teacher_forcing_ratio", teacher_forcing_ratio, 0.0, 1.0, high_closed=True, example="0.5")
        if bottleneck_dim != "auto" and not (isinstance(bottleneck_dim, int) and bottleneck_dim >= 1):
            raise UserInputError(f"bottleneck_dim={bottleneck_dim} must be a positive integer or 'auto'")
        curriculum = check_curriculum(curriculum)
        # Optimizer callables are configuration, not model data: keeping them out of the hyperparameters keeps
        # every checkpoint loadable with torch.load(weights_only=True).
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.hparams.curriculum = curriculum
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.net: Optional[RNNAutoencoder] = None
        if bottleneck_dim != "auto":
            self._build(int(bottleneck_dim))  # else at setup, once the data's PCA is known
        self.val_scores, self.baseline_scores = ReconstructionScores(), ReconstructionScores()
        # Data the checkpoint carries (plain lists/tensors/strings).
        self.vocabulary: Optional[list[str]] = None
        self.register_buffer("vocab_vectors", torch.zeros(0, input_dim), persistent=False)  # [V, D]
        self.register_buffer("mean_vector", torch.zeros(input_dim), persistent=False)  # [D]
        self.glove_path: Optional[str] = None
        self.glove_dim: Optional[int] = None
        self.tokenizer: dict = {"max_len": 50, "oov": "drop"}
        self.data_report: dict = {}
        self._phase = None
        self.trace_requested = False  # monitoring contract (src/models/recurrent_trace.py)
        self.last_trace: Optional[RecurrentTrace] = None

    def _build(self, bottleneck_dim: int) -> None:
        h = self.hparams
        self.hparams.bottleneck_dim = bottleneck_dim
        self.net = RNNAutoencoder(h.input_dim, h.hidden_size, bottleneck_dim, h.cell, h.num_layers, h.decoder_input,
                                  h.teacher_forcing_ratio, h.dropout, h.nonlinearity)

    def forward(self, embeddings: Tensor, lengths: Tensor) -> Tensor:
        """embeddings ``[B, T, D]``, lengths ``[B]`` -> reconstruction ``[B, T, D]`` decoded from z alone."""
        return self.net(embeddings, lengths, teacher_forcing=False).reconstruction

    # -- reuse ----------------------------------------------------------------------------------------------
    def encode(self, batch: PoemBatch) -> Tensor:
        """``PoemBatch`` -> z ``[B, Z]``."""
        return self.net.encode(batch.embeddings.to(self.device), batch.lengths)[0]

    def decode(self, z: Tensor, length: int) -> Tensor:
        """z ``[B, Z]`` -> ``[B, length, D]`` word vectors."""
        return self.net.decode(z.to(self.device), length).reconstruction

    def nearest_words(self, vectors: Tensor) -> list[str]:
        """Vectors ``[M, D]`` -> the vocabulary word nearest to each (by cosine)."""
        unit, penalty = self._vocab_search()
        return [self.vocabulary[i] for i in nearest_words(vectors.to(self.device), unit, penalty).tolist()]

    # -- data the checkpoint carries ------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None or not hasattr(datamodule, "vectors"):
            return
        if datamodule.vector_dim != self.hparams.input_dim:
            raise UserInputError(f"the data's word vectors are {datamodule.vector_dim}-d but the model expects "
                                 f"{self.hparams.input_dim}-d; keep --model.input_dim linked to the data "
                                 f"(or use the GloVe file the checkpoint was trained with)")
        if self.net is None:
            resolved = int(datamodule.report["pca_dim_90"])
            rank_zero_info(f"bottleneck_dim auto: {resolved} (PCA components for 90% of the variance)")
            self._build(resolved)
        self.vocabulary = list(datamodule.vocabulary)
        self.vocab_vectors = torch.as_tensor(datamodule.vectors, dtype=torch.float32, device=self.device)
        self.mean_vector = torch.as_tensor(datamodule.mean_vector, dtype=torch.float32, device=self.device)
        self.glove_path, self.glove_dim = datamodule.recorded_glove_path, datamodule.glove_dim
        self.tokenizer = dict(datamodule.tokenizer_settings)
        self.data_report = {k: v for k, v in datamodule.report.items() if isinstance(v, (int, float))}
        self._val_poems = datamodule.split_poems.get("val", [])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["vocabulary"] = self.vocabulary
        checkpoint["vocab_vectors"] = self.vocab_vectors.detach().cpu()
        checkpoint["mean_vector"] = self.mean_vector.detach().cpu()
        checkpoint["glove_path"] = self.glove_path
        checkpoint["glove_dim"] = self.glove_dim
        checkpoint["tokenizer"] = dict(self.tokenizer)
        checkpoint["data_report"] = dict(self.data_report)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        trained_dim = checkpoint.get("hyper_parameters", {}).get("input_dim", self.hparams.input_dim)
        if trained_dim != self.hparams.input_dim:
            raise UserInputError(f"the checkpoint was trained on {trained_dim}-d word vectors but this data has "
                                 f"{self.hparams.input_dim}-d ones; use the GloVe file it was trained with "
                                 f"({checkpoint.get('glove_path') or 'see its config.yaml'})")
        if checkpoint.get("vocabulary") is not None:
            words, vectors = len(checkpoint["vocabulary"]), len(checkpoint.get("vocab_vectors", ()))
            if words != vectors:
                raise UserInputError(f"the checkpoint is inconsistent: {words} vocabulary words but {vectors} word "
                                     "vectors; use an unmodified checkpoint")
            self.vocabulary = list(checkpoint["vocabulary"])
            self.vocab_vectors = checkpoint["vocab_vectors"].to(self.device)
            self.mean_vector = checkpoint["mean_vector"].to(self.device)
        self.glove_path, self.glove_dim = checkpoint.get("glove_path"), checkpoint.get("glove_dim")
        self.tokenizer = dict(checkpoint.get("tokenizer", self.tokenizer))
        if "seq_len" in self.tokenizer:  # checkpoints written before the data's seq_len became max_len
            self.tokenizer["max_len"] = self.tokenizer.pop("seq_len")
        self.data_report = dict(checkpoint.get("data_report", {}))


    # -- curriculum -----------------------------------------------------------------------------------------
    def curriculum_phase(self, epoch: Optional[int] = None) -> tuple[int, Optional[int]]:
        return curriculum_at(self.hparams.curriculum, self.current_epoch if epoch is None else epoch)

    def on_train_start(self) -> None:
        # Figures only the data knows, once per run: one text entry (as scalars they were one-dot charts).
        report = {k: v for k, v in self.data_report.items()
                  if k in ("coverage", "pca_dim_90", "pca_dim_95", "vocabulary", "train", "val", "mean_length")}
        text = " | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items())
        for logger in self.loggers:
            if report and hasattr(getattr(logger, "experiment", None), "add_text"):
                logger.experiment.add_text("data/summary", text, 0)
        planned = sum(epochs for _, epochs in self.hparams.curriculum or [])
        max_epochs = self.trainer.max_epochs
        if planned and max_epochs is not None and 0 <= max_epochs < planned:
            rank_zero_warn(f"trainer.max_epochs={max_epochs} ends before the curriculum's {planned} epochs: the "
                           f"later phases will not run (set --trainer.max_epochs {planned})")

    def on_train_epoch_start(self) -> None:
        phase, max_len = self.curriculum_phase()
        if phase != self._phase and self.hparams.curriculum:
            rank_zero_info(f"curriculum: phase {phase}/{len(self.hparams.curriculum)} from epoch {self.current_epoch}"
                           f", sequences cut to {max_len} words")
        self._phase = phase

    # -- training -------------------------------------------------------------------------------------------
    def training_step(self, batch: PoemBatch, batch_idx: int) -> Tensor:
        phase, max_len = self.curriculum_phase()
        if max_len is not None:
            batch = batch.truncate(max_len)
        watch = self.trace_requested
        out = self.net(batch.embeddings, batch.lengths, teacher_forcing=True, watch_inputs=watch)
        loss = masked_mse(out.reconstruction.float(), batch.embeddings, batch.mask)
        stop_if_not_finite(loss, self.global_step)
        if watch:
            self.last_trace = out.trace
        size = batch.lengths.numel()
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("curriculum/max_len", float(max_len or self.tokenizer["max_len"]), on_step=False, on_epoch=True,
                 batch_size=size)
        self.log("curriculum/phase", float(phase), on_step=False, on_epoch=True, batch_size=size)
        return loss

    def _vocab_search(self) -> tuple[Tensor, Tensor]:
        vectors = self.vocab_vectors.to(self.device)
        norms = vectors.norm(dim=-1)
        penalty = torch.where(norms > 0, 0.0, float("-inf")).to(vectors.dtype)
        penalty[:2] = float("-inf")  # <pad>, <unk>
        return vectors / norms.clamp(min=1e-12)[:, None], penalty

    def validation_step(self, batch: PoemBatch, batch_idx: int) -> None:
        out = self.net(batch.embeddings, batch.lengths, teacher_forcing=False)  # from z alone, full length
        search = self._vocab_search() if len(self.vocab_vectors) else (None, None)
        self.val_scores.update(out.reconstruction, batch.embeddings, batch.mask, batch.tokens, *search)
        baseline = self.mean_vector.to(batch.embeddings.dtype).expand_as(batch.embeddings)
        self.baseline_scores.update(baseline, batch.embeddings, batch.mask, batch.tokens, *search)

    def on_validation_epoch_end(self) -> None:
        scores = self.val_scores.compute()
        base = self.baseline_scores.compute()
        self.log_dict({f"val/{k}": v for k, v in scores.items() if k != "cosine"})
        self.log("val/loss", scores["mse"])
        self.log("val/cosine", scores["cosine"], prog_bar=True)
        self.log_dict({f"val/baseline_{k}": v for k, v in base.items()})
        self.val_scores.reset()
        self.baseline_scores.reset()

    def on_fit_end(self) -> None:
        """The validation poems' z in TensorBoard's projector (PCA/t-SNE/UMAP), titles and authors as labels."""
        poems = getattr(self, "_val_poems", None)
        logger = next((lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)), None)
        if not self.hparams.projector or not poems or logger is None or self.trainer.global_rank != 0:
            return
        codes = []
        with torch.no_grad():
            for batch in self.trainer.datamodule.val_dataloader():
                codes.append(self.encode(batch).float().cpu())
        logger.experiment.add_embedding(torch.cat(codes), metadata=[[clean(p.title), clean(p.author)] for p in poems],
                                        metadata_header=["title", "author"], tag="latent/val",
                                        global_step=self.global_step)

    def trace(self, batch: PoemBatch) -> RecurrentTrace:
        """Monitoring contract: a forward pass for inspection only."""
        return self.net(batch.embeddings.to(self.device), batch.lengths, teacher_forcing=True).trace

    def predict_step(self, batch: PoemBatch, batch_idx: int) -> Tensor:
        return self.encode(batch)

    def configure_optimizers(self):
        return configure_optimizers(self.parameters(), self.optimizer_factory, self.scheduler_factory)


def clean(text: str) -> str:
    """One TSV cell: no tabs or line breaks, never empty (the projector rejects empty labels)."""
    return " ".join(str(text).split()) or "-"

