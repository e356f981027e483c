"""Train, validate, test or predict any model of this project from a YAML config (LightningCLI).

    python train.py fit --config configs/reviews.yaml [--trainer.max_epochs 3] [--data.path reviews.csv]
    python train.py test --config configs/reviews.yaml --ckpt_path CKPT

Runs go to ``<default_root_dir>/lightning_logs/version_N/`` (TensorBoard events, the resolved config.yaml,
``checkpoints/`` with the best and the last epoch).
"""

from __future__ import annotations

import sys

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI

from src.utils.checkpoint_file import read_checkpoint
from src.utils.errors import UserInputError, exit_on_user_error
from src.utils.third_party_notes import silence_third_party_notes

# Values only the data knows reach the model at instantiation. A link whose target the chosen model lacks
# is skipped, so one table serves every model.
DATA_TO_MODEL = [
    ("data.vocab_size", "model.init_args.vocab_size"),
    ("data.pad_index", "model.init_args.pad_index"),
    ("data.vector_dim", "model.init_args.input_dim"),
]


class RNNLabCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # Checkpoint groups of their own, so a config that sets trainer.callbacks (configs/dynamics.yaml)
        # keeps them. `checkpoint` keeps the best epoch by its `monitor`; `last_checkpoint` rewrites last.ckpt
        # after every epoch (ModelCheckpoint's own save_last only follows saves of the best).
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults({"last_checkpoint.filename": "last", "last_checkpoint.monitor": None,
                             "last_checkpoint.save_top_k": 1, "last_checkpoint.enable_version_counter": False})
        for source, target in DATA_TO_MODEL:
            parser.link_arguments(source, target, apply_on="instantiate")
        parser.add_argument("--cpu_threads", type=int, default=1,
                            help="torch intra-op threads on the CPU (0: torch's default, one per core). 1 by default: "
                                 "these recurrent models are too small to gain much from more, and on a CPU other "
                                 "jobs share, threads that wait for each other slow training down several times "
                                 "(README, 'Threads')")

    def before_instantiate_classes(self) -> None:
        threads = self._get(self.config, "cpu_threads")
        if threads < 0:
            raise UserInputError(f"--cpu_threads {threads} must be >= 0 (0: one thread per core)")
        if threads:
            torch.set_num_threads(threads)


def check_ckpt_arg(argv: list[str]) -> None:
    """A missing or truncated ``--ckpt_path`` fails here in one line, before LightningCLI reads it."""
    for i, arg in enumerate(argv):
        if arg == "--ckpt_path":
            path = argv[i + 1] if i + 1 < len(argv) else None
        else:
            path = arg.partition("=")[2] if arg.startswith("--ckpt_path=") else None
        if path and path not in ("last", "best", "hpc", "registry", "null"):
            read_checkpoint(path)


def cli_main(args=None, run: bool = True) -> RNNLabCLI | None:
    """``run=False``: parse and instantiate only; the caller then runs e.g. ``cli.trainer.fit(cli.model,
    datamodule=cli.datamodule)`` (bench/gpu_check.py adds a timing callback first; args then start without the
    subcommand)."""
    silence_third_party_notes()
    with exit_on_user_error(FloatingPointError):
        check_ckpt_arg(sys.argv[1:] if args is None else [str(a) for a in args])
        return RNNLabCLI(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
        )


if __name__ == "__main__":
    cli_main()
