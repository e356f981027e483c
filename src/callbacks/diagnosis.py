"""One line that says what the dynamics figures show: gradients vanishing or exploding, saturated units, or healthy.

Written as the TensorBoard text ``dynamics/diagnosis`` at each validation end, and printed on the console when its
verdict changes. It reads the figures of the logged steps since the previous validation from whichever dynamics
callbacks the run has (each offers ``diagnosis_figures(since)``), so it needs no callback of its own.

The rules, and why they are these:

- **vanishing**: the gradient at 10% of the sequence is ``VANISHING_DECADES`` (3) or more decades below the one at
  90% (median over the logged steps). A tanh RNN whose recurrent Jacobian contracts loses a constant factor per
  step, so on the memory task at length 50 it loses 8-10 decades; early inputs then get no learning signal.
  Between 1.5 and 3 decades the line says **decaying** (the early inputs learn 30-1000x slower).
- **exploding**: the gradient *grows* going back by 3 or more decades; or the total parameter-gradient norm
  (before clipping) is ``CLIP_FACTOR`` (10) times the run's clipping threshold ``trainer.gradient_clip_val`` or more
  (clipping then rescales every step by a factor of ten or more), or non-finite; without clipping, a total norm
  that grew 3 decades above its first logged values. A norm a few times the clipping threshold is what clipping is
  for, and is reported as such, not as exploding. (Growth through time of less than 3 decades is normal where the
  loss reads early positions directly: max or mean pooling, a language model, a copied first token.)
- **saturated**: half or more of a layer's hidden values beyond the saturation threshold (``|h| > 0.9``, where
  tanh's derivative is below 0.19). Saturation damps the gradient through those units, but it is neither
  necessary for vanishing (a contracting tanh RNN vanishes with its units near 0) nor always harmful (an LSTM that
  stores a bit in a saturated unit is doing its job), so it is reported beside the gradient figures, not instead.
- **healthy** otherwise, with the figures that show it.
"""

from __future__ import annotations

import math
import statistics
import weakref
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info

from src.callbacks.tensorboard_output import flush_scalars, tensorboard_writer

VANISHING_DECADES = 3.0
DECAYING_DECADES = 1.5
EXPLODING_DECADES = 3.0
CLIP_FACTOR = 10.0
SATURATED_SHARE = 0.5


def diagnose(figures: dict, clip: Optional[float] = None) -> tuple[tuple[str, ...], str]:
    """The dynamics figures of a window of logged steps -> (verdicts, one line).

    figures (each part optional): ``flow``: ``summarize`` dicts of the logged steps' gradient curves,
    ``horizon_threshold``; ``saturation``: layer -> latest share of saturated hidden values, ``threshold``;
    ``totals``: total parameter-gradient norms of the logged steps, ``baseline``: those of the first logged steps;
    ``memory_gates``: layer -> (``forget`` or ``update``, its mean activation), named when the gradient fades.
    clip: the run's gradient-norm clipping threshold (None: no clipping by norm).
    Verdicts are among ``vanishing``, ``decaying``, ``exploding``, ``saturated``, ``healthy``.
    """
    kinds: list[str] = []
    parts: list[str] = []
    notes: list[str] = []
    flow = [f for f in figures.get("flow", []) if f]
    if flow:
        kind, text = _through_time(flow, figures.get("horizon_threshold", 1e-3))
        if kind in ("vanishing", "decaying") and figures.get("memory_gates"):
            text += "; " + _memory(figures["memory_gates"])
        (parts if kind else notes).append(text)
        kinds += [kind] if kind else []
    totals = figures.get("totals", [])
    if totals:
        kind, text = _total_norm(totals, figures.get("baseline", []), clip)
        (parts if kind else notes).append(text)
        kinds += [kind] if kind and kind not in kinds else []
    saturation = figures.get("saturation", {})
    if saturation:
        threshold = figures.get("threshold", 0.9)
        layer, share = max(saturation.items(), key=lambda item: item[1])
        if share >= SATURATED_SHARE:
            kinds.append("saturated")
            parts.append(f"saturated: {share:.0%} of {layer}'s hidden values beyond +-{threshold:g} (tanh' < "
                         f"{1 - threshold ** 2:.2f} there: the gradient through those units is damped)")
        else:
            notes.append(f"hidden saturation at most {share:.0%} ({layer})")
    if not kinds:
        return ("healthy",), "healthy: " + "; ".join(notes)
    return tuple(kinds), "; ".join(parts + notes)


def _through_time(flow: list[dict], threshold: float) -> tuple[Optional[str], str]:
    """Median early/late decades of the window's curves -> (verdict or None, text)."""
    with_ratio = [f for f in flow if not math.isnan(f.get("early_late_ratio", math.nan))]
    decades = statistics.median(_decades(f["early_late_ratio"]) for f in with_ratio) if with_ratio else math.nan
    horizon = statistics.median(f["horizon"] for f in flow)
    length = statistics.median(f["length"] for f in flow)
    censored = statistics.median(f["horizon_fraction"] for f in flow) >= 1.0
    steps = f"median of {len(flow)} logged step{'s' if len(flow) > 1 else ''}"
    reach = (f"the gradient reaches the first of {length:.0f} steps (horizon censored: above {threshold:g} of its "
             "peak at every step)" if censored else f"gradient of at least {threshold:g} of its peak reaches only "
             f"the last {horizon:.0f} of {length:.0f} steps")
    if math.isnan(decades):
        return None, reach
    ratio = (f"dLoss/dx at 10% of the sequence is 10^{decades:+.1f} of that at 90% ({steps})" if decades > -np.inf
             else f"dLoss/dx at 10% of the sequence is 0, underflowed below float32's 1e-45 ({steps})")
    if decades <= -VANISHING_DECADES:
        return "vanishing", (f"vanishing through time: {ratio}; {reach}. The early inputs get no learning signal "
                             "(a gated cell with a forget-gate bias, or shorter sequences, help)")
    if decades <= -DECAYING_DECADES:
        return "decaying", f"decaying through time: {ratio}; {reach}"
    if decades >= EXPLODING_DECADES:
        return "exploding", f"exploding through time: {ratio}, growing going back; {reach}"
    return None, f"{ratio}; {reach}"


def _memory(gates: dict[str, tuple[str, float]]) -> str:
    """layer -> (gate, mean) -> why gated layers lose the gradient: the memory they keep per step."""
    layer, (gate, mean) = min(gates.items(), key=lambda item: item[1][1])
    return (f"mean {gate} gate {mean:.2f} in {layer}: it keeps about {mean:.0%} of its state per step (a larger "
            f"{gate}-gate bias keeps more)")


def _total_norm(totals: list[float], baseline: list[float], clip: Optional[float]) -> tuple[Optional[str], str]:
    """The window's total gradient norms (before clipping) against the clipping threshold -> (verdict, text)."""
    bad = sum(not math.isfinite(t) for t in totals)
    if bad:
        return "exploding", f"exploding: non-finite gradient norm on {bad} of {len(totals)} logged steps"
    median = statistics.median(totals)
    if clip:
        clipped = sum(t > clip for t in totals)
        if median >= CLIP_FACTOR * clip:
            return "exploding", (f"exploding: total gradient norm {median:.3g} (median), {median / clip:.0f}x the "
                                 f"clipping threshold {clip:g}: clipping cuts every step by that factor")
        return None, (f"total gradient norm {median:.3g} (clipped at {clip:g} on {clipped} of {len(totals)} "
                      "logged steps)")
    start = statistics.median(baseline) if baseline else math.nan
    if start > 0 and median >= start * 10 ** EXPLODING_DECADES:
        return "exploding", (f"exploding: total gradient norm {median:.3g}, 10^{math.log10(median / start):.1f} times "
                             "its first logged values, and no clipping (trainer.gradient_clip_val)")
    return None, f"total gradient norm {median:.3g} (no clipping)"


def _decades(ratio: float) -> float:
    return math.log10(ratio) if ratio > 0 else -math.inf


def clip_threshold(trainer: "pl.Trainer") -> Optional[float]:
    """The run's gradient clipping threshold when it clips by norm, else None."""
    value = trainer.gradient_clip_val
    algorithm = str(getattr(trainer, "gradient_clip_algorithm", "norm") or "norm").lower()
    return float(value) if value and algorithm.endswith("norm") else None


@dataclass
class _Written:
    step: Optional[int] = None  # the global step of the last diagnosis (its window's end)
    kinds: tuple[str, ...] = field(default_factory=tuple)  # its verdicts, to print only changes


_WRITTEN: "weakref.WeakKeyDictionary[pl.Trainer, _Written]" = weakref.WeakKeyDictionary()


def write_diagnosis(trainer: "pl.Trainer") -> Optional[str]:
    """Diagnose the logged steps since the last diagnosis (once per validation, whichever callback asks first),
    write ``dynamics/diagnosis``, print the line when the verdicts change; return the line (None: no figures)."""
    written = _WRITTEN.setdefault(trainer, _Written())
    if written.step == trainer.global_step:
        return None
    flush_scalars(trainer)  # the held steps' figures first
    figures: dict = {}
    for callback in trainer.callbacks:
        offer = getattr(callback, "diagnosis_figures", None)
        if offer is not None:
            figures.update(offer(written.step))
    if not (figures.get("flow") or figures.get("totals") or figures.get("saturation")):
        return None
    kinds, line = diagnose(figures, clip_threshold(trainer))
    written.step = trainer.global_step
    writer = tensorboard_writer(trainer)
    if writer is not None:
        writer.add_text("dynamics/diagnosis", line, trainer.global_step)
    if kinds != written.kinds:
        rank_zero_info(f"dynamics at step {trainer.global_step}: {line}")
        written.kinds = kinds
    return line
