"""What several test files share: the project root, quiet trainer flags, small text files, reading TensorBoard."""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.accelerator", "cpu"]


def write(tmp_path: Path, text: str, name: str = "text.txt") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def random_text(n: int, alphabet: str = "abcdefghijklmnopqrstuvwxyz ,.\n", seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


def scalars(run_dir: Path) -> dict[str, list[float]]:
    """Every scalar tag under ``run_dir`` -> its values in step order, read with TensorBoard's own reader."""
    values: dict[str, list[float]] = {}
    for f in sorted(Path(run_dir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            values.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
    return values


def padded_vectors(batch: int = 3, steps: int = 7, dim: int = 5, seed: int = 0):
    """Random vectors ``[B, T, D]`` zero after each of the lengths ``[T, 4, 2]``, with the lengths and the mask."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, dim, generator=g)
    lengths = torch.tensor([steps, 4, 2][:batch])
    mask = torch.arange(steps)[None, :] < lengths[:, None]
    return x * mask[..., None], lengths, mask
