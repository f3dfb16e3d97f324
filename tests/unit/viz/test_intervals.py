"""The verdicts' interval figure: one row per claim, in order, dot at the estimate, whisker
from low to high, coloured by verdict."""

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_hex

from cirlib.verdict import Verdict
from cirlib.viz.intervals import VERDICT_COLOURS, plot_intervals

matplotlib.use("Agg")


def _v(a, b, est, low, high, verdict):
    return Verdict(a, b, "R@1", est, low, high, verdict, (0, 1, 2), 600)


def test_one_row_per_claim_with_its_interval():
    verdicts = [
        _v("x", "y", 2.5, 1.2, 3.8, "supported"),
        _v("x", "z", 0.3, -0.9, 1.4, "no difference"),
        _v("y", "z", -2.0, -3.1, -0.8, "contradicted"),
        _v("z", "w", 0.1, -0.2, 0.4, "no difference"),
    ]
    fig = plot_intervals(verdicts, labels=["first", "second", "third", "fourth"])
    (ax,) = fig.axes
    ticks = dict(zip([t.get_text() for t in ax.get_yticklabels()], ax.get_yticks()))
    assert list(ticks) == ["first", "second", "third", "fourth"]
    assert ticks["first"] > ticks["second"] > ticks["third"] > ticks["fourth"]  # top to bottom
    # whiskers: the two-point lines; dots: the one-point markers (legend proxies are empty)
    whiskers = [
        ln for ln in ax.lines if len(ln.get_xdata()) == 2 and ln.get_ydata()[0] == ln.get_ydata()[1]
    ]
    dots = [ln for ln in ax.lines if len(ln.get_xdata()) == 1]
    assert len(whiskers) == len(dots) == 4
    for v, y, w, d in zip(verdicts, ticks.values(), whiskers, dots):
        np.testing.assert_allclose(w.get_xdata(), [v.low, v.high])
        assert w.get_ydata()[0] == y and d.get_ydata()[0] == y
        assert d.get_xdata()[0] == v.estimate
        assert to_hex(d.get_color()) == to_hex(VERDICT_COLOURS[v.verdict])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(legend) >= {"supported", "contradicted", "no difference"}
    matplotlib.pyplot.close(fig)


def test_default_labels_and_errors():
    fig = plot_intervals([_v("mapnet", "cala", 1.0, -0.5, 2.5, "no difference")])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["mapnet > cala · R@1"]
    matplotlib.pyplot.close(fig)
    long = "dqe > combiner · R@1 (edit_type: colour) vs (edit_type: size, add, remove, move)"
    fig = plot_intervals([_v("a", "b", 1.0, -0.5, 2.5, "no difference")], labels=[long])
    (text,) = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "\n" in text and text.replace("\n", " ") == long  # wrapped, nothing lost
    matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match="no verdicts"):
        plot_intervals([])
    with pytest.raises(ValueError, match="2 labels for 1"):
        plot_intervals([_v("a", "b", 0, 0, 0, "no difference")], labels=["x", "y"])


def test_fragile_verdicts_are_drawn_open_and_dashed_with_their_chance_written():
    verdicts = [
        _v("x", "y", 2.5, 1.2, 3.8, "supported"),
        _v("x", "z", 2.0, 0.1, 3.9, "supported"),
    ]
    fig = plot_intervals(verdicts, holds=[0.97, 0.55])
    (ax,) = fig.axes
    whiskers = [
        ln for ln in ax.lines if len(ln.get_xdata()) == 2 and ln.get_ydata()[0] == ln.get_ydata()[1]
    ]
    dots = [ln for ln in ax.lines if len(ln.get_xdata()) == 1]
    assert [w.get_linestyle() for w in whiskers] == ["-", "--"]
    assert to_hex(dots[0].get_markerfacecolor()) == to_hex(VERDICT_COLOURS["supported"])
    assert to_hex(dots[1].get_markerfacecolor()) == "#ffffff"
    assert [t.get_text() for t in ax.texts] == ["97%", "55%"]
    assert any("fragile" in t.get_text() for t in ax.get_legend().get_texts())
    matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match="1 values of holds for 2"):
        plot_intervals(verdicts, holds=[0.5])
