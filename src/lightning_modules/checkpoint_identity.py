"""What every LightningModule of the project does with its checkpoints: stamp its class name into them, refuse a
checkpoint of another class, and load from a path with one-line errors (``from_checkpoint``)."""

from __future__ import annotations

import os

from src.utils.checkpoint_file import MODEL_CLASS_KEY, check_model_class, read_checkpoint
from src.utils.errors import UserInputError, one_line


class CheckpointIdentity:
    """Mixin placed before ``pl.LightningModule``. A module that stores more in its checkpoints overrides the two
    hooks and calls ``super()`` first."""

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[MODEL_CLASS_KEY] = type(self).__name__

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        check_model_class(checkpoint, type(self).__name__, "the checkpoint", "use the config it was trained with")

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location="cpu"):
        """``load_from_checkpoint`` with one-line errors for a missing, truncated, foreign or tampered checkpoint
        (hyperparameters no model can be built from, weights that do not fit them)."""
        check_model_class(read_checkpoint(path), cls.__name__, f"checkpoint {path}")
        try:
            return cls.load_from_checkpoint(path, map_location=map_location, weights_only=True)
        except UserInputError:
            raise
        except (TypeError, ValueError, RuntimeError, KeyError, IndexError) as e:
            raise UserInputError(f"checkpoint {path} does not describe a working {cls.__name__} ({one_line(e)[:200]}); "
                                 "use an unmodified checkpoint") from None
