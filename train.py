"""Train, validate, test or predict any model of this project from a YAML config (LightningCLI).

    python train.py fit --config configs/reviews.yaml [--trainer.max_epochs 3] [--data.path reviews.csv]
    python train.py test --config configs/reviews.yaml --ckpt_path CKPT

Runs go to ``<default_root_dir>/lightning_logs/version_N/`` (TensorBoard events, the resolved config.yaml,
``checkpoints/`` with the best and the last epoch).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI

from src.checkpoints import read_checkpoint
from src.errors import UserInputError

# Values only the data knows reach the model at instantiation. A link whose target the chosen model lacks
# is skipped, so one table serves every model.
DATA_TO_MODEL = [
    ("data.vocab_size", "model.init_args.vocab_size"),
    ("data.pad_index", "model.init_args.pad_index"),
    ("data.embedding_dim", "model.init_args.input_dim"),
]


class RNNLabCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # A group of its own, so a config that sets trainer.callbacks (configs/dynamics.yaml) keeps it.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True})
        for source, target in DATA_TO_MODEL:
            parser.link_arguments(source, target, apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        ckpt_path = self.config.get(self.subcommand, {}).get("ckpt_path") if self.subcommand else None
        if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry"):
            read_checkpoint(ckpt_path)  # a missing or truncated file fails here in one line, before any work


def cli_main(args=None) -> RNNLabCLI | None:
    try:
        return RNNLabCLI(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except (UserInputError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    cli_main()
