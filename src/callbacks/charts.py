"""The callbacks' TensorBoard pictures, drawn straight into 8-bit palette images with Pillow.

The pictures are drawn inside training, every epoch. Matplotlib took 20-40 ms for one labelled chart (~35 ms for
the first frame of a process, mostly text layout) and its RGB image ~2 ms to PNG-encode: together over 10% of an
epoch of the default reviews run, against a 5% budget for the callbacks (docs/benchmarks.md). Here a chart's
frame (axes, ticks, labels, legend) is drawn once and kept, an epoch copies it and draws its lines (~0.3 ms), and
a palette PNG encodes in ~0.25 ms. Reports and docs keep matplotlib (src/experiments/).

Every picture uses one 256-colour palette: a grey ramp (antialiased text), the line colours, and 192 levels of
a matplotlib colormap for rasters (the heatmap, the hidden-state image).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GREYS = 16  # palette 0..15: black -> white
WHITE, BLACK = GREYS - 1, 0
LINE_COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))  # matplotlib's tab10 start
LINE = 16  # palette index of LINE_COLORS[0]
GRID = LINE + len(LINE_COLORS)
GRID_RGB = (222, 222, 222)
GAP = GRID + 1  # mid grey between raster bands
LEVELS_START, LEVELS = 64, 192  # palette 64..255: the colormap


@functools.lru_cache(maxsize=None)
def palette(colormap: str = "viridis") -> tuple[int, ...]:
    """The 768 RGB values of the palette, with ``LEVELS`` steps of ``colormap`` at ``LEVELS_START``."""
    from matplotlib import colormaps

    greys = [round(255 * i / (GREYS - 1)) for i in range(GREYS)]
    colours = [(g, g, g) for g in greys] + list(LINE_COLORS) + [GRID_RGB, (128, 128, 128)]
    colours += [(255, 255, 255)] * (LEVELS_START - len(colours))
    ramp = (colormaps[colormap](np.linspace(0.0, 1.0, LEVELS))[:, :3] * 255).round().astype(int)
    colours += [tuple(rgb) for rgb in ramp.tolist()]
    return tuple(value for rgb in colours for value in rgb)


@functools.lru_cache(maxsize=None)
def _palette_image(colormap: str) -> Image.Image:
    image = Image.new("P", (1, 1))
    image.putpalette(palette(colormap))
    return image


@functools.lru_cache(maxsize=None)
def font(size: int = 11) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # Pillow's bundled font: nothing to find on the system


def levels(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Values -> palette indices of the colormap (``low`` -> first level, ``high`` -> last); NaN -> white."""
    with np.errstate(invalid="ignore"):
        scaled = (np.asarray(values, dtype=np.float64) - low) / max(high - low, 1e-12)
    index = LEVELS_START + np.clip(np.nan_to_num(scaled, nan=0.0) * (LEVELS - 1), 0, LEVELS - 1).round()
    return np.where(np.isnan(values), WHITE, index).astype(np.uint8)


def palette_image(indices: np.ndarray, colormap: str = "viridis") -> Image.Image:
    """``[H, W]`` uint8 palette indices -> a palette image."""
    image = Image.fromarray(np.ascontiguousarray(indices, dtype=np.uint8), mode="P")
    image.putpalette(palette(colormap))
    return image


def nice_ticks(low: float, high: float, count: int = 6, integer: bool = False) -> np.ndarray:
    """Round tick values (steps of 1, 2 or 5 x 10^k; whole numbers if ``integer``) covering [low, high], about
    ``count`` of them."""
    raw = max(high - low, 1e-12) / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(s * magnitude for s in (1, 2, 5, 10) if s * magnitude >= raw)
    step = max(step, 1.0) if integer else step
    return np.arange(math.ceil(low / step) * step, high + step * 1e-6, step)


@dataclass(frozen=True)
class Axes:
    """A plot area ``box`` (left, top, right, bottom pixels) in an image of ``size`` showing ``xlim`` x ``ylim``."""

    size: tuple[int, int]
    box: tuple[int, int, int, int]
    xlim: tuple[float, float]
    ylim: tuple[float, float]

    def pixels(self, x, y):
        left, top, right, bottom = self.box
        px = left + (np.asarray(x, dtype=np.float64) - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * (right - left)
        py = bottom - (np.asarray(y, dtype=np.float64) - self.ylim[0]) / (self.ylim[1] - self.ylim[0]) * (bottom - top)
        return px, py


def draw_frame(axes: Axes, xticks: Sequence[tuple[float, str]], yticks: Sequence[tuple[float, str]], xlabel: str,
               ylabel: str, legend: Sequence[str] = (), colormap: str = "viridis",
               colorbar: Optional[tuple[Axes, Sequence[tuple[float, str]], str]] = None) -> Image.Image:
    """Axes box, grid, tick labels, axis labels, a legend of line colours and an optional colour bar's ticks and
    label (its axes, ticks, label) -> a palette image: drawn in RGB so the text is antialiased, then mapped onto
    the palette."""
    image = Image.new("RGB", axes.size, "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = axes.box
    text = font()
    for value, label in yticks:
        y = float(axes.pixels(axes.xlim[0], value)[1])
        draw.line([(left, y), (right, y)], fill=GRID_RGB)
        draw.text((left - 4, y), label, fill="black", font=text, anchor="rm")
    for value, label in xticks:
        x = float(axes.pixels(value, axes.ylim[0])[0])
        draw.line([(x, top), (x, bottom)], fill=GRID_RGB)
        draw.text((x, bottom + 4), label, fill="black", font=text, anchor="mt")
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text(((left + right) / 2, axes.size[1] - 3), xlabel, fill="black", font=text, anchor="md")
    _vertical_text(image, ylabel, 2, axes.box)
    for row, label in enumerate(legend):
        y = top + 9 + 14 * row
        draw.line([(left + 8, y), (left + 26, y)], fill=LINE_COLORS[row % len(LINE_COLORS)], width=2)
        draw.text((left + 30, y), label, fill="black", font=text, anchor="lm")
    if colorbar is not None:
        bar, ticks, label = colorbar
        right_edge = bar.box[2]
        for value, tick in ticks:
            y = float(bar.pixels(0.0, value)[1])
            draw.line([(right_edge, y), (right_edge + 3, y)], fill="black")
            draw.text((right_edge + 5, y), tick, fill="black", font=text, anchor="lm")
        _vertical_text(image, label, axes.size[0] - 16, bar.box)
    return image.quantize(palette=_palette_image(colormap), dither=Image.Dither.NONE)


def _vertical_text(image: Image.Image, label: str, x: int, box: tuple[int, int, int, int]) -> None:
    """``label`` rotated to read bottom-up, centred on the height of ``box``, its left edge at ``x``."""
    height = box[3] - box[1]
    strip = Image.new("RGB", (height, 14), "white")
    ImageDraw.Draw(strip).text((height / 2, 7), label, fill="black", font=font(), anchor="mm")
    image.paste(strip.rotate(90, expand=True), (x, box[1]))


class LogCurveChart:
    """Curves on a log10 y axis (decades labelled ``1e-k``), one colour per curve, the frame drawn once.

    The axes span whole decades and only grow (three decades of room below, as norms mostly shrink while
    training, one above), so most epochs reuse the frame and only draw their lines.
    """

    def __init__(self, labels: Sequence[str], xlabel: str, ylabel: str, size: tuple[int, int] = (400, 256)):
        self.labels, self.xlabel, self.ylabel, self.size = tuple(labels), xlabel, ylabel, size
        self.axes: Optional[Axes] = None
        self._frame: Optional[Image.Image] = None

    def draw(self, curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> Image.Image:
        """``(x, y)`` pairs of ``[T]`` arrays, y > 0 (zeros, NaN and inf are left out) -> palette image."""
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = [(np.asarray(x, dtype=np.float64), np.log10(np.asarray(y, dtype=np.float64))) for x, y in curves]
        finite = np.concatenate([y[np.isfinite(y)] for _, y in logs] + [np.zeros(0)])
        xs = np.concatenate([x for x, _ in logs] + [np.zeros(0)])
        low, high = (finite.min(), finite.max()) if finite.size else (-1.0, 0.0)
        x_low, x_high = (xs.min(), xs.max()) if xs.size else (0.0, 1.0)
        old = self.axes
        if old is None or low < old.ylim[0] or high > old.ylim[1] or x_low < old.xlim[0] or x_high > old.xlim[1]:
            ylim = (math.floor(low) - 3, math.ceil(high) + 1)
            xlim = (x_low - 0.5, x_high + 0.5)
            if old is not None:
                ylim = (min(ylim[0], old.ylim[0]), max(ylim[1], old.ylim[1]))
                xlim = (min(xlim[0], old.xlim[0]), max(xlim[1], old.xlim[1]))
            self.axes = Axes(self.size, (58, 8, self.size[0] - 10, self.size[1] - 38), xlim, ylim)
            decades = range(int(ylim[0]), int(ylim[1]) + 1, max(1, (int(ylim[1]) - int(ylim[0])) // 8 + 1))
            self._frame = draw_frame(self.axes, [(t, f"{t:g}") for t in nice_ticks(*xlim, integer=True)],
                                     [(d, f"1e{d}") for d in decades], self.xlabel, self.ylabel, self.labels)
        image = self._frame.copy()
        draw = ImageDraw.Draw(image)
        for index, (x, y) in enumerate(logs):
            px, py = self.axes.pixels(x, y)
            colour = LINE + index % len(LINE_COLORS)
            for run in _finite_runs(py):
                if run.size > 1:
                    draw.line(list(zip(px[run].tolist(), py[run].tolist())), fill=colour, width=2)
                else:  # a lone value (a one-step curve, or one between gaps): a dot
                    x0, y0 = float(px[run[0]]), float(py[run[0]])
                    draw.rectangle([x0 - 1, y0 - 1, x0 + 1, y0 + 1], fill=colour)
        return image


def _finite_runs(values: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the runs of finite values (a line breaks where a value is missing)."""
    finite = np.isfinite(values)
    breaks = np.flatnonzero(np.diff(finite.astype(np.int8)))
    return [run for run in np.split(np.arange(values.size), breaks + 1) if finite[run[0]]] if values.size else []


def heatmap(values: np.ndarray, x: np.ndarray, row_labels: Sequence[str], xlabel: str, ylabel: str,
            colorbar_label: str, size: tuple[int, int] = (440, 288), colormap: str = "viridis") -> Image.Image:
    """``[rows, columns]`` values (NaN: white) as coloured cells, row 0 at the bottom, column j at ``x[j]``,
    with a colour bar -> palette image."""
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    high = high if high > low else low + 1.0
    rows = values.shape[0]
    axes = Axes(size, (62, 8, size[0] - 78, size[1] - 38), (x[0] - 0.5, x[-1] + 0.5), (-0.5, rows - 0.5))
    left, top, right, bottom = axes.box
    bar = Axes(size, (right + 10, top, right + 22, bottom), (0.0, 1.0), (low, high))
    picks = np.unique(np.linspace(0, rows - 1, min(rows, 6)).round().astype(int))
    frame = draw_frame(axes, [(t, f"{t:g}") for t in nice_ticks(x[0], x[-1], integer=True)],
                       [(float(r), row_labels[r]) for r in picks], xlabel, ylabel, colormap=colormap,
                       colorbar=(bar, [(t, f"{t:g}") for t in nice_ticks(low, high, 5)], colorbar_label))
    cells = palette_image(levels(values[::-1], low, high), colormap)  # row 0 at the bottom
    frame.paste(cells.resize((right - left - 1, bottom - top - 1), Image.Resampling.NEAREST), (left + 1, top + 1))
    ramp = np.linspace(LEVELS_START + LEVELS - 1, LEVELS_START, bottom - top).round().astype(np.uint8)
    frame.paste(palette_image(np.repeat(ramp[:, None], bar.box[2] - bar.box[0], axis=1), colormap), bar.box[:2])
    return frame
