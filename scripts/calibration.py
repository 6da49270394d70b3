#!/usr/bin/env python
"""Coverage of the asymptotic 90% CL thresholds, measured with Poisson toys (issue 7).

    python scripts/calibration.py                       # 2000 toys per truth (about 3 minutes)
    python scripts/calibration.py --toys 200 --seed 7   # quick look
    python scripts/calibration.py --json out.json       # also write the numbers as JSON

What is measured
----------------
One model (scalar mediator, EvES, natural xenon, solar neutrinos, 1 t yr, 50 log bins on
0.1-1e4 keVee, sigma_sys = sigma_bg = 0.1) and two truths:

* ``sm``     -- the SM (g_X = 0);
* ``signal`` -- an injected signal at m_X = 0.1 MeV with g0 equal to the *expected* (Asimov)
  90% CL raster limit of Eq. (26) at that mass (Delta chi2 = 2.71), i.e. a signal at the edge of
  sensitivity.

Every toy is drawn from the model that both statistics share (``nuinfer/likelihood/costs.py``)::

    a_true ~ N(0, sigma_sys)                   (``--a-true zero`` fixes a_true = 0)
    n_i    ~ Poisson((1 + a_true) R_true,i + R_bg,i),     R_bg = sigma_bg R_SM
    D_i    = n_i - R_bg,i                       (background-subtracted counts passed as data=)

Drawing ``a_true`` from its constraint is the usual unconditional ensemble for a Gaussian-
constrained nuisance (the constraint centre is not randomised, since the scan fixes it at 0).
The same toys are analysed with both statistics (``eq26`` and ``poisson``) and in two modes:

* ``joint_2d``  -- :func:`nuinfer.tasks.template_scan` over a (m_X, g_X) grid (25 masses 1e-3-1 MeV, log
  g_X grid with 100 points per decade from g0/10 to 30 g0; the truth is a grid point), ndof = 2,
  threshold chi2.ppf(0.9, 2) = 4.61; the Delta is relative to the best grid point *and* the SM;
* ``raster_1d`` -- the same scan on the single-mass template at m_X = 0.1 MeV, ndof = 1,
  threshold chi2.ppf(0.9, 1) = 2.71.

A toy *excludes the truth* when Delta(truth) >= threshold (for the SM truth Delta(SM) =
``statistic_sm - statistic_min``).  Exact 90% coverage means an exclusion fraction of 0.10.
Asymptotic expectations differ from 0.10 where Wilks' conditions fail:

* raster, SM truth: g_X >= 0 puts the truth on the boundary (Chernoff); for the scalar the counts
  are linear in mu = g^4 >= 0, so Delta(SM) ~ 1/2 delta_0 + 1/2 chi2_1 and the expected
  exclusion fraction is P(chi2_1 > 2.71)/2 = 0.05;
* raster, signal at the Asimov limit: the boundary does not change the rate (a linear Gaussian
  model gives exactly 0.10: a downward fluctuation that hits mu = 0 still excludes mu0);
* joint, SM truth: m_X is not identified at g = 0 (Davies); Delta(SM) is a maximum of correlated
  1/2 chi2_1 variables, between 0.016 (one mass) and the look-elsewhere bound;
* joint, signal: m_X is weakly identified near the sensitivity edge, so fewer than 2 effective
  dof: the exclusion fraction is expected below 0.10.

The printed table gives, per (truth, mode, statistic): the number of toys, the exclusion fraction
with its binomial error, and the 90% quantile of Delta(truth) over the toys (the threshold that
would give exact coverage).  Results are reproducible bit for bit from ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from nuinfer.physics.detector import Binning
from nuinfer.forward import ForwardModel
from nuinfer.tasks import background_counts, profile_eq26, scan

STATISTICS = ("eq26", "poisson")
MODES = ("joint_2d", "raster_1d")
TRUTHS = ("sm", "signal")
DEFAULT_SEED = 20240607

#: asymptotic expectation of the exclusion fraction of the truth (see the module docstring)
ASYMPTOTIC = {
    ("sm", "raster_1d"): 0.05,
    ("signal", "raster_1d"): 0.10,
    ("sm", "joint_2d"): None,  # Davies: between 0.016 and a look-elsewhere bound
    ("signal", "joint_2d"): 0.10,  # Wilks value; weak identifiability lowers it
}


@dataclass
class Setup:
    """Everything the toys need: templates, grids and the truth."""

    model: str
    process: str
    m0: float
    g0: float
    masses: np.ndarray
    i0: int  # index of m0 in masses
    g_grid: np.ndarray
    j0: int  # index of g0 in g_grid
    templates_2d: object
    templates_1d: object
    r_sm: np.ndarray
    r_bg: np.ndarray
    sigma_sys: float
    sigma_bg: float

    def expected(self, truth: str) -> np.ndarray:
        """Expected neutrino counts of the truth (no background, a = 0)."""
        if truth == "sm":
            return self.r_sm.copy()
        T = self.templates_1d["T"].values[:, 0, :]
        g2 = self.g0 * self.g0
        return T[0] + g2 * T[1] + g2 * g2 * T[2]


def expected_limit(templates_1d, *, sigma_sys: float, sigma_bg: float, threshold: float) -> float:
    """Asimov (SM data) Eq. (26) raster limit at the single mass of ``templates_1d``.

    Solves Delta chi2(g) = threshold in log g with brentq; Delta chi2 is the profiled Eq. (26)
    at g (the SM Asimov minimum is 0 at g = 0).
    """
    T = templates_1d["T"].values[:, 0, :]
    r_sm = templates_1d["R_SM"].values

    def f(lg):
        g2 = 10.0 ** (2.0 * lg)
        R = T[0] + g2 * T[1] + g2 * g2 * T[2]
        return float(profile_eq26(R, r_sm, sigma_sys=sigma_sys, sigma_bg=sigma_bg).minimum) - threshold

    return float(10.0 ** optimize.brentq(f, -12.0, 0.0, xtol=1e-12))


def build_setup(*, model: str = "S", process: str = "eves", m0: float = 0.1,
                binning: tuple = (0.1, 1e4, 50), mass_range: tuple = (1e-3, 1.0), n_masses: int = 25,
                g_span: tuple = (0.1, 30.0), g_per_decade: int = 100, sigma_sys: float = 0.1,
                sigma_bg: float = 0.1) -> Setup:
    """Forward model, templates and grids for the calibration (see the module docstring)."""
    fm = ForwardModel(process, binning=Binning(*binning))
    masses = np.geomspace(*mass_range, n_masses)
    i0 = int(np.argmin(np.abs(np.log(masses / m0))))
    masses[i0] = m0  # the truth is a grid point
    if not np.all(np.diff(masses) > 0):
        raise ValueError("m0 collides with a neighbouring grid mass; change n_masses")
    templates_2d = fm.templates(model, masses)
    templates_1d = templates_2d.isel(m_X=[i0])
    thr1 = float(stats.chi2.ppf(0.9, 1))
    g0 = expected_limit(templates_1d, sigma_sys=sigma_sys, sigma_bg=sigma_bg, threshold=thr1)
    k_lo = round(np.log10(g_span[0]) * g_per_decade)
    k_hi = round(np.log10(g_span[1]) * g_per_decade)
    k = np.arange(k_lo, k_hi + 1)
    g_grid = g0 * 10.0 ** (k / g_per_decade)
    j0 = int(np.flatnonzero(k == 0)[0])
    assert g_grid[j0] == g0
    r_sm = templates_1d["R_SM"].values.copy()
    return Setup(model, process, m0, g0, masses, i0, g_grid, j0, templates_2d, templates_1d, r_sm,
                 background_counts(r_sm, sigma_bg), sigma_sys, sigma_bg)


def draw_toy(rng: np.random.Generator, setup: Setup, R_true: np.ndarray, a_true: str = "gauss") -> np.ndarray:
    """One toy data set ``D = n - R_bg`` with ``n ~ Poisson((1 + a_true) R_true + R_bg)``."""
    a = 0.0
    if a_true == "gauss" and setup.sigma_sys > 0:
        a = rng.normal(0.0, setup.sigma_sys)
        while 1.0 + a <= 0.0:  # pragma: no cover - 10 sigma for sigma_sys = 0.1
            a = rng.normal(0.0, setup.sigma_sys)
    elif a_true not in ("gauss", "zero"):
        raise ValueError(f"a_true must be 'gauss' or 'zero', got {a_true!r}")
    n = rng.poisson((1.0 + a) * R_true + setup.r_bg)
    return n - setup.r_bg


def delta_at_truth(setup: Setup, D: np.ndarray, truth: str, mode: str, statistic: str) -> tuple[float, float]:
    """(Delta at the truth, threshold) for one toy in one mode with one statistic."""
    templates = setup.templates_2d if mode == "joint_2d" else setup.templates_1d
    ndof = 2 if mode == "joint_2d" else 1
    ds = scan(templates, setup.g_grid, data=D, statistic=statistic, sigma_sys=setup.sigma_sys,
              sigma_bg=setup.sigma_bg, ndof=ndof)
    if truth == "sm":
        delta = float(ds.attrs["statistic_sm"] - ds.attrs["statistic_min"])
    else:
        i0 = setup.i0 if mode == "joint_2d" else 0
        delta = float(ds[ds.attrs["statistic_variable"]].values[i0, setup.j0])
    return delta, float(ds.attrs["threshold"])


def run(n_toys: int, *, seed: int = DEFAULT_SEED, truths=TRUTHS, modes=MODES, statistics=STATISTICS,
        a_true: str = "gauss", setup: Setup | None = None, progress: bool = False) -> dict:
    """Run the toys; return per-(truth, mode, statistic) Delta arrays and summaries.

    The toys of each truth come from their own child of ``SeedSequence(seed)`` (so the SM toys
    do not depend on whether the signal toys are run) and are shared by every mode and statistic.
    """
    setup = setup or build_setup()
    children = dict(zip(TRUTHS, np.random.SeedSequence(seed).spawn(len(TRUTHS))))
    deltas: dict = {}
    thresholds: dict = {}
    t0 = time.perf_counter()
    for truth in truths:
        rng = np.random.default_rng(children[truth])
        R_true = setup.expected(truth)
        for key in ((truth, mo, st) for mo in modes for st in statistics):
            deltas[key] = np.empty(n_toys)
        for t in range(n_toys):
            D = draw_toy(rng, setup, R_true, a_true)
            for mo in modes:
                for st in statistics:
                    deltas[(truth, mo, st)][t], thresholds[mo] = delta_at_truth(setup, D, truth, mo, st)
            if progress and (t + 1) % max(1, n_toys // 20) == 0:
                sys.stderr.write(f"\r{truth}: {t + 1}/{n_toys} toys, {time.perf_counter() - t0:.0f} s")
                sys.stderr.flush()
        if progress:
            sys.stderr.write("\n")
    rows = []
    for (truth, mo, st), d in deltas.items():
        k = int(np.sum(d >= thresholds[mo]))
        f = k / n_toys
        rows.append({
            "truth": truth, "mode": mo, "statistic": st, "n_toys": n_toys, "n_excluded": k,
            "fraction": f, "binomial_error": float(np.sqrt(max(f * (1 - f), 1e-12) / n_toys)),
            "threshold": thresholds[mo], "delta_q90": float(np.quantile(d, 0.9)),
            "asymptotic": ASYMPTOTIC[(truth, mo)],
        })
    return {
        "rows": rows, "deltas": deltas,
        "setup": {"model": setup.model, "process": setup.process, "m0_MeV": setup.m0, "g0": setup.g0,
                  "n_masses": int(setup.masses.size), "masses_MeV": [float(setup.masses[0]), float(setup.masses[-1])],
                  "n_g": int(setup.g_grid.size), "g_range": [float(setup.g_grid[0]), float(setup.g_grid[-1])],
                  "n_bins": int(setup.r_sm.size), "sm_total": float(setup.r_sm.sum()),
                  "signal_total": float(setup.expected("signal").sum() - setup.r_sm.sum()),
                  "sigma_sys": setup.sigma_sys, "sigma_bg": setup.sigma_bg, "a_true": a_true, "seed": seed},
        "wall_time_s": time.perf_counter() - t0,
    }


def table(result: dict) -> str:
    lines = [("| truth | mode | statistic | toys | excluded | fraction +- binomial | asymptotic | "
              "q90 of Delta (threshold) |"), "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        asym = "-" if r["asymptotic"] is None else f"{r['asymptotic']:.3f}"
        lines.append(f"| {r['truth']} | {r['mode']} | {r['statistic']} | {r['n_toys']} | {r['n_excluded']} | "
                     f"{r['fraction']:.3f} +- {r['binomial_error']:.3f} | {asym} | "
                     f"{r['delta_q90']:.2f} ({r['threshold']:.2f}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--toys", type=int, default=2000, help="toys per truth (default 2000)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--a-true", choices=["gauss", "zero"], default="gauss",
                   help="draw the true normalisation from N(0, sigma_sys) (default) or fix it to 0")
    p.add_argument("--json", help="write the summary rows and setup as JSON to this file")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    setup = build_setup()
    res = run(args.toys, seed=args.seed, a_true=args.a_true, setup=setup, progress=not args.quiet)
    s = res["setup"]
    print(f"model {s['model']} ({s['process']}), m0 = {s['m0_MeV']} MeV, g0 = {s['g0']:.6g} "
          f"(Asimov Eq. 26 raster limit); SM {s['sm_total']:.1f} events, signal {s['signal_total']:.2f} "
          f"events in {s['n_bins']} bins; grid {s['n_masses']} masses x {s['n_g']} couplings; "
          f"a_true = {s['a_true']}; seed {s['seed']}")
    print(table(res))
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"setup": s, "rows": res["rows"], "wall_time_s": res["wall_time_s"]}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
