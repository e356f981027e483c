"""Training throughput of the character language model, in characters per second, against the reference's way.

    python bench/char_lm_throughput.py [--device cpu|cuda] [--hidden_size 256] [--threads 1]

Both arms train the same CharRNN (embedding -> LSTM -> linear) with Adam and gradient clipping on the embedded
poems, and count the characters whose next-character loss was trained per wall-clock second:

- ours: windows of ``window_len`` characters in batches of ``batch_size`` from CharTextDataModule (data loading
  included), one optimizer step per batch;
- reference: the reference notebook's regime (its char-RNN section): one sequence of 25
  characters at a random offset per optimizer step.

Prints one line per arm and the ratio ours / reference, measured in the same run; ``main`` also returns them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_modules.char_text import CharTextDataModule  # noqa: E402
from src.models.char_rnn import CharRNN, bits_per_char  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_steps(net: CharRNN, batches, steps: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """Run ``warmup + steps`` training steps from the iterator ``batches``.

    -> (characters per wall-clock second, characters per CPU-second of this process). On a CPU shared with
    other jobs the second is the steadier figure: it does not count the time the scheduler gave to others.
    """
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    chars, start, cpu_start = 0, None, None
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            start, cpu_start = time.perf_counter(), time.process_time()
        inputs, targets = next(batches)
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        loss = bits_per_char(net(inputs).logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        if i >= warmup:
            chars += targets.numel()
    sync(device)
    return chars / (time.perf_counter() - start), chars / (time.process_time() - cpu_start)


def forever(loader):
    while True:
        yield from loader


def reference_batches(dm: CharTextDataModule, window_len: int, seed: int):
    """One window of ``window_len`` at a random training offset per step, as the seed notebook trains."""
    ids = dm.datasets["train"].ids
    generator = torch.Generator().manual_seed(seed)
    while True:
        start = int(torch.randint(0, len(ids) - window_len - 1, (1,), generator=generator))
        chunk = ids[start:start + window_len + 1].long()[None]  # [1, window_len + 1]
        yield chunk[:, :-1], chunk[:, 1:]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--embedding_dim", type=int, default=64)
    parser.add_argument("--num_layers", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--window_len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps of our arm (the reference gets 10x)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's; 1 is fastest on a busy shared CPU)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    dm = CharTextDataModule(window_len=args.window_len, batch_size=args.batch_size)
    dm.load()

    def fresh() -> CharRNN:
        torch.manual_seed(0)
        return CharRNN(dm.vocab_size, args.embedding_dim, args.hidden_size, args.num_layers).to(device)

    ours = train_steps(fresh(), forever(dm.train_dataloader()), args.steps, 3, device)
    reference = train_steps(fresh(), reference_batches(dm, 25, 0), args.steps * 10, 10, device)
    where = f"{device.type}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
                                f", {torch.get_num_threads()} thread(s)")
    model = f"LSTM {args.num_layers}x{args.hidden_size}, embedding {args.embedding_dim}"
    print(f"ours:      {ours[0]:10,.0f} chars/s ({ours[1]:,.0f} per CPU-second)  (batches of {args.batch_size} x "
          f"{args.window_len} chars; {model}; {where})")
    print(f"reference: {reference[0]:10,.0f} chars/s ({reference[1]:,.0f} per CPU-second)  (one sequence of 25 chars "
          "per step, as the seed notebook)")
    print(f"ratio ours/reference: {ours[0] / reference[0]:.1f}x wall-clock, {ours[1] / reference[1]:.1f}x CPU time")
    return {"device": where, "model": model, "ours_chars_per_s": ours[0], "reference_chars_per_s": reference[0],
            "ratio": ours[0] / reference[0], "ratio_cpu_time": ours[1] / reference[1]}


if __name__ == "__main__":
    main()
