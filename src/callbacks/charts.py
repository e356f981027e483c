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
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0)  # +-inf: the end colours
    index = LEVELS_START + np.clip(scaled * (LEVELS - 1), 0, LEVELS - 1).round()
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
            px, py = self.axes.pixels(x, np.where(np.isnan(y), np.nan, np.clip(y, low, high)))  # +-inf: on the edge
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


class RasterChart:
    """Panels of ``[rows, columns]`` values, stacked on one x range (the longest), with row and column ticks, each
    panel's name as its title and one colour bar on a fixed ``value_range``. The frame (text, ticks) is drawn once
    per set of panel shapes and kept; a drawing pastes the cells (the same validation sequence every epoch reuses
    the frame).

    Rows get a whole number of pixels each where that fits within the ``panel_height`` bounds; columns are
    stretched (or, for sequences longer than the plot is wide, sampled) to the plot's width.
    """

    LEFT, RIGHT_MARGIN, TITLE_SPACE, AXIS_SPACE = 56, 92, 26, 40

    def __init__(self, value_range: tuple[float, float], xlabel: str, ylabel: str, colorbar_label: str,
                 colormap: str = "RdBu_r", width: int = 640, panel_height: tuple[int, int] = (120, 240)):
        self.value_range, self.xlabel, self.ylabel, self.colorbar_label = value_range, xlabel, ylabel, colorbar_label
        self.colormap, self.width, self.panel_height = colormap, width, panel_height
        self._key: Optional[tuple] = None
        self._frame: Optional[Image.Image] = None
        self._boxes: list[tuple[int, int, int, int]] = []

    def draw(self, panels: dict[str, np.ndarray]) -> Image.Image:
        columns = max((v.shape[1] for v in panels.values()), default=1)
        key = (columns, tuple((name, v.shape[0]) for name, v in panels.items()))
        if key != self._key:
            self._frame, self._boxes = self._draw_frame(panels, columns)
            self._key = key
        frame = self._frame.copy()
        for (x0, y0, x1, y1), values in zip(self._boxes, panels.values()):
            padded = np.full((values.shape[0], columns), np.nan)
            padded[:, :values.shape[1]] = values
            cells = palette_image(levels(padded[::-1], *self.value_range), self.colormap)  # row 0 at the bottom
            frame.paste(cells.resize((x1 - x0 - 1, y1 - y0 - 1), Image.Resampling.NEAREST), (x0 + 1, y0 + 1))
        return frame

    def _draw_frame(self, panels: dict[str, np.ndarray], columns: int):
        low, high = self.panel_height
        heights = [min(max(v.shape[0] * max(1, low // max(v.shape[0], 1)), low), high) for v in panels.values()]
        size = (self.width, sum(h + self.TITLE_SPACE for h in heights) + self.AXIS_SPACE)
        image = Image.new("RGB", size, "white")
        boxes, top = [], 0
        right = self.width - self.RIGHT_MARGIN
        for index, ((name, values), height) in enumerate(zip(panels.items(), heights)):
            box = (self.LEFT, top + self.TITLE_SPACE, right, top + self.TITLE_SPACE + height)
            axes = Axes(size, box, (-0.5, columns - 0.5), (-0.5, values.shape[0] - 0.5))
            last = index == len(heights) - 1
            xticks = [(t, f"{t:g}") for t in nice_ticks(0, columns - 1, integer=True)] if last else []
            yticks = [(t, f"{t:g}") for t in nice_ticks(0, values.shape[0] - 1, 4, integer=True)]
            draw_axes(image, axes, xticks, yticks, self.xlabel if last else "", self.ylabel, title=name, grid=False)
            boxes.append(box)
            top = box[3]
        bar = Axes(size, (right + 12, boxes[0][1], right + 26, boxes[-1][3]), (0.0, 1.0), self.value_range)
        draw_colorbar(image, bar, [(t, f"{t:g}") for t in nice_ticks(*self.value_range, 4)], self.colorbar_label)
        frame = image.quantize(palette=_palette_image(self.colormap), dither=Image.Dither.NONE)
        frame.paste(colour_ramp(bar, self.colormap), (bar.box[0] + 1, bar.box[1] + 1))
        return frame, boxes


def raster_panels(panels: dict[str, np.ndarray], value_range: tuple[float, float], xlabel: str, ylabel: str,
                  colorbar_label: str, colormap: str = "RdBu_r") -> Image.Image:
    """One ``RasterChart`` drawing (see there)."""
    return RasterChart(value_range, xlabel, ylabel, colorbar_label, colormap).draw(panels)


class ScatterChart:
    """One square panel per title side by side, points in [0, 1]^2 (one colour per set, named in the legend), each
    panel with the diagonal x + y = 1 (no point can lie beyond it). The frame is drawn once per set of titles and
    labels; a drawing stamps the points (3 x 3 pixels) into a copy."""

    LEFT, GAP, TOP, BOTTOM_SPACE = 50, 22, 24, 44

    def __init__(self, xlabel: str, ylabel: str, panel: int = 140):
        self.xlabel, self.ylabel, self.panel = xlabel, ylabel, panel
        self._key: Optional[tuple] = None
        self._frame: Optional[Image.Image] = None
        self._axes: list[Axes] = []

    def draw(self, panels: dict[str, list[tuple[np.ndarray, np.ndarray]]], labels: Sequence[str]) -> Image.Image:
        key = (tuple(panels), tuple(labels))
        if key != self._key:
            self._frame, self._axes = self._draw_frame(list(panels), list(labels))
            self._key = key
        pixels = np.array(self._frame)
        height, width = pixels.shape
        offsets = np.array([-1, 0, 1])
        for axes, sets in zip(self._axes, panels.values()):
            for index, (xs, ys) in enumerate(sets):
                px, py = axes.pixels(np.clip(xs, 0, 1), np.clip(ys, 0, 1))
                rows = np.clip(np.round(py).astype(int)[:, None, None] + offsets[None, :, None], 0, height - 1)
                cols = np.clip(np.round(px).astype(int)[:, None, None] + offsets[None, None, :], 0, width - 1)
                pixels[rows, cols] = LINE + index % len(LINE_COLORS)  # a 3 x 3 square per point
        image = Image.fromarray(pixels, mode="P")
        image.putpalette(palette("viridis"))
        return image

    def _draw_frame(self, titles: list[str], labels: list[str]):
        panel = self.panel
        legend_space = 16 + 14 * ((len(labels) + 2) // 3)
        size = (self.LEFT + len(titles) * (panel + self.GAP), self.TOP + panel + self.BOTTOM_SPACE + legend_space)
        image = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(image)
        ticks = [(t, f"{t:g}") for t in (0.0, 0.5, 1.0)]
        all_axes = []
        for index, title in enumerate(titles):
            x0 = self.LEFT + index * (panel + self.GAP)
            axes = Axes(size, (x0, self.TOP, x0 + panel, self.TOP + panel), (-0.02, 1.02), (-0.02, 1.02))
            draw_axes(image, axes, ticks, ticks if index == 0 else [], self.xlabel,
                      self.ylabel if index == 0 else "", title=title)
            draw.line([tuple(map(float, axes.pixels(0, 1))), tuple(map(float, axes.pixels(1, 0)))],
                      fill=(150, 150, 150))
            all_axes.append(axes)
        for row, label in enumerate(labels):
            x = self.LEFT + (row % 3) * 180
            y = self.TOP + panel + self.BOTTOM_SPACE + 6 + 14 * (row // 3)
            draw.rectangle([x, y - 3, x + 6, y + 3], fill=LINE_COLORS[row % len(LINE_COLORS)])
            draw.text((x + 12, y), label, fill="black", font=font(), anchor="lm")
        return image.quantize(palette=_palette_image("viridis"), dither=Image.Dither.NONE), all_axes


def scatter_panels(panels: dict[str, list[tuple[np.ndarray, np.ndarray]]], labels: Sequence[str], xlabel: str,
                   ylabel: str) -> Image.Image:
    """One ``ScatterChart`` drawing (see there)."""
    return ScatterChart(xlabel, ylabel).draw(panels, labels)
