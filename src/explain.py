"""Which words drive one prediction, from a TextClassifier checkpoint alone.

    python -m src.explain --ckpt_path CKPT --text "TEXT" --output page.html

prints the 10 tokens with the largest |IG| score as ``token<TAB>ig_score<TAB>occlusion_score`` and writes a
self-contained HTML page (the text coloured by each method side by side, the probability on top). Both scores
are in units of P(label 1): positive pushes towards ``label_names[1]``. The methods: src/serving/word_importance.py.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from src.serving.pytorch_classifier import PyTorchClassifier
from src.serving.word_importance import DEFAULT_STEPS, explain
from src.utils.errors import UserInputError, exit_on_user_error
from src.utils.output_files import check_output, written_atomically


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True, help="a TextClassifier checkpoint written by train.py")
    parser.add_argument("--text", required=True, help="the text to explain")
    parser.add_argument("--output", required=True, help="HTML page to write")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="Integrated Gradients steps")
    parser.add_argument("--top", type=int, default=10, help="how many tokens to print")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        if args.steps < 1 or args.top < 1:
            raise UserInputError(f"--steps ({args.steps}) and --top ({args.top}) must be at least 1")
        out = check_output(args.output, {"--ckpt_path": args.ckpt_path})
        classifier = PyTorchClassifier.from_checkpoint(args.ckpt_path)
        with warnings.catch_warnings(record=True) as notes:
            warnings.simplefilter("always", UserWarning)
            explanation = explain(classifier, args.text, args.steps)
        with written_atomically(out, "page") as temporary:
            temporary.write_text(explanation.to_html(), encoding="utf-8")
    for note in notes:
        if "the model reads only the first" in str(note.message):
            print(f"note: {note.message}", file=sys.stderr)
    for token, ig, occ in explanation.top(args.top):
        print(f"{token}\t{ig:+.4f}\t{occ:+.4f}")
    print(f"P({explanation.label_names[1]}) = {explanation.probability:.3f} ({explanation.label}); IG convergence "
          f"delta {explanation.delta:+.1e}; wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
