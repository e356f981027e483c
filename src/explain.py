"""Which words drive one prediction: Integrated Gradients on the embedding layer, cross-checked by occlusion.

    python -m src.explain --ckpt_path CKPT --text "TEXT" --output page.html

prints the 10 tokens with the largest |IG| score as ``token<TAB>ig_score<TAB>occlusion_score`` and writes a
self-contained HTML page (the text coloured by each method side by side, the probability on top).

Both scores are in units of P(label 1), so they read alike: positive means the word pushes towards
``label_names[1]``.

- Integrated Gradients (Captum's ``LayerIntegratedGradients`` on ``net.embedding``): the embeddings are moved
  from a baseline of ``<pad>`` at every position (``<pad>`` embeds to the zero vector) to the text's, and each
  token's score is the path integral of the gradient times its embedding difference, summed over the embedding
  dimensions. The scores add up to P(text) - P(baseline) up to Captum's reported convergence delta.
- Occlusion: the token is dropped from the sequence (the text gets one word shorter) and the score is
  P(text) - P(text without it). Every variant runs in one padded batch.
"""

from __future__ import annotations

import argparse
import html
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

from data_modules.batching import pad_collate
from data_modules.text import tokenize
from src.errors import UserInputError, exit_on_user_error

DEFAULT_STEPS = 50  # Riemann steps of the IG path integral; Captum's default, delta ~1e-3 on our models


@dataclass
class Explanation:
    """Word importance for one text. ``tokens`` are the words the model read (after truncation to ``max_len``);
    ``known[i]`` is False where the model saw ``<unk>``. Scores are per token, in units of P(label 1)."""

    text: str
    tokens: list[str]
    known: list[bool]
    probability: float  # P(label 1)
    label: str
    label_names: list[str]
    integrated_gradients: list[float]
    occlusion: list[float]
    baseline_probability: float  # P(label 1) of the all-<pad> baseline
    delta: float  # Captum's convergence delta: sum(IG) - (probability - baseline_probability)
    n_steps: int
    truncated: int  # words past max_len that the model did not read

    def top(self, k: int = 10) -> list[tuple[str, float, float]]:
        """The ``k`` tokens with the largest |IG| score: (token, ig, occlusion), largest first."""
        order = sorted(range(len(self.tokens)), key=lambda i: -abs(self.integrated_gradients[i]))[:k]
        return [(self.tokens[i], self.integrated_gradients[i], self.occlusion[i]) for i in order]

    def to_html(self) -> str:
        return render_html(self)


# -- the two methods --------------------------------------------------------------------------------------
def _probability_fn(module):
    def probability(tokens: Tensor, lengths: Tensor) -> Tensor:
        return torch.sigmoid(module(tokens, lengths).float())  # [B]
    return probability


def integrated_gradients(module, tokens: Tensor, lengths: Tensor, n_steps: int = DEFAULT_STEPS) -> tuple[Tensor, Tensor]:
    """IG of P(label 1) w.r.t. the embedding layer, with an all-``<pad>`` baseline.

    tokens ``[B, T]`` (padded with ``pad_index``), lengths ``[B]`` -> (attributions ``[B, T]``, delta ``[B]``).
    Padded positions hold ``<pad>`` in input and baseline alike, so their embedding difference, and with it
    their attribution, is exactly zero.
    """
    from captum.attr import LayerIntegratedGradients

    pad_index = module.hparams.pad_index
    device = module.device
    tokens, lengths = tokens.to(device), lengths.cpu()
    baseline = torch.full_like(tokens, pad_index)
    method = LayerIntegratedGradients(_probability_fn(module), module.net.embedding)
    was_training = module.training
    module.eval()
    # cuDNN's RNN backward refuses eval mode; the plain kernels compute the same gradient.
    with torch.backends.cudnn.flags(enabled=False):
        attributions, delta = method.attribute(tokens, baselines=baseline, additional_forward_args=(lengths,),
                                               n_steps=n_steps, return_convergence_delta=True)
    module.train(was_training)
    return attributions.sum(-1).detach().cpu(), delta.detach().cpu()  # [B, T, E] -> [B, T]


@torch.no_grad()
def occlusion(module, ids: Sequence[int], groups: Optional[Sequence[Sequence[int]]] = None,
              batch_size: int = 256) -> list[float]:
    """P(label 1) of ``ids`` minus P(label 1) with the positions of each group dropped.

    groups: lists of positions to drop together; default one group per position. A group that drops
    everything leaves ``[<unk>]``, as the encoder does for an empty text. All variants run as padded batches
    together with the full text.
    """
    ids = list(ids)
    groups = [[i] for i in range(len(ids))] if groups is None else groups
    unk = module.vocabulary.unk_index if module.vocabulary is not None else 1
    variants = [ids]
    for group in groups:
        drop = set(group)
        variants.append([t for i, t in enumerate(ids) if i not in drop] or [unk])
    was_training = module.training
    module.eval()
    probabilities = []
    for start in range(0, len(variants), batch_size):
        batch = pad_collate([(v, 0.0) for v in variants[start:start + batch_size]], module.hparams.pad_index)
        probabilities += torch.sigmoid(module(batch.tokens.to(module.device), batch.lengths).float()).cpu().tolist()
    module.train(was_training)
    return [probabilities[0] - p for p in probabilities[1:]]


def explain(module, text: str, n_steps: int = DEFAULT_STEPS) -> Explanation:
    """Both methods on one text, tokenized exactly as ``module.predict_texts`` tokenizes it."""
    words = tokenize(text)
    if not words:
        raise UserInputError("the text has no words to explain (a word is a run of letters or digits); "
                             "pass a sentence, e.g. --text \"a moving, well acted film\"")
    max_len = module.max_len
    truncated = max(0, len(words) - max_len) if max_len else 0
    if truncated:
        warnings.warn(f"the text has {len(words)} words but the model reads only the first {max_len}; "
                      f"the last {truncated} are not explained", stacklevel=2)
        words = words[:max_len]
    ids = module.encode_texts([text])[0]
    tokens, lengths = torch.tensor([ids]), torch.tensor([len(ids)])
    attributions, delta = integrated_gradients(module, tokens, lengths, n_steps)
    with torch.no_grad():
        was_training = module.training
        module.eval()
        both = torch.cat([tokens, torch.full_like(tokens, module.hparams.pad_index)]).to(module.device)
        p, p_baseline = torch.sigmoid(module(both, torch.cat([lengths, lengths])).float()).cpu().tolist()
        module.train(was_training)
    unk = module.vocabulary.unk_index
    return Explanation(
        text=text, tokens=words, known=[i != unk for i in ids], probability=p,
        label=module.label_names[int(p >= 0.5)], label_names=list(module.label_names),
        integrated_gradients=attributions[0].tolist(), occlusion=occlusion(module, ids),
        baseline_probability=p_baseline, delta=float(delta[0]), n_steps=n_steps, truncated=truncated)


# -- the page ---------------------------------------------------------------------------------------------
STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: .2em; } .meta { color: #666; font-size: .9em; }
.methods { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5em; margin: 1.5em 0; }
.methods section { border: 1px solid #ddd; border-radius: 6px; padding: .8em 1em; }
.methods h2 { font-size: 1.05em; margin: 0 0 .5em; }
.tok { padding: .1em .2em; border-radius: 3px; margin: 0 .05em; display: inline-block; }
.unk { border-bottom: 1px dashed #888; }
table { border-collapse: collapse; } td, th { padding: .2em .8em; text-align: right; border-bottom: 1px solid #eee; }
td:first-child, th:first-child { text-align: left; }
"""


def _colour(score: float, scale: float) -> str:
    """Green raises P(label 1), red lowers it; opacity is |score| relative to the method's largest |score|."""
    alpha = min(1.0, abs(score) / scale) if scale > 0 else 0.0
    rgb = "34,160,70" if score >= 0 else "215,48,39"
    return f"rgba({rgb},{alpha * 0.85:.3f})"


def _coloured_text(e: Explanation, scores: list[float]) -> str:
    scale = max((abs(s) for s in scores), default=0.0)
    spans = []
    for token, known, score in zip(e.tokens, e.known, scores):
        title = f"{score:+.4f}" + ("" if known else " (unknown to the model: read as <unk>)")
        spans.append(f'<span class="tok{"" if known else " unk"}" style="background:{_colour(score, scale)}" '
                     f'title="{html.escape(title)}">{html.escape(token)}</span>')
    return " ".join(spans)


def render_html(e: Explanation, top: int = 10) -> str:
    """A self-contained page (inline CSS, no scripts, nothing fetched)."""
    positive = e.label_names[1]
    rows = "".join(f"<tr><td>{html.escape(t)}</td><td>{ig:+.4f}</td><td>{occ:+.4f}</td></tr>"
                   for t, ig, occ in e.top(top))
    note = (f"<p class='meta'>Only the first {len(e.tokens)} words were read; {e.truncated} more were cut.</p>"
            if e.truncated else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Word importance: P({html.escape(positive)}) = {e.probability:.3f}</title>
<style>{STYLE}</style></head><body>
<h1>P({html.escape(positive)}) = {e.probability:.3f} &rarr; {html.escape(e.label)}</h1>
<p class="meta">Scores are changes in P({html.escape(positive)}): green pushes towards {html.escape(positive)}, red towards
{html.escape(e.label_names[0])}; the shade is relative to each method's largest score. Dashed words are unknown to the
model. Integrated Gradients: {e.n_steps} steps from an all-&lt;pad&gt; baseline (P = {e.baseline_probability:.3f}); its scores
sum to {sum(e.integrated_gradients):+.4f}, convergence delta {e.delta:+.1e}. Occlusion: P(text) &minus; P(text without the word).</p>
{note}<div class="methods">
<section><h2>Integrated Gradients (embedding layer)</h2><p>{_coloured_text(e, e.integrated_gradients)}</p></section>
<section><h2>Occlusion (word dropped)</h2><p>{_coloured_text(e, e.occlusion)}</p></section>
</div>
<h2>Top {min(top, len(e.tokens))} words by |Integrated Gradients|</h2>
<table><tr><th>word</th><th>Integrated Gradients</th><th>occlusion</th></tr>{rows}</table>
</body></html>
"""


# -- the command ------------------------------------------------------------------------------------------
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
        from src.classifier import TextClassifier

        module = TextClassifier.from_checkpoint(args.ckpt_path)
        with warnings.catch_warnings(record=True) as notes:
            warnings.simplefilter("always", UserWarning)
            explanation = explain(module, args.text, args.steps)
        out = Path(args.output).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(explanation.to_html(), encoding="utf-8")
    for note in notes:
        if "the model reads only the first" in str(note.message):
            print(f"note: {note.message}", file=sys.stderr)
    for token, ig, occ in explanation.top(args.top):
        print(f"{token}\t{ig:+.4f}\t{occ:+.4f}")
    print(f"P({explanation.label_names[1]}) = {explanation.probability:.3f} ({explanation.label}); IG convergence "
          f"delta {explanation.delta:+.1e}; wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
