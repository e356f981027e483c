"""Cost of the training-dynamics callbacks: epoch time with them off, at their default frequency, and at every step.

    python bench/callback_overhead.py [--epochs 8] [--repeats 3] [--threads N] [--hidden-size 64]
                                      [--accelerator cpu|gpu] [--precision 32-true|bf16-mixed]

The default reviews run (configs/reviews.yaml: synthetic reviews, 1-layer LSTM 64/64, batch 32, 8 epochs), the
same seed and data for every variant, in one process. Variants run interleaved (off, default, every step,
scalars only, off, ...) so that load that changes during the run biases none of them. An epoch is timed from
on_train_epoch_start to on_train_epoch_end of a timer that runs after the dynamics callbacks, so it includes
the validation pass and the callbacks' per-epoch images; a fit's epoch time is the mean over all its epochs
(the first too: it carries the one-time figure setup), and a variant reports the median over its fits.
Checkpointing is off in every variant, which makes epochs shorter and the overhead ratio, if anything, larger.

Two measures are printed:
- epoch time against the "off" variant (what the targets are about; on a machine shared with other jobs,
  fits differ by 10-30% from load alone, so read it with the next one);
- the share of each epoch spent inside the callbacks' own hooks, timed within one fit (so load that changes
  between fits does not enter it): hook time / (epoch time - hook time). It comes from a second, instrumented
  fit per variant and repeat: wrapping every hook in a timer costs ~1-2 ms per epoch itself (about 1,200 hook
  calls), which would otherwise inflate the epoch ratio. It leaves out what a logged step costs inside the
  model (keeping the input gradient, a retain_grad) and the end-of-training heatmap, which is in the fit total.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from functools import partial, wraps
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from pytorch_lightning.loggers import TensorBoardLogger  # noqa: E402

from data_modules.reviews import ReviewsDataModule  # noqa: E402
from src.callbacks import GradientFlowMonitor, GradientNormMonitor, HiddenStateMonitor  # noqa: E402
from src.classifier import TextClassifier  # noqa: E402

HOOKS = ("on_train_batch_start", "on_after_backward", "on_before_optimizer_step", "on_train_batch_end",
         "on_train_epoch_end", "on_validation_batch_start")


class EpochTimer(pl.Callback):
    """Wall-clock time of every training epoch and of the dynamics callbacks' hooks within it."""

    def __init__(self):
        self.epochs: list[float] = []
        self.hooks: list[float] = []
        self.fit_seconds = 0.0
        self._in_hooks = 0.0

    def time_hooks(self, callback: pl.Callback) -> pl.Callback:
        """Wrap ``callback``'s per-step and per-epoch hooks (on the instance) to add their time to the epoch's."""
        for name in HOOKS:
            hook = getattr(callback, name)

            @wraps(hook)
            def timed(*args, hook=hook, **kwargs):
                start = time.perf_counter()
                try:
                    return hook(*args, **kwargs)
                finally:
                    self._in_hooks += time.perf_counter() - start

            setattr(callback, name, timed)
        return callback

    def on_fit_start(self, trainer, pl_module):
        self._fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self._start, self._in_hooks = time.perf_counter(), 0.0

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs.append(time.perf_counter() - self._start)
        self.hooks.append(self._in_hooks)

    def on_fit_end(self, trainer, pl_module):
        self.fit_seconds = time.perf_counter() - self._fit_start


def dynamics_callbacks(every_n_steps: int | None) -> list[pl.Callback]:
    """The three callbacks of configs/dynamics.yaml; None = their defaults."""
    kwargs = {} if every_n_steps is None else {"every_n_steps": every_n_steps}
    return [GradientFlowMonitor(**kwargs), HiddenStateMonitor(**kwargs), GradientNormMonitor(**kwargs)]


def scalars_only() -> list[pl.Callback]:
    """The default frequency without the per-epoch pictures: what the images and histograms cost, by difference."""
    return [GradientFlowMonitor(images=False), HiddenStateMonitor(histograms=False, example_image=False),
            GradientNormMonitor()]


def fit_once(callbacks: list[pl.Callback], epochs: int, root: str, accelerator: str, precision: str,
             hidden_size: int = 64, time_hooks: bool = False) -> EpochTimer:
    pl.seed_everything(42, verbose=False)
    data = ReviewsDataModule(n_samples=2000, batch_size=32, max_len=400, cache_dir=str(Path(root) / "cache"))
    model = TextClassifier(vocab_size=data.vocab_size, pad_index=data.pad_index, cell="lstm", embedding_dim=64,
                           hidden_size=hidden_size, pooling="max", dropout=0.2,
                           optimizer=partial(torch.optim.Adam, lr=0.003))
    timer = EpochTimer()
    trainer = pl.Trainer(max_epochs=epochs, gradient_clip_val=5.0, log_every_n_steps=10, accelerator=accelerator,
                         precision=precision, devices=1, callbacks=[*(map(timer.time_hooks, callbacks) if time_hooks else callbacks), timer],
                         logger=TensorBoardLogger(root), enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    return timer


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="epochs per fit (the default run has 8)")
    parser.add_argument("--repeats", type=int, default=5, help="fits per variant, interleaved")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--hidden-size", type=int, default=64,
                        help="LSTM width (64 = the default run; larger: a costlier step, the same callback work)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    variants = {"off": lambda: [], "default": lambda: dynamics_callbacks(None),
                "every step": lambda: dynamics_callbacks(1), "scalars only": scalars_only}
    epoch, share, fit = ({name: [] for name in variants} for _ in range(3))
    with tempfile.TemporaryDirectory() as root:
        run = partial(fit_once, root=root, accelerator=args.accelerator, precision=args.precision,
                      hidden_size=args.hidden_size)
        run(dynamics_callbacks(1), 1)  # warm-up: imports, data cache
        for _ in range(args.repeats):
            for name, make in variants.items():
                timer = run(make(), args.epochs)
                epoch[name].append(statistics.mean(timer.epochs))
                fit[name].append(timer.fit_seconds)
                timed = run(make(), args.epochs, time_hooks=True)
                share[name].append(sum(timed.hooks) / (sum(timed.epochs) - sum(timed.hooks)))
    device = (torch.cuda.get_device_name() if args.accelerator in ("gpu", "cuda")
              else f"CPU, {torch.get_num_threads()} torch threads")
    print(f"callback overhead: default reviews run (LSTM {args.hidden_size}), {device}, precision {args.precision}; "
          f"{args.repeats} fits of "
          f"{args.epochs} epochs per variant, interleaved; medians over fits")
    base, base_fit = statistics.median(epoch["off"]), statistics.median(fit["off"])
    for name in variants:
        e, f, s = statistics.median(epoch[name]), statistics.median(fit[name]), statistics.median(share[name])
        print(f"  {name:<10}  epoch {e * 1000:6.1f} ms  ratio {e / base:5.3f} ({(e / base - 1) * 100:+5.1f}%)  "
              f"in-hook share {s * 100:5.1f}%  fit {f:5.2f} s  ratio {f / base_fit:5.3f}")


if __name__ == "__main__":
    main()
