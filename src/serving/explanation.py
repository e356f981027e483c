"""``Explanation``: the word importance of one text (src/serving/word_importance.py computes it), and its
self-contained HTML page (inline CSS, no scripts, nothing fetched): the text coloured by each method side by side,
the probability on top, the top words in a table."""

from __future__ import annotations

import html
from dataclasses import dataclass


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
    p_positive = f"P({html.escape(positive)})"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Word importance: {p_positive} = {e.probability:.3f}</title>
<style>{STYLE}</style></head><body>
<h1>{p_positive} = {e.probability:.3f} &rarr; {html.escape(e.label)}</h1>
<p class="meta">Scores are changes in {p_positive}: green pushes towards {html.escape(positive)}, red towards
{html.escape(e.label_names[0])}; the shade is relative to each method's largest score. Dashed words are unknown to the
model. Integrated Gradients: {e.n_steps} steps from an all-&lt;pad&gt; baseline (P = {e.baseline_probability:.3f});
its scores sum to {sum(e.integrated_gradients):+.4f}, convergence delta {e.delta:+.1e}. Occlusion: P(text) &minus;
P(text without the word).</p>
{note}<div class="methods">
<section><h2>Integrated Gradients (embedding layer)</h2><p>{_coloured_text(e, e.integrated_gradients)}</p></section>
<section><h2>Occlusion (word dropped)</h2><p>{_coloured_text(e, e.occlusion)}</p></section>
</div>
<h2>Top {min(top, len(e.tokens))} words by |Integrated Gradients|</h2>
<table><tr><th>word</th><th>Integrated Gradients</th><th>occlusion</th></tr>{rows}</table>
</body></html>
"""
