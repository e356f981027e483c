"""Word tokenization and a small vocabulary, shared by the review and IMDB DataModules and by inference.

The vocabulary is plain data (a list of tokens) so it travels inside a checkpoint that loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import chain
from typing import Iterable, Optional, Sequence

HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")

PAD, UNK = "<pad>", "<unk>"


def tokenize(text: str) -> list[str]:
    """Lowercased words and numbers (apostrophes inside a word kept); HTML line breaks are spaces."""
    text = text.lower().replace("<br />", " ")  # IMDB's own spelling, replaced at C speed
    if "<br" in text:
        text = HTML_BREAK.sub(" ", text)
    return WORD.findall(text)


class Vocabulary:
    """Token <-> index. Index 0 is ``<pad>``, 1 is ``<unk>``; the rest by descending training frequency."""

    pad_index = 0
    unk_index = 1

    def __init__(self, tokens: Sequence[str]):
        if list(tokens[:2]) != [PAD, UNK]:
            raise ValueError("a vocabulary starts with '<pad>', '<unk>'")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, token_lists: Iterable[list[str]], max_size: Optional[int] = None, min_freq: int = 1) -> "Vocabulary":
        """Fit on tokenized training texts. ``max_size`` counts the two special tokens."""
        counts = Counter(chain.from_iterable(token_lists))
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        # Ties broken alphabetically so the vocabulary does not depend on row order.
        ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - 2)]
        return cls([PAD, UNK, *ranked])

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def encode(self, tokens: Sequence[str]) -> list[int]:
        get, unk = self.index.get, self.unk_index
        return [get(t, unk) for t in tokens]

    def encode_text(self, text: str, max_len: Optional[int] = None) -> list[int]:
        """Text -> ids, truncated to the first ``max_len`` tokens; an empty text becomes ``[<unk>]`` so every
        sequence has at least one step."""
        ids = self.encode(tokenize(text)[:max_len] if max_len else tokenize(text))
        return ids or [self.unk_index]
