"""The floor workflow end to end (issue 9, items 3-5): limits vs exposure, fog, scenarios, I/O, errors.

A small configuration (11 masses, 28 exposures, 30 bins) runs once per module with figures; the
checks are on what a user reads back from the NetCDF file with plain xarray.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from nuinfer.exceptions import ConfigError
from nuinfer.tasks.floor import DEFAULTS, load_floor_config, run_floor

SMALL = {
    "name": "floor_small",
    "wimp": {"m_GeV": {"lo": 1.5, "hi": 1536.0, "n": 11}, "sigma_cm2": {"lo": 1e-50, "hi": 1e-42, "n": 21}},
    "exposure": {"tonne_year": {"lo": 1e-3, "hi": 1e6, "n": 28}, "panels": [1.0, 100.0]},
    "binning": {"lo": 1e-4, "hi": 100.0, "n": 30},
    "scenarios": {
        "SM": {"label": "SM"},
        "sin2w": {"label": "SM + sin2w", "sin2w_rel_sigma": 0.1},
        "vector": {"label": "vector", "model": "V", "m_X_MeV": 1.0, "g_X": "auto"},
        "scalar": {"label": "scalar", "model": "S", "m_X_MeV": 1.0, "g_X": 5e-6},
    },
    "auto_limit": {"g_points": 40},
    "toys": {"n": 200, "seed": 3},
}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("floor") / "small.nc"
    summary = run_floor(SMALL, out, quiet=True)
    return summary, out


@pytest.fixture(scope="module")
def ds(result):
    with xr.open_dataset(result[1]) as d:  # plain xarray, no nuinfer reader
        return d.load()


def test_file_reopens_with_plain_xarray(result, ds):
    summary, out = result
    for v in ("discovery_limit", "fog_index", "floor", "fog_map", "limit_panels", "background_counts",
              "wimp_counts", "benchmark_counts", "converged"):
        assert v in ds and "units" in ds[v].attrs and "long_name" in ds[v].attrs
    assert list(ds["scenario"].values) == ["SM", "sin2w", "vector", "scalar"]
    assert ds["discovery_limit"].dims == ("scenario", "m_chi", "exposure")
    assert np.isfinite(ds["discovery_limit"]).all()
    assert ds["converged"].values.all()
    for k, v in ds.attrs.items():
        assert isinstance(v, (str, int, float, np.integer, np.floating)), k
    assert json.loads(ds.attrs["config_json"])["name"] == "floor_small"
    assert ds.attrs["q0_required"] == pytest.approx((3 + 1.2815515655446004) ** 2)
    for p in summary["plots"].values():
        assert p.endswith(".png") and (out.parent / p.split("/")[-1]).stat().st_size > 10_000
    assert set(summary["plots"]) == {"spectra", "fog", "sin2w", "mediators"}


def test_limits_improve_with_exposure_then_saturate_at_6GeV(ds):
    """Discovery limits fall monotonically with exposure; at 6 GeV (the 8B-like WIMP) they fall at
    least as fast as Poisson statistics allow (n <= 2) at small exposure and then slow down: fog index
    n > 2 at large exposure (tens to thousands of tonne-years)."""
    L = ds["discovery_limit"].values
    assert np.all(np.diff(L, axis=-1) < 0)
    n = ds["fog_index"].sel(scenario="SM").sel(m_chi=6.0, method="nearest")
    ex = ds["exposure"].values
    assert float(n.sel(exposure=1e-3, method="nearest")) < 2.0
    assert float(n.sel(exposure=slice(10.0, 1e4)).max()) > 2.2
    # the floor at 6 GeV lies where n first reaches 2, above the 100 t yr limit
    fl = float(ds["floor"].sel(scenario="SM").sel(m_chi=6.0, method="nearest"))
    assert float(ds["limit_panels"].sel(scenario="SM").sel(m_chi=6.0, panel=100.0, method="nearest")) < fl
    assert ex[0] < float(ds["floor_exposure"].sel(scenario="SM").sel(m_chi=6.0, method="nearest")) < ex[-1]
    # the fog map is filled inside the exposure range and n >= 1 there
    fm = ds["fog_map"].sel(scenario="SM").values
    assert np.isfinite(fm).any() and np.nanmin(fm) > 0.9


def test_extra_nuisance_never_helps(ds):
    """Adding the sin^2 theta_W nuisance can only weaken discovery (q0_A is a minimum over more
    parameters): its limits are >= the flux-only ones everywhere, and strictly worse somewhere."""
    sm = ds["discovery_limit"].sel(scenario="SM").values
    sw = ds["discovery_limit"].sel(scenario="sin2w").values
    assert np.all(sw >= sm * (1 - 1e-7))
    assert np.max(sw / sm) > 1.05


def test_scenarios_record_their_benchmarks(ds):
    info = json.loads(ds.attrs["scenarios_json"])
    assert info["vector"]["g_X_source"].startswith("auto: 90% CL g90 of fig3_cevns")
    assert 1e-6 < info["vector"]["g_X"] < 3e-5
    assert info["scalar"]["g_X"] == 5e-6 and info["scalar"]["g_X_source"] == "configured"
    assert "sin2w_pull" in info["sin2w"]["nuisances"]
    bg = ds["background_counts"].sum(("source", "bin"))
    # a light scalar only adds events; the vector changes the background
    assert float(bg.sel(scenario="scalar")) > float(bg.sel(scenario="SM"))
    assert float(bg.sel(scenario="vector")) != pytest.approx(float(bg.sel(scenario="SM")), rel=1e-3)
    assert 4.0 < ds.attrs["b8_mimic_m_GeV"] < 9.0
    assert 0.0 <= ds.attrs["toy_fraction"] <= 1.0 and ds.attrs["toy_n"] == 200


def test_summary_reports_reference_masses(result):
    summary = result[0]
    row = summary["scenarios"]["SM"]["by_mass"]["6"]
    assert row["max_fog_index_above_10tyr"] > 2.0
    assert row["limit_1tyr_cm2"] > row["limit_100tyr_cm2"] > 0
    assert summary["scenarios"]["SM"]["all_converged"]


def test_quick_mode_coarsens_the_grids():
    cfg = load_floor_config("models/floor_xenon.toml", quick=True)
    assert cfg["wimp"]["m_GeV"]["n"] == DEFAULTS["quick"]["m_n"]
    assert cfg["binning"]["n"] == DEFAULTS["quick"]["bins"]
    full = load_floor_config("models/floor_xenon.toml")
    assert full["exposure"]["tonne_year"]["n"] == 81 and list(full["scenarios"]) == ["SM", "sin2w", "vector", "scalar"]


def _with(path: str, value):
    raw = copy.deepcopy(SMALL)
    cur = raw
    parts = path.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return raw


BAD = [
    (_with("wimp.mass", 5.0), "wimp.mass"),
    (_with("binning.n", "ten"), "binning.n"),
    (_with("exposure.tonne_year", {"lo": 10.0, "hi": 1.0, "n": 5}), "exposure.tonne_year.lo"),
    (_with("halo.v_esc_km_s", 100.0), "halo.v_esc_km_s"),
    (_with("background.sources", ["8B", "solar"]), "background.sources[1]"),
    (_with("uncertainties.boron", 0.02), "uncertainties.boron"),
    (_with("uncertainties.atm", -0.2), "uncertainties.atm"),
    (_with("background.groups", {"solar": ["pp", "pep"]}), "uncertainties.solar"),
    (_with("discovery.fraction", 1.5), "discovery.fraction"),
    (_with("scenarios.vector.model", "W'"), "scenarios.vector.model"),
    (_with("scenarios.vector.g_X", "max"), "scenarios.vector.g_X"),
    (_with("scenarios.scalar.extra", 1), "scenarios.scalar.extra"),
    (_with("scenarios.sin2w.sin2w_rel_sigma", 2.0), "scenarios.sin2w.sin2w_rel_sigma"),
    (_with("wimp.benchmarks", [{"m_GeV": 6.0}]), "wimp.benchmarks[0].sigma_cm2"),
    (_with("target", "Unobtainium"), "target"),
]


@pytest.mark.parametrize("raw,key", BAD, ids=[k for _, k in BAD])
def test_bad_config_names_the_key(raw, key):
    with pytest.raises(ConfigError) as exc:
        load_floor_config(raw)
    assert key in str(exc.value)


def _parser():
    from nuinfer.cli import build_parser
    return build_parser()


def test_cli_subcommand_errors_are_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[signal.wimp]\nmass = 5\n")
    args = _parser().parse_args(["floor", str(bad), "-o", str(tmp_path / "x.nc"), "-q"])
    with pytest.raises(ConfigError, match=r"signal\.wimp\.mass"):
        args.func(args)
    args = _parser().parse_args(["floor", "models/floor_xenon.toml", "-o", str(tmp_path / "x.txt")])
    with pytest.raises(ConfigError, match="--output-file"):
        args.func(args)
    args = _parser().parse_args(["floor", str(tmp_path / "missing.toml"), "-q"])
    with pytest.raises(ConfigError, match="config"):
        args.func(args)


def test_nuinfer_main_exit_code_2_on_bad_floor_file(tmp_path, capsys):
    from nuinfer.cli import main
    bad = tmp_path / "bad.toml"
    bad.write_text("[floor.discovery]\nfraction = 2.0\n")
    assert main(["floor", str(bad), "-o", str(tmp_path / "x.nc")]) == 2
    assert "floor.discovery.fraction" in capsys.readouterr().err


def test_floor_scenarios_on_dask_equal_the_in_process_run():
    """[floor] scheduler runs one task per scenario on Dask; the numbers do not depend on it."""
    import tomllib

    from nuinfer.tasks.floor import compute_floor, load_floor_config
    raw = tomllib.loads((Path(__file__).resolve().parents[1] / "models" / "floor_xenon.toml").read_text())
    raw["signal"]["wimp"]["m_GeV"] = {"lo": 6.0, "hi": 60.0, "n": 2}
    raw["floor"]["exposure"]["tonne_year"] = {"lo": 1e-2, "hi": 1e4, "n": 13}
    raw["floor"]["scenarios"] = {k: raw["floor"]["scenarios"][k] for k in ("SM", "sin2w")}
    raw["floor"]["toys"]["n"] = 0
    raw["experiment"]["binning"]["n"] = 30
    a = compute_floor(load_floor_config(raw), quiet=True)
    raw["floor"]["scheduler"] = "local-threads"
    b = compute_floor(load_floor_config(raw), quiet=True)
    np.testing.assert_array_equal(a["discovery_limit"].values, b["discovery_limit"].values)
    np.testing.assert_array_equal(a["converged"].values, b["converged"].values)
