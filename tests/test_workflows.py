"""Systematics comparisons and the end-to-end `nuinfer reproduce --quick` (issue 5)."""

import json

import numpy as np
import pytest
import xarray as xr

from nuinfer.spec import xenon as config
from nuinfer.cli import main
from nuinfer.exceptions import InvalidConfig
from nuinfer.tasks.paper import compare, parse_vary, scenario_overrides
from nuinfer.tasks.xenon import models_dir

SMALL = {"scan.m_X_MeV.n": 9, "scan.g_X.n": 60, "binning.n": 40}


@pytest.fixture(scope="module")
def eves_v():
    return config.load(models_dir() / "fig3_eves.toml", SMALL)


def test_compare_labels_and_monotonic_effects(eves_v):
    ds, scans, rows = compare(eves_v, ["exposure=2,4", "sigma_sys=0"], model="V", quiet=True)
    assert list(ds["scenario"].values) == ["baseline", "exposure=2", "exposure=4", "sigma_sys=0"]
    assert ds["delta"].dims == ("scenario", "m_X", "g_X")
    g = {r["scenario"]: np.array(list(r["g90_at_m_X_MeV"].values()), float) for r in rows}
    assert all(g[k].size == 4 and np.all(np.isfinite(g[k])) for k in g)
    # mass keys in numeric order, labels carry key, value and unit, ratio defined against the baseline
    assert list(rows[0]["g90_at_m_X_MeV"]) == sorted(rows[0]["g90_at_m_X_MeV"], key=float)
    assert rows[1]["label"] == "exposure = 2 t yr" and rows[1]["unit"] == "t yr"
    assert all(v == pytest.approx(1.0) for v in rows[0]["g90_ratio_to_baseline_at_m_X_MeV"].values())
    # the file holds g90 and the excluded intervals of every scenario
    assert ds["g90"].dims == ("scenario", "m_X") and "interval_g_lo" in ds and "interval_scenario_index" in ds
    # doubling the exposure never weakens a limit; removing the normalisation uncertainty never weakens it
    assert np.all(g["exposure=2"] <= g["baseline"] * (1 + 1e-9))
    assert np.all(g["exposure=4"] <= g["exposure=2"] * (1 + 1e-9))
    assert np.all(g["sigma_sys=0"] <= g["baseline"] * (1 + 1e-9))
    # the excluded region itself grows (pointwise), not just g90
    thr = float(ds["threshold"].sel(scenario="baseline"))
    base = ds["delta"].sel(scenario="baseline").values >= thr
    more = ds["delta"].sel(scenario="exposure=2").values >= thr
    assert np.all(more[base])


def test_every_required_scenario_kind_is_accepted(eves_v):
    for item in ["sigma_sys=0", "sigma_bg=0.2", "exposure=20", "threshold=1", "binding=false",
                 "statistic=poisson", "ndof=1", "bins=50", "flux=b16-gs98", "axial=standard",
                 "detector=xenonnt", "eves_norm=standard"]:
        (key, vals), = parse_vary([item])
        a = eves_v.replace(**scenario_overrides(key, vals[0]))
        assert a.cfg != eves_v.cfg, item
    cev = config.load(models_dir() / "fig3_cevns.toml", SMALL)
    for v in (0.166, 0.1735, "adiabatic"):
        a = cev.replace(**scenario_overrides("quenching", v))
        a.forward_model().sm_spectrum()
    with pytest.raises(InvalidConfig, match="--vary"):
        parse_vary(["sigma_sys"])
    with pytest.raises(InvalidConfig, match="unknown scenario key"):
        scenario_overrides("colour", 1)


def test_detector_scenario_weakens_light_mediator_limits(eves_v):
    ds, scans, rows = compare(eves_v, ["detector=xenonnt"], model="V", quiet=True)
    b, r = rows[0], rows[1]
    assert r["g90_at_m_X_MeV"]["0.01"] > b["g90_at_m_X_MeV"]["0.01"]


@pytest.mark.slow
def test_reproduce_quick_end_to_end(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert main(["reproduce", "--quick", "--outdir", str(out), "-q"]) == 0
    for stem in ("fig1", "fig2", "fig3", "fig4"):
        assert (out / f"{stem}.png").stat().st_size > 10_000
    ncs = sorted(out.glob("*.nc"))
    names = {p.name for p in ncs}
    for need in ("fig1_cevns.nc", "fig1_eves.nc", "fig2_cevns.nc", "fig2_eves.nc", "fig3_cevns.nc",
                 "fig4_eves.nc", "systematics_eves_V.nc", "systematics_cevns_V.nc",
                 "posterior_eves_vector.nc"):
        assert need in names, need
    for p in ncs:
        if p.name.startswith("posterior"):
            tree = xr.open_datatree(p)
            assert "posterior" in tree.children
            # reproduce omits the per-bin log-likelihoods, says so in the file and in the report
            assert "log_likelihood" not in tree.children and tree.attrs["log_likelihood_written"] == 0
            tree.close()
            continue
        with xr.open_dataset(p) as ds:
            for v in ds.data_vars:
                if np.issubdtype(ds[v].dtype, np.floating):
                    assert np.all(np.isfinite(ds[v].values)), (p.name, v)
            assert "created_at" in ds.attrs and "config_json" in ds.attrs
            json.loads(ds.attrs["config_json"])
    report = (out / "report.md").read_text()
    for stem in ("fig1.png", "fig2.png", "fig3.png", "fig4.png", "systematics_eves_V.png", "current_cevns.png",
                 "current_eves.png"):
        assert f"({stem})" in report
    assert "| V (universal vector) |" in report and "## Comparison with the paper's stated results" in report
    assert "| FAIL |" not in report
    assert "has no per-bin `log_likelihood` group" in report
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 10 and "not found</i>" not in html
    for name in ("fig2_cevns.nc", "systematics_eves_V.nc", "current_xenonnt_8b.nc", "current_xenonnt_er.nc"):
        with xr.open_dataset(out / name) as ds:
            assert "g90" in ds and "interval_g_lo" in ds and "interval_g_hi" in ds, name
    # the real-data scans were computed by this run (beside the steps where forking is safe); a
    # second run of the step finds them in the files, says so, and gives the same limits
    first = json.loads((out / "report_sections.json").read_text())["current"]
    real = ("xenonnt_8b", "xenonnt_er")
    assert [first["data_sets"][k]["reused_from_earlier_run"] for k in real] == [False, False]
    assert main(["reproduce", "--quick", "--only", "current", "--outdir", str(out), "-q"]) == 0
    again = json.loads((out / "report_sections.json").read_text())["current"]
    assert [again["data_sets"][k]["reused_from_earlier_run"] for k in real] == [True, True]
    assert set(real) <= set(first["limits"])
    assert again["limits"] == first["limits"]


def test_observed_counts_include_background(tmp_path, eves_v):
    # a counts file holding SM + background (R_bg = sigma_bg R_SM) must reproduce the Asimov scan
    from nuinfer.tasks.xenon import scan_model
    fm = eves_v.forward_model()
    r_sm = fm.sm_spectrum()["total"].values
    (tmp_path / "n.txt").write_text("".join(f"{float(v)!r}\n" for v in r_sm * 1.1))
    base = scan_model(eves_v, "V", fm=fm)
    obs = scan_model(eves_v.replace(**{"statistics.data": str(tmp_path / "n.txt")}), "V", fm=fm)
    np.testing.assert_allclose(obs["delta_chi2"].values, base["delta_chi2"].values, rtol=1e-9, atol=1e-9)


def test_vary_takes_analysis_file_keys(eves_v):
    # --vary KEY: short scenario names, or dotted keys of the analysis file (translated to the internal form)
    (key, vals), = parse_vary(["nuisances.sigma_sys=0,0.2"])
    assert key == "nuisances.sigma_sys" and vals == [0, 0.2]
    assert scenario_overrides(key, 0.2) == {"statistics.sigma_sys": 0.2}
    assert scenario_overrides("backgrounds.sigma_bg", 0.3) == {"statistics.sigma_bg": 0.3}
    a = eves_v.replace(**scenario_overrides(key, 0.2))
    assert a.cfg["statistics"]["sigma_sys"] == 0.2 and eves_v.cfg["statistics"]["sigma_sys"] == 0.1


def test_compare_sweep_on_dask_equals_the_in_process_run():
    from nuinfer.tasks.paper import compare as _compare
    from nuinfer.tasks.xenon import preset
    ana = preset("fig3_eves", {"scan.m_X_MeV.n": 4, "scan.g_X.n": 20, "binning.n": 30})
    a, _, rows_a = _compare(ana, ["sigma_sys=0,0.2"], model="S", quiet=True)
    b, _, rows_b = _compare(ana, ["sigma_sys=0,0.2"], model="S", quiet=True, scheduler="local-threads")
    np.testing.assert_array_equal(a["g90"].values, b["g90"].values)
    assert [r["g90_at_m_X_MeV"] for r in rows_a] == [r["g90_at_m_X_MeV"] for r in rows_b]
