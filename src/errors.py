"""The one exception type for mistakes a user can fix (bad path, column, label, config value, checkpoint).

`train.py` and the `python -m src.*` tools print its message as a single line and exit with status 2,
without a traceback; anything else is a bug and keeps its traceback.
"""


class UserInputError(Exception):
    """A problem with the user's input, phrased as: what is wrong, and how to fix it."""
