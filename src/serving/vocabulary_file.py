"""``vocab.json``: what an exported model needs besides its graph to read text and name its output.

Written beside ``model.onnx`` by ``python -m src.export`` and read by ``OnnxClassifier``; it describes the
tokenizer in words and regular expressions, so a program in another language can serve the model too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from data_modules.vocabulary import HTML_BREAK, WORD, Vocabulary
from src.utils.errors import UserInputError

VOCAB_FILE = "vocab.json"
VOCAB_FORMAT = "rnn_lab/vocab/1"
REQUIRED_KEYS = ("tokens", "label_names", "max_len", "pad_index")


def vocab_payload(vocabulary: Vocabulary, label_names: Sequence[str], max_len: Optional[int]) -> dict:
    """What ``vocab.json`` holds: everything needed to turn text into the model's inputs and read its output."""
    return {
        "format": VOCAB_FORMAT,
        "tokens": vocabulary.tokens,
        "pad_index": vocabulary.pad_index,
        "unk_index": vocabulary.unk_index,
        "label_names": list(label_names),
        "max_len": max_len,
        "tokenizer": {
            "description": ("lowercase the text; replace HTML line breaks (html_break) by a space; the tokens are "
                            "the matches of word, left to right; keep the first max_len tokens (all if max_len is "
                            "null); a token not in tokens is unk_index; a text without tokens is [unk_index]"),
            "lowercase": True,
            "html_break": HTML_BREAK.pattern,
            "word": WORD.pattern,
        },
        "inputs": {"tokens": "int64 [batch, time], padded with pad_index after each text",
                   "lengths": "int64 [batch], tokens per text (>= 1)"},
        "output": "logits float32 [batch]; P(label_names[1]) = sigmoid(logit); label = label_names[P >= 0.5]",
    }


def write_vocab(folder: Path, vocabulary: Vocabulary, label_names: Sequence[str], max_len: Optional[int]) -> Path:
    path = folder / VOCAB_FILE
    path.write_text(json.dumps(vocab_payload(vocabulary, label_names, max_len), ensure_ascii=False), encoding="utf-8")
    return path


def read_vocab(onnx_path: Path) -> dict:
    """The ``vocab.json`` beside ``onnx_path``, checked; one-line errors for a missing or foreign file."""
    path = onnx_path.with_name(VOCAB_FILE)
    if not path.is_file():
        raise UserInputError(f"no {VOCAB_FILE} beside {onnx_path}: the model needs the vocabulary it was exported "
                             f"with; keep the {VOCAB_FILE} that python -m src.export wrote in the same folder")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserInputError(f"{path} is not valid JSON ({e}); re-export the model with python -m src.export") from None
    missing = [k for k in REQUIRED_KEYS if k not in payload] if isinstance(payload, dict) else list(REQUIRED_KEYS)
    if missing or payload.get("format") != VOCAB_FORMAT:
        raise UserInputError(f"{path} is not a vocabulary written by python -m src.export (missing "
                             f"{missing or 'format'}); re-export the model")
    return payload
