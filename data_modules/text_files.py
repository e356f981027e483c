"""Reading a user's UTF-8 text files: plain or gzipped, a leading byte-order mark dropped, JSON lines parsed, and
every failure one ``UserInputError`` line that names the file, the line and the fix.

Shared by the poems, the character-level text and ``python -m src.predict``'s input.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Iterator

from src.utils.errors import UserInputError

JSON_LINES_SUFFIXES = (".jsonl", ".ndjson", ".json")


def kind_of(path: Path) -> str:
    """The suffix that says the format, ignoring a final .gz: ``poems.jsonl.gz`` -> ``.jsonl``."""
    name = path.name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    return Path(name).suffix


def read_text(path: str | os.PathLike, what: str = "text file") -> str:
    """The text of a file (``.gz`` decompressed), decoded as UTF-8 with a leading BOM dropped.

    Line ends stay as they are. Fails in one line for a missing path, a folder, a broken gzip stream or bytes that are
    not UTF-8 (with the line and column of the first one).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise UserInputError(f"{what} not found: {p}")
    if p.is_dir():
        raise UserInputError(f"{what} {p} is a folder; give the file itself")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UserInputError(f"cannot read {what} {p} ({e.strerror or e})") from None
    note = ""
    if p.name.lower().endswith(".gz"):
        try:
            data, note = gzip.decompress(data), " (after gzip decompression)"
        except (OSError, EOFError) as e:
            raise UserInputError(f"{p} ends in .gz but cannot be decompressed ({e}); give the plain file") from None
    return decode_utf8(data, p, note)


def decode_utf8(data: bytes, path: Path, note: str = "") -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise UserInputError(f"{path} is not UTF-8: invalid byte 0x{data[e.start]:02x} at line {line}, column "
                             f"{column}{note}; re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


def json_lines(text: str, path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line; a line that is not a JSON object fails with its number."""
    # Split on newlines only: a JSON string may hold U+2028 or \x85, which str.splitlines() would cut at.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserInputError(f"line {number} of {path} is not valid JSON ({e.msg}); give one JSON object per "
                                 "line") from None
        if not isinstance(row, dict):
            raise UserInputError(f"line {number} of {path} is a JSON {type(row).__name__}, not an object; give one "
                                 "JSON object per line")
        yield number, row


def text_field(row: dict, field: str, number: int, path: Path, fix: str) -> str:
    """``row[field]`` as text, or one line naming the line, the fields it has and the ``fix``."""
    if field not in row:
        raise UserInputError(f"line {number} of {path} has no {field!r} field (it has {sorted(row)}); {fix}")
    if not isinstance(row[field], str):
        raise UserInputError(f"line {number} of {path}: {field!r} is a {type(row[field]).__name__}, not text")
    return row[field]
