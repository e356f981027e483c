"""Writes the probabilities of ``train.py predict`` to ``<log_dir>/predictions.csv``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from src.utils.output_files import make_folder, written_atomically


class ClassifierPredictionWriter(BasePredictionWriter):
    """One row per example of the predict split: its index in that split, P(label 1), and the label name."""

    def __init__(self, filename: str = "predictions.csv"):
        super().__init__(write_interval="epoch")
        self.filename = filename

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        if not predictions:
            return
        probabilities = torch.cat([p.float().cpu() for p in predictions]).tolist()
        indices = [i for batch in batch_indices[0] for i in batch] if batch_indices else list(range(len(probabilities)))
        names = pl_module.label_names
        frame = pd.DataFrame({"index": indices, "probability": probabilities,
                              "label": [names[int(p >= 0.5)] for p in probabilities]}).sort_values("index")
        path = Path(trainer.log_dir or trainer.default_root_dir) / self.filename
        make_folder(path.parent, "predictions folder")
        with written_atomically(path, "predictions") as temporary:  # whole or not at all, as every output
            frame.to_csv(temporary, index=False)
        pl_module.print(f"wrote {len(frame)} predictions to {path}")
