"""plotting.save draws figures cheaply and the image stays the same.

``save(..., lighten=True)`` (the default) replaces the unlabelled minor ticks of log axes by one
artist per axis side (:func:`nuinfer.plotting.bake_minor_ticks`) and pins axes titles that
matplotlib would leave where they are (:func:`nuinfer.plotting.pin_titles`); every saved figure's
renderer shares one mathtext parser.  Each case below is drawn twice, with and without, and the
PNGs must agree pixel for pixel; cases where a shortcut would change the image (labelled minor
ticks, dashed minor grid, twin axes, top tick labels, an offset text, a title with no pad) must be
left to matplotlib.
"""

from __future__ import annotations

import numpy as np
import pytest

from nuinfer import plotting
from nuinfer.plotting import plt


def _pixels(path):
    from matplotlib.image import imread
    return imread(str(path))


def _loglog(ax, title="CE$\\nu$NS", grid="major"):
    x = np.geomspace(1e-2, 1e4, 200)
    ax.plot(x, 1e-6 * (1 + (x / 30.0) ** 2), color="tab:red", label="$L_\\mu-L_\\tau$")
    ax.fill_between(x, 1e-6 * (1 + (x / 30.0) ** 2), 1.0, color="tab:red", alpha=0.1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e-2, 1e4)
    ax.set_ylim(1e-8, 1.0)
    ax.set_xlabel(r"$m_X$ [MeV]")
    ax.set_ylabel(r"$g_X$")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which=grid, lw=0.4)


def _contours_figure():
    fig, axes = plotting.legend_figure(2, 2, panel=(3.3, 2.8), legend_width=0.8, suptitle="current data")
    for ax in axes:
        _loglog(ax)
        plotting.outside_legend(ax)
    return fig


def _minor_grid_figure():  # like the mass-coupling plot: colour bar, grid on minor ticks, tight box
    fig, ax = plt.subplots(figsize=(5, 3.6))
    x, y = np.geomspace(1e-2, 1e2, 21), np.geomspace(1e-8, 1e-4, 21)
    mesh = ax.pcolormesh(x, y, np.arange(400.0).reshape(20, 20), cmap="Greys")
    fig.colorbar(mesh, ax=ax)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title("posterior of ($m_X$, $g_X$)\nsecond line", fontsize=9)
    ax.grid(alpha=0.3, which="both", lw=0.3)
    return fig


def _ticks_inside_figure():  # minor ticks on all four sides, pointing in
    fig, ax = plt.subplots(figsize=(4, 3))
    _loglog(ax)
    ax.tick_params(which="both", direction="in", top=True, right=True)
    return fig


def _narrow_figure():  # log axes spanning less than a decade: minor ticks carry labels
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([2.0, 8.0], [3.0, 7.0])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title("narrow")
    return fig


def _dashed_minor_grid_figure():
    fig, ax = plt.subplots(figsize=(4, 3))
    _loglog(ax, grid="both")
    ax.grid(which="minor", ls="--", alpha=0.3)
    return fig


def _twin_and_top_figure():  # titles that matplotlib moves (or may move) above something
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    _loglog(axes[0])
    axes[0].twinx().set_ylabel("twin")
    _loglog(axes[1])
    axes[1].xaxis.tick_top()
    axes[1].xaxis.set_label_position("top")
    axes[2].plot([0, 1], [1e6, 1e6 + 3])  # linear axis with an offset text "+1e6"
    axes[2].set_title("offset")
    return fig


def _no_pad_title_figure():  # descenders below the axes top: matplotlib lifts the title
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    _loglog(axes[0], title="gyp $g_{X_{j}}$")
    axes[0].set_title("gyp $g_{X_{j}}$", pad=0)
    _loglog(axes[1], title="")
    axes[1].set_title("left", loc="left")
    axes[1].set_title("right $p_q$", loc="right")
    return fig


def _shared_figure(fixed=True):  # sharex/sharey share the locators: all axes baked together (or none)
    fig, axes = plt.subplots(2, 2, sharex=True, sharey="row", figsize=(6, 5))
    for ax in axes.flat:
        _loglog(ax, title="")
    if fixed:  # the x axes (all shared) and this row's y axes keep matplotlib's ticks
        axes[1, 1].set_aspect("equal", adjustable="box")
    return fig


def _spectra_figure():
    fig, ax = plt.subplots(figsize=(4, 3))
    x = np.geomspace(0.1, 100, 50)
    for i in range(5):
        ax.plot(x, 10.0 ** (-i) / x, lw=0.9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(1e-15, 1e2)  # > 10 decades: no minor ticks at all
    ax.set_title("spectra")
    return fig


CASES = {
    "contours": (_contours_figure, None),
    "minor_grid": (_minor_grid_figure, None),
    "ticks_inside": (_ticks_inside_figure, None),
    "narrow": (_narrow_figure, None),
    "dashed_minor_grid": (_dashed_minor_grid_figure, None),
    "twin_and_top": (_twin_and_top_figure, None),
    "no_pad_title": (_no_pad_title_figure, None),
    "spectra": (_spectra_figure, True),
    "shared": (_shared_figure, None),
    "shared_plain": (lambda: _shared_figure(False), None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_lighten_draws_the_same_pixels(name, tmp_path):
    build, tight = CASES[name]
    slow = plotting.save(build(), tmp_path / "slow.png", tight=tight, lighten=False)
    fast = plotting.save(build(), tmp_path / "fast.png", tight=tight)
    a, b = _pixels(slow), _pixels(fast)
    assert a.shape == b.shape
    assert np.array_equal(a, b), f"{name}: {int(np.any(a != b, axis=-1).sum())} pixels differ"
    assert plt.get_fignums() == []  # save closed both figures


def test_minor_ticks_are_baked_and_titles_pinned(tmp_path):
    fig = _contours_figure()
    plotting.save(fig, tmp_path / "f.png")
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            assert len(axis.minorTicks) <= 1  # one prototype instead of 64-80 Tick objects
        assert ax._autotitlepos is False
    # the two sides' tick marks of each axis: an x and a y artist of 48 and 64 marks
    marks = sorted(len(ln.get_xdata()) for ln in fig.axes[0].get_children()
                   if getattr(ln, "get_label", lambda: "")() == "_nolegend_" and ln.get_in_layout() is False)
    assert marks == [48, 64]


def test_shared_axes_are_baked_together():
    fig = _shared_figure(False)
    assert plotting.bake_minor_ticks(fig) == 8
    fig = _shared_figure()
    assert plotting.bake_minor_ticks(fig) == 2  # only the y axes of the top row
    a, b, c, d = fig.axes
    for axis in (a.xaxis, c.xaxis, c.yaxis):  # shared with the fixed-aspect d
        assert type(axis.get_minor_locator()).__name__ == "LogLocator"
    plt.close("all")


def test_cases_left_to_matplotlib():
    fig = _narrow_figure()
    assert plotting.bake_minor_ticks(fig) == 0  # labelled minor ticks
    fig = _dashed_minor_grid_figure()
    assert plotting.bake_minor_ticks(fig) == 0
    fig = _twin_and_top_figure()
    plotting._Canvas(fig)
    assert plotting.pin_titles(fig, dpi=110) == 0  # twin, top x axis, offset text
    fig = _no_pad_title_figure()
    plotting._Canvas(fig)
    assert plotting.pin_titles(fig, dpi=110) == 1  # only the panel whose titles clear the axes
    plt.close("all")


def test_renderers_share_one_mathtext_parser(tmp_path, monkeypatch):
    shared = []
    real = plotting._shared_mathtext
    monkeypatch.setattr(plotting, "_shared_mathtext", lambda r: shared.append(real(r).mathtext_parser) or r)
    for i, build in enumerate((_ticks_inside_figure, _spectra_figure, _contours_figure)):
        plotting.save(build(), tmp_path / f"{i}.png")
    assert len(shared) >= 3 and all(p is shared[0] for p in shared)
    # and matplotlib itself would have given each figure its own parser (and its own parse cache)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    a, b = (FigureCanvasAgg(build()).get_renderer() for build in (_spectra_figure, _narrow_figure))
    assert a.mathtext_parser is not b.mathtext_parser
    plt.close("all")


@pytest.mark.parametrize("suffix", [".pdf", ".svg"])
def test_vector_formats_still_save(suffix, tmp_path):
    fig = _contours_figure()
    out = plotting.save(fig, tmp_path / f"f{suffix}")
    assert out.stat().st_size > 1000
    assert all(len(ax.yaxis.minorTicks) <= 1 for ax in fig.axes)  # minor ticks baked there too
    assert plt.get_fignums() == []
