"""The fast paths of the posterior step give the same bits as the plain ones.

* ``Posterior.log_prior`` against the sum of the parameters' own ``log_prior``, and the
  in-place likelihood kernels against the expressions they replace, bit for bit;
* ``bayes.run_plot`` right after ``bayes.run_sample`` (data kept in memory) against ``run_plot``
  reading the file: the same summary, tables and figures; the memory is not used once the file
  has changed.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from nuinfer.tasks import bayes
from nuinfer.tasks.posterior import (
    Parameter,
    Posterior,
    TemplateLikelihood,
    mediator_parameters,
)

SMALL = {
    "name": "test_eves_v_speed",
    "process": "eves",
    "models": ["V"],
    "binning": {"lo": 0.1, "hi": 1e4, "n": 30},
    "posterior": {"walkers": 12, "steps": 150, "seed": 5, "mass_grid_n": 61,
                  "log10_m_X": {"lo": -2.0, "hi": 2.0}, "log10_g_X": {"lo": -8.0, "hi": -4.0}},
}


def _template_likelihood(statistic="eq26", data=None, nb=40, m=25):
    rng = np.random.default_rng(4)
    x = np.linspace(-2.5, 2.5, m)
    r_sm = rng.uniform(5.0, 50.0, nb)
    prop = 1.0 / (1.0 + 10.0 ** (2.0 * x))[:, None]
    T1 = -rng.uniform(1e8, 1e9, nb) * prop
    T2 = rng.uniform(1e16, 1e17, nb) * prop ** 2
    return TemplateLikelihood(x, T1, T2, r_sm, data=data, statistic=statistic, sigma_bg=0.1)


def test_log_prior_is_the_sum_of_the_parameters_priors():
    pars = (Parameter("u", "$u$", "1", -2.0, 2.0),
            Parameter("n", "$n$", "1", -1.0, math.inf, prior="normal", mu=0.1, sigma=0.3),
            Parameter("w", "$w$", "1", 0.0, 1.0),
            Parameter("m", "$m$", "1", -0.5, 0.5, prior="normal", mu=0.0, sigma=2.0))
    post = Posterior(pars, lambda th: np.zeros(th.shape[0]))
    rng = np.random.default_rng(0)
    th = rng.uniform([-2.5, -1.5, -0.2, -0.7], [2.5, 2.0, 1.2, 0.7], (4000, 4))
    edges = np.array([[-2.0, -1.0, 0.0, -0.5], [2.0, np.inf, 1.0, 0.5],
                      [np.nextafter(-2.0, -3.0), np.nextafter(-1.0, 0.0), -0.0, np.nan],
                      [1.0, 1e200, 0.5, 0.1], [-np.inf, 0.0, 0.5, 0.0]])
    th = np.vstack([th, edges])
    ref = np.zeros(th.shape[0])
    with np.errstate(over="ignore", invalid="ignore"):
        for j, p in enumerate(pars):
            ref += p.log_prior(th[:, j])
        got = post.log_prior(th)
    assert got.tobytes() == ref.tobytes()
    assert 1000 < np.isfinite(got).sum() < 3900


@pytest.mark.parametrize("statistic", ["eq26", "poisson"])
def test_likelihood_kernels_are_the_plain_expressions(statistic):
    like = _template_likelihood(statistic)
    rng = np.random.default_rng(1)
    n = 300
    lm = rng.uniform(-2.5, 2.5, n)
    lm[:3] = [-2.5, 2.5, like.log10_m_grid[7]]
    lg = rng.uniform(-8.0, -4.0, n)
    a = rng.normal(0.0, 0.1, n)
    # the expressions of the plain implementation
    c = like.interp._c
    x = like.interp.x
    k = np.clip(np.searchsorted(x, lm, side="right") - 1, 0, x.size - 2)
    t = (lm - x[k])[:, None, None]
    ck = c[k]
    val = ((ck[:, 0] * t + ck[:, 1]) * t + ck[:, 2]) * t + ck[:, 3]
    t1, t2 = val[:, 0], val[:, 1]
    g2 = (10.0 ** (2.0 * lg))[:, None]
    R = like._t0 + g2 * (t1 + g2 * t2)
    assert like._prediction(lm, lg).tobytes() == R.tobytes()
    i1, i2 = like.interp(lm)
    assert i1.tobytes() == np.ascontiguousarray(t1).tobytes()
    assert i2.tobytes() == np.ascontiguousarray(t2).tobytes()
    b = 1.0 + a
    if statistic == "eq26":
        r = like._d - b[:, None] * R
        ll_ref = -0.5 * np.einsum("ij,ij->i", r, r)
        pw_ref = -0.5 * r * r
        assert like(lm, lg, a).tobytes() == ll_ref.tobytes()
        assert like.pointwise(lm, lg, a).tobytes() == pw_ref.tobytes()
        # one point at a time gives the same bits as the batch
        one = np.array([like(lm[i:i + 1], lg[i:i + 1], a[i:i + 1])[0] for i in range(20)])
        assert one.tobytes() == ll_ref[:20].tobytes()
    else:
        assert np.all(np.isfinite(like(lm, lg, a)))


def _plot_files(plots):
    from pathlib import Path
    return {k: Path(plots[k]).read_bytes() for k in ("corner", "mass_coupling")}


def test_run_plot_from_memory_equals_run_plot_from_file(tmp_path):
    path = tmp_path / "post.nc"
    bayes.run_sample(SMALL, path, progress=False)
    assert bayes._recall(path) is not None
    mem_dir, file_dir = tmp_path / "mem", tmp_path / "file"
    mem = bayes.run_plot(path, outdir=mem_dir)
    memo = dict(bayes._PLOT_MEMO)
    bayes._PLOT_MEMO.clear()
    disk = bayes.run_plot(path, outdir=file_dir)
    assert json.dumps(mem["summary"], sort_keys=True) == json.dumps(disk["summary"], sort_keys=True)
    for k in ("table_csv", "table_md"):
        a = mem_dir.joinpath(mem[k]).read_text().replace(str(mem_dir), "X")
        b = file_dir.joinpath(disk[k]).read_text().replace(str(file_dir), "X")
        assert a == b
    assert _plot_files(mem) == _plot_files(disk)
    # other slices: recomputed from the kept chains, still as from the file
    bayes._PLOT_MEMO.update(memo)
    mem5 = bayes.run_plot(path, outdir=mem_dir, n_slices=5)
    bayes._PLOT_MEMO.clear()
    disk5 = bayes.run_plot(path, outdir=file_dir, n_slices=5)
    assert json.dumps(mem5["summary"], sort_keys=True) == json.dumps(disk5["summary"], sort_keys=True)


def test_memory_is_not_used_for_a_changed_file(tmp_path):
    path, other = tmp_path / "post.nc", tmp_path / "other.nc"
    bayes.run_sample({**SMALL, "posterior": {**SMALL["posterior"], "seed": 6}}, other, progress=False)
    bayes.run_sample(SMALL, path, progress=False)
    assert bayes._recall(path) is not None
    assert bayes._recall(other) is None
    shutil.copyfile(other, tmp_path / "tmp.nc")
    (tmp_path / "tmp.nc").replace(path)  # another file under the same name
    assert bayes._recall(path) is None
    plots = bayes.run_plot(path, outdir=tmp_path / "out")
    bayes._PLOT_MEMO.clear()
    ref = bayes.run_plot(other, outdir=tmp_path / "ref")
    assert json.dumps(plots["summary"], sort_keys=True) == json.dumps(ref["summary"], sort_keys=True)


def test_report_reuse_matches_a_fresh_report():
    rng = np.random.default_rng(2)
    chains = {"log10_m_X": rng.uniform(-2.0, 2.0, (8, 400)),
              "log10_g_X": rng.uniform(-8.0, -5.0, (8, 400)),
              "a": rng.normal(0.0, 0.1, (8, 400))}
    full = mediator_parameters((-2.0, 2.0), (-8.0, -4.0), 0.1)
    first = bayes.posterior_report(chains, full)
    fewer = full[:2]  # as run_plot reads a file with a foreign config (uniform priors from the attrs, none for a)
    for pars, ns in ((fewer, 20), (full, 20), (fewer, 7)):
        fresh = bayes.posterior_report(chains, pars, n_slices=ns)
        reused = bayes.posterior_report(chains, pars, n_slices=ns, _reuse=(first, full, 20, 0.9))
        assert json.dumps(bayes._jsonable(fresh), sort_keys=True) == json.dumps(
            bayes._jsonable(reused), sort_keys=True)
        assert list(fresh["prior_dominance"]) == list(reused["prior_dominance"])
        assert fresh["messages"] == reused["messages"]


_BOUNDS = [(a, b) for a in (-np.inf, -30.0, -5.0, -2.0, -0.3, 0.0, 0.4, 1.0, 3.0, 8.0)
           for b in (-1.0, 0.0, 0.5, 2.0, 3.01, 6.0, 12.0, np.inf) if b > a]


@pytest.mark.parametrize(("a", "b"), _BOUNDS)
def test_truncated_normal_std_is_scipys(a, b):
    """The closed-form truncated-normal width (no scipy.stats import) against scipy.stats.truncnorm."""
    from scipy.stats import truncnorm

    from nuinfer.tasks.posterior import truncated_normal_std
    assert truncated_normal_std(a, b) == pytest.approx(float(truncnorm.std(a, b)), rel=1e-10)
