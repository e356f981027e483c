"""Lightning overhead: TextClassifier through a Trainer vs the same model and batches in a plain PyTorch loop.

Both train the network of ``configs/imdb_fast.yaml`` from the same initial weights on the same
length-bucketed batches of ``IMDBDataModule`` (same order), with the same loss, Adam and gradient clipping.
Runs alternate (plain, Lightning, Lightning, plain, ...) so that a change in the machine's load hits both; each
adjacent pair gives Lightning's extra time in % of the plain loop's, and the figure is the median over pairs
(on a shared machine the load drifts between pairs far more than within one).

    python bench/lightning_overhead.py --data IMDB            # CPU size
    python bench/lightning_overhead.py --data IMDB --device cuda --limit 0 --max_len 400

The last line printed is ``overhead_pct_per_epoch=<..> plain_s=<..> lightning_s=<..>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import pytorch_lightning as pl  # noqa: E402
from imdb_throughput import EpochTimer, load_config, synchronize  # noqa: E402

from data_modules.imdb import IMDBDataModule  # noqa: E402
from src.lightning_modules.text_classifier import TextClassifier  # noqa: E402
from src.utils.errors import exit_on_user_error  # noqa: E402


def build_model(datamodule: IMDBDataModule, settings: dict, seed: int) -> TextClassifier:
    torch.manual_seed(seed)  # the same initial weights for every run
    return TextClassifier(vocab_size=datamodule.vocab_size, pad_index=datamodule.pad_index, **settings["model"])


def plain_epochs(model: TextClassifier, datamodule: IMDBDataModule, epochs: int, clip: float,
                 device: torch.device) -> list[float]:
    """The same network, optimizer, clipping and batches, in a hand-written loop -> seconds per epoch."""
    net = model.net.to(device)
    optimizer = model.optimizer_factory(net.parameters())
    loss_fn = nn.BCEWithLogitsLoss()
    loader = datamodule.train_dataloader()
    seconds = []
    for epoch in range(epochs):
        net.train()
        loader.batch_sampler.set_epoch(epoch)  # as Lightning does, so both see the same batch order
        synchronize(device)
        start = time.perf_counter()
        for batch in loader:
            optimizer.zero_grad()
            logits = net(batch.tokens.to(device), batch.lengths).logits
            loss = loss_fn(logits.float(), batch.labels.to(device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            optimizer.step()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def lightning_epochs(model: TextClassifier, datamodule: IMDBDataModule, epochs: int, clip: float,
                     device: torch.device, with_logger: bool, root: str) -> list[float]:
    """``Trainer.fit`` without validation -> seconds per epoch (epoch hooks, device synchronised)."""
    timer = EpochTimer()
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, max_epochs=epochs, gradient_clip_val=clip,
        callbacks=[timer], logger=with_logger, enable_checkpointing=with_logger, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=root)
    trainer.fit(model, datamodule=datamodule)
    return timer.seconds


def main(argv: Optional[list[str]] = None) -> None:
    with exit_on_user_error():
        run(argv)


def run(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="IMDB reviews: parquet/CSV of text,label rows, or aclImdb/")
    parser.add_argument("--config", default=str(ROOT / "configs" / "imdb_fast.yaml"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=2000, help="reviews in the training pool (0: all)")
    parser.add_argument("--max_len", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each, alternating")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--with_logger", action="store_true", help="Lightning with TensorBoard logger + checkpoints")
    parser.add_argument("--root", default="/tmp/lightning_overhead", help="default_root_dir with --with_logger")
    parser.add_argument("--cache_dir", default=str(ROOT / ".cache" / "rnn_lab"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    settings = load_config(Path(args.config))
    clip = settings["trainer"].get("gradient_clip_val", 5.0)
    datamodule = IMDBDataModule(source=args.data, limit=args.limit or None, test_fraction=0.2,
                                batch_size=settings["batch_size"], max_len=args.max_len, min_freq=2,
                                bucket_batches=settings["bucket_batches"], cache_dir=args.cache_dir)
    datamodule.load()
    print(f"train reviews={len(datamodule.datasets['train'])} max_len={args.max_len} "
          f"batch_size={settings['batch_size']} epochs/run={args.epochs} repeats={args.repeats} "
          f"threads={torch.get_num_threads()} device={device}", flush=True)
    plain, lightning = [], []
    for repeat in range(args.repeats):
        # Which one runs first alternates too, so neither always inherits the other's warm caches.
        for name in ("plain", "lightning") if repeat % 2 == 0 else ("lightning", "plain"):
            model = build_model(datamodule, settings, repeat)
            if name == "plain":
                plain += plain_epochs(model, datamodule, args.epochs, clip, device)
            else:
                lightning += lightning_epochs(model, datamodule, args.epochs, clip, device, args.with_logger, args.root)
        print(f"repeat {repeat}: plain {['%.2f' % s for s in plain[-args.epochs:]]} s, "
              f"lightning {['%.2f' % s for s in lightning[-args.epochs:]]} s", flush=True)
    pairs = [100 * (sum(lightning[i:i + args.epochs]) - sum(plain[i:i + args.epochs])) / sum(plain[i:i + args.epochs])
             for i in range(0, len(plain), args.epochs)]
    print(f"overhead per pair (%): {['%.1f' % o for o in pairs]}")
    print(f"overhead_pct_per_epoch={statistics.median(pairs):.1f} plain_s={statistics.median(plain):.3f} "
          f"lightning_s={statistics.median(lightning):.3f}")


if __name__ == "__main__":
    main()
