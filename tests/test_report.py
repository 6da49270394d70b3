"""The reproduce report (issue 16): steps and --only, progress lines, sections kept across runs, the
paper checks, the HTML version, scenario labels, figure hygiene and cheap imports."""

import json
import subprocess
import sys

import numpy as np
import pytest

from nuinfer.exceptions import InvalidConfig
from nuinfer.tasks import paper


def test_steps_comma_lists_repeated_flags_and_validation():
    assert paper.parse_steps(None) == list(paper.STEPS)
    assert paper.parse_steps(["fig3,fig1"]) == ["fig1", "fig3"]
    assert paper.parse_steps(["fig4", "fig1, bayes"]) == ["fig1", "fig4", "bayes"]
    assert paper.parse_steps("current") == ["current"]
    with pytest.raises(InvalidConfig) as e:
        paper.parse_steps(["fig1,fig5"])
    msg = str(e.value)
    assert "'fig5'" in msg and all(s in msg for s in paper.STEPS)
    with pytest.raises(InvalidConfig):
        paper.parse_steps([","])


def test_only_updates_sections_and_keeps_the_others(tmp_path, capsys):
    out = tmp_path / "out"
    paper.reproduce(out, quick=True, only=["fig1"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "reproduce [" in ln]
    assert len(lines) == 1 and "\r" not in err
    assert "fig1" in lines[0] and " s (total " in lines[0] and "done in 0.0 s" not in lines[0]
    first = (out / "report.md").read_text()
    assert "(fig1.png)" in first and "(fig3.png)" not in first
    paper.reproduce(out, quick=True, quiet=True, only=["fig3"])
    assert capsys.readouterr().err == ""
    report = (out / "report.md").read_text()
    assert "(fig1.png)" in report and "(fig3.png)" in report
    sec = json.loads((out / paper.SECTIONS_FILE).read_text())
    assert {"fig1", "fig3", "setup"} <= set(sec) and sec["fig3"]["mode"] == "quick"
    # numeric key order with units in the names
    lim = sec["fig3"]["limits"]["cevns"]["V"]
    assert list(lim) == sorted(lim, key=float)
    # the set-up is stated up front, the paper's orderings are checked with numbers
    for text in ("energy window", "0.1-100 keVee", "SM counts per source", "lindhard, k = 0.166",
                 "option `eves_vector_norm`", "asymptotic", "Delta chi2 = 4.605",
                 "EvES beats CEvNS for the universal vector", "crossover m_X =", "Lindhard k",
                 "Table III binding energies", "Eq. 13 normalisation", "Lmu-Ltau signs", "nu_e in Lmu-Ltau"):
        assert text in report, text
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("data:image/png;base64,") == 2


def test_crossover_and_paper_checks_on_synthetic_curves():
    m = list(np.geomspace(0.01, 1e4, 61))
    a = {"m_X_MeV": m, "g90": [1e-7 * (1 + x / 0.05) for x in m]}  # EvES-like: rises early
    b = {"m_X_MeV": m, "g90": [7e-6 * (1 + x / 10.0) for x in m]}  # CEvNS-like
    mx, low = paper.crossover_mass(a, b)
    assert low is True
    ratio = lambda x: 1e-7 * (1 + x / 0.05) / (7e-6 * (1 + x / 10.0))  # noqa: E731
    assert ratio(mx * 0.95) < 1 < ratio(mx * 1.05)
    lim = {mo: {"0.01": v, "1": v, "100": v} for mo, v in zip(paper.MODEL_ORDER, (1, 9, 2, 3, 4, 5, 6))}
    sections = {"fig2": {"limits": {"cevns": lim}}}
    rows = paper.paper_checks(sections)
    assert rows[0][1] == "PASS" and "S 1 (lowest g90)" in rows[0][2]
    assert rows[1][1] == "not run"
    assert rows[3][1] == "PASS"  # B-L (5) below Lmu-Ltau (6)


def test_scenario_labels_carry_units():
    assert paper.scenario_label("exposure", 20) == "exposure = 20 t yr"
    assert paper.scenario_label("threshold", 1.0) == "threshold = 1 keVee"
    assert paper.scenario_label("quenching", 0.1735) == "quenching: Lindhard k = 0.1735"
    assert paper.scenario_label("sigma_sys", 0.2).startswith("sigma_sys = 0.2 (20%")
    assert paper.scenario_label("binding", False) == "binding = off"
    assert "ratio" in paper.RATIO_DEFINITION and "weaker" in paper.RATIO_DEFINITION


def test_spectrum_figure_nothing_clipped_no_invisible_legend_distinct_styles():
    import matplotlib.colors as mc

    from nuinfer import plotting
    from nuinfer.tasks.xenon import preset, spectrum_dataset
    ds = spectrum_dataset(preset("fig1_cevns", {"binning.n": 30}))
    per = {}
    for mo in ds["model"].values:
        one = ds[["total"]].copy()
        one["total"] = ("bin", ds["total_model"].sel(model=mo).values)
        per[str(mo)] = one
    fig = plotting.plot_spectra(ds, per)
    ax = fig.axes[0]
    width = (ds["E_hi"] - ds["E_lo"]).values
    top = max(float(np.max(ds["total_model"].values / width, axis=None)), float(np.max(ds["total"].values / width)))
    assert ax.get_ylim()[1] >= top
    shown = [t.get_text() for t in ax.get_legend().get_texts()]
    lo = ax.get_ylim()[0]
    for s in ds["source"].values:
        visible = np.any(ds["counts"].sel(source=s).values / width > lo)
        assert (f"SM {s}" in shown) == bool(visible), s
    # legend outside the data (right of the axes), fixed layout
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1
    assert getattr(fig, "_nuinfer_fixed_layout", False)
    styles = [(mc.to_hex(st["color"]), str(st["ls"])) for st in plotting.SOURCE_STYLE.values()]
    assert len(set(styles)) == len(styles)
    model_colours = {mc.to_hex(st["color"]) for st in plotting.MODEL_STYLE.values()}
    assert not model_colours & {c for c, _ in styles}
    assert styles[list(plotting.SOURCE_STYLE).index("pp")] != styles[list(plotting.SOURCE_STYLE).index("DSN")]
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_paper_module_imports_no_heavy_modules():
    code = ("import sys, nuinfer.tasks.paper; "
            "print(','.join(m for m in ('matplotlib', 'xarray', 'scipy.stats') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_figures_are_built_by_the_worker_not_the_command(tmp_path):
    """Where figures are drawn beside (render.parallel_default), reproduce builds none of them in
    its own process: matplotlib is never imported there, the figure files appear all the same."""
    code = ("import sys, nuinfer.cli; from nuinfer import render; from nuinfer.tasks import paper; "
            f"paper.reproduce({str(tmp_path)!r}, quick=True, quiet=True, only=['fig4']); "
            "print(render.parallel_default(), 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "OPENBLAS_NUM_THREADS": "1"})
    parallel, imported = out.stdout.split()
    assert imported == ("False" if parallel == "True" else "True")
    assert (tmp_path / "fig4.png").stat().st_size > 10_000 and (tmp_path / "fig4_eves.nc").exists()
