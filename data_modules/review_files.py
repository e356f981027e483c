"""Reading users' review files (CSV, TSV, JSON lines, parquet) and turning their labels into 0/1.

Every failure a user can cause ends in one `UserInputError` line that names the problem and the fix.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from data_modules.text_files import decode_utf8, json_lines
from src.utils.errors import UserInputError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}
NEGATIVE = {"0", "neg", "negative", "false"}
POSITIVE = {"1", "pos", "positive", "true"}
MISSING = {"", "nan", "none", "null", "na", "n/a"}  # how a missing label reads once it is text
SEPARATORS = {"csv": ",", "tsv": "\t"}


def check_file(path: str | os.PathLike, what: str = "data file") -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise UserInputError(f"{what} not found: {p} (check the path, e.g. --data.path /path/to/reviews.csv)")
    if p.is_dir():
        raise UserInputError(f"{what} {p} is a folder; give the file itself")
    if p.stat().st_size == 0:
        raise UserInputError(f"{what} {p} is empty")
    return p


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A review file -> DataFrame, by its extension: .csv, .tsv, .jsonl/.json, .parquet.

    A .csv whose header holds tabs and no comma is read as TSV, and the reverse (files are often misnamed).
    JSON lines are parsed line by line, so a bad one is reported by its line number (pandas gives a byte offset).
    """
    p = check_file(path)
    kind = FORMATS.get(p.suffix.lower())
    if kind is None:
        raise UserInputError(f"cannot tell the format of {p}: use one of {', '.join(sorted(FORMATS))}")
    try:
        if kind == "parquet":
            return pd.read_parquet(p)
        text = decode_utf8(p.read_bytes(), p)  # pandas would not say where a bad byte is
        if kind == "jsonl":
            return pd.DataFrame([row for _, row in json_lines(text, p)])
        return pd.read_csv(io.StringIO(text), sep=sniff_separator(text, kind), dtype=str, keep_default_na=False)
    except UserInputError:
        raise
    except Exception as e:  # a parser's own message, prefixed with the file: malformed CSV, bad JSON line, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserInputError(f"could not read {p} as {kind}: {first}") from None


def sniff_separator(text: str, kind: str) -> str:
    """The extension's separator, unless the header line holds only the other one."""
    header = text.split("\n", 1)[0]
    expected, other = SEPARATORS[kind], SEPARATORS["tsv" if kind == "csv" else "csv"]
    return other if other in header and expected not in header else expected


def pick_columns(frame: pd.DataFrame, path, text_column: str, label_column: Optional[str]) -> pd.DataFrame:
    if frame.empty:
        raise UserInputError(f"{path} has no rows")
    if text_column == label_column:
        raise UserInputError(f"--data.text_column and --data.label_column are both {text_column!r}; the text and "
                             f"the label are two columns of {path}: {list(map(str, frame.columns))}")
    wanted = [text_column] + ([label_column] if label_column else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        flag = {text_column: "--data.text_column", label_column: "--data.label_column"}
        fixes = ", ".join(f"{flag[c]} for {c!r}" for c in missing)
        raise UserInputError(f"{path} has no column {', '.join(map(repr, missing))}; its columns are "
                             f"{list(map(str, frame.columns))}: set {fixes}")
    return frame[wanted]


def normalize_labels(values: pd.Series, source: str) -> tuple[np.ndarray, list[str]]:
    """Two-class labels -> (0/1 array, [name of 0, name of 1]).

    Accepted: 0/1, pos/neg, positive/negative, true/false (any case), or any two numbers (the larger is
    positive, e.g. 1/2 star polarity). Names keep the file's own spelling so predictions read like the input.
    """
    text = values.astype(str).str.strip()
    missing = text.str.lower().isin(MISSING) | values.isna().to_numpy()
    if missing.any():
        first = values.index[int(np.flatnonzero(missing.to_numpy())[0])]
        where = f" (the first is data row {first + 1})" if isinstance(first, (int, np.integer)) else ""
        raise UserInputError(f"label column {source} is empty or null in {int(missing.sum())} row(s){where}; fill "
                             "those labels in or remove the rows")
    numbers = pd.to_numeric(text, errors="coerce")
    whole = numbers.notna() & (numbers == numbers.round()) & (numbers.abs() < 2**53)
    text = text.where(~whole, numbers[whole].astype("int64").astype(str))  # "1", "1.0" and "01" are one class
    found = sorted(set(text))
    lowered = {v: v.lower() for v in found}
    if set(lowered.values()) <= NEGATIVE | POSITIVE and len(found) <= 2 and not (
            set(lowered.values()) <= NEGATIVE or set(lowered.values()) <= POSITIVE):
        positive = {v for v in found if lowered[v] in POSITIVE}
        labels = text.isin(positive).to_numpy(np.int64)
        names = [next(v for v in found if v not in positive), next(iter(positive))]
        return labels, names
    numeric = pd.to_numeric(pd.Series(found), errors="coerce")
    if len(found) == 2 and numeric.notna().all():
        low, high = (found[0], found[1]) if numeric[0] < numeric[1] else (found[1], found[0])
        return (text == high).to_numpy(np.int64), [low, high]
    shown = found[:10] + (["..."] if len(found) > 10 else [])
    raise UserInputError(
        f"label column {source} has {len(found)} distinct value(s) {shown}; a binary classifier needs two: "
        f"0/1, neg/pos or negative/positive (map the labels or choose another --data.label_column)")
