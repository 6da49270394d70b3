"""Limits on the paper presets (coarse grids): the orderings of PHYSICS.md section 8 and the shape of g90(m)."""

import numpy as np
import pytest

from nuinfer.spec import xenon as config
from nuinfer.tasks import delta_chi2_threshold, exclusion
from nuinfer.tasks.xenon import models_dir, scan_model

GRID = {"scan.m_X_MeV.n": 13, "scan.g_X.n": 160}  # m_X = 0.01 ... 1e4 MeV, half-decade steps


def _g90(fig, proc, statistic="eq26"):
    ana = config.load(models_dir() / f"{fig}_{proc}.toml", {**GRID, "statistics.statistic": statistic})
    fm = ana.forward_model()
    out = {}
    for mo in ana.models:
        ds = scan_model(ana, mo, fm=fm)
        out[mo] = exclusion(ds)["g90"]
    return out


@pytest.fixture(scope="module")
def fig2():
    return {p: _g90("fig2", p) for p in ("cevns", "eves")}


@pytest.fixture(scope="module")
def fig4():
    return {p: _g90("fig4", p) for p in ("cevns", "eves")}


def at(g90, m):
    return float(g90.sel(m_X=m, method="nearest"))


def test_thresholds():
    assert delta_chi2_threshold(0.9, 2) == pytest.approx(4.605170, abs=1e-6)
    assert delta_chi2_threshold(0.9, 1) == pytest.approx(2.705543, abs=1e-6)


def test_every_curve_is_finite(fig2, fig4):
    for d in (fig2, fig4):
        for proc, curves in d.items():
            for mo, g in curves.items():
                assert np.all(np.isfinite(g.values)), (proc, mo)
                assert np.all((g.values > 1e-9) & (g.values < 1.0)), (proc, mo)


def test_cevns_scalar_most_pseudoscalar_least_constrained(fig2):
    # paper Sec. 4.2: in CEvNS the scalar is the most and the pseudoscalar the least constrained
    g = fig2["cevns"]
    for m in (0.01, 1.0, 100.0):
        vals = {mo: at(g[mo], m) for mo in g}
        assert min(vals, key=vals.get) == "S", (m, vals)
        assert max(vals, key=vals.get) == "P", (m, vals)


def test_eves_tensor_most_pseudoscalar_least_constrained(fig2):
    # paper Sec. 4.2: in EvES the tensor is the most and the pseudoscalar the least constrained
    g = fig2["eves"]
    for m in (0.01, 1.0, 100.0):
        vals = {mo: at(g[mo], m) for mo in g}
        assert min(vals, key=vals.get) == "T", (m, vals)
        assert max(vals, key=vals.get) == "P", (m, vals)


def test_eves_wins_for_light_vector_cevns_for_heavy(fig2):
    # paper Sec. 4.2 / Fig. 3: EvES dominates CEvNS for the universal vector below m_V ~ 2 MeV,
    # CEvNS wins for heavy mediators
    ge, gc = fig2["eves"]["V"], fig2["cevns"]["V"]
    assert at(ge, 0.01) < at(gc, 0.01) and at(ge, 1.0) < at(gc, 1.0)
    assert at(gc, 100.0) < at(ge, 100.0) and at(gc, 1e4) < at(ge, 1e4)
    m = ge["m_X"].values
    cross = m[np.argmax(gc.values < ge.values)]
    assert 1.0 < cross < 30.0


def test_bl_more_constrained_than_lmu_ltau(fig4):
    # paper Sec. 4.2: the B-L exclusion curves are more stringent than the Lmu-Ltau ones
    for proc in ("cevns", "eves"):
        bl, lm = fig4[proc]["B-L"], fig4[proc]["Lmu-Ltau"]
        assert np.all(bl.values < lm.values), proc


@pytest.mark.parametrize("proc", ["cevns", "eves"])
def test_g90_linear_in_mass_above_momentum_transfer(fig2, proc):
    # for m >> q every new-physics term goes as (g^2/m^2)^k: g90 grows in proportion to m
    for mo, g in fig2[proc].items():
        r = at(g, 1e4) / at(g, 1e3)
        assert r == pytest.approx(10.0, rel=0.05), (proc, mo, r)


def test_g90_flat_below_momentum_transfer(fig2):
    # rates depend on m only through 1/(q^2 + m^2): flat once m^2 << q_min^2.
    # CEvNS: q_min^2 = 2 m_N E_nr(0.1 keVee) ~ 170 MeV^2, so flat below ~1 MeV.
    for mo, g in fig2["cevns"].items():
        lo = g.sel(m_X=slice(None, 1.01)).values
        assert lo.size >= 5 and lo.max() / lo.min() < 1.02, mo
    # EvES: q_min^2 = 2 m_e T(0.1 keV) ~ 1e-4 MeV^2 -> flat only below ~1e-3 MeV
    ana = config.load(models_dir() / "fig2_eves.toml",
                      {"scan.m_X_MeV.lo": 1e-5, "scan.m_X_MeV.hi": 1e-3, "scan.m_X_MeV.n": 5,
                       "scan.g_X.n": 160})
    fm = ana.forward_model()
    for mo in ana.models:
        g = exclusion(scan_model(ana, mo, fm=fm))["g90"].values
        assert np.all(np.isfinite(g)) and g.max() / g.min() < 1.1, (mo, g)


def test_poisson_and_eq26_limits_agree_roughly():
    # same nuisance, different likelihood: limits within a factor 1.5 on the EvES vector
    a = _g90("fig3", "eves", "eq26")["V"].values
    b = _g90("fig3", "eves", "poisson")["V"].values
    assert np.all(np.abs(np.log(a / b)) < np.log(1.5))
