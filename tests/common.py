"""What several test files share: the project root, quiet trainer flags, small text files, reading TensorBoard."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
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


def run_dir(root: Path, version: int = 0) -> Path:
    """The folder of train.py's run ``version`` under ``root``: ``lightning_logs/<model>-<cell>/version_N``, the
    runs of one model (train.py names the folder after what it trains)."""
    found = sorted(Path(root).glob(f"lightning_logs/*/version_{version}"))
    assert len(found) == 1, f"expected one run folder version_{version} under {root}/lightning_logs: {found}"
    return found[0]


def scalars(run_dir: Path) -> dict[str, list[float]]:
    """Every scalar tag under ``run_dir`` -> its values in step order, read with TensorBoard's own reader."""
    values: dict[str, list[float]] = {}
    for f in sorted(Path(run_dir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            values.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
    return values


def reference_curves(grad, lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Plain loops over ``grad [B, T, D]``: mean over sequences of ||grad[b, t]|| by position (start) and by
    distance from each sequence's end (end), NaN where no sequence reaches."""
    steps = grad.shape[1]
    by_start = [[] for _ in range(steps)]
    by_end = [[] for _ in range(steps)]
    for b, length in enumerate(lengths):
        for t in range(length):
            norm = float(grad[b, t].double().norm())
            by_start[t].append(norm)
            by_end[steps - 1 - (length - 1 - t)].append(norm)
    return tuple(np.array([np.mean(r) if r else np.nan for r in rows]) for rows in (by_start, by_end))


def padded_vectors(batch: int = 3, steps: int = 7, dim: int = 5, seed: int = 0):
    """Random vectors ``[B, T, D]`` zero after each of the lengths ``[T, 4, 2]``, with the lengths and the mask."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, dim, generator=g)
    lengths = torch.tensor([steps, 4, 2][:batch])
    mask = torch.arange(steps)[None, :] < lengths[:, None]
    return x * mask[..., None], lengths, mask
