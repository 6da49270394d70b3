"""Figures: spectra (paper Fig. 1), exclusion contours (Figs. 2-4), scenario overlays.

Plots use the non-interactive Agg backend and are written atomically by :func:`save`.  Figures made
by :func:`legend_figure` have a fixed layout (axes and a legend column outside the data at set
positions), so they are saved without the costly ``bbox_inches="tight"`` pass; other figures keep it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
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


def save(fig, path, *, tight: bool | None = None) -> Path:
    """Save a figure atomically (temporary file in the same folder, then rename) and close it.

    ``tight``: use ``bbox_inches="tight"``; default only for figures without a fixed layout
    (figures from :func:`legend_figure` are laid out already, and the tight pass costs a third of
    the save).
    """
    from nuinfer import render
    from nuinfer.io import atomic_target
    path = Path(path)
    r = render.current()
    if r is not None and r.parallel:  # drawn by the figure worker (nuinfer.render)
        return r.submit_figure(fig, path)
    try:
        with atomic_target(path) as tmp:
            write_figure(fig, tmp, path.suffix.lstrip(".") or "png", tight=tight)
    finally:
        plt.close(fig)
    return path


def write_figure(fig, file, fmt: str = "png", *, tight: bool | None = None) -> None:
    """Draw ``fig`` into ``file`` (no atomic rename; :func:`save` and :mod:`nuinfer.render` add it)
    and close it.  ``tight`` as in :func:`save`."""
    if tight is None:
        tight = not getattr(fig, "_nuinfer_fixed_layout", False)
    try:
        fig.savefig(file, dpi=_DPI, bbox_inches="tight" if tight else None, format=fmt)
    finally:
        plt.close(fig)


def legend_figure(ncols: int = 1, nrows: int = 1, *, panel=(4.3, 3.5), legend_width: float = 2.0,
                  top: float = 0.55, bottom: float = 0.6, left: float = 0.75, hspace: float = 0.8,
                  suptitle: str | None = None):
    """A figure with fixed axes positions and room for each panel's legend on its right.

    Returns ``(fig, axes)`` (axes as a flat list, row by row).  Legends are placed with
    :func:`outside_legend`.  The figure is marked for :func:`save` to skip the tight bounding box.
    """
    pw, ph = panel
    cell_w = left + pw + 0.15 + legend_width
    W = ncols * cell_w + 0.1
    H = nrows * (ph + bottom + top) + (hspace * 0 if nrows == 1 else 0) + (0.35 if suptitle else 0.0)
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
        fig, (ax,) = legend_figure()
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
                ax.add_patch(PathPatch(MPath(verts, codes), facecolor=st["color"], edgecolor="none",
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
