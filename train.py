"""Train, validate, test or predict any model of this project from a YAML config (LightningCLI).

    python train.py fit --config configs/reviews.yaml [--trainer.max_epochs 3] [--data.path reviews.csv]
    python train.py test --config configs/reviews.yaml --ckpt_path CKPT
    python train.py fit --config configs/reviews.yaml --ckpt_path last     # resume the newest run's last.ckpt

Runs go to ``<default_root_dir>/lightning_logs/<model>-<cell>/version_N/`` (TensorBoard events, the resolved
config.yaml, ``checkpoints/`` with the best and the last epoch), e.g. ``lightning_logs/text_classifier-lstm/``.
What happens when something goes wrong: docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import glob
import io
import re
import sys
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.cloud_io import _is_local_file_protocol
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

from src.callbacks.checkpointing import AtomicCheckpointIO, BestCheckpoint, DivergenceGuard, LastCheckpoint
from src.callbacks.recurrent_modules import snake_case
from src.callbacks.run_logger import default_run_logger, optimizer_hparams
from src.utils.checkpoint_file import MODEL_CLASS_KEY, check_model_class, read_checkpoint
from src.utils.config_errors import one_line_config_error
from src.utils.errors import UserInputError, check_positive, exit_on_user_error
from src.utils.output_files import make_folder
from src.utils.third_party_notes import silence_third_party_notes

# Values only the data knows reach the model at instantiation. A link whose target the chosen model lacks
# is skipped, so one table serves every model.
DATA_TO_MODEL = [
    ("data.vocab_size", "model.init_args.vocab_size"),
    ("data.pad_index", "model.init_args.pad_index"),
    ("data.vector_dim", "model.init_args.input_dim"),
]
# What a user fixes: our own mistakes' type, Lightning's "configured wrong", a diverged run (see exit_on_user_error).
USER_ERRORS = (UserInputError, MisconfigurationException, FloatingPointError)
LIGHTNING_DIVISORS = ("accumulate_grad_batches", "check_val_every_n_epoch", "val_check_interval")
SIGNATURE_MISMATCH = re.compile(r"__init__\(\) (got an unexpected keyword argument|missing \d+ required)")


class OneLineErrorParser(LightningArgumentParser):
    """A config mistake ends in one line naming the key and the closest valid choice, not ~90 lines of usage."""

    def error(self, message: str, ex: Optional[Exception] = None):
        if not self.exit_on_error:  # jsonargparse trying alternatives internally: not the final word
            return super().error(message, ex)
        print(f"error: {one_line_config_error(message, option_strings(self))}", file=sys.stderr)
        raise SystemExit(2)


def option_strings(parser) -> list[str]:
    """Every ``--key`` of a parser and of its subcommands' parsers."""
    found = []
    for action in parser._actions:
        found += [s for s in action.option_strings if s.startswith("--")]
        if isinstance(getattr(action, "choices", None), dict):
            for sub in action.choices.values():
                if hasattr(sub, "_actions"):
                    found += option_strings(sub)
    return found


def user_error_in(error: BaseException) -> Optional[BaseException]:
    """The user's mistake behind ``error``: jsonargparse wraps what a constructor raised (as __cause__ or
    __context__), so the one-line handler would never see it. A call that does not fit a class's signature (a key
    of a checkpoint's hyperparameters that the class lacks) is the config's mistake too."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, USER_ERRORS):
            return error
        if isinstance(error, TypeError) and SIGNATURE_MISMATCH.search(str(error)):
            return UserInputError(f"{error} (from the config or the checkpoint's stored hyperparameters)")
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


class RNNLabCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # Checkpoint groups of their own, so a config that sets trainer.callbacks (configs/dynamics.yaml)
        # keeps them. `checkpoint` keeps the best epoch by its `monitor` (none set: off); `last_checkpoint`
        # rewrites last.ckpt after every epoch and on SIGTERM (ModelCheckpoint's own save_last only follows saves
        # of the best). Every save passes the divergence guard (src/callbacks/checkpointing.py).
        parser.add_lightning_class_args(BestCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(DivergenceGuard, "divergence")
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

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config.get(subcommand) if subcommand else self.config
        seed = config.get("seed_everything")
        if not isinstance(seed, bool) and isinstance(seed, int) and not 0 <= seed < 2**32:
            raise UserInputError(f"--seed_everything {seed} must be in [0, 2**32), or true for a random seed")
        # Lightning divides by these and lets 0 through (a ZeroDivisionError deep in the loops)
        trainer = config.get("trainer") or {}
        check_positive(**{f"trainer.{k}": trainer.get(k) for k in LIGHTNING_DIVISORS if k in trainer})
        self.check_ckpt_path()

    def _parse_ckpt_path(self) -> None:
        """Lightning applies the checkpoint's hyperparameters to the model's config here; one that does not parse
        is the checkpoint's fault, said in one line (Lightning would add a second line of its own)."""
        printed = io.StringIO()
        try:
            with contextlib.redirect_stderr(printed):
                super()._parse_ckpt_path()
        except SystemExit:
            first = next((line for line in printed.getvalue().splitlines() if line.startswith("error:")), "error:")
            print(f"{first} (a hyperparameter stored in the checkpoint: use an unmodified checkpoint of this model)",
                  file=sys.stderr)
            raise SystemExit(2) from None
        sys.stderr.write(printed.getvalue())

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except Exception as e:
            cause = user_error_in(e)
            if cause is None:
                raise
            raise cause from None

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        # A run names what it trained (lightning_logs/<model>-<cell>/version_N) and its HParams hold its best
        # validation metrics (src/callbacks/run_logger.py), unless the config chooses a logger (--trainer.logger).
        config = self._get(self.config_init, "trainer", default={})
        if config.get("logger") in (None, True) and "logger" not in kwargs:
            settings = {"seed": self._get(self.config, "seed_everything"),
                        "gradient_clip_val": config.get("gradient_clip_val"),
                        **optimizer_hparams(self._get(self.config, "model"))}
            kwargs["logger"] = default_run_logger(self.model, self.datamodule, config.get("default_root_dir"),
                                                  self._get(self.config_init, "checkpoint"),
                                                  {k: v for k, v in settings.items() if v is not None})
        trainer = super().instantiate_trainer(**kwargs)
        for folder, flag in ((trainer.default_root_dir, "--trainer.default_root_dir"),
                             (getattr(trainer.logger, "save_dir", None), "the logger's save_dir")):
            if folder and _is_local_file_protocol(folder):
                make_folder(Path(folder), flag)  # before any work: the run's logs and checkpoints go there
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a plugin the config chose
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    # -- --ckpt_path, from the command line or a YAML file --------------------------------------------------------
    def check_ckpt_path(self) -> None:
        """``last`` becomes the newest run's last.ckpt (Lightning would look in the new run's empty folder and
        silently train from scratch); a file is read with ``weights_only=True`` and its class stamp checked before
        anything else reads it, so a missing, truncated, pickled, diverged or foreign one is one line."""
        subcommand = self.config.get("subcommand")
        config = self.config.get(subcommand) if subcommand else None
        path = config.get("ckpt_path") if config is not None else None
        if path is None or path in ("hpc", "registry") or str(path).startswith("registry:"):
            return
        if path == "best":
            raise UserInputError("--ckpt_path best means the best checkpoint of a fit in this same process; give the "
                                 "file instead, e.g. --ckpt_path lightning_logs/text_classifier-lstm/version_0/"
                                 "checkpoints/best-...ckpt")
        if path == "last":
            path = config["ckpt_path"] = str(newest_last_checkpoint(config))
        checkpoint = read_checkpoint(path)
        model_class = str(config.get("model", {}).get("class_path", "")).rpartition(".")[2]
        if checkpoint.get(MODEL_CLASS_KEY) and model_class:
            check_model_class(checkpoint, model_class, f"checkpoint {path}")


def newest_last_checkpoint(config) -> Path:
    """The newest last.ckpt where this config's runs write theirs: ``last_checkpoint.dirpath`` if set, else the run
    folders of this model and cell (``<default_root_dir>/lightning_logs/<model>-<cell>/version_*/checkpoints``, the
    names RunLogger gives), else those of a logger without a name (``lightning_logs/version_*``). Never another
    model's: the memory-task run of a minute ago is not what a reviews run resumes."""
    last = config.get("last_checkpoint") or {}
    filename = last.get("filename") or "last"
    name = f"{filename}.ckpt" if "{" not in filename else "*.ckpt"
    root = Path(config.get("trainer", {}).get("default_root_dir") or ".").expanduser()
    logger = config.get("trainer", {}).get("logger")
    logger_args = logger.get("init_args", {}) if hasattr(logger, "get") else {}
    model = config.get("model") or {}
    cell = (model.get("init_args") or {}).get("cell")
    run = snake_case(str(model.get("class_path", "")).rpartition(".")[2])
    run += f"-{cell}" if isinstance(cell, str) else "*"  # a user's model: its cells are known once it is built
    if last.get("dirpath"):
        searched = [Path(last["dirpath"]).expanduser() / name]
    else:
        roots = [root / "lightning_logs"]
        if logger_args.get("save_dir"):
            roots.append(Path(logger_args["save_dir"]).expanduser() / str(logger_args.get("name") or "lightning_logs"))
        searched = [r / run / "version_*" / "checkpoints" / name for r in roots]
        searched += [r / "version_*" / "checkpoints" / name for r in roots] + [root / "checkpoints" / name]
    for pattern in searched:
        found = [Path(f) for f in glob.glob(str(pattern))]
        if found:
            return max(found, key=lambda f: f.stat().st_mtime)
    raise UserInputError(f"--ckpt_path last: no {name} under {searched[0].parent}, so there is nothing to resume; "
                         "give the checkpoint file (--ckpt_path path/to/last.ckpt) or leave --ckpt_path out")


def cli_main(args=None, run: bool = True) -> RNNLabCLI | None:
    """``run=False``: parse and instantiate only; the caller then runs e.g. ``cli.trainer.fit(cli.model,
    datamodule=cli.datamodule)`` (bench/gpu_check.py adds a timing callback first; args then start without the
    subcommand)."""
    silence_third_party_notes()
    with exit_on_user_error(*USER_ERRORS[1:]):
        try:
            return RNNLabCLI(
                pl.LightningModule,
                pl.LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                parser_class=OneLineErrorParser,
                save_config_kwargs={"overwrite": True},
                args=args,
                run=run,
            )
        except SIGTERMException as stop:  # Lightning's own exits 0: a scheduler's chain would read success
            raise SystemExit(stop.code or 143) from None
        except RuntimeError as e:
            if "Error(s) in loading state_dict" not in str(e):
                raise
            detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), "")
            raise UserInputError(f"the checkpoint does not fit this model ({detail[:200]}); give the --config and "
                                 "--model options it was trained with") from None


if __name__ == "__main__":
    cli_main()
