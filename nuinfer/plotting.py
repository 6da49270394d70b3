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
    from .io import atomic_target
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


def plot_contours(scans: dict, *, ax=None, title: str = "", styles: dict | None = None, fill: bool = False):
    """Overlay 90% CL exclusion contours of several scans (one per label) on log-log axes.

    ``scans`` maps a label to a scan Dataset with a delta variable named by its
    ``statistic_variable`` attribute (or ``delta_chi2``) and a ``threshold`` attribute.  Contours are
    drawn from the full surface, so islands appear as separate closed curves.
    """
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
    thr_texts = set()
    handles = []
    for i, (label, ds) in enumerate(scans.items()):
        var = ds.attrs.get("statistic_variable", "delta_chi2" if "delta_chi2" in ds else "delta_twice_nll")
        d = ds[var].transpose("m_X", "g_X").values
        thr = float(ds.attrs["threshold"])
        thr_texts.add(f"{ds.attrs.get('cl', 0.9) * 100:.0f}% CL: $\\Delta\\chi^2$ = {thr:.2f} "
                      f"(ndof={ds.attrs.get('ndof', 2)})")
        m = ds["m_X"].values
        g = ds["g_X"].values
        st = dict(MODEL_STYLE.get(label, {}))
        if styles and label in styles:
            st.update(styles[label])
        st.setdefault("color", f"C{i % 10}")
        dd = np.where(np.isfinite(d), d, np.nanmax(d[np.isfinite(d)]) if np.isfinite(d).any() else 0.0)
        if fill:
            ax.contourf(m, g, dd.T, levels=[thr, np.inf], colors=[st["color"]], alpha=0.12)
        ax.contour(m, g, dd.T, levels=[thr], colors=[st["color"]],
                   linestyles=[st.get("ls", "-")], linewidths=st.get("lw", 1.6))
        handles.append(plt.Line2D([], [], color=st["color"], ls=st.get("ls", "-"),
                                  label=MODEL_LABEL.get(label, label)))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$m_X$ [MeV]")
    ax.set_ylabel(r"$g_X$")
    ax.legend(handles=handles, fontsize=8, title="; ".join(sorted(thr_texts)), title_fontsize=7,
              loc="lower right")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both", lw=0.3)
    return fig if fig is not None else ax.figure
