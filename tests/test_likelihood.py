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
