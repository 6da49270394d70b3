"""Regression baseline (issue 12, item 5): today's numbers, recomputed and compared.

``tests/regression_baseline.json`` was written by ``scripts/record_regression_baseline.py`` with the
code of the commit recorded in it.  Each recorded quantity is computed by ONE small function in the
block "computations" below; a restructuring of the package updates those calls (to the new API)
and must leave the assertions and the tolerances untouched.

Quantities and tolerances (relative):

1. g90 of the 14 paper curves (CEvNS and EvES x S, P, V, A, T, B-L, Lmu-Ltau) at m_X = 0.01, 0.1,
   1, 10, 100, 1000 MeV: statistic eq26 (1e-9) and poisson (1e-6);
2. COHERENT CsI 2017: SM total in the 12 analysis bins, sin^2 theta_W best fit and 1-sigma
   interval (1e-6);
3. Dresden-II-like Asimov g90 of the light vector at 1 MeV (1e-6);
4. xenon neutrino floor, SM scenario, at three WIMP masses: floor cross section and the
   1 tonne-year discovery limit (1e-6);
5. a 16 walker x 200 step emcee chain of models/bayes_eves_vector.toml (seed 1, BLAS limited to
   one thread): SHA-256 of the chain bytes (bitwise) and the per-parameter means.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
BASELINE = Path(__file__).with_name("regression_baseline.json")
COHERENT_DATA = ROOT.parent / "shared" / "data" / "coherent_csi_2017_bradkav"

# --------------------------------------------------------------------------------------------
# fixed inputs (part of the baseline definition: do not change)
# --------------------------------------------------------------------------------------------
#: mediator masses [MeV] of the g90 table
MASSES_MEV = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
#: the 14 paper curves: (process, model) -> preset the curve is drawn from (as `reproduce` does:
#: S, P, V, A, T from Fig. 2; B-L, Lmu-Ltau from Fig. 4; Fig. 3 re-plots Fig. 2's V and S)
CURVES = {(proc, mo): f"fig2_{proc}" for proc in ("cevns", "eves") for mo in ("S", "P", "V", "A", "T")}
CURVES.update({(proc, mo): f"fig4_{proc}" for proc in ("cevns", "eves") for mo in ("B-L", "Lmu-Ltau")})
#: coupling grid of the g90 scans, per process (the presets' ranges and point count, fixed here)
G_GRID = {"cevns": {"lo": 1e-7, "hi": 1.0, "n": 200, "scale": "log"},
          "eves": {"lo": 1e-8, "hi": 1.0, "n": 200, "scale": "log"}}
STATISTICS = ("eq26", "poisson")
#: Dresden-II-like: mass grid 0.1, 1, 10 MeV (contains 1 MeV exactly), no quenching variants
DRESDEN_OVERRIDES = {"variants": {}, "scan.m_X_MeV": {"lo": 0.1, "hi": 10.0, "n": 3, "scale": "log"}}
DRESDEN_MASS_MEV = 1.0
#: floor: the floor_xenon preset reduced to the SM scenario, 3 WIMP masses, 28 exposures, no toys
FLOOR_MASSES_GEV = {"lo": 6.0, "hi": 600.0, "n": 3}  # 6, 60, 600 GeV
FLOOR_EXPOSURES = {"lo": 1e-3, "hi": 1e6, "n": 28}
FLOOR_PANEL_TONNE_YEAR = 1.0
#: posterior chain
CHAIN = {"walkers": 16, "steps": 200, "seed": 1}

TOL = {"g90_eq26": 1e-9, "g90_poisson": 1e-6, "coherent": 1e-6, "dresden": 1e-6, "floor": 1e-6}


# --------------------------------------------------------------------------------------------
# computations: ONE function per recorded quantity (update these calls after a restructuring)
# --------------------------------------------------------------------------------------------
def compute_g90(process: str, model: str, statistic: str) -> list[float]:
    """g90 of one paper curve at MASSES_MEV (profile scan on templates at exactly those masses)."""
    from nuinfer.tasks import exclusion
    from nuinfer.tasks.xenon import preset, scan_model
    ana = preset(CURVES[(process, model)], {"scan.g_X": dict(G_GRID[process]), "statistics.statistic": statistic})
    fm = ana.forward_model()
    templates = fm.templates(ana.interaction(model), np.array(MASSES_MEV))
    scan = scan_model(ana, model, fm=fm, templates=templates)
    assert scan.attrs["statistic"] == statistic
    g90 = exclusion(scan)["g90"]
    assert np.array_equal(g90["m_X"].values, np.array(MASSES_MEV))
    return [float(v) for v in g90.values]


def compute_coherent() -> dict:
    """COHERENT CsI 2017: SM total in the analysis bins, sin^2 theta_W best fit and 1-sigma interval."""
    from nuinfer.spec import terrestrial as tcfg
    from nuinfer.tasks import terrestrial as tw
    ana = tcfg.load(MODELS / "coherent_csi2017.toml", data_dir=str(COHERENT_DATA))
    res = tw.analyse(ana, tasks=["sin2w"], quiet=True)
    a = res["sin2w"].attrs
    return {"sm_total": float(res["prediction"].attrs["sm_total"]),
            "sin2w_best_fit": float(a["best_fit"]),
            "sin2w_1sigma_lo": float(a["interval_1sigma_lo"]),
            "sin2w_1sigma_hi": float(a["interval_1sigma_hi"])}


def compute_dresden() -> float:
    """Dresden-II-like Asimov (modified Lindhard), light vector: g90 at DRESDEN_MASS_MEV."""
    from nuinfer.spec import terrestrial as tcfg
    from nuinfer.tasks import terrestrial as tw
    ana = tcfg.load(MODELS / "dresden2_asimov.toml", DRESDEN_OVERRIDES)
    res = tw.analyse(ana, tasks=["V"], quiet=True)
    return float(tw.g90_table(res["V"], masses=(DRESDEN_MASS_MEV,))[f"{DRESDEN_MASS_MEV:g}"])


def compute_floor() -> dict:
    """Xenon floor, SM scenario: floor cross section and 1 t yr discovery limit per WIMP mass."""
    from nuinfer.tasks.floor import compute_floor as _compute_floor
    from nuinfer.tasks.floor import load_floor_config
    raw = tomllib.loads((MODELS / "floor_xenon.toml").read_text())
    raw["signal"]["wimp"]["m_GeV"] = dict(FLOOR_MASSES_GEV)
    raw["floor"]["exposure"]["tonne_year"] = dict(FLOOR_EXPOSURES)
    raw["floor"]["scenarios"] = {"SM": raw["floor"]["scenarios"]["SM"]}
    raw["floor"]["toys"]["n"] = 0
    ds = _compute_floor(load_floor_config(raw), quiet=True)
    assert bool(ds["converged"].values.all())
    sm = ds.sel(scenario="SM")
    return {"m_chi_GeV": [float(v) for v in ds["m_chi"].values],
            "floor_cm2": [float(v) for v in sm["floor"].values],
            "limit_1tyr_cm2": [float(v) for v in sm["limit_panels"].sel(panel=FLOOR_PANEL_TONNE_YEAR).values]}


def compute_chain(tmp_dir) -> np.ndarray:
    """The posterior example's chain, shape (walkers, steps, parameters), float64, BLAS on 1 thread."""
    import xarray as xr
    from threadpoolctl import threadpool_limits

    from nuinfer.tasks import bayes as bayes
    out = Path(tmp_dir) / "posterior_regression.nc"
    with threadpool_limits(limits=1):
        bayes.run_sample(MODELS / "bayes_eves_vector.toml", out, progress=False, **CHAIN)
    with xr.open_datatree(out) as tree:
        post = tree["posterior"].to_dataset().load()
        # burn-in draws are kept in their own group: the recorded chain is the whole run
        if "warmup_posterior" in tree.children:
            warm = tree["warmup_posterior"].to_dataset().load()
            post = xr.concat([warm, post], dim="draw", data_vars="all", coords="different",
                             compat="equals", join="outer")
    return np.stack([post[n].transpose("chain", "draw").values for n in ("log10_m_X", "log10_g_X", "a")], axis=-1)


# --------------------------------------------------------------------------------------------
# helpers shared with the recording script
# --------------------------------------------------------------------------------------------
def chain_summary(chain: np.ndarray) -> dict:
    c = np.ascontiguousarray(chain, dtype="<f8")
    return {"sha256": hashlib.sha256(c.tobytes()).hexdigest(), "shape": list(c.shape),
            "parameters": ["log10_m_X", "log10_g_X", "a"],
            "mean": [float(v) for v in c.mean(axis=(0, 1))]}


def _rel(a, b) -> float:
    return abs(a - b) / abs(b) if b != 0 else abs(a)


def _assert_close(new, old, tol, what):
    assert new is not None and math.isfinite(new), f"{what}: got {new}"
    assert _rel(new, old) < tol, f"{what}: {new!r} vs baseline {old!r} (rel {_rel(new, old):.3g} >= {tol:g})"


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def baseline():
    return json.loads(BASELINE.read_text())


def test_baseline_covers_the_14_curves(baseline):
    for st in STATISTICS:
        got = {(p, m) for p, per in baseline["g90"][st].items() for m in per}
        assert got == set(CURVES) and len(got) == 14
    assert baseline["g90_masses_MeV"] == list(MASSES_MEV)


@pytest.mark.parametrize("statistic", STATISTICS)
@pytest.mark.parametrize("process,model", sorted(CURVES))
def test_g90_paper_curves(baseline, process, model, statistic):
    old = baseline["g90"][statistic][process][model]
    new = compute_g90(process, model, statistic)
    tol = TOL[f"g90_{statistic}"]
    for m, a, b in zip(MASSES_MEV, new, old):
        _assert_close(a, b, tol, f"g90 {statistic} {process} {model} at {m:g} MeV")


@pytest.mark.skipif(not COHERENT_DATA.is_dir(), reason="COHERENT user data not available")
def test_coherent_csi2017(baseline):
    new, old = compute_coherent(), baseline["coherent_csi2017"]
    assert set(new) == set(old)
    for k in old:
        _assert_close(new[k], old[k], TOL["coherent"], f"COHERENT {k}")


def test_dresden_g90(baseline):
    _assert_close(compute_dresden(), baseline["dresden2_g90_V_1MeV"], TOL["dresden"], "Dresden-II g90 V 1 MeV")


def test_floor_xenon_sm(baseline):
    new, old = compute_floor(), baseline["floor_xenon_SM"]
    assert new["m_chi_GeV"] == pytest.approx(old["m_chi_GeV"], rel=1e-12)
    for k in ("floor_cm2", "limit_1tyr_cm2"):
        for m, a, b in zip(old["m_chi_GeV"], new[k], old[k]):
            _assert_close(a, b, TOL["floor"], f"floor {k} at {m:g} GeV")


def test_posterior_chain_bitwise(baseline, tmp_path):
    new, old = chain_summary(compute_chain(tmp_path)), baseline["posterior_chain"]
    assert new["shape"] == old["shape"]
    # means first, so that a failure says how far the chain moved
    assert new["mean"] == old["mean"], f"chain means {new['mean']} vs baseline {old['mean']}"
    assert new["sha256"] == old["sha256"]
