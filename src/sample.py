"""Generate text from a CharLanguageModel checkpoint alone (no config, no data).

    python -m src.sample --ckpt_path CKPT --prime "the " --length 200 --temperature 0.8 --seed 0

Prints the prime and the generated characters to stdout and nothing else; warnings (a prime character the
vocabulary lacks) and errors go to stderr. The same seed gives the same text.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from src.utils.errors import UserInputError, exit_on_user_error
from src.utils.third_party_notes import silence_third_party_notes


def sample(ckpt_path: str, prime: str, length: int, temperature: float, top_k=None, seed=None,
           device: str = "cpu") -> str:
    if not 0 <= temperature < float("inf"):  # before loading anything: also catches nan
        raise UserInputError(f"--temperature {temperature} must be a finite number >= 0 (0 = greedy, 1 = the model's "
                             "own distribution, e.g. 0.8)")
    where = check_device(device)
    from src.lightning_modules.char_language_model import CharLanguageModel

    # The checkpoint's tensors go straight to ``where``, wherever they were saved (a CUDA run's load on a CPU box).
    model = CharLanguageModel.from_checkpoint(ckpt_path, map_location=where)
    return model.generate(prime, length, temperature, top_k=top_k, seed=seed)


def check_device(device: str):
    """``--device`` -> a ``torch.device`` this machine has, or a one-line error (not torch's traceback)."""
    import torch

    try:
        where = torch.device(device)
    except (RuntimeError, ValueError):
        where = None
    if where is None or where.type not in ("cpu", "cuda"):
        raise UserInputError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N")
    if where.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserInputError(f"--device {device}: this machine has no CUDA device available to torch "
                                 f"{torch.__version__}; use --device cpu")
        if where.index is not None and where.index >= count:
            raise UserInputError(f"--device {device}: this machine has {count} CUDA device(s) (cuda:0 to "
                                 f"cuda:{count - 1})")
    return where


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True, help="a CharLanguageModel checkpoint (.ckpt)")
    parser.add_argument("--prime", default="the ", help="text the sample starts from (printed too)")
    parser.add_argument("--length", type=int, default=200, help="characters to generate after the prime")
    parser.add_argument("--temperature", type=float, default=1.0, help=">= 0; 0 = greedy, < 1 safer, > 1 wilder")
    parser.add_argument("--top_k", type=int, default=None, help="sample among the k most likely characters")
    parser.add_argument("--seed", type=int, default=None, help="same seed, same text")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (the model runs there; the sampling "
                        "itself draws on the CPU, so a seed gives the same text on either)")
    args = parser.parse_args(argv)
    silence_third_party_notes()
    with exit_on_user_error():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            text = sample(args.ckpt_path, args.prime, args.length, args.temperature, args.top_k, args.seed, args.device)
        for w in caught:
            if issubclass(w.category, UserWarning) and "vocabulary lacks" in str(w.message):
                print(f"warning: {w.message}", file=sys.stderr)
    print(text)


if __name__ == "__main__":
    main()
