"""The one exception type for mistakes a user can fix (bad path, column, label, config value, checkpoint), and the
checks of argument values that raise it where the arguments are declared.

`train.py`, the `python -m src.*` tools and the benches print its message as a single line and exit with status 2,
without a traceback (``exit_on_user_error``); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from typing import Iterator, Optional


class UserInputError(Exception):
    """A problem with the user's input, phrased as: what is wrong, and how to fix it."""


def one_line(error: BaseException) -> str:
    """An exception's message on one line (a library's multi-line message joined with spaces)."""
    return " ".join(part.strip() for part in str(error).splitlines() if part.strip()) or type(error).__name__


@contextmanager
def exit_on_user_error(*also: type[BaseException]) -> Iterator[None]:
    """A command's body: a ``UserInputError`` (or one of ``also``, e.g. ``FloatingPointError`` for a diverged
    run) becomes ``error: <message>`` on stderr and exit status 2."""
    try:
        yield
    except (UserInputError, *also) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        raise SystemExit(2) from None


def check_positive(**values: Optional[float]) -> None:
    """Sizes, counts and rates: each named value must be > 0 (None means "not set" and passes)."""
    for name, value in values.items():
        if value is not None and not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
            bound = ">= 1" if isinstance(value, int) else "> 0 and finite"
            raise UserInputError(f"{name}={value} must be {bound}")


def check_range(name: str, value: float, low: float, high: float, low_closed: bool = True,
                high_closed: bool = False, example: Optional[str] = None) -> None:
    """``value`` in the interval [low, high) (brackets per the flags); NaN fails."""
    above = value >= low if low_closed else value > low
    below = value <= high if high_closed else value < high
    if not (above and below):
        interval = f"{'[' if low_closed else '('}{low:g}, {high:g}{']' if high_closed else ')'}"
        raise UserInputError(f"{name}={value} must be in {interval}" + (f", e.g. {example}" if example else ""))
