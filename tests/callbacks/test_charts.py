"""The callbacks' Pillow charts: values land on the right pixels in the right colours, on fixed scales."""

import numpy as np

from src.callbacks.charts import (
    LEVELS,
    LEVELS_START,
    LINE,
    LINE_COLORS,
    WHITE,
    LineChart,
    heatmap,
    levels,
    nice_ticks,
    raster_panels,
    scatter_panels,
)


def test_levels_map_the_range_onto_the_colormap_and_nan_to_white():
    out = levels(np.array([0.0, 0.5, 1.0, np.nan]), 0.0, 1.0)
    assert out.tolist() == [LEVELS_START, LEVELS_START + round((LEVELS - 1) / 2), LEVELS_START + LEVELS - 1, WHITE]
    assert levels(np.array([-5.0, 9.0]), 0.0, 1.0).tolist() == [LEVELS_START, LEVELS_START + LEVELS - 1]
    # A norm that underflowed to 0 has log10 -inf: the floor colour, not the white of "no sequence here".
    assert levels(np.array([-np.inf, np.inf]), 0.0, 1.0).tolist() == [LEVELS_START, LEVELS_START + LEVELS - 1]


def line_rows(chart: LineChart, image, colour: int = LINE) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a curve's pixels right of the legend swatches."""
    rows, cols = np.nonzero(np.asarray(image) == colour)
    keep = cols > chart.axes.box[0] + 40
    return rows[keep], cols[keep]


def test_line_chart_draws_on_fixed_axes_clips_at_the_edge_and_breaks_at_missing_values():
    chart = LineChart(["a", "b"], "t", "log10", (-39.5, 0.5), (-12.0, 4.0))
    x = np.arange(-39, 1)
    y = np.full(40, -2.0)
    y[15:25] = np.nan
    image = chart.draw([(x, y), (x, np.full(40, -30.0))])  # the second far below the range: on its floor
    rows, cols = line_rows(chart, image)
    assert abs(np.median(rows) - chart.axes.pixels(0, -2.0)[1]) <= 1
    gap_left, gap_right = (float(chart.axes.pixels(v, 0)[0]) for v in (-23.5, -15.5))
    assert not np.any((cols > gap_left) & (cols < gap_right))
    assert np.any(cols < gap_left) and np.any(cols > gap_right)
    floor_rows, _ = line_rows(chart, image, LINE + 1)
    assert abs(np.median(floor_rows) - chart.axes.pixels(0, -12.0)[1]) <= 1
    assert chart.axes.ylim == (-12.0, 4.0) and chart.draw([(x, y * 3)]).size == chart.size  # the frame never moves


def test_heatmap_cells_take_their_value_colour_on_a_fixed_range_row_zero_at_the_bottom():
    values = np.array([[-12.0, 4.0], [np.nan, -4.0]])
    image = np.asarray(heatmap(values, np.array([0, 1]), ["0", "10"], "t", "step", "value", value_range=(-12, 4)))
    left, top, right, bottom = 62, 30, 560 - 92, 340 - 44

    def cell(row, column):  # centre pixel of cell (row, column); row 0 is the bottom one
        return image[int(bottom - (row + 0.5) * (bottom - top) / 2), int(left + (column + 0.5) * (right - left) / 2)]

    assert cell(0, 0) == LEVELS_START and cell(0, 1) == LEVELS_START + LEVELS - 1
    assert cell(1, 0) == WHITE
    assert abs(int(cell(1, 1)) - (LEVELS_START + (LEVELS - 1) / 2)) <= 1  # -4 is the middle of [-12, 4]
    # The same value takes the same colour in another picture whose values span less: fixed, not per run.
    other = np.asarray(heatmap(np.array([[-4.0, -3.0]]), np.array([0, 1]), ["0"], "t", "step", "v",
                               value_range=(-12, 4)))
    assert abs(int(other[(top + bottom) // 2, left + (right - left) // 4]) - (LEVELS_START + (LEVELS - 1) / 2)) <= 1


def test_raster_panels_stack_one_panel_per_layer_on_one_colour_scale():
    first = np.array([[-1.0, 1.0, 0.0]])  # one unit, three steps
    second = np.full((2, 2), 1.0)  # two units, a shorter sequence: white where it has no step
    image = raster_panels({"lstm_l0": first, "lstm_l1": second}, (-1.0, 1.0), "time step", "unit", "h")
    pixels = np.asarray(image)
    assert image.size[0] == 640 and image.size[1] > 2 * 120  # two panels of at least 120 pixels each
    left, right = 56, 640 - 92
    column = [int(left + (c + 0.5) * (right - left) / 3) for c in range(3)]
    top_panel, bottom_panel = pixels[26 + 60], pixels[image.size[1] - 40 - 60]  # a row through each panel
    assert [top_panel[c] for c in column] == [LEVELS_START, LEVELS_START + LEVELS - 1,
                                              LEVELS_START + round((LEVELS - 1) / 2)]
    assert [bottom_panel[c] for c in column] == [LEVELS_START + LEVELS - 1] * 2 + [WHITE]  # no third step: white


def test_scatter_panels_put_each_unit_at_its_left_and_right_shares():
    image = scatter_panels({"forget": [(np.array([0.0]), np.array([1.0]))]}, ["lstm_l0"], "left", "right")
    rgb = np.asarray(image.convert("RGB"))
    left, top, size = 50, 24, 140
    x, y = left + 0.02 / 1.04 * size, top + 0.02 / 1.04 * size  # (0, 1): the top-left corner of the panel
    patch = rgb[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3].reshape(-1, 3)
    assert any(tuple(p) == LINE_COLORS[0] for p in patch)


def test_degenerate_inputs_still_draw():
    chart = LineChart(["a", "b"], "t", "v", (-0.5, 2.5), (-12.0, 4.0))
    image = chart.draw([(np.arange(3), np.full(3, np.nan)), (np.arange(1), np.array([-1.0]))])  # nothing, a point
    x, y = (round(float(v)) for v in chart.axes.pixels(0, -1.0))
    assert (np.asarray(image)[y - 1:y + 2, x - 1:x + 2] == LINE + 1).any()  # the lone value shows as a dot
    assert heatmap(np.array([[np.nan]]), np.array([0]), ["0"], "t", "step", "value").size == (560, 340)
    assert heatmap(np.array([[2.0, 2.0]]), np.array([-1, 0]), ["5"], "t", "step", "value").size == (560, 340)


def test_time_step_ticks_are_whole_numbers():
    assert nice_ticks(-0.5, 0.5, integer=True).tolist() == [0.0]
    assert nice_ticks(-49.5, 0.5, integer=True).tolist() == [-40.0, -30.0, -20.0, -10.0, 0.0]
    np.testing.assert_allclose(nice_ticks(0.0, 1.0), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
