"""IMDB training throughput: our pipeline vs a plain-PyTorch rewrite of the reference's packed pipeline.

Both train a 1-layer LSTM (embedding 128, hidden 128) for the same number of epochs on the same reviews
(one encoding, one vocabulary, one split) and are scored by the same function on the same held-out reviews.

- reference (notebook 003's way): a Dataset of Python lists that builds a tensor per review,
  ``pad_sequence`` in the collate, unsorted shuffled batches of 64, ``pack_padded_sequence(enforce_sorted=False)``,
  the LSTM's final hidden state -> dropout 0.3 -> linear, BCE-with-logits, Adam(1e-3, weight_decay 1e-5),
  StepLR, ``clip_grad_norm_(5.0)`` with its ``.item()`` and per-batch loss/accuracy bookkeeping.
- ours: ``IMDBDataModule``'s length-bucketed batches and ``TextClassifier`` through a Lightning ``Trainer``,
  configured by ``configs/imdb_fast.yaml`` (padded cuDNN/oneDNN LSTM calls, pooling over valid positions).

Samples/s counts training only (epoch start to epoch end, device synchronised); evaluation is not timed.

    python bench/imdb_throughput.py --data IMDB --quick     # CPU size, < 1 min
    python bench/imdb_throughput.py --data IMDB --device cuda --precision bf16-mixed

(IMDB: an aclImdb folder, a folder of train/test parquet files, or one parquet/CSV of text,label rows.)

The last line printed is ``ratio_samples_per_s=<ours/ref> acc_ours=<..> acc_ref=<..>``; ``main`` also returns the
figures as a dict (bench/gpu_check.py collects them).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import yaml
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import pytorch_lightning as pl  # noqa: E402

from data_modules.batching import EncodedTexts, SortedBatchSampler, pad_collate  # noqa: E402
from data_modules.imdb import IMDBDataModule  # noqa: E402
from src.lightning_modules.text_classifier import TextClassifier  # noqa: E402
from src.utils.errors import UserInputError, exit_on_user_error  # noqa: E402

# --quick: the CPU size (a 2k-review training pool, max_len 200, one epoch).
# One thread in quick mode: the CPU box is shared, and two OpenMP threads per process on two busy cores
# slowed both pipelines several-fold (the packed reference 7x) in our measurements.
QUICK = dict(limit=2000, eval_limit=1000, max_len=200, epochs=1, threads=1)
FULL = dict(limit=None, eval_limit=None, max_len=400, epochs=3, threads=None)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """``cuda (NVIDIA H200)`` or ``cpu (N threads)``: what a figure was measured on."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


# -- the reference pipeline (notebook 003), rewritten in plain PyTorch ---------------------------------------
class ReferenceLSTM(nn.Module):
    """Notebook 003's ``LSTMClassifier``: tokens ``[B, T]`` + lengths (list) -> logits ``[B]``."""

    def __init__(self, vocab_size: int, embed_dim: int = 128, hidden_dim: int = 128, dropout: float = 0.3,
                 pad_index: int = 0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_index)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, 1, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_dim, 1)

    def forward(self, x: Tensor, lengths) -> Tensor:
        embedded = self.embedding(x)  # [B, T, E]
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)  # hidden [1, B, H], each review's state after its last token
        return self.fc(self.dropout(hidden[-1])).squeeze(-1)


class ReviewDataset(Dataset):
    """Notebook 003's dataset: one Python list per review, a new tensor per item."""

    def __init__(self, sequences: list[list[int]], labels: list[float]):
        self.sequences, self.labels = sequences, labels

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, idx: int):
        return torch.tensor(self.sequences[idx], dtype=torch.long), torch.tensor(self.labels[idx], dtype=torch.float)


def reference_collate(batch, pad_index: int = 0):
    sequences, labels = zip(*batch)
    lengths = [len(seq) for seq in sequences]
    return pad_sequence(sequences, batch_first=True, padding_value=pad_index), torch.stack(labels), lengths


def as_lists(data: EncodedTexts) -> tuple[list[list[int]], list[float]]:
    return [data.sequence(i).tolist() for i in range(len(data))], data.labels.tolist()


def train_reference(data: EncodedTexts, vocab_size: int, epochs: int, device: torch.device,
                    batch_size: int = 64, seed: int = 0) -> tuple[ReferenceLSTM, float]:
    """-> (model, train seconds). Notebook 003's ``train_rnn_model`` loop without its validation pass."""
    torch.manual_seed(seed)
    loader = DataLoader(ReviewDataset(*as_lists(data)), batch_size=batch_size, shuffle=True,
                        collate_fn=reference_collate)
    model = ReferenceLSTM(vocab_size).to(device)
    criterion = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    seconds = 0.0
    for _ in range(epochs):
        model.train()
        synchronize(device)
        start = time.perf_counter()
        train_loss, correct, total, grad_norms = 0.0, 0, 0, []
        for sequences, labels, lengths in loader:
            sequences, labels = sequences.to(device), labels.to(device)
            optimizer.zero_grad()
            outputs = model(sequences, lengths)
            loss = criterion(outputs, labels)
            loss.backward()
            grad_norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=5.0).item())
            optimizer.step()
            train_loss += loss.item()
            correct += ((torch.sigmoid(outputs) > 0.5).float() == labels).sum().item()
            total += labels.size(0)
        synchronize(device)
        seconds += time.perf_counter() - start
        scheduler.step()
    return model, seconds


# -- ours -----------------------------------------------------------------------------------------------------
def load_config(path: Path) -> dict:
    """The model, optimizer, data-batching and trainer settings of a ``train.py`` YAML config."""
    if not path.is_file():
        raise UserInputError(f"config not found: {path}; pass --config configs/imdb_fast.yaml or another config")
    config = yaml.safe_load(path.read_text())
    model_args = dict(config["model"]["init_args"])
    optimizer = model_args.pop("optimizer", {"class_path": "torch.optim.Adam", "init_args": {}})
    module, _, name = optimizer["class_path"].rpartition(".")
    model_args["optimizer"] = partial(getattr(importlib.import_module(module), name), **optimizer.get("init_args", {}))
    data_args = config["data"]["init_args"]
    return dict(model=model_args, batch_size=data_args.get("batch_size", 64),
                bucket_batches=data_args.get("bucket_batches", 50), trainer=config.get("trainer", {}))


class EpochTimer(pl.Callback):
    """Wall time of each training epoch (from its first hook to its last, device synchronised)."""

    def __init__(self):
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        synchronize(pl_module.device)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        synchronize(pl_module.device)
        self.seconds.append(time.perf_counter() - self._start)


def train_ours(datamodule: IMDBDataModule, settings: dict, epochs: int, device: torch.device, precision: str,
               seed: int = 0) -> tuple[TextClassifier, float]:
    """-> (model, train seconds) for ``settings`` from ``load_config``, through a Lightning Trainer."""
    pl.seed_everything(seed, verbose=False)
    model = TextClassifier(vocab_size=datamodule.vocab_size, pad_index=datamodule.pad_index, **settings["model"])
    timer = EpochTimer()
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=precision, max_epochs=epochs,
        gradient_clip_val=settings["trainer"].get("gradient_clip_val", 5.0), callbacks=[timer], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, benchmark=device.type == "cuda")
    trainer.fit(model, datamodule=datamodule)
    return model, sum(timer.seconds)


# -- one evaluation for both ------------------------------------------------------------------------------------
@torch.no_grad()
def accuracy(predict: Callable[[Tensor, Tensor], Tensor], data: EncodedTexts, device: torch.device,
             batch_size: int = 256) -> float:
    """Share of ``data`` whose logit ``predict(tokens [B, T], lengths [B])`` lands on the right side of 0."""
    loader = DataLoader(data, batch_sampler=SortedBatchSampler(range(len(data)), batch_size, False, data.lengths),
                        collate_fn=pad_collate)
    correct = 0
    for batch in loader:
        logits = predict(batch.tokens.to(device), batch.lengths).float().cpu()
        correct += int(((logits > 0).float() == batch.labels).sum())
    return correct / len(data)


def main(argv: Optional[list[str]] = None) -> dict:
    with exit_on_user_error():
        return run(argv)


def run(argv: Optional[list[str]] = None) -> dict:
    """-> ``{"setup": {...}, "ref": {...}, "ours": {...}, "ratio_samples_per_s": ...}`` (the pipelines run only)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="IMDB reviews: parquet/CSV of text,label rows, or aclImdb/")
    parser.add_argument("--quick", action="store_true", help="CPU size: %s" % QUICK)
    parser.add_argument("--config", default=str(ROOT / "configs" / "imdb_fast.yaml"), help="our model and batches")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--precision", default="32-true", help="ours only, e.g. bf16-mixed on a GPU")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both (default: torch's; quick: 1)")
    parser.add_argument("--limit", type=int, help="reviews in the training pool (default: all, quick: 2000)")
    parser.add_argument("--eval_limit", type=int, help="held-out reviews scored (default: all, quick: 1000)")
    parser.add_argument("--max_len", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--test_fraction", type=float, default=0.2, help="share of the file held out for scoring")
    parser.add_argument("--batch_size", type=int, help="override the config's batch size (ours)")
    parser.add_argument("--lr", type=float, help="override the config's learning rate (ours)")
    parser.add_argument("--pooling", help="override the config's pooling (ours)")
    parser.add_argument("--pack", action="store_true", help="ablation: ours packs like the reference")
    parser.add_argument("--bucket_batches", type=int, help="override the config's (0: unsorted shuffled batches)")
    parser.add_argument("--order", default="ref,ours", help="which pipeline trains first")
    parser.add_argument("--seed", type=int, default=0, help="seed of both models' initialisation and dropout")
    parser.add_argument("--data_seed", type=int, default=42, help="seed of the review subsample and the split")
    parser.add_argument("--cache_dir", default=str(ROOT / ".cache" / "rnn_lab"))
    args = parser.parse_args(argv)
    order = args.order.split(",")
    if sorted(order) != ["ours", "ref"] and order not in (["ref"], ["ours"]):
        parser.error(f"--order takes ref,ours or ours,ref (or one of them), got {args.order!r}")
    defaults = QUICK if args.quick else FULL
    size = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in defaults.items()}
    if size["threads"]:
        torch.set_num_threads(size["threads"])
    device = torch.device(args.device)

    settings = load_config(Path(args.config))
    if not Path(args.data).expanduser().exists():
        raise UserInputError(f"--data {args.data} not found; pass IMDB reviews: a parquet/CSV of text,label rows "
                             "or an aclImdb folder")
    if args.lr is not None:
        optimizer = settings["model"]["optimizer"]
        settings["model"]["optimizer"] = partial(optimizer.func, **{**optimizer.keywords, "lr": args.lr})
    if args.pooling is not None:
        settings["model"]["pooling"] = args.pooling
    if args.pack:
        settings["model"]["pack"] = True
    if args.bucket_batches is not None:
        settings["bucket_batches"] = args.bucket_batches
    batch_size = args.batch_size or settings["batch_size"]
    # One encoding for both pipelines: the same reviews, vocabulary (min_freq 2, as notebook 003) and split.
    datamodule = IMDBDataModule(source=args.data, limit=size["limit"], test_fraction=args.test_fraction,
                                batch_size=batch_size, max_len=size["max_len"], min_freq=2, seed=args.data_seed,
                                bucket_batches=settings["bucket_batches"], cache_dir=args.cache_dir)
    datamodule.load()
    train, held_out = datamodule.datasets["train"], datamodule.datasets["test"]
    if size["eval_limit"] is not None and size["eval_limit"] < len(held_out):
        held_out = held_out.subset(np.random.default_rng(0).permutation(len(held_out))[: size["eval_limit"]])
    print(f"train reviews={len(train)} held-out scored={len(held_out)} vocabulary={datamodule.vocab_size} "
          f"max_len={size['max_len']} epochs={size['epochs']} mean_len={train.lengths.mean():.0f} "
          f"threads={torch.get_num_threads()} device={device} precision(ours)={args.precision}", flush=True)

    setup = dict(train_reviews=len(train), held_out=len(held_out), epochs=size["epochs"], max_len=size["max_len"],
                 device=device_name(device), precision=args.precision, batch_size=batch_size)
    results = {}
    for name in order:
        if name == "ref":
            model, seconds = train_reference(train, datamodule.vocab_size, size["epochs"], device, seed=args.seed)
            model.eval()
            acc = accuracy(lambda tokens, lengths, model=model: model(tokens, lengths.tolist()), held_out, device)
        else:
            model, seconds = train_ours(datamodule, settings, size["epochs"], device, args.precision, seed=args.seed)
            model.to(device).eval()
            acc = accuracy(model, held_out, device)
        rate = len(train) * size["epochs"] / seconds
        results[name] = dict(samples_per_s=rate, s_per_epoch=seconds / size["epochs"], acc=acc)
        print(f"{name}: {seconds / size['epochs']:.2f} s/epoch  {rate:.0f} train samples/s  held-out acc {acc:.4f}",
              flush=True)
    optimizer = settings["model"]["optimizer"]
    model_args = {k: v for k, v in settings["model"].items() if k != "optimizer"}
    print(f"ours: batch_size={batch_size} bucket_batches={settings['bucket_batches']} {model_args} "
          f"optimizer={optimizer.func.__name__}{optimizer.keywords}")
    if set(results) != {"ref", "ours"}:
        return dict(setup=setup, **results)
    ref, ours = results["ref"], results["ours"]
    ratio = ours["samples_per_s"] / ref["samples_per_s"]
    print(f"ratio_samples_per_s={ratio:.2f} acc_ours={ours['acc']:.4f} acc_ref={ref['acc']:.4f}")
    return dict(setup=setup, **results, ratio_samples_per_s=ratio)


if __name__ == "__main__":
    main()
