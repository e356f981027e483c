"""The one exception type for mistakes a user can fix (bad path, column, label, config value, checkpoint).

`train.py`, the `python -m src.*` tools and the benches print its message as a single line and exit with status 2,
without a traceback (``exit_on_user_error``); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator


class UserInputError(Exception):
    """A problem with the user's input, phrased as: what is wrong, and how to fix it."""


@contextmanager
def exit_on_user_error(*also: type[BaseException]) -> Iterator[None]:
    """A command's body: a ``UserInputError`` (or one of ``also``, e.g. ``FloatingPointError`` for a diverged
    run) becomes ``error: <message>`` on stderr and exit status 2."""
    try:
        yield
    except (UserInputError, *also) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
