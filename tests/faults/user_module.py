"""A user's own LightningModule and DataModule that know nothing of this project (no checkpoint.monitor, no
vocab_size on the data): sensor series -> GRU -> class. Used through train.py by its dotted path."""

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class SensorData(pl.LightningDataModule):
    def __init__(self, length: int = 12, features: int = 3, n: int = 128, batch_size: int = 32):
        super().__init__()
        self.length, self.features, self.n, self.batch_size = length, features, n, batch_size

    def _make(self, n: int, seed: int) -> TensorDataset:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, self.length, self.features, generator=g)
        return TensorDataset(x, (x[:, :3, 0].sum(1) > 0).long())

    def setup(self, stage=None):
        self.train_set, self.val_set = self._make(self.n, 0), self._make(64, 1)

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=64)


class SensorClassifier(pl.LightningModule):
    """``vocab_size`` is a name train.py links from the data when the data has it; this data does not."""

    def __init__(self, features: int = 3, hidden: int = 8, lr: float = 3e-3, vocab_size: int = 7):
        super().__init__()
        self.save_hyperparameters()
        self.rnn, self.head = nn.GRU(features, hidden, batch_first=True), nn.Linear(hidden, 2)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("accuracy", (self(x).argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
