"""Predict sentiment for a text file, one review per line, from a checkpoint alone (no config).

    python -m src.predict --ckpt_path CKPT --input texts.txt --output preds.csv

Writes a CSV with columns ``text,probability,label``: one row per input line, blank lines included.
``--ckpt_path`` may also be an exported ``model.onnx`` (with ``vocab.json`` beside it), run by ONNX Runtime.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from data_modules.text_files import read_text
from src.serving.pytorch_classifier import PyTorchClassifier
from src.serving.vocabulary_file import VOCAB_FILE
from src.utils.errors import check_positive, exit_on_user_error
from src.utils.output_files import check_output, written_atomically


def read_lines(path: str) -> list[str]:
    """One text per line of a UTF-8 file (blank lines too); a final newline does not add an empty text."""
    # Split on newlines only: str.splitlines() would also cut a review at \r, \u2028 or \x85 inside it.
    lines = read_text(path, "input file").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def predict_file(ckpt_path: str, input_path: str, output_path: str, batch_size: int = 256) -> pd.DataFrame:
    """Predictions of every line of ``input_path`` -> ``output_path`` (written whole or not at all; it may never be
    the input, the checkpoint or the vocabulary beside an ONNX model)."""
    check_positive(batch_size=batch_size)
    vocab = Path(ckpt_path).expanduser().with_name(VOCAB_FILE) if ckpt_path.endswith(".onnx") else None
    out = check_output(output_path, {"--input": input_path, "--ckpt_path": ckpt_path, VOCAB_FILE: vocab})
    texts = read_lines(input_path)
    if ckpt_path.endswith(".onnx"):
        from src.serving.onnx_classifier import OnnxClassifier

        predictions = OnnxClassifier(ckpt_path).predict_texts(texts, batch_size)
    else:
        predictions = PyTorchClassifier.from_checkpoint(ckpt_path).predict_texts(texts, batch_size)
    frame = pd.DataFrame({"text": texts, "probability": [p.probability for p in predictions],
                          "label": [p.label for p in predictions]})
    with written_atomically(out, "predictions") as temporary:
        frame.to_csv(temporary, index=False)
    return frame


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True,
                        help="a TextClassifier checkpoint (.ckpt) or an exported model.onnx")
    parser.add_argument("--input", required=True, help="UTF-8 text file, one review per line")
    parser.add_argument("--output", required=True, help="CSV to write (text,probability,label)")
    parser.add_argument("--batch_size", type=int, default=256)
    args = parser.parse_args(argv)
    with exit_on_user_error():
        frame = predict_file(args.ckpt_path, args.input, args.output, args.batch_size)
    print(f"wrote {len(frame)} predictions to {args.output}")


if __name__ == "__main__":
    main()
