"""Figures: spectra (paper Fig. 1), exclusion contours (Figs. 2-4), scenario overlays.

Plots use the non-interactive Agg backend and are written atomically by :func:`save`.  Figures made
by :func:`legend_figure` have a fixed layout (axes and a legend column outside the data at set
positions), so they are saved without the costly ``bbox_inches="tight"`` pass; other figures keep it.
Before drawing, :func:`write_figure` swaps what costs matplotlib most for cheaper equivalents that
draw the same pixels (minor ticks of log axes as one artist per axis, fixed titles where the
automatic placement would not move them, one mathtext parser and cache for every figure).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
import numpy as np  # noqa: E402

#: the paper's model order
MODEL_ORDER = ("S", "P", "V", "A", "T", "B-L", "Lmu-Ltau")
MODEL_STYLE = {
    "SM": dict(color="k", lw=2.0),
    "S": dict(color="tab:blue"),
    "P": dict(color="tab:orange"),
    "V": dict(color="tab:green"),
    "A": dict(color="tab:red"),
    "T": dict(color="tab:purple"),
    "B-L": dict(color="tab:brown"),
    "Lmu-Ltau": dict(color="tab:pink"),
}
#: neutrino sources: thin lines in colours no model uses, each with its own dash pattern
SOURCE_STYLE = {
    "pp": dict(color="0.45", ls="--"),
    "pep": dict(color="tab:olive", ls=":"),
    "7Be_384": dict(color="tab:cyan", ls="-."),
    "7Be_861": dict(color="teal", ls="--"),
    "8B": dict(color="navy", ls="-."),
    "hep": dict(color="darkgoldenrod", ls=(0, (5, 1.5, 1, 1.5, 1, 1.5))),
    "13N": dict(color="olivedrab", ls=(0, (1, 1))),
    "15O": dict(color="slateblue", ls=(0, (4, 2))),
    "17F": dict(color="rosybrown", ls=(0, (6, 2, 1, 2))),
    "atm": dict(color="darkslategray", ls=(0, (8, 2))),
    "DSN": dict(color="darkorange", ls=(0, (2, 1, 2, 4))),
}
_EXTRA_SOURCE = [dict(color=c, ls=ls) for c in ("sienna", "darkmagenta", "cadetblue", "0.2")
                 for ls in ("--", ":", "-.")]
MODEL_LABEL = {"Lmu-Ltau": r"$L_\mu-L_\tau$", "B-L": r"$B-L$"}
PROCESS_LABEL = {"cevns": r"CE$\nu$NS", "eves": r"E$\nu$ES"}
#: distinct (colour, dash) pairs for scenario overlays; the baseline is black, drawn on top
SCENARIO_STYLES = [dict(color=c, ls=ls) for ls, cs in (
    ("--", ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
            "tab:olive", "tab:cyan")),
    (":", ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
           "tab:olive", "tab:cyan"))) for c in cs]
BASELINE_STYLE = dict(color="k", ls="-", lw=2.4, zorder=5)

_DPI = 110


def _shared_mathtext(renderer):
    """Give ``renderer`` the mathtext parser of the first renderer (of its kind) of this process.

    Matplotlib caches parsed mathtext (``MathTextParser._parse_cached``, 50 entries) per parser
    instance, and every Agg renderer makes its own parser: each new figure parsed every log tick
    label ``$\\mathdefault{10^{k}}$`` again (15-20 parses, a third of a small figure's save).  The
    parse depends only on the string, dpi and font, so sharing the parser changes no pixel.
    """
    p = getattr(renderer, "mathtext_parser", None)
    if p is not None:
        renderer.mathtext_parser = _MATHTEXT_PARSERS.setdefault((type(p), getattr(p, "_output_type", None)), p)
    return renderer


_MATHTEXT_PARSERS: dict = {}
# parsed mathtext holds matplotlib's FT2Font objects, which read their font files through file
# objects: a forked process (the figure worker's helper, nuinfer.render) sharing them would share
# the files' offsets with its parent and load corrupt glyphs.  Matplotlib itself drops its font
# cache in a forked child; the parsers shared here go with it.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_MATHTEXT_PARSERS.clear)


class _Canvas(FigureCanvasAgg):
    """Agg canvas whose renderers share one mathtext parser (:func:`_shared_mathtext`)."""

    def get_renderer(self, *args, **kwargs):
        return _shared_mathtext(super().get_renderer(*args, **kwargs))


def save(fig, path, *, tight: bool | None = None, lighten: bool = True) -> Path:
    """Save a figure atomically (temporary file in the same folder, then rename) and close it.

    ``tight``: use ``bbox_inches="tight"``; default only for figures without a fixed layout
    (figures from :func:`legend_figure` are laid out already, and the tight pass costs a third of
    the save).  ``lighten``: draw the same image with less work (:func:`write_figure`).  Inside
    an active :class:`nuinfer.render.Renderer` the figure is drawn by its worker, with the
    defaults; a figure given an explicit ``tight`` or ``lighten=False`` is drawn here.
    """
    from nuinfer import render
    from nuinfer.io import atomic_target
    path = Path(path)
    r = render.current()
    if r is not None and r.parallel and tight is None and lighten:  # drawn by the figure worker
        return r.submit_figure(fig, path)
    try:
        with atomic_target(path) as tmp:
            write_figure(fig, tmp, path.suffix.lstrip(".") or "png", tight=tight, lighten=lighten)
    finally:
        plt.close(fig)
    return path


#: formats drawn by Agg at the saving dpi (where :func:`pin_titles` measures)
_RASTER = ("png", "jpg", "jpeg", "tif", "tiff", "webp", "raw", "rgba")


def write_figure(fig, file, fmt: str = "png", *, tight: bool | None = None, lighten: bool = True) -> None:
    """Draw ``fig`` into ``file`` (no atomic rename; :func:`save` and :mod:`nuinfer.render` add it)
    and close it.  ``tight`` as in :func:`save`.

    ``lighten`` (default): first replace what costs matplotlib most by cheaper equivalents that
    draw the same pixels -- the unlabelled minor ticks of log axes (:func:`bake_minor_ticks`) and
    the automatic title placement where it would not move a title (:func:`pin_titles`, raster
    formats).  In any case the Agg renderers of all figures drawn by this process share one
    mathtext parser, hence its cache of parsed labels (:func:`_shared_mathtext`).
    """
    if tight is None:
        tight = not getattr(fig, "_nuinfer_fixed_layout", False)
    try:
        if type(fig.canvas) in (FigureCanvasAgg, FigureCanvasBase):  # pyplot's (Agg) or an unpickled figure's
            _Canvas(fig)  # becomes fig.canvas; pyplot's manager still closes the figure
        if lighten:
            bake_minor_ticks(fig)
            if str(fmt).lower() in _RASTER:
                pin_titles(fig, dpi=_DPI)
        fig.savefig(file, dpi=_DPI, bbox_inches="tight" if tight else None, format=fmt)
    finally:
        plt.close(fig)


def pin_titles(fig, *, dpi: float | None = None) -> int:
    """Fix the axes titles of ``fig`` where matplotlib's automatic placement would leave them.

    At every draw matplotlib re-places each titled axes' title above whatever sticks out at the
    top (x tick labels or label on top, a y offset text, twin or aligned axes), which computes the
    tight bounding box of the y axis, tick labels included, once per title and draw.  Where none
    of these can apply (x ticks and label at the bottom, no y offset text, no twins, children,
    title alignment, fixed aspect or axes locator) the title stays at its default height when its
    bottom (baseline minus descent) is above the axes, which is checked here once, at the saving
    ``dpi``; such titles are set there and the automatic placement is turned off.
    Returns the number of axes pinned.
    """
    from matplotlib.ticker import LogFormatter

    old = fig.dpi
    renderer = None
    n = 0
    try:
        for ax in fig.axes:
            try:
                titles = (ax.title, ax._left_title, ax._right_title)
                if (ax._autotitlepos is not True or ax.child_axes or hasattr(ax, "_colorbar")
                        or ax.get_axes_locator() is not None or ax.get_aspect() != "auto"
                        or ax._twinned_axes.get_siblings(ax) != [ax]
                        or fig._align_label_groups["title"].get_siblings(ax) != [ax]):
                    continue
            except (AttributeError, KeyError):  # another matplotlib: leave the placement to it
                continue
            if not any(t.get_text() for t in titles):
                continue
            xa, ya = ax.xaxis, ax.yaxis
            if (xa.get_ticks_position() not in ("bottom", "default") or xa.get_label_position() != "bottom"
                    or any(t.label2.get_visible() for t in (xa.get_major_ticks(1)[0], xa.get_minor_ticks(1)[0]))):
                continue
            fmt = ya.get_major_formatter()
            if not isinstance(fmt, LogFormatter):
                fmt.format_ticks(ya.get_majorticklocs())  # as the axis does before asking for the offset
                if fmt.get_offset() and ya.offsetText.get_visible():
                    continue
            if renderer is None:
                if not hasattr(fig.canvas, "get_renderer"):
                    break
                if dpi is not None:
                    fig.dpi = dpi
                renderer = fig.canvas.get_renderer()  # the renderer savefig reuses at this dpi
            top = ax.get_window_extent(renderer).ymax
            ok = True
            for t in titles:
                t.set_y(1.0)  # where matplotlib starts from
                if t.get_text() and (t.get_usetex() or t.get_window_extent(renderer).ymin < top):
                    ok = False
            if ok:
                ax._autotitlepos = False
                n += 1
    finally:
        if fig.dpi != old:
            fig.dpi = old
    return n


_EPS = 1e-9  # z-order step: draw right after an artist, before anything else


def bake_minor_ticks(fig) -> int:
    """Replace the unlabelled minor ticks of the log axes of ``fig`` by one artist per axis side.

    Matplotlib draws every minor tick as a ``Tick`` object (three lines and two texts, copied from
    a prototype): a log axis over eight decades has 80 of them, and creating them is most of the
    time a figure with several log panels takes to draw.  Here the minor tick marks (and minor grid
    lines, when shown) at the positions matplotlib would draw are added to the axes as one
    ``Line2D`` each, with the properties of the axis' own minor tick (size, width, colour,
    direction, top/right ticks, grid style), drawn right after that axis (the y axis of the axes
    moves up by a z-order step of 1e-9 to stay after the x minor ticks) and outside the layout,
    and the axis' minor locator becomes a ``NullLocator``.  The image is the same, pixel for pixel.

    Call it once the view limits are final (:func:`save` does, just before writing).  An axis is
    left alone when it is not a log axis with matplotlib's ``LogLocator``, when any minor tick
    would carry a label (log axes spanning about a decade or less), when its minor grid lines are
    dashed, or when its axes keeps a fixed aspect or is a colour bar; axes sharing the axis
    (``sharex``/``sharey`` share the locator) are changed together or not at all.
    Returns the number of axis sides changed.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator, NullLocator

    groups: dict = {}  # id of the shared minor Ticker -> [(ax, axis, plan or None), ...]
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log" and type(axis.get_minor_locator()) is LogLocator:
                groups.setdefault(id(axis.minor), []).append((ax, axis, _minor_plan(ax, axis)))
    n = 0
    for members in groups.values():
        if any(plan is None for _, _, plan in members):
            continue  # one of the axes sharing the locator needs matplotlib's own minor ticks
        for ax, axis, plan in members:
            if plan and axis is ax.xaxis and ax.yaxis.get_zorder() == axis.get_zorder():
                ax.yaxis.set_zorder(axis.get_zorder() + 2 * _EPS)  # keep: x axis, its minor ticks, y axis
            for proto, (x, y) in plan:
                ln = Line2D(x, y)
                ln.update_from(proto)  # style, marker, transform, clipping
                ln.set_zorder(axis.get_zorder() + _EPS)  # just after the axis (its major ticks)
                ln.set_label("_nolegend_")
                ln.set_in_layout(False)
                ax.add_artist(ln)
                ln.set_clip_path(proto.get_clip_path())  # add_artist clips to the axes patch
                ln.set_clip_box(proto.get_clip_box())
        for ax, axis, _ in members:
            axis.set_minor_locator(NullLocator())
            n += 1
    return n


def _minor_plan(ax, axis):
    """What :func:`bake_minor_ticks` draws for ``axis``: a list of (prototype line, (x, y)) in the
    order a Tick draws them ([] when nothing is drawn), or None when the axis must keep its ticks."""
    if not ax.axison or not axis.get_visible():
        return []  # nothing drawn
    if ax.get_aspect() != "auto" or hasattr(ax, "_colorbar"):
        return None
    locs = np.asarray(axis.get_minorticklocs(), dtype=float)
    lo, hi = sorted(np.log10(axis.get_view_interval()))
    tol = (hi - lo) * 1e-10  # as matplotlib's _interval_contains_close
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = np.log10(locs)
    locs = locs[np.isfinite(ll) & (ll >= lo - tol) & (ll <= hi + tol)]
    if locs.size and any(axis.minor.formatter.format_ticks(locs)):
        return None  # labelled minor ticks
    tick = axis.get_minor_ticks(1)[0]  # prototype: the axis' minor tick properties
    grid = tick.gridline
    if grid.get_visible() and grid.get_linestyle() not in ("-", "solid"):
        return None  # a dash pattern would run on across the joined grid lines
    plan = []  # in the order a Tick draws its parts: grid line, tick1, tick2
    if not locs.size or not tick.get_visible():
        return plan
    if grid.get_visible():
        seg = np.repeat(locs, 3)
        seg[2::3] = np.nan  # one polyline, broken between the grid lines
        c = np.tile([0.0, 1.0, np.nan], locs.size)
        plan.append((grid, (seg, c) if axis is ax.xaxis else (c, seg)))
    for proto, at in ((tick.tick1line, 0.0), (tick.tick2line, 1.0)):
        if proto.get_visible():
            c = np.full(locs.size, at)
            plan.append((proto, (locs, c) if axis is ax.xaxis else (c, locs)))
    return plan


def legend_figure(ncols: int = 1, nrows: int = 1, *, panel=(4.3, 3.5), legend_width: float = 2.0,
                  top: float = 0.55, bottom: float = 0.6, left: float = 0.75, suptitle: str | None = None):
    """A figure with fixed axes positions and room for each panel's legend on its right.

    Returns ``(fig, axes)`` (axes as a flat list, row by row).  Legends are placed with
    :func:`outside_legend`.  The figure is marked for :func:`save` to skip the tight bounding box.
    """
    pw, ph = panel
    cell_w = left + pw + 0.15 + legend_width
    W = ncols * cell_w + 0.1
    H = nrows * (ph + bottom + top) + (0.35 if suptitle else 0.0)  # rows spaced by their top and bottom margins
    fig = plt.figure(figsize=(W, H))
    axes = []
    for r in range(nrows):
        for c in range(ncols):
            x0 = c * cell_w + left
            y0 = H - (0.35 if suptitle else 0.0) - (r + 1) * (ph + bottom + top) + bottom
            axes.append(fig.add_axes([x0 / W, y0 / H, pw / W, ph / H]))
    if suptitle:
        fig.suptitle(suptitle, y=1 - 0.12 / H, fontsize=11)
    fig._nuinfer_fixed_layout = True
    return fig, axes


def outside_legend(ax, handles=None, **kw):
    """Legend to the right of the axes, outside the data."""
    kw.setdefault("fontsize", 7)
    kw.setdefault("loc", "upper left")
    kw.setdefault("bbox_to_anchor", (1.02, 1.0))
    kw.setdefault("borderaxespad", 0.0)
    kw.setdefault("frameon", False)
    if handles is not None:
        return ax.legend(handles=handles, **kw)
    return ax.legend(**kw)


def source_style(name: str, i: int = 0) -> dict:
    return dict(SOURCE_STYLE.get(name) or _EXTRA_SOURCE[i % len(_EXTRA_SOURCE)])


def plot_spectra(sm, models: dict, *, title: str = "", ax=None):
    """Differential rates: SM total, SM per source (thin), and SM+X for each model.

    ``sm`` is a spectrum Dataset (``counts(source, bin)``), ``models`` maps model name to a spectrum
    Dataset at the benchmark point.  The y range holds every model curve (none is clipped at the
    top) and spans 12 decades below the highest; curves entirely below it get no legend entry.
    The legend sits to the right of the axes.
    """
    fig = None
    if ax is None:
        fig, (ax,) = legend_figure(legend_width=1.6)
    width = (sm["E_hi"] - sm["E_lo"]).values
    x = sm["E_center"].values
    curves = []  # (y, label, style, kind)
    for i, s in enumerate(sm["source"].values):
        y = sm["counts"].sel(source=s).values / width
        curves.append((y, f"SM {s}", dict(lw=0.9, **source_style(str(s), i)), "source"))
    curves.append((sm["total"].values / width, "SM total", MODEL_STYLE["SM"], "sm"))
    for name, ds in models.items():
        curves.append((ds["total"].values / width, MODEL_LABEL.get(name, name), MODEL_STYLE.get(name, {}), "model"))
    top = max((np.max(y[y > 0]) for y, _, _, k in curves if k != "source" and np.any(y > 0)), default=1.0)
    lo = top * 1e-12
    tot = sm["total"].values / width
    pos = tot[tot > 0]
    if pos.size:
        lo = max(lo, pos.min() * 1e-3)
    hi = top * 5.0
    for y, label, st, kind in curves:
        yy = np.where(y > 0, y, np.nan)
        visible = np.any(yy > lo)
        ax.plot(x, yy, label=label if visible else "_nolegend_", zorder=3 if kind != "source" else 2, **st)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x.min(), x.max())
    ax.set_ylim(lo, hi)
    ax.set_xlabel(r"$E_{er}$ [keV$_{ee}$]")
    ax.set_ylabel(r"$dR/dE_{er}$ [events / (keV$_{ee}$ t yr)]" if sm.attrs.get("exposure_tonne_year", 1) == 1
                  else r"$dR/dE_{er}$ [events / keV$_{ee}$]")
    ax.set_title(title, fontsize=10)
    outside_legend(ax)
    ax.grid(alpha=0.3, which="major", lw=0.4)
    return fig if fig is not None else ax.figure


def plot_contours(scans: dict, *, ax=None, title: str = "", styles: dict | None = None, fill: bool = True,
                  refine: dict | None = None, note: str | None = None, legend: str = "outside",
                  labels: dict | None = None):
    """Overlay 90% CL excluded regions of several scans (one per label) on log-log axes.

    Parameters
    ----------
    scans : dict
        Label -> scan Dataset (delta variable named by its ``statistic_variable`` attribute and a
        ``threshold`` attribute) or a :class:`~nuinfer.tasks.contours.ContourResult`.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (default: a new fixed-layout figure with the legend on the right).
    title : str, optional
        Axes title.
    styles : dict, optional
        Label -> line style overrides (``color``, ``ls``, ``lw``, ``zorder``, ``fill``; a higher
        ``zorder`` draws that curve on top, e.g. the baseline of a comparison; ``fill`` overrides
        the fill of that label).
    fill : bool, optional
        Fill the excluded region lightly (default True; opacity 0.15 / number of scans, at
        least 0.04, so that overlaid regions stay readable).  Allowed bands inside an excluded
        region stay unfilled.
    refine : dict, optional
        Label -> ``refine(m_index, g_values) -> delta`` callable passed to
        :func:`~nuinfer.tasks.contours.contour` for scans (e.g.
        :func:`~nuinfer.tasks.contours.template_refiner`): exact band edges and bands the grid
        misses.
    note : str, optional
        Text above the legend entries (data set and calibration); default: the CL and threshold.
    legend : "outside" | "inside" | "none"
        Legend to the right of the axes (default), at the lower right inside, or none.
    labels : dict, optional
        Label -> legend text (default: the label, with LaTeX names of B-L and Lmu-Ltau).

    Notes
    -----
    Regions are drawn from the per-mass excluded g_X intervals (``ContourResult.polygons`` and
    ``ContourResult.lines``), not from contour lines traced on the grid: a thin allowed band from
    destructive interference is one band (unfilled, outlined), not a chain of closed fragments.
    Segments along the grid edge are not outlined; the axes span the scanned grid.  One legend
    entry per label that excludes something on the grid.
    """
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MPath

    from nuinfer.tasks.contours import ContourResult, contour

    fig = None
    if ax is None:
        fig, (ax,) = legend_figure(legend_width=2.6)  # room for the data-set and threshold heading
    thr_texts = set()
    handles = []
    lims = []
    n_fill = max(1, sum(1 for k in scans if (styles or {}).get(k, {}).get("fill", fill)))
    for i, (label, ds) in enumerate(scans.items()):
        res = ds if isinstance(ds, ContourResult) else contour(ds, refine=(refine or {}).get(label))
        thr = res.threshold
        cl = res.cl if np.isfinite(res.cl) else 0.9
        var = "\\Delta(-2\\ln L)" if "nll" in str(res.variable) else "\\Delta\\chi^2"
        thr_texts.add(f"{cl * 100:.0f}% CL: ${var}$ = {thr:.2f} "
                      f"({res.ndof if res.ndof > 0 else 2} dof)")
        m = np.asarray(res.g90["m_X"].values, dtype=float)
        g = np.asarray(res.excluded["g_X"].values, dtype=float)
        lims.append((m.min(), m.max(), g.min(), g.max()))
        st = dict(MODEL_STYLE.get(label, {}))
        if styles and label in styles:
            st.update(styles[label])
        st.setdefault("color", f"C{i % 10}")
        z = st.get("zorder", 2)
        if st.pop("fill", fill):
            polys = res.polygons()
            if polys:
                verts = np.concatenate([np.vstack([p, p[:1]]) for p in polys])
                codes = np.concatenate([[MPath.MOVETO] + [MPath.LINETO] * (len(p) - 1) + [MPath.CLOSEPOLY]
                                        for p in polys])
                # add_artist, not add_patch: the axes limits are set below, and add_patch's data-limit
                # update walks every segment of the path in Python (0.13 s for 2600 vertices)
                ax.add_artist(PathPatch(MPath(verts, codes), facecolor=st["color"], edgecolor="none",
                                        alpha=max(0.04, 0.15 / n_fill), zorder=z - 1))
        for ln in res.lines:
            ax.plot(ln[:, 0], ln[:, 1], color=st["color"], ls=st.get("ls", "-"), lw=st.get("lw", 1.6), zorder=z)
        if res.lines or np.any(res.excluded.values):
            text = (labels or {}).get(label, MODEL_LABEL.get(label, label))
            handles.append(plt.Line2D([], [], color=st["color"], ls=st.get("ls", "-"), lw=st.get("lw", 1.6),
                                      label=text))
    ax.set_xscale("log")
    ax.set_yscale("log")
    if lims:
        lo = np.min(lims, axis=0)
        hi = np.max(lims, axis=0)
        ax.set_xlim(lo[0], hi[1])
        ax.set_ylim(lo[2], hi[3])
    ax.set_xlabel(r"$m_X$ [MeV]")
    ax.set_ylabel(r"$g_X$")
    head = note if note is not None else "; ".join(sorted(thr_texts))
    if legend == "outside":
        outside_legend(ax, handles=handles, title=head, title_fontsize=7, alignment="left")
    elif legend == "inside":
        ax.legend(handles=handles, fontsize=8, title=head, title_fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="major", lw=0.4)
    return fig if fig is not None else ax.figure
