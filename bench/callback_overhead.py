"""Cost of the training-dynamics callbacks: epoch time with them off, at their default frequency, and at every step.

    python bench/callback_overhead.py [--epochs 8] [--repeats 5] [--threads N] [--hidden-size 64]
                                      [--model ours|hooked] [--accelerator cpu|gpu] [--precision 32-true|bf16-mixed]

The default reviews run (configs/reviews.yaml: synthetic reviews, 1-layer LSTM 64/64, batch 32), the same seed and
data for every variant, in one process. ``--model ours`` trains the project's TextClassifier, which the callbacks
read through the monitoring contract; ``--model hooked`` the same network written as a user would write it
(``PlainReviewsClassifier``: nn.Embedding -> nn.LSTM -> max pooling -> linear, no contract), which they read through
forward hooks attached on logged steps only. The hidden-state callback computes the gate statistics (and, for the
padded LSTM, the cell state from the gates) on every 25th step by default; "every step + gates" computes them at
every step too. An epoch is timed from on_train_epoch_start to on_train_epoch_end of a
timer that runs after the dynamics callbacks, so it includes the validation pass and the callbacks' per-epoch
images. Checkpointing is off, which makes epochs shorter and the overhead ratio, if anything, larger.

Two measures are printed per variant (default frequency, every step, default without the pictures):
- epoch time against epochs without the callbacks. Each fit runs 2 x --epochs epochs with the callbacks switched
  on for every second epoch only (``AlternateEpochs``), and an "on" epoch is compared with the mean of the "off"
  epochs on either side of it: on this shared box an epoch's time moves by 20-30% between regimes that last
  seconds, so separate fits (~1 s each) compared badly, while adjacent epochs share their regime. The ratio is
  the median over all on-epochs of all fits; the first two epochs (one-time setup) are left out.
- the share of each epoch spent inside the callbacks' own hooks, timed within ordinary fits with the callbacks
  on throughout: hook time / (epoch time - hook time), median over fits. Wrapping every hook in a timer costs
  ~1-2 ms per epoch itself (about 1,200 hook calls), hence separate fits. It leaves out what a logged step costs
  inside the model (keeping the input gradient), Lightning's dispatch of the hooks, and TensorBoard's writer
  thread, which the epoch ratio includes.
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
from torch import nn  # noqa: E402

from data_modules.reviews import ReviewsDataModule  # noqa: E402
from src.callbacks import GradientFlowMonitor, GradientNormMonitor, HiddenStateMonitor  # noqa: E402
from src.lightning_modules.text_classifier import TextClassifier  # noqa: E402

HOOKS = ("on_train_batch_start", "on_after_backward", "on_before_optimizer_step", "on_train_batch_end",
         "on_train_epoch_start", "on_train_epoch_end", "on_validation_batch_start", "on_validation_batch_end",
         "on_validation_epoch_end", "on_validation_end")


class EpochTimer(pl.Callback):
    """Wall-clock time of every training epoch and of the dynamics callbacks' hooks within it."""

    def __init__(self):
        self.epochs: list[float] = []
        self.hooks: list[float] = []
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

    def on_train_epoch_start(self, trainer, pl_module):
        self._start, self._in_hooks = time.perf_counter(), 0.0

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs.append(time.perf_counter() - self._start)
        self.hooks.append(self._in_hooks)


class AlternateEpochs(pl.Callback):
    """Runs ``callbacks`` on odd epochs only (setup and teardown hooks always), so that one fit alternates epochs
    with and without them."""

    GATED = HOOKS
    ALWAYS = ("on_train_start", "on_train_end", "on_exception")

    def __init__(self, callbacks: list[pl.Callback]):
        self.callbacks = callbacks
        for name in self.GATED + self.ALWAYS:
            setattr(self, name, partial(self._forward, name, name in self.ALWAYS))

    def _forward(self, name: str, always: bool, trainer, *args, **kwargs) -> None:
        if always or trainer.current_epoch % 2 == 1:
            for callback in self.callbacks:
                getattr(callback, name)(trainer, *args, **kwargs)

    def compute_pending(self, trainer) -> None:  # src/callbacks/tensorboard_output.py flush_scalars looks for it
        for callback in self.callbacks:
            callback.compute_pending(trainer)

    def diagnosis_figures(self, since) -> dict:  # src/callbacks/diagnosis.py write_diagnosis looks for it
        figures: dict = {}
        for callback in self.callbacks:
            figures.update(callback.diagnosis_figures(since))
        return figures

    @staticmethod
    def ratios(epochs: list[float]) -> list[float]:
        """Each on (odd) epoch's time over the mean of the off epochs beside it, from epoch 3 on."""
        return [epochs[i] / ((epochs[i - 1] + epochs[i + 1]) / 2) for i in range(3, len(epochs) - 1, 2)]


def dynamics_callbacks(every_n_steps: int | None, gates_every_n_steps: int = 25) -> list[pl.Callback]:
    """The three callbacks of configs/dynamics.yaml; None = their defaults."""
    kwargs = {} if every_n_steps is None else {"every_n_steps": every_n_steps}
    return [GradientFlowMonitor(**kwargs), HiddenStateMonitor(**kwargs, gates_every_n_steps=gates_every_n_steps),
            GradientNormMonitor(**kwargs)]


def scalars_only() -> list[pl.Callback]:
    """The default frequency without the per-epoch pictures: what the images and histograms cost, by difference."""
    return [GradientFlowMonitor(images=False), HiddenStateMonitor(histograms=False, images=False),
            GradientNormMonitor()]


class PlainReviewsClassifier(pl.LightningModule):
    """The default run's network as a user writes it, knowing nothing of this project: the dynamics callbacks reach
    its nn.LSTM through forward hooks. tokens ``[B, T]`` (0-padded) -> one logit per review."""

    def __init__(self, vocab_size: int, pad_index: int, embedding_dim: int = 64, hidden_size: int = 64,
                 dropout: float = 0.2, lr: float = 0.003):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_index)
        self.rnn = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.dropout, self.head, self.lr = nn.Dropout(dropout), nn.Linear(hidden_size, 1), lr

    def forward(self, tokens, lengths):
        out, _ = self.rnn(self.dropout(self.embedding(tokens)))  # [B, T, H], over the padding too
        valid = torch.arange(tokens.size(1), device=tokens.device)[None, :] < lengths.to(tokens.device)[:, None]
        pooled = out.masked_fill(~valid[..., None], float("-inf")).amax(1)
        return self.head(self.dropout(pooled)).squeeze(-1)

    def training_step(self, batch, batch_idx):
        return nn.functional.binary_cross_entropy_with_logits(self(batch.tokens, batch.lengths), batch.labels)

    def validation_step(self, batch, batch_idx):
        accuracy = ((self(batch.tokens, batch.lengths) > 0).float() == batch.labels).float().mean()
        self.log("val/acc", accuracy, batch_size=len(batch.labels))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def fit_once(callbacks: list[pl.Callback], epochs: int, root: str, accelerator: str, precision: str,
             hidden_size: int = 64, time_hooks: bool = False, samples: int = 2000,
             model_kind: str = "ours") -> EpochTimer:
    pl.seed_everything(42, verbose=False)
    data = ReviewsDataModule(n_samples=samples, batch_size=32, max_len=400, cache_dir=str(Path(root) / "cache"))
    if model_kind == "hooked":
        data.prepare_data()
        data.setup("fit")
        model = PlainReviewsClassifier(data.vocab_size, data.pad_index, hidden_size=hidden_size)
    else:
        model = TextClassifier(vocab_size=data.vocab_size, pad_index=data.pad_index, cell="lstm", embedding_dim=64,
                               hidden_size=hidden_size, pooling="max", dropout=0.2,
                               optimizer=partial(torch.optim.Adam, lr=0.003))
    timer = EpochTimer()
    trainer = pl.Trainer(max_epochs=epochs, gradient_clip_val=5.0, log_every_n_steps=10, accelerator=accelerator,
                         precision=precision, devices=1,
                         callbacks=[*(map(timer.time_hooks, callbacks) if time_hooks else callbacks), timer],
                         logger=TensorBoardLogger(root), enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    return timer


def main(argv=None) -> dict:
    """Prints the table; returns ``{"epoch_off_ms": ..., "<variant>": {"ratio", "quartiles", "in_hook_share"}}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="epochs per fit (the default run has 8)")
    parser.add_argument("--repeats", type=int, default=5, help="fits per variant, interleaved")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--hidden-size", type=int, default=64,
                        help="LSTM width (64 = the default run; larger: a costlier step and costlier gates)")
    parser.add_argument("--model", choices=("ours", "hooked"), default="ours",
                        help="the project's TextClassifier (monitoring contract) or a user's module (forward hooks)")
    parser.add_argument("--samples", type=int, default=2000,
                        help="synthetic reviews (2000 = the default run's 51 steps per epoch; fewer: a quicker look)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    variants = {"default": lambda: dynamics_callbacks(None), "every step": lambda: dynamics_callbacks(1),
                "every step + gates": lambda: dynamics_callbacks(1, gates_every_n_steps=1),
                "scalars only": scalars_only}
    ratio, share = ({name: [] for name in variants} for _ in range(2))
    off_epochs: list[float] = []
    with tempfile.TemporaryDirectory() as root:
        run = partial(fit_once, root=root, accelerator=args.accelerator, precision=args.precision,
                      hidden_size=args.hidden_size, samples=args.samples, model_kind=args.model)
        run(dynamics_callbacks(1), 1)  # warm-up: imports, data cache
        for _ in range(args.repeats):
            for name, make in variants.items():
                timer = run([AlternateEpochs(make())], 2 * args.epochs + 1)
                ratio[name].extend(AlternateEpochs.ratios(timer.epochs))
                off_epochs.extend(timer.epochs[2::2])
                timed = run(make(), args.epochs, time_hooks=True)
                share[name].append(sum(timed.hooks) / (sum(timed.epochs) - sum(timed.hooks)))
    device = (torch.cuda.get_device_name() if args.accelerator in ("gpu", "cuda")
              else f"CPU, {torch.get_num_threads()} torch threads")
    model = "TextClassifier, contract" if args.model == "ours" else "a user's module, forward hooks"
    print(f"callback overhead: default reviews run (LSTM {args.hidden_size}; {model}), {device}, "
          f"precision {args.precision}; "
          f"{args.repeats} fits per variant of {2 * args.epochs + 1} epochs, callbacks on in odd epochs; "
          f"epoch without callbacks: median {statistics.median(off_epochs) * 1000:.1f} ms")
    figures = {"device": device, "precision": args.precision, "epoch_off_ms": statistics.median(off_epochs) * 1000}
    for name in variants:
        r, s = statistics.median(ratio[name]), statistics.median(share[name])
        quartiles = statistics.quantiles(ratio[name], n=4) if len(ratio[name]) > 1 else [r, r, r]
        print(f"  {name:<18}  epoch ratio {r:5.3f} ({(r - 1) * 100:+5.1f}%; quartiles {quartiles[0]:.3f}-"
              f"{quartiles[2]:.3f}, {len(ratio[name])} epochs)  in-hook share {s * 100:5.1f}%")
        figures[name] = {"ratio": r, "quartiles": [quartiles[0], quartiles[2]], "in_hook_share": s}
    return figures

if __name__ == "__main__":
    main()
