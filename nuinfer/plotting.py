"""Figures: spectra (paper Fig. 1), exclusion contours (Figs. 2-4), scenario overlays.

Plots use the non-interactive Agg backend and are written atomically by :func:`save`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

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
MODEL_LABEL = {"Lmu-Ltau": r"$L_\mu-L_\tau$", "B-L": r"$B-L$"}
PROCESS_LABEL = {"cevns": r"CE$\nu$NS", "eves": r"E$\nu$ES"}


def save(fig, path) -> Path:
    """Save a figure atomically (temporary file in the same folder, then rename) and close it."""
    from nuinfer.io import atomic_target
    path = Path(path)
    try:
        with atomic_target(path) as tmp:
            fig.savefig(tmp, dpi=130, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path


def plot_spectra(sm, models: dict, *, title: str = "", ax=None):
    """Differential rates: SM total, SM per source (thin), and SM+X for each model.

    ``sm`` is a spectrum Dataset (``counts(source, bin)``), ``models`` maps model name to a spectrum
    Dataset at the benchmark point.
    """
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
    width = (sm["E_hi"] - sm["E_lo"]).values
    x = sm["E_center"].values
    ls = ["--", ":", "-.", (0, (3, 1, 1, 1)), (0, (5, 2))]
    for i, s in enumerate(sm["source"].values):
        y = sm["counts"].sel(source=s).values / width
        if np.any(y > 0):
            ax.plot(x, np.where(y > 0, y, np.nan), ls=ls[i % len(ls)], lw=0.9, alpha=0.8, label=f"SM {s}")
    ax.plot(x, sm["total"].values / width, label="SM total", **MODEL_STYLE["SM"])
    for name, ds in models.items():
        y = ds["total"].values / width
        ax.plot(x, np.where(y > 0, y, np.nan), label=MODEL_LABEL.get(name, name), **MODEL_STYLE.get(name, {}))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$E_{er}$ [keV$_{ee}$]")
    ax.set_ylabel(r"$dR/dE_{er}$ [events / (keV$_{ee}$ t yr)]" if sm.attrs.get("exposure_tonne_year", 1) == 1
                  else r"$dR/dE_{er}$ [events / keV$_{ee}$]")
    tot = sm["total"].values / width
    pos = tot[tot > 0]
    if pos.size:
        ax.set_ylim(max(pos.min() * 1e-3, pos.max() * 1e-12), pos.max() * 1e3)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, which="both", lw=0.3)
    return fig if fig is not None else ax.figure


def plot_contours(scans: dict, *, ax=None, title: str = "", styles: dict | None = None, fill: bool = True,
                  refine: dict | None = None):
    """Overlay 90% CL excluded regions of several scans (one per label) on log-log axes.

    Parameters
    ----------
    scans : dict
        Label -> scan Dataset (delta variable named by its ``statistic_variable`` attribute and a
        ``threshold`` attribute) or a :class:`~nuinfer.tasks.contours.ContourResult`.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (default: a new figure).
    title : str, optional
        Axes title.
    styles : dict, optional
        Label -> line style overrides (``color``, ``ls``, ``lw``).
    fill : bool, optional
        Fill the excluded region lightly (default True; opacity 0.15 / number of scans, at
        least 0.04, so that overlaid regions stay readable).
    refine : dict, optional
        Label -> ``refine(m_index, g_values) -> delta`` callable passed to
        :func:`~nuinfer.tasks.contours.contour` for scans (e.g.
        :func:`~nuinfer.tasks.contours.template_refiner`): exact band edges and bands the grid
        misses.

    Notes
    -----
    Regions are drawn from the per-mass excluded g_X intervals (``ContourResult.polygons`` and
    ``ContourResult.lines``), not from contour lines traced on the grid: a thin allowed band from
    destructive interference is one band (unfilled, outlined), not a chain of closed fragments.
    Segments along the grid edge are not outlined; the axes span the scanned grid.  One legend
    entry per label.
    """
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MPath

    from nuinfer.tasks.contours import ContourResult, contour

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
    thr_texts = set()
    handles = []
    lims = []
    for i, (label, ds) in enumerate(scans.items()):
        res = ds if isinstance(ds, ContourResult) else contour(ds, refine=(refine or {}).get(label))
        thr = res.threshold
        cl = res.cl if np.isfinite(res.cl) else 0.9
        thr_texts.add(f"{cl * 100:.0f}% CL: $\\Delta\\chi^2$ = {thr:.2f} "
                      f"(ndof={res.ndof if res.ndof > 0 else 2})")
        m = np.asarray(res.g90["m_X"].values, dtype=float)
        g = np.asarray(res.excluded["g_X"].values, dtype=float)
        lims.append((m.min(), m.max(), g.min(), g.max()))
        st = dict(MODEL_STYLE.get(label, {}))
        if styles and label in styles:
            st.update(styles[label])
        st.setdefault("color", f"C{i % 10}")
        if fill:
            polys = res.polygons()
            if polys:
                verts = np.concatenate([np.vstack([p, p[:1]]) for p in polys])
                codes = np.concatenate([[MPath.MOVETO] + [MPath.LINETO] * (len(p) - 1) + [MPath.CLOSEPOLY]
                                        for p in polys])
                ax.add_patch(PathPatch(MPath(verts, codes), facecolor=st["color"], edgecolor="none",
                                       alpha=max(0.04, 0.15 / len(scans)), zorder=1))
        for ln in res.lines:
            ax.plot(ln[:, 0], ln[:, 1], color=st["color"], ls=st.get("ls", "-"), lw=st.get("lw", 1.6), zorder=2)
        handles.append(plt.Line2D([], [], color=st["color"], ls=st.get("ls", "-"), lw=st.get("lw", 1.6),
                                  label=MODEL_LABEL.get(label, label)))
    ax.set_xscale("log")
    ax.set_yscale("log")
    if lims:
        lo = np.min(lims, axis=0)
        hi = np.max(lims, axis=0)
        ax.set_xlim(lo[0], hi[1])
        ax.set_ylim(lo[2], hi[3])
    ax.set_xlabel(r"$m_X$ [MeV]")
    ax.set_ylabel(r"$g_X$")
    ax.legend(handles=handles, fontsize=8, title="; ".join(sorted(thr_texts)), title_fontsize=7,
              loc="lower right")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both", lw=0.3)
    return fig if fig is not None else ax.figure
