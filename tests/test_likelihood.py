"""The one binned likelihood (nuinfer.likelihood): every modifier and cost, the profiler family
(vectorised Newton, closed form) against iminuit as the reference, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from nuinfer.exceptions import ConfigError, NumericalError
from nuinfer.likelihood import (BinnedModel, Component, Morph, Parameter, PolyTemplate, ShapeSys, bin_cost,
                                profile)

NB = 16


@pytest.fixture(scope="module")
def parts():
    rng = np.random.default_rng(7)
    sig = rng.uniform(5, 40, NB)
    bg = rng.uniform(10, 30, NB)
    nodes = 0.1 * np.linspace(-3, 3, 7)
    spline_nodes = np.stack([sig * (1 + 2 * e) * np.exp(-np.arange(NB) * e * 0.1) for e in nodes])
    t = np.linspace(-3, 3, 7)
    grid = np.stack([bg * (1 + 0.05 * a - 0.03 * b + 0.01 * a * b) for a in t for b in t])
    n = rng.poisson(sig + bg).astype(float)
    return dict(sig=sig, bg=bg, nodes=nodes, spline_nodes=spline_nodes, t=t, grid=grid, n=n)


def full_model(parts, grid_kind="grid2_spline"):
    t = parts["t"]
    comps = (Component("signal", norms=("flux", "eff"), morph=Morph("spline", ("qf",), (parts["nodes"],)),
                       shapesys="xsec"),
             Component("bg", norms=("bgnorm",), morph=Morph(grid_kind, ("ly", "qy"), (t, t))),
             Component("poly", norms=("pnorm",), morph=Morph("poly", ("s",))))
    pars = (Parameter("flux", 0.1), Parameter("eff", 0.05), Parameter("qf", 0.1, 0.0, -1, 1),
            Parameter("bgnorm", 0.2), Parameter("ly", 1.0, 0.0, -3, 3), Parameter("qy", 1.0, 0.0, -3, 3),
            Parameter("pnorm", np.inf), Parameter("s", 0.5, 0.0, -np.inf, np.inf))
    return BinnedModel(components=comps, parameters=pars, shapesys=(ShapeSys("xsec", np.arange(NB) % 4, np.full(4, 0.1)),))


def templates(parts):
    p = np.stack([np.full(NB, 2.0), np.linspace(0.5, 1.5, NB), np.full(NB, 0.2)])
    return {"signal": parts["spline_nodes"], "bg": parts["grid"], "poly": p}


@pytest.mark.parametrize("cost", ["poisson", "gauss", "gauss_hyp"])
@pytest.mark.parametrize("grid_kind", ["grid2_spline", "grid2"])
def test_newton_matches_minuit_with_every_modifier(parts, cost, grid_kind):
    model = full_model(parts, grid_kind)
    T = templates(parts)
    var = parts["sig"] + parts["bg"]
    r = profile(model, T, parts["n"], cost=cost, variance=var)
    m = profile(model, T, parts["n"], cost=cost, variance=var, method="minuit")
    assert r.converged.all() and m.converged.all()
    # the reference: MIGRAD's minimum is not lower than Newton's by more than its own tolerance
    assert r.minimum[0] <= m.minimum[0] + 1e-6
    assert r.minimum[0] == pytest.approx(m.minimum[0], abs=1e-5)
    np.testing.assert_allclose(r.theta, m.theta, atol=2e-3)


def test_unbinned_cost_is_the_extended_likelihood():
    """Columns: density at each event, then the expected total.  Against a direct evaluation."""
    rng = np.random.default_rng(3)
    ev = rng.exponential(2.0, 200)
    dens_a = np.exp(-ev / 2.0) / 2.0  # unit-normalised shapes at the events
    dens_b = np.full_like(ev, 1 / 20.0)
    model = BinnedModel(components=(Component("a", norms=("na",)), Component("b", norms=("nb",))),
                        parameters=(Parameter("na", np.inf, 100.0, 0.0), Parameter("nb", np.inf, 100.0, 0.0)))
    T = {"a": np.concatenate([dens_a, [1.0]]), "b": np.concatenate([dens_b, [1.0]])}
    n = np.concatenate([np.ones(ev.size), [0.0]])
    r = profile(model, T, n, cost="unbinned")
    m = profile(model, T, n, cost="unbinned", method="minuit")
    na, nb = r["na"][0], r["nb"][0]
    direct = 2 * (na + nb) - 2 * np.sum(np.log(na * dens_a + nb * dens_b))
    assert r.minimum[0] == pytest.approx(direct, rel=1e-12)
    assert r.minimum[0] == pytest.approx(m.minimum[0], abs=1e-5)
    assert na + nb == pytest.approx(ev.size, rel=1e-6)  # extended ML: the total equals the count


def test_closed_form_equals_newton_and_minuit_for_one_normalisation(parts):
    model = BinnedModel(components=(Component("nu", norms=("a",)), Component("bg")),
                        parameters=(Parameter("a", 0.1),))
    g2 = np.array([0.0, 1e-3, 1e-1, 10.0])
    T = {"nu": parts["sig"][None, :] * (1 + g2[:, None] * np.linspace(0, 3, NB)), "bg": parts["bg"]}
    var = parts["sig"] + parts["bg"]
    c = profile(model, T, parts["n"], cost="gauss", variance=var, method="closed_form")
    r = profile(model, T, parts["n"], cost="gauss", variance=var)
    m = profile(model, T, parts["n"], cost="gauss", variance=var, method="minuit")
    np.testing.assert_allclose(c.minimum, r.minimum, rtol=1e-9)
    np.testing.assert_allclose(c.minimum, m.minimum, rtol=1e-7)
    assert c.method == "closed_form" and c.converged.all()


def test_poly_template_equals_explicit_templates(parts):
    t = parts["t"]
    model = BinnedModel(components=(Component("s", norms=("mu",), morph=Morph("grid2_spline", ("ly", "qy"), (t, t))),),
                        parameters=(Parameter("mu", np.inf), Parameter("ly", 1.0, 0.0, -3, 3),
                                    Parameter("qy", 1.0, 0.0, -3, 3)))
    P = np.stack([parts["grid"], 0.3 * parts["grid"][::-1], 0.01 * parts["grid"]])  # (3, 49, NB)
    g2 = np.array([0.0, 0.5, 2.0])
    co = np.stack([np.ones_like(g2), g2, g2 * g2], axis=1)
    explicit = np.einsum("np,pkb->knb", co, P)
    a = profile(model, {"s": PolyTemplate(co, P)}, parts["n"] + 20)
    b = profile(model, {"s": explicit}, parts["n"] + 20)
    np.testing.assert_allclose(a.minimum, b.minimum, rtol=1e-12)
    np.testing.assert_allclose(a.theta, b.theta, atol=1e-9)


def test_converged_is_a_real_check(parts):
    model = full_model(parts)
    r = profile(model, templates(parts), parts["n"], max_iter=1)
    assert not r.converged.any()  # one Newton step is not a converged fit
    assert np.all(np.isfinite(r.minimum))


def test_bilinear_minimum_on_a_node_is_settled_and_flagged_converged():
    t = np.linspace(-3, 3, 7)
    base = np.array([10.0, 20.0])
    # a kink at t = 0: the expectation is |t|-shaped around the data
    grid = np.stack([base * (1 + 0.2 * abs(a)) for a in t for b in t])
    model = BinnedModel(components=(Component("b", morph=Morph("grid2", ("ly", "qy"), (t, t))),),
                        parameters=(Parameter("ly", np.inf, 0.4, -3, 3), Parameter("qy", 0.0, 0.0, -3, 3)))
    r = profile(model, {"b": grid}, base)
    assert r.converged.all() and r["ly"][0] == pytest.approx(0.0, abs=1e-6)


def test_bin_costs_are_non_negative_and_zero_at_the_data():
    n = np.array([0.0, 1.0, 5.0, 1e6])
    for cost in ("poisson", "gauss_hyp"):
        assert np.all(bin_cost(cost, n, np.where(n > 0, n, 1e-3)) >= 0)
        np.testing.assert_allclose(bin_cost(cost, n[1:], n[1:]), 0.0, atol=1e-12)
    assert np.isinf(bin_cost("poisson", np.array([2.0]), np.array([0.0]))[0])


@pytest.mark.parametrize("bad", ["dup_param", "unknown_param", "unknown_shapesys", "dup_component"])
def test_bad_model_structure_is_rejected(bad):
    p = [Parameter("a")]
    c = [Component("x", norms=("a",))]
    if bad == "dup_param":
        p.append(Parameter("a"))
    elif bad == "unknown_param":
        c.append(Component("y", norms=("zz",)))
    elif bad == "unknown_shapesys":
        c.append(Component("y", shapesys="nope"))
    else:
        c.append(Component("x"))
    with pytest.raises(ConfigError):
        BinnedModel(components=tuple(c), parameters=tuple(p))


def test_bad_templates_and_data_are_rejected(parts):
    model = BinnedModel(components=(Component("x", norms=("a",)),), parameters=(Parameter("a", 0.1),))
    with pytest.raises(ConfigError, match="no template"):
        profile(model, {}, parts["n"])
    with pytest.raises(NumericalError):
        profile(model, {"x": np.full(NB, np.nan)}, parts["n"])
    with pytest.raises(ConfigError, match="bins"):
        profile(model, {"x": parts["sig"]}, parts["n"][:-1])
    with pytest.raises(ConfigError, match=">= 0"):
        profile(model, {"x": parts["sig"]}, -parts["n"])
    with pytest.raises(ConfigError, match="variance"):
        profile(model, {"x": parts["sig"]}, parts["n"], cost="gauss")
    with pytest.raises(ConfigError, match="unknown cost"):
        profile(model, {"x": parts["sig"]}, parts["n"], cost="chi")
    with pytest.raises(ConfigError):
        Parameter("a", -1.0)


def test_model_scan_flags_a_failed_point_instead_of_raising():
    from nuinfer.tasks.model_scan import mass_coupling_scan

    model = BinnedModel(components=(Component("s", norms=("a",)),), parameters=(Parameter("a", 0.1),))
    base = np.array([10.0, 20.0, 30.0])

    def T(i, g2):
        t = base[None, :] * (1 + np.asarray(g2)[:, None])
        if i == 1:
            t = t.copy()
            t[-1, 0] = -1e30  # a negative expectation: the Poisson cost is infinite there
        return {"s": t}

    ds = mass_coupling_scan(model, T, base, [1.0, 2.0], np.array([0.1, 1.0, 10.0]))
    assert ds.attrs["n_failed"] == 1 and ds["converged"].values[1, 2] == 0
    assert ds["converged"].values.sum() == 5 and np.isfinite(ds.attrs["statistic_min"])


class _Quadratic:
    """A stand-in for the profile problem: f(x) = sum((x - c)^2) per point, +inf where x_0 < 0
    (a forbidden region the full step can land in), and a count of model calls."""

    def __init__(self, c):
        self.c = c
        self.calls = 0
        self.rows = 0

    def value(self, x, rows):
        self.calls += 1
        self.rows += len(rows)
        f = ((x - self.c[rows]) ** 2).sum(axis=1)
        return np.where(x[:, 0] < 0, np.inf, f)

    def grad_hess(self, x, rows):
        f = self.value(x, rows)
        g = 2.0 * (x - self.c[rows])
        H = np.broadcast_to(2.0 * np.eye(x.shape[1]), (x.shape[0],) + (x.shape[1],) * 2).copy()
        return f, (g, None), (H, None, None)


def _sequential_backtrack(prob, xa, active, cur, step, f, dec, done, free_cols, lo, hi):
    """The reference: one model call per halving, as the profiler did before the ladder."""
    alpha = np.ones(active.size)
    accepted = done.copy()
    f_new, x_new = f.copy(), xa.copy()
    for _ in range(25):
        todo = np.flatnonzero(~accepted)
        if todo.size == 0:
            break
        cand = xa[todo].copy()
        cand[:, free_cols] = np.clip(cur[todo] + alpha[todo, None] * step[todo], lo, hi)
        fc = prob.value(cand, active[todo])
        ok = np.isfinite(fc) & (fc <= f[todo] - 1e-4 * alpha[todo] * dec[todo] + 1e-13 * np.abs(f[todo]))
        x_new[todo[ok]], f_new[todo[ok]] = cand[ok], fc[ok]
        accepted[todo[ok]] = True
        alpha[todo[~ok]] *= 0.5
    return x_new, f_new, accepted


@pytest.mark.parametrize("with_derivatives,search", [(False, False), (True, False), (False, True), (True, True)])
def test_line_search_ladder_takes_the_step_of_sequential_halving(with_derivatives, search):
    """``_backtrack`` tries the step lengths after the full step eight at a time; every point must
    end where sequential halving ends (same step length, same statistic), including points that
    need 1-24 halvings to leave the forbidden region and points no length can help, in fewer calls.
    With the derivatives kept (``_Derivatives``), the points that accept the full step have them.
    With ``search`` (every point, as scans mark those above their cut-off) the points find their
    length by bisection: the same lengths here, where the passing lengths are all those below one,
    in at most 5 evaluations after a failed full step (the ladders take 8 to 24)."""
    from nuinfer.likelihood.profile import _Derivatives, _backtrack
    rng = np.random.default_rng(3)
    R, P = 400, 3
    c = rng.normal(size=(R, P))
    c[:, 0] = np.abs(c[:, 0]) * 10.0 ** rng.uniform(-8, 0, R)  # minima close to the forbidden edge
    xa = c + rng.normal(size=(R, P))
    xa[:, 0] = np.abs(xa[:, 0]) + 1e-3
    # steps that overshoot into x_0 < 0 by factors up to 2^23, some pointing uphill (never accepted)
    step = (c - xa) * 10.0 ** rng.uniform(0, 7, R)[:, None]
    step[::37] *= -1.0
    active, free = np.arange(R), np.arange(P)
    lo, hi = np.full(P, -np.inf), np.full(P, np.inf)
    ref_prob, prob = _Quadratic(c), _Quadratic(c)
    f = ref_prob.value(xa, active)
    dec = -np.einsum("rp,rp->r", 2.0 * (xa - c), step)
    done = np.zeros(R, bool)
    done[::53] = True
    want = _sequential_backtrack(ref_prob, xa, active, xa, step, f, dec, done, free, lo, hi)
    known = _Derivatives(R) if with_derivatives else None
    mask = np.ones(R, bool) if search else None
    got = _backtrack(prob, xa, active, xa, step, f, dec, done, free, lo, hi, known=known, search=mask)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert want[2].sum() < R and (~want[2] & ~done).any()  # some points cannot be helped
    if search:
        full_fails = ~done & ~(np.isfinite(f) & (ref_prob.value(xa + step, active)
                                                 <= f - 1e-4 * dec + 1e-13 * np.abs(f)))
        assert full_fails.sum() > 100 and prob.rows <= (~done).sum() + 5 * full_fails.sum()
    else:
        assert prob.calls < ref_prob.calls / 2
    if with_derivatives:
        full = np.isfinite(f) & (prob.value(xa + step, active) <= f - 1e-4 * dec + 1e-13 * np.abs(f)) & ~done
        assert full.any() and np.array_equal(known.have, full)
        g = known.take(prob, xa + step, active[full])[1][0]
        np.testing.assert_array_equal(g, 2.0 * (xa + step - c)[full])


def test_spline_morph_bases_equal_scipy_cubicspline():
    """The grid2_spline cardinal bases and the NodeSpline coefficients (numpy, no scipy.interpolate
    import) are scipy's not-a-knot CubicSpline: values and derivatives, clamped at the node range."""
    from scipy.interpolate import CubicSpline

    from nuinfer.likelihood.model import NodeSpline
    x = np.array([-3.0, -1.5, -0.5, 0.0, 0.7, 1.5, 3.0])
    m = Morph(kind="grid2_spline", params=("a", "b"), nodes=(x, np.linspace(-2.0, 2.0, 5)))
    p = np.random.default_rng(7).uniform(-4.0, 4.0, 300)
    for axis, xx in enumerate(m.nodes):
        w, d = m.cardinal(axis, p)
        ref = CubicSpline(xx, np.eye(xx.size), axis=0, bc_type="not-a-knot")
        pc = np.clip(p, xx[0], xx[-1])
        np.testing.assert_allclose(w, ref(pc), rtol=0, atol=1e-13)
        np.testing.assert_allclose(d, ref(pc, 1), rtol=0, atol=1e-12)
    v = np.random.default_rng(8).normal(size=(x.size, 3, 11))
    ns = NodeSpline(x, v)
    np.testing.assert_allclose(ns._c, CubicSpline(x, v, axis=0, bc_type="not-a-knot").c, rtol=0,
                               atol=1e-12 * np.abs(v).max())
