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
               colorbar: Optional[tuple[Axes, Sequence[tuple[float, str]], str]] = None, title: str = "",
               legend_colors: Sequence[tuple[int, int, int]] = LINE_COLORS, grid: bool = True) -> Image.Image:
    """Axes box, grid, tick labels, axis labels, a title above the box, a legend of line colours and an optional
    colour bar's ticks and label (its axes, ticks, label) -> a palette image: drawn in RGB so the text is
    antialiased, then mapped onto the palette."""
    image = Image.new("RGB", axes.size, "white")
    draw_axes(image, axes, xticks, yticks, xlabel, ylabel, legend, colorbar, title, legend_colors, grid)
    return image.quantize(palette=_palette_image(colormap), dither=Image.Dither.NONE)


def draw_axes(image: Image.Image, axes: Axes, xticks: Sequence[tuple[float, str]],
              yticks: Sequence[tuple[float, str]], xlabel: str, ylabel: str, legend: Sequence[str] = (),
              colorbar: Optional[tuple[Axes, Sequence[tuple[float, str]], str]] = None, title: str = "",
              legend_colors: Sequence[tuple[int, int, int]] = LINE_COLORS, grid: bool = True,
              ylabel_x: int = 2) -> None:
    """``draw_frame``'s drawing, onto an RGB ``image`` that may hold several axes (their labels sit within the
    rectangle from ``ylabel_x`` to the right of the box, and from the title to the x label below the box)."""
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = axes.box
    text = font()
    for value, label in yticks:
        y = float(axes.pixels(axes.xlim[0], value)[1])
        if grid:
            draw.line([(left, y), (right, y)], fill=GRID_RGB)
        draw.line([(left - 3, y), (left, y)], fill="black")
        draw.text((left - 5, y), label, fill="black", font=text, anchor="rm")
    for value, label in xticks:
        x = float(axes.pixels(value, axes.ylim[0])[0])
        if grid:
            draw.line([(x, top), (x, bottom)], fill=GRID_RGB)
        draw.line([(x, bottom), (x, bottom + 3)], fill="black")
        draw.text((x, bottom + 5), label, fill="black", font=text, anchor="mt")
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text(((left + right) / 2, bottom + 20), xlabel, fill="black", font=text, anchor="mt")
    if title:
        draw.text(((left + right) / 2, top - 6), title, fill="black", font=font(12), anchor="md")
    if ylabel:
        _vertical_text(image, ylabel, ylabel_x, axes.box)
    for row, label in enumerate(legend):
        y = top + 9 + 14 * row
        draw.line([(left + 8, y), (left + 26, y)], fill=legend_colors[row % len(legend_colors)], width=3)
        draw.text((left + 30, y), label, fill="black", font=text, anchor="lm")
    if colorbar is not None:
        draw_colorbar(image, *colorbar)


def draw_colorbar(image: Image.Image, bar: Axes, ticks: Sequence[tuple[float, str]], label: str) -> None:
    """A colour bar's outline, ticks and label (its cells are pasted later: ``colour_ramp``)."""
    draw = ImageDraw.Draw(image)
    right_edge = bar.box[2]
    draw.rectangle(bar.box, outline="black")
    for value, tick in ticks:
        y = float(bar.pixels(0.0, value)[1])
        draw.line([(right_edge, y), (right_edge + 3, y)], fill="black")
        draw.text((right_edge + 5, y), tick, fill="black", font=font(), anchor="lm")
    _vertical_text(image, label, right_edge + 34, bar.box)


def _vertical_text(image: Image.Image, label: str, x: int, box: tuple[int, int, int, int]) -> None:
    """``label`` rotated to read bottom-up, centred on the height of ``box``, its left edge at ``x``."""
    height = box[3] - box[1]
    strip = Image.new("RGB", (height, 14), "white")
    ImageDraw.Draw(strip).text((height / 2, 7), label, fill="black", font=font(), anchor="mm")
    image.paste(strip.rotate(90, expand=True), (x, box[1]))


class LineChart:
    """Curves on fixed axes (the same range in every epoch and every run, so pictures compare side by side), one
    colour per curve, the frame drawn once. Values outside the y range are drawn on its edge."""

    def __init__(self, labels: Sequence[str], xlabel: str, ylabel: str, xlim: tuple[float, float],
                 ylim: tuple[float, float], title: str = "", size: tuple[int, int] = (560, 340),
                 ytick_step: float = 2.0):
        self.labels, self.size = tuple(labels), size
        self.axes = Axes(size, (62, 30, size[0] - 14, size[1] - 44), xlim, ylim)
        yticks = np.arange(math.ceil(ylim[0] / ytick_step) * ytick_step, ylim[1] + 1e-9, ytick_step)
        self._frame = draw_frame(self.axes, [(t, f"{t:g}") for t in nice_ticks(*xlim, integer=True)],
                                 [(t, f"{t:g}") for t in yticks], xlabel, ylabel, self.labels, title=title)

    def draw(self, curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> Image.Image:
        """``(x, y)`` pairs of ``[T]`` arrays (NaN and inf break the line) -> palette image."""
        image = self._frame.copy()
        draw = ImageDraw.Draw(image)
        low, high = self.axes.ylim
        for index, (x, y) in enumerate(curves):
            y = np.asarray(y, dtype=np.float64)
            px, py = self.axes.pixels(x, np.where(np.isfinite(y), np.clip(y, low, high), np.nan))
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
            colorbar_label: str, size: tuple[int, int] = (560, 340), colormap: str = "viridis",
            value_range: Optional[tuple[float, float]] = None, title: str = "") -> Image.Image:
    """``[rows, columns]`` values (NaN: white) as coloured cells, row 0 at the bottom, column j at ``x[j]``,
    with a colour bar -> palette image. ``value_range``: the colour bar's fixed ends (values beyond take the end
    colours); None: the values' own range."""
    finite = values[np.isfinite(values)]
    if value_range is not None:
        low, high = value_range
    else:
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        high = high if high > low else low + 1.0
    rows = values.shape[0]
    axes = Axes(size, (62, 30, size[0] - 92, size[1] - 44), (x[0] - 0.5, x[-1] + 0.5), (-0.5, rows - 0.5))
    left, top, right, bottom = axes.box
    bar = Axes(size, (right + 12, top, right + 26, bottom), (0.0, 1.0), (low, high))
    picks = np.unique(np.linspace(0, rows - 1, min(rows, 6)).round().astype(int))
    frame = draw_frame(axes, [(t, f"{t:g}") for t in nice_ticks(x[0], x[-1], integer=True)],
                       [(float(r), row_labels[r]) for r in picks], xlabel, ylabel, colormap=colormap,
                       colorbar=(bar, [(t, f"{t:g}") for t in nice_ticks(low, high, 5)], colorbar_label),
                       title=title, grid=False)
    cells = palette_image(levels(values[::-1], low, high), colormap)  # row 0 at the bottom
    frame.paste(cells.resize((right - left - 1, bottom - top - 1), Image.Resampling.NEAREST), (left + 1, top + 1))
    frame.paste(colour_ramp(bar, colormap), (bar.box[0] + 1, bar.box[1] + 1))
    return frame


def colour_ramp(bar: Axes, colormap: str) -> Image.Image:
    """The colour bar's cells inside its outline: the colormap from the top of ``bar.box`` (high) to its bottom."""
    left, top, right, bottom = bar.box
    ramp = np.linspace(LEVELS_START + LEVELS - 1, LEVELS_START, bottom - top - 1).round().astype(np.uint8)
    return palette_image(np.repeat(ramp[:, None], right - left - 1, axis=1), colormap)


def raster_panels(panels: dict[str, np.ndarray], value_range: tuple[float, float], xlabel: str, ylabel: str,
                  colorbar_label: str, colormap: str = "RdBu_r", width: int = 640,
                  panel_height: tuple[int, int] = (120, 240)) -> Image.Image:
    """name -> ``[rows, columns]`` values, one panel each, stacked on one x range (the longest), with row and
    column ticks, the name as the panel's title and one colour bar for all -> palette image.

    Rows get a whole number of pixels each where that fits within the ``panel_height`` bounds; columns are
    stretched (or, for sequences longer than the plot is wide, sampled) to the plot's width.
    """
    left, right_margin, title_space, axis_space = 56, 92, 26, 40
    columns = max((v.shape[1] for v in panels.values()), default=1)
    heights = [min(max(v.shape[0] * max(1, panel_height[0] // max(v.shape[0], 1)), panel_height[0]),
                   panel_height[1]) for v in panels.values()]
    size = (width, sum(h + title_space for h in heights) + axis_space)
    image = Image.new("RGB", size, "white")
    boxes, top = [], 0
    for index, ((name, values), height) in enumerate(zip(panels.items(), heights)):
        box = (left, top + title_space, width - right_margin, top + title_space + height)
        axes = Axes(size, box, (-0.5, columns - 0.5), (-0.5, values.shape[0] - 0.5))
        last = index == len(heights) - 1
        xticks = [(t, f"{t:g}") for t in nice_ticks(0, columns - 1, integer=True)] if last else []
        yticks = [(t, f"{t:g}") for t in nice_ticks(0, values.shape[0] - 1, 4, integer=True)]
        draw_axes(image, axes, xticks, yticks, xlabel if last else "", ylabel, title=name, grid=False)
        boxes.append((box, values))
        top = box[3]
    bar = Axes(size, (width - right_margin + 12, boxes[0][0][1], width - right_margin + 26, boxes[-1][0][3]),
               (0.0, 1.0), value_range)
    draw_colorbar(image, bar, [(t, f"{t:g}") for t in nice_ticks(*value_range, 4)], colorbar_label)
    frame = image.quantize(palette=_palette_image(colormap), dither=Image.Dither.NONE)
    for (x0, y0, x1, y1), values in boxes:
        padded = np.full((values.shape[0], columns), np.nan)
        padded[:, :values.shape[1]] = values
        cells = palette_image(levels(padded[::-1], *value_range), colormap)  # row 0 at the bottom
        frame.paste(cells.resize((x1 - x0 - 1, y1 - y0 - 1), Image.Resampling.NEAREST), (x0 + 1, y0 + 1))
    frame.paste(colour_ramp(bar, colormap), (bar.box[0] + 1, bar.box[1] + 1))
    return frame


def scatter_panels(panels: dict[str, list[tuple[np.ndarray, np.ndarray]]], labels: Sequence[str], xlabel: str,
                   ylabel: str, panel: int = 170) -> Image.Image:
    """title -> ``(x [N], y [N])`` point sets in [0, 1]^2, one colour per set (``labels`` in the legend), one
    square panel per title side by side, each with the diagonal x + y = 1 (beyond it no point can lie)."""
    left, gap, top, bottom_space, legend_space = 50, 26, 24, 44, 16 + 14 * ((len(labels) + 2) // 3)
    size = (left + len(panels) * (panel + gap), top + panel + bottom_space + legend_space)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    ticks = [(t, f"{t:g}") for t in (0.0, 0.5, 1.0)]
    for index, (title, sets) in enumerate(panels.items()):
        x0 = left + index * (panel + gap)
        axes = Axes(size, (x0, top, x0 + panel, top + panel), (-0.02, 1.02), (-0.02, 1.02))
        draw_axes(image, axes, ticks, ticks if index == 0 else [], xlabel, ylabel if index == 0 else "",
                  title=title, ylabel_x=2)
        draw.line([tuple(map(float, axes.pixels(0, 1))), tuple(map(float, axes.pixels(1, 0)))], fill=(150, 150, 150))
        for colour, (xs, ys) in zip(LINE_COLORS * (1 + len(sets) // len(LINE_COLORS)), sets):
            px, py = axes.pixels(np.clip(xs, 0, 1), np.clip(ys, 0, 1))
            for u, v in zip(px.tolist(), py.tolist()):
                draw.ellipse([u - 2, v - 2, u + 2, v + 2], fill=colour)
    for row, label in enumerate(labels):
        x = left + (row % 3) * 190
        y = top + panel + bottom_space + 6 + 14 * (row // 3)
        draw.ellipse([x, y - 3, x + 6, y + 3], fill=LINE_COLORS[row % len(LINE_COLORS)])
        draw.text((x + 12, y), label, fill="black", font=font(), anchor="lm")
    return image.quantize(palette=_palette_image("viridis"), dither=Image.Dither.NONE)
