"""A user's own model, knowing nothing of this project, watched by the dynamics callbacks (docs/dynamics.md).

Sensor readings (float features, no embedding) -> nn.LSTM (time-major, two layers) -> the class of the series,
which is written in its first five readings: the gradient has to reach back across the whole series.

    python docs/examples/own_model.py [--cell lstm|gru] [--length 60] [--epochs 3] [--root DIR]

The lines that matter are in ``main``: the callbacks go into an ordinary ``pl.Trainer``. With train.py the
same model takes ``--model own_model.SensorClassifier --data own_model.SensorData --config configs/dynamics.yaml``
(with ``docs/examples`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class SensorData(pl.LightningDataModule):
    """``n`` series of ``length`` readings of ``features`` values; label 1 when the first five readings of feature 0
    sum to more than 0."""

    def __init__(self, length: int = 60, features: int = 3, n: int = 4096, batch_size: int = 64):
        super().__init__()
        self.length, self.features, self.n, self.batch_size = length, features, n, batch_size

    def _make(self, n: int, seed: int) -> TensorDataset:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(n, self.length, self.features, generator=generator)  # [N, T, F]
        return TensorDataset(x, (x[:, :5, 0].sum(1) > 0).long())

    def setup(self, stage=None):
        self.train_set, self.val_set = self._make(self.n, 0), self._make(512, 1)

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=512)


class SensorClassifier(pl.LightningModule):
    """``[B, T, F]`` readings -> ``[B, 2]`` logits from the top layer's last output."""

    def __init__(self, cell: str = "lstm", features: int = 3, hidden: int = 32, layers: int = 2, lr: float = 3e-3):
        super().__init__()
        self.save_hyperparameters()
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](features, hidden, layers)  # time-major: [T, B, F]
        self.head = nn.Linear(hidden, 2)

    def forward(self, x):
        out, _ = self.rnn(x.transpose(0, 1))  # [T, B, H]
        return self.head(out[-1])

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/acc", (self(x).argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--length", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--root", default=".", help="TensorBoard logs go to ROOT/lightning_logs")
    args = parser.parse_args(argv)
    pl.seed_everything(0)

    from src.callbacks import GradientFlowMonitor, GradientNormMonitor, HiddenStateMonitor
    from src.callbacks.run_logger import RunLogger  # optional: a named run folder, best metrics in HParams

    trainer = pl.Trainer(max_epochs=args.epochs, gradient_clip_val=1.0,
                         callbacks=[GradientFlowMonitor(), HiddenStateMonitor(), GradientNormMonitor()],
                         logger=RunLogger(f"{args.root}/lightning_logs", f"sensor_classifier-{args.cell}", "val/acc"))
    trainer.fit(SensorClassifier(args.cell), SensorData(args.length))


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root, for src.callbacks
    main()
