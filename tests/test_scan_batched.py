"""Batched (m_X, g_X) scans: blocked polynomial templates, many masses per profile call.

:func:`nuinfer.tasks.model_scan.mass_coupling_scan` profiles the real-data surfaces either one
mass per call (warm start from the previous mass) or, when the templates come in blocks
(:class:`~nuinfer.likelihood.PolyTemplate` with ``block``), many masses per call in the levels of
``_mass_levels``.  Both must give the same surface: the profiled statistic where both converged,
the same ``converged`` flags (except at points left above the SM + 1e4 cut-off, which are not
iterated and whose flag depends on the start), the same g90 and the same dataset layout.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from nuinfer.exceptions import InvalidConfig
from nuinfer.likelihood import BinnedModel, Component, Morph, Parameter, PolyTemplate, profile
from nuinfer.spec.files import models_dir
from nuinfer.tasks import model_scan, xenonnt
from nuinfer.tasks.xenon import contour_results

M, G = 12, 16  # small grids: the comparisons take seconds
CUTOFF = 1e4  # points above SM + CUTOFF are not iterated (mass_coupling_scan)


# --------------------------------------------------------------------------------------------
# blocked PolyTemplate
# --------------------------------------------------------------------------------------------
T_NODES = np.linspace(-3, 3, 7)


def _model(kind):
    morph = Morph(kind, ("ly", "qy"), (T_NODES, T_NODES)) if kind else None
    return BinnedModel(components=(Component("s", norms=("mu", "eff"), morph=morph), Component("b", norms=("bk",))),
                       parameters=(Parameter("mu", np.inf), Parameter("eff", 0.2, 1.0, 0.5, 1.5),
                                   Parameter("bk", 0.1), Parameter("ly", 1.0, 0.0, -3, 3),
                                   Parameter("qy", 1.0, 0.0, -3, 3)))


@pytest.mark.parametrize("kind", ["grid2_spline", "grid2", None])
def test_blocked_poly_template_equals_one_template_per_block(kind):
    rng = np.random.default_rng(3)
    model, nb, B, N = _model(kind), 9, 5, 23
    K = 49 if kind else 1
    T = rng.uniform(1, 5, (B, 3, K, nb)) if kind else rng.uniform(1, 5, (B, 3, nb))
    block = rng.integers(0, B, N)  # unsorted, some blocks repeated, one maybe absent
    g2 = rng.uniform(0, 2, N)
    co = np.stack([np.ones_like(g2), g2, g2 * g2], axis=1)
    bg = rng.uniform(1, 3, nb)
    theta = np.column_stack([rng.uniform(0.5, 1.5, (N, 3)), rng.uniform(-3, 3, (N, 2))])
    prep = model.prepare({"s": PolyTemplate(co, T, block), "b": bg})
    mu, J, _ = model.evaluate(prep, theta, jacobian=True)
    for r in range(N):
        one = model.prepare({"s": PolyTemplate(co[r:r + 1], T[block[r]]), "b": bg})
        m1, J1, _ = model.evaluate(one, theta[r:r + 1], jacobian=True)
        np.testing.assert_allclose(mu[r], m1[0], rtol=1e-13)
        np.testing.assert_allclose(J[r], J1[0], rtol=1e-12, atol=1e-12)
    rows = np.array([7, 2, 2, 19])  # a subset of the batch, out of order
    np.testing.assert_allclose(model.evaluate(prep, theta[rows], rows), mu[rows], rtol=1e-13)
    # profiled: one batch over all blocks = one fit per hypothesis
    n = np.round(mu[0])
    a = profile(model, {"s": PolyTemplate(co, T, block), "b": bg}, n)
    for r in (0, 5, 22):
        b = profile(model, {"s": PolyTemplate(co[r:r + 1], T[block[r]]), "b": bg}, n)
        assert a.minimum[r] == pytest.approx(b.minimum[0], abs=1e-9)
        assert a.converged[r] == b.converged[0]


def test_blocked_poly_template_validation():
    model = _model("grid2_spline")
    co = np.ones((4, 3))
    T = np.ones((2, 3, 49, 5))
    with pytest.raises(InvalidConfig, match="block indices"):
        model.prepare({"s": PolyTemplate(co, T, np.array([0, 1, 2, 0])), "b": np.ones(5)})
    with pytest.raises(InvalidConfig, match="block indices"):
        model.prepare({"s": PolyTemplate(co, T, np.array([0.0, 1.0, 1.0, 0.0])), "b": np.ones(5)})
    with pytest.raises(InvalidConfig, match=r"T \(B, P, K, bin\)"):
        model.prepare({"s": PolyTemplate(co, T[0], np.zeros(4, int)), "b": np.ones(5)})
    with pytest.raises(InvalidConfig, match="nodes"):
        model.prepare({"s": PolyTemplate(co, T[:, :, :10], np.zeros(4, int)), "b": np.ones(5)})


@pytest.mark.parametrize("M_, stride, chain", [(12, 4, 8), (40, 16, 8), (200, 64, 8), (7, 4, 2), (2, 1, 8),
                                                (1, 1, 8), (33, 16, 4)])
def test_mass_levels_solve_every_mass_once_from_a_solved_one(M_, stride, chain):
    levels = model_scan._mass_levels(M_, stride, chain)
    solved = set()
    for idx, step in levels:
        assert step == 0 or all(i - step in solved for i in idx)
        assert not solved & set(idx.tolist())
        solved |= set(idx.tolist())
    assert solved == set(range(M_))


# --------------------------------------------------------------------------------------------
# real-data scans: batched = per mass
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def presets():
    out = {}
    for name in ("xenonnt_8b_cevns", "xenonnt_sr0_er"):
        cfg = xenonnt._config(str(models_dir() / f"{name}.toml"))
        sc = cfg["signal"]["scan"]
        out[name] = (xenonnt.build(cfg), np.geomspace(sc["m_X_MeV"]["lo"], sc["m_X_MeV"]["hi"], M),
                     np.geomspace(sc["g_X"]["lo"], sc["g_X"]["hi"], G))
    return out


def assert_same_surface(a, b):
    """The per-mass scan ``a`` and the batched scan ``b`` describe the same surface."""
    assert set(a.data_vars) == set(b.data_vars) and set(a.attrs) == set(b.attrs)
    for v in a.data_vars:
        assert a[v].dims == b[v].dims == ("m_X", "g_X") and a[v].dtype == b[v].dtype
        assert a[v].attrs == b[v].attrs
    np.testing.assert_array_equal(a["m_X"].values, b["m_X"].values)
    np.testing.assert_array_equal(a["g_X"].values, b["g_X"].values)
    st = a.attrs["statistic_scale"]
    va, vb = a[st].values, b[st].values
    ca, cb = a["converged"].values.astype(bool), b["converged"].values.astype(bool)
    sm = a.attrs["statistic_sm"]
    assert b.attrs["statistic_sm"] == pytest.approx(sm, abs=1e-9)
    assert b.attrs["statistic_min"] == pytest.approx(a.attrs["statistic_min"], abs=1e-7)
    both = ca & cb
    assert both.sum() > 0.5 * both.size
    np.testing.assert_allclose(vb[both], va[both], rtol=0, atol=1e-7)
    # flags: identical except where a point was left above the cut-off (not iterated) in a scan
    iterated = (va < sm + CUTOFF) & (vb < sm + CUTOFF)
    np.testing.assert_array_equal(ca[iterated], cb[iterated])
    assert np.array_equal(np.isnan(va), np.isnan(vb))
    for k in ("n_failed", "n_not_converged_near_threshold", "threshold", "statistic", "ndof", "cl"):
        assert a.attrs[k] == b.attrs[k], k
    # the same limits
    res = contour_results({"a": a, "b": b})
    ga, gb = res["a"].g90.values, res["b"].g90.values
    np.testing.assert_array_equal(np.isnan(ga), np.isnan(gb))
    np.testing.assert_allclose(gb[~np.isnan(gb)], ga[~np.isnan(ga)], rtol=1e-6)
    np.testing.assert_array_equal(res["a"].g90_status.values, res["b"].g90_status.values)
    return ca, cb, iterated


@pytest.mark.parametrize("preset, model", [("xenonnt_8b_cevns", "V"), ("xenonnt_8b_cevns", "S"),
                                           ("xenonnt_sr0_er", "V"), ("xenonnt_sr0_er", "Lmu-Ltau")])
def test_batched_scan_equals_per_mass_scan(presets, preset, model):
    lk, m, g = presets[preset]
    a = lk.scan(model, m, g, batched=False)
    b = lk.scan(model, m, g, batched=True)
    ca, cb, iterated = assert_same_surface(a, b)
    thr = a.attrs["threshold"]
    delta = a[f"delta_{a.attrs['statistic_scale']}"].values
    # the scans test something: an allowed region, an excluded one, and for the unbinned ER cost
    # points left above the cut-off
    assert 0.2 * delta.size < (delta < thr).sum() < 0.9 * delta.size
    if preset == "xenonnt_sr0_er":
        assert (~iterated).sum() > 10


def test_batched_scan_split_into_small_calls_is_the_same(presets, monkeypatch):
    """A memory budget smaller than one mass splits the couplings of a mass over calls."""
    lk, m, g = presets["xenonnt_sr0_er"]
    b = lk.scan("S", m, g)
    small = functools.partial(model_scan.mass_coupling_scan, max_batch_bytes=5 * 1.5e5)
    monkeypatch.setattr(xenonnt, "mass_coupling_scan", small)
    c = lk.scan("S", m, g)
    st = b.attrs["statistic_scale"]
    np.testing.assert_allclose(c[st].values, b[st].values, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(c["converged"].values, b["converged"].values)


def test_bilinear_yield_morph_batched_equals_per_mass(presets):
    """Bilinear morph: minima on the node lines are settled on row subsets of the blocked templates."""
    b8 = presets["xenonnt_8b_cevns"][0]
    lk = xenonnt.B8Cevns(b8.release, b8.srs, flux_sigma=b8.model.parameters[0].sigma, interpolation="bilinear")
    m, g = np.geomspace(0.01, 1e4, 8), np.geomspace(1e-7, 1e-2, 12)
    a = lk.scan("V", m, g, batched=False)
    b = lk.scan("V", m, g, batched=True)
    assert_same_surface(a, b)


def test_stopped_point_next_to_an_allowed_one_is_refitted(presets):
    """The contour interpolates between an allowed point and its excluded neighbour: a neighbour left
    above the cut-off is re-fitted to its minimum, whichever path left it there."""
    lk, m, g = presets["xenonnt_sr0_er"]
    for batched in (False, True):
        ds = lk.scan("Lmu-Ltau", m, g, batched=batched)
        st = ds.attrs["statistic_scale"]
        v = ds[st].values
        allowed = v < ds.attrs["statistic_sm"] + ds.attrs["threshold"]
        stopped = (ds["converged"].values == 0) & (v >= ds.attrs["statistic_sm"] + CUTOFF)
        nxt = np.zeros_like(allowed)
        nxt[:, 1:] |= allowed[:, :-1]
        nxt[:, :-1] |= allowed[:, 1:]
        assert not (stopped & nxt).any()
