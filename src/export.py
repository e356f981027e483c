"""Export a trained TextClassifier for serving: ONNX with its vocabulary beside it, and int8 copies.

    python -m src.export --ckpt_path CKPT --output DIR [--quantize]

writes ``DIR/model.onnx`` (inputs ``tokens [batch, time]`` int64 and ``lengths [batch]`` int64, output
``logits [batch]``; P(label 1) = sigmoid(logit)) and ``DIR/vocab.json`` (tokens, label names, max_len and how to
tokenize, so ONNX Runtime alone can serve the model). ``--quantize`` also writes ``DIR/model_int8.pt`` (PyTorch's
dynamic int8) and ``DIR/model_int8.onnx`` (ONNX Runtime's, the fastest on CPU). The ONNX logits are checked
against PyTorch's before the command returns. See src/serving/ for each format.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from src.serving.int8 import INT8_FILE, INT8_ONNX_FILE, quantize_int8, quantize_onnx, save_int8
from src.serving.onnx_export import ONNX_FILE, example_batch, export_onnx, max_logit_difference
from src.serving.pytorch_classifier import PyTorchClassifier
from src.serving.vocabulary_file import VOCAB_FILE, write_vocab
from src.utils.errors import exit_on_user_error
from src.utils.output_files import check_output, staged_folder


def export(ckpt_path: str, output: str, quantize: bool = False, tolerance: float = 1e-4) -> dict[str, Path]:
    """Export a checkpoint into ``output``; checks the ONNX logits against PyTorch's before returning."""
    out = check_output(output, {"--ckpt_path": ckpt_path}, folder=True,
                       writes=(ONNX_FILE, VOCAB_FILE) + ((INT8_FILE, INT8_ONNX_FILE) if quantize else ()))
    classifier = PyTorchClassifier.from_checkpoint(ckpt_path)
    with staged_folder(out, "the export") as staging:  # all files or none: a full disk leaves no half model.onnx
        written = {"onnx": export_onnx(classifier.net, staging / ONNX_FILE),
                   "vocab": write_vocab(staging, classifier.vocabulary, classifier.label_names, classifier.max_len)}
        tokens, lengths = example_batch(len(classifier.vocabulary), classifier.pad_index, lengths=(23, 1, 9, 16, 4),
                                        seed=1)
        difference = max_logit_difference(classifier.net, written["onnx"], tokens, lengths)
        if not difference <= tolerance:
            raise RuntimeError(f"the exported model's logits differ from PyTorch's by {difference:.2g} "
                               f"(> {tolerance})")
        if quantize:
            written["int8"] = save_int8(classifier, quantize_int8(classifier.net), staging / INT8_FILE)
            written["int8_onnx"] = quantize_onnx(written["onnx"], staging / INT8_ONNX_FILE)
    written = {key: out / path.name for key, path in written.items()}
    written["max_logit_difference"] = difference
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True, help="a TextClassifier checkpoint written by train.py")
    parser.add_argument("--output", required=True, help="folder for model.onnx and vocab.json (and model_int8.pt)")
    parser.add_argument("--quantize", action="store_true",
                        help="also write model_int8.pt (PyTorch int8 dynamic) and model_int8.onnx (ONNX Runtime int8)")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        written = export(args.ckpt_path, args.output, args.quantize)
    for key in ("onnx", "vocab", "int8", "int8_onnx"):
        if key in written:
            print(f"wrote {written[key]} ({written[key].stat().st_size / 1e6:.2f} MB)")
    print(f"ONNX Runtime logits match PyTorch's: max difference {written['max_logit_difference']:.1e} on a "
          "batch of mixed lengths")


if __name__ == "__main__":
    main()
