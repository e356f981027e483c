"""The callbacks' Pillow charts: values land on the right pixels in the right colours."""

import numpy as np

from src.callbacks.charts import LEVELS, LEVELS_START, LINE, WHITE, LogCurveChart, heatmap, levels


def test_levels_map_the_range_onto_the_colormap_and_nan_to_white():
    out = levels(np.array([0.0, 0.5, 1.0, np.nan]), 0.0, 1.0)
    assert out.tolist() == [LEVELS_START, LEVELS_START + round((LEVELS - 1) / 2), LEVELS_START + LEVELS - 1, WHITE]
    assert levels(np.array([-5.0, 9.0]), 0.0, 1.0).tolist() == [LEVELS_START, LEVELS_START + LEVELS - 1]


def test_log_curve_lands_on_its_decade_and_breaks_at_missing_values():
    chart = LogCurveChart(["a"], "t", "norm")
    x = np.arange(40)
    y = np.full(40, 1e-2)
    y[15:25] = np.nan
    image = np.asarray(chart.draw([(x, y)]))
    _, row = chart.axes.pixels(0, -2)
    line_rows, line_cols = np.nonzero(image == LINE)
    plot_cols = line_cols[line_cols > chart.axes.box[0] + 30]  # right of the legend swatch
    assert abs(np.median(line_rows[line_cols > chart.axes.box[0] + 30]) - row) <= 1
    gap_left, gap_right = (float(chart.axes.pixels(v, 0)[0]) for v in (15.5, 23.5))
    assert not np.any((plot_cols > gap_left) & (plot_cols < gap_right))
    assert np.any(plot_cols < gap_left) and np.any(plot_cols > gap_right)


def test_log_curve_chart_keeps_its_frame_while_curves_fit():
    chart = LogCurveChart(["first", "now"], "t", "norm")
    chart.draw([(np.arange(10), np.full(10, 1e-2))])
    axes = chart.axes
    chart.draw([(np.arange(10), np.full(10, 1e-4)), (np.arange(10), np.full(10, 1e-3))])
    assert chart.axes is axes  # within the three decades of room below
    chart.draw([(np.arange(20), np.full(20, 1e-9))])
    assert chart.axes.ylim[0] <= -12 and chart.axes.xlim[1] >= 19  # grown, never shrunk
    assert chart.axes.ylim[1] >= axes.ylim[1]


def test_heatmap_cells_take_their_value_colour_row_zero_at_the_bottom():
    values = np.array([[0.0, 1.0], [np.nan, 0.5]])
    image = np.asarray(heatmap(values, np.array([0, 1]), ["0", "10"], "t", "step", "value"))
    left, top, right, bottom = 62, 8, 440 - 78, 288 - 38
    def cell(row, column):  # centre pixel of cell (row, column); row 0 is the bottom one
        x = left + (column + 0.5) * (right - left) / 2
        y = bottom - (row + 0.5) * (bottom - top) / 2
        return image[int(y), int(x)]
    assert cell(0, 0) == LEVELS_START and cell(0, 1) == LEVELS_START + LEVELS - 1
    assert cell(1, 0) == WHITE
    assert abs(int(cell(1, 1)) - (LEVELS_START + (LEVELS - 1) / 2)) <= 1


def test_degenerate_inputs_still_draw():
    chart = LogCurveChart(["a", "b"], "t", "norm")
    image = chart.draw([(np.arange(3), np.full(3, np.nan)), (np.arange(1), np.array([0.5]))])  # nothing, a point
    assert image.size == (400, 256)
    x, y = (round(float(v)) for v in chart.axes.pixels(0, np.log10(0.5)))
    assert (np.asarray(image)[y - 1:y + 2, x - 1:x + 2] == LINE + 1).any()  # the lone value shows as a dot
    assert chart.draw([(np.arange(5), np.zeros(5))]).size == (400, 256)  # log10(0) = -inf: left out
    assert heatmap(np.array([[np.nan]]), np.array([0]), ["0"], "t", "step", "value").size == (440, 288)
    assert heatmap(np.array([[2.0, 2.0]]), np.array([-1, 0]), ["5"], "t", "step", "value").size == (440, 288)


def test_time_step_ticks_are_whole_numbers():
    from src.callbacks.charts import nice_ticks

    assert nice_ticks(-0.5, 0.5, integer=True).tolist() == [0.0]
    assert nice_ticks(-49.5, 0.5, integer=True).tolist() == [-40.0, -30.0, -20.0, -10.0, 0.0]
    np.testing.assert_allclose(nice_ticks(0.0, 1.0), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
