"""Poems from a user's files, and the words GloVe knows in them.

Sources: JSON lines (``.jsonl``/``.json``/``.ndjson``, optionally ``.gz``): one object per poem with ``text`` and
optional ``title``, ``author``; a folder of ``.txt`` files, one poem each (title = file name); or one ``.txt`` file
(optionally ``.gz``) holding many poems separated by **two or more blank lines** (a single blank line is a stanza
break), each poem's title its first line.

Words: lowercased, curly quotes made straight, runs of letters with internal apostrophes, clitics split the way
GloVe's tokenizer does (``don't`` -> ``do n't``, ``poet's`` -> ``poet 's``); punctuation and digits are left out.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from data_modules.text_files import JSON_LINES_SUFFIXES, json_lines, kind_of, read_text, text_field
from src.utils.errors import UserInputError

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
_CLITIC = re.compile(r"^(.+?)(n't|'s|'ll|'d|'re|'ve|'m)$")
_POEM_BREAK = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")  # two or more blank lines


@dataclass
class Poem:
    text: str
    title: str = ""
    author: str = ""


def tokenize_poem(text: str) -> list[str]:
    """Lowercased words, clitics split as GloVe writes them (``n't``, ``'s``, ``'ll`` ...); no punctuation."""
    tokens = []
    for word in _WORD.findall(text.lower().replace("\u2019", "'").replace("\u2018", "'")):
        m = _CLITIC.match(word)
        tokens.extend(m.groups() if m else (word,))
    return tokens


def _read_text(path: Path) -> str:
    return read_text(path, "poems").replace("\r\n", "\n").replace("\r", "\n")


def read_poems(path: str | os.PathLike) -> list[Poem]:
    """Poems from JSON lines, a folder of .txt files, or one .txt file with poems split by 2+ blank lines."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserInputError(f"poems not found: {p} (a .jsonl[.gz] file, a folder of .txt files or one .txt file)")
    if p.is_dir():
        files = sorted(p.glob("*.txt"))
        if not files:
            raise UserInputError(f"folder {p} has no .txt files (one poem per .txt file)")
        return [Poem(_read_text(f).strip(), f.stem) for f in files]
    kind = kind_of(p)
    text = _read_text(p)
    if kind in JSON_LINES_SUFFIXES:
        return [Poem(text_field(row, "text", number, p, "each poem needs 'text' (optional 'title', 'author')"),
                     str(row.get("title") or ""), str(row.get("author") or ""))
                for number, row in json_lines(text, p)]
    if kind == ".txt":
        return [Poem(chunk.strip(), chunk.strip().split("\n", 1)[0].strip()) for chunk in _POEM_BREAK.split(text)
                if chunk.strip()]
    raise UserInputError(f"cannot tell the format of {p}: use .jsonl/.json (optionally .gz), .txt, or a folder "
                         f"of .txt files")
