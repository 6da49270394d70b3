#!/usr/bin/env python
"""Coverage of the asymptotic thresholds and toy-calibrated critical values (issue 14).

    python scripts/coverage.py coverage                # coverage table, 1000 toys per truth
    python scripts/coverage.py coverage --toys 300     # quick look
    python scripts/coverage.py bench                   # timings: raster / joint curve, 1 vs 2 workers
    python scripts/coverage.py all --json out.json

Coverage setup (as scripts/calibration.py, so the numbers are comparable): scalar mediator, EvES,
natural xenon, solar neutrinos, 1 t yr, 50 log bins on 0.1-1e4 keVee, sigma_sys = sigma_bg = 0.1;
25 masses 1e-3-1 MeV (0.1 MeV on the grid), couplings g0/10-30 g0 with 100 per decade, where g0 is
the Asimov Eq. (26) raster limit at 0.1 MeV; truth (0.1 MeV, g0), toys with a_true ~ N(0, 0.1).
For every statistic (eq26, gauss_hyp, poisson; eq26 also with the bins R_SM < 1 dropped) and mode
(raster, joint) it prints the fraction of toys that exclude the truth with the asymptotic threshold
and with a toy-calibrated one (independent toys), with binomial errors.  Nominal: 0.10.

Benchmark: scalar EvES curve, 200 masses 1e-3-1e2 MeV, 200 couplings 1e-9-1e-1, Eq. (26):
``calibrated_limits`` raster with 1000 toys per tested point in-process and on a local dask
cluster with 1 and 2 worker processes; the joint curve in-process (or a subset of masses with
``--joint-masses``, extrapolated).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from scipy import optimize, stats

from nuinfer.physics.detector import Binning
from nuinfer.forward import ForwardModel
from nuinfer.tasks import profile_eq26
from nuinfer.tasks.calibration import calibrated_limits, coverage

DEFAULT_SEED = 20240614


def coverage_setup(m0=0.1):
    fm = ForwardModel("eves", binning=Binning(0.1, 1e4, 50))
    masses = np.geomspace(1e-3, 1.0, 25)
    i0 = int(np.argmin(np.abs(np.log(masses / m0))))
    masses[i0] = m0
    tp = fm.templates("S", masses)
    T = tp["T"].values[:, i0, :]
    r_sm = tp["R_SM"].values
    thr = float(stats.chi2.ppf(0.9, 1))

    def f(lg):
        g2 = 10.0 ** (2 * lg)
        R = T[0] + g2 * T[1] + g2 * g2 * T[2]
        return float(profile_eq26(R, r_sm).minimum) - thr

    g0 = float(10.0 ** optimize.brentq(f, -12.0, 0.0, xtol=1e-12))
    k = np.arange(-100, round(np.log10(30.0) * 100) + 1)
    g_grid = g0 * 10.0 ** (k / 100)
    return tp, g_grid, m0, g0


def run_coverage(n_toys, seed, statistics=("eq26", "gauss_hyp", "poisson"), sm_truth=False,
                 scheduler=None, n_workers=None, cases=None, modes=("raster", "joint")):
    """Coverage rows; ``cases`` = [(statistic, min_expected), ...] overrides ``statistics``."""
    tp, g_grid, m0, g0 = coverage_setup()
    truths = [(m0, g0)] + ([(m0, 0.0)] if sm_truth else [])
    if cases is None:
        cases = [(st, 1e-9) for st in statistics] + [("eq26", 1.0), ("gauss_hyp", 1.0)]
    rows = []
    for st, min_exp in cases:
        for mode in modes:
            t0 = time.perf_counter()
            ds = coverage(tp, g_grid, truths, statistic=st, mode=mode, n_toys=n_toys, seed=seed,
                          min_expected=min_exp, scheduler=scheduler, n_workers=n_workers)
            dt = time.perf_counter() - t0
            for j, name in enumerate(["signal", "sm"][: len(truths)]):
                rows.append(dict(
                    truth=name, statistic=st, min_expected=min_exp, mode=mode, n_toys=n_toys,
                    asymptotic=float(ds.fraction_excluded_asymptotic[j]),
                    asymptotic_err=float(ds.fraction_excluded_asymptotic_err[j]),
                    calibrated=float(ds.fraction_excluded_calibrated[j]),
                    calibrated_err=float(ds.fraction_excluded_calibrated_err[j]),
                    t_crit=float(ds.t_crit[j]), t_crit_err=float(ds.t_crit_err[j]),
                    threshold=float(ds.attrs["threshold_asymptotic"]), seconds=dt,
                    n_bins=int(ds.attrs["n_bins_used"])))
                print(_row(rows[-1]), flush=True)
    return dict(setup=dict(m0_MeV=m0, g0=g0, n_g=int(g_grid.size), n_masses=25, seed=seed,
                           nuisances="sampled"), rows=rows)


def _row(r):
    bins = "all bins" if r["min_expected"] < 1 else "R_SM>=1"
    return (f"| {r['truth']} | {r['statistic']} ({bins}, {r['n_bins']}) | {r['mode']} | "
            f"{r['asymptotic']:.3f} +- {r['asymptotic_err']:.3f} | "
            f"{r['t_crit']:.2f} +- {r['t_crit_err']:.2f} ({r['threshold']:.2f}) | "
            f"{r['calibrated']:.3f} +- {r['calibrated_err']:.3f} | {r['seconds']:.0f} s |")


def run_bench(n_toys, seed, joint_masses=None):
    fm = ForwardModel("eves", binning=Binning(0.1, 1e4, 50))
    masses = np.geomspace(1e-3, 1e2, 200)
    tp = fm.templates("S", masses)
    g_grid = np.geomspace(1e-9, 1e-1, 200)
    out = {}
    for label, sch, nw in (("inprocess", None, None), ("local_1", "local", 1),
                           ("local_2", "local", 2)):
        t0 = time.perf_counter()
        ds = calibrated_limits(tp, g_grid, statistic="eq26", mode="raster", n_toys=n_toys,
                               seed=seed, scheduler=sch, n_workers=nw)
        out[f"raster_{label}_s"] = time.perf_counter() - t0
        print(f"raster curve, 200 masses x {n_toys} toys, {label}: "
              f"{out[f'raster_{label}_s']:.1f} s; evaluations {int(ds.n_evaluations.sum())}, "
              f"status {np.bincount(ds.status.values).tolist()}", flush=True)
        if label == "inprocess":
            ref = ds
        else:
            same = bool(np.array_equal(ds.g90_calibrated.values, ref.g90_calibrated.values,
                                       equal_nan=True))
            print(f"  identical to in-process: {same}", flush=True)
            out[f"raster_{label}_identical"] = same
    r = ref.g90_calibrated / ref.g90_asymptotic
    print(f"raster g90 calibrated / asymptotic: median {float(r.median()):.4f}, "
          f"range {float(r.min()):.4f}-{float(r.max()):.4f}", flush=True)
    sel = masses if joint_masses is None else masses[:: max(1, 200 // joint_masses)]
    t0 = time.perf_counter()
    dj = calibrated_limits(tp, g_grid, sel, statistic="eq26", mode="joint", n_toys=n_toys,
                           seed=seed, scheduler="local", n_workers=2)
    dt = time.perf_counter() - t0
    out["joint_s"] = dt
    out["joint_masses"] = int(sel.size)
    out["joint_extrapolated_200_s"] = dt * 200 / sel.size
    rj = dj.g90_calibrated / dj.g90_asymptotic
    print(f"joint curve, {sel.size} masses x {n_toys} toys, local 2 workers: {dt:.1f} s "
          f"(x {200 / sel.size:.1f} -> {out['joint_extrapolated_200_s']:.0f} s for 200 masses); "
          f"g90 calibrated / asymptotic median {float(rj.median()):.4f}", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["coverage", "bench", "all"])
    p.add_argument("--toys", type=int, default=1000)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--sm-truth", action="store_true", help="also the SM truth (g = 0)")
    p.add_argument("--statistics", default="eq26,gauss_hyp,poisson")
    p.add_argument("--cases", default=None,
                   help="statistic:min_expected,... (e.g. gauss_hyp:1,eq26:1e-9); "
                        "default: every statistic with all bins plus eq26 and gauss_hyp with R_SM>=1")
    p.add_argument("--modes", default="raster,joint")
    p.add_argument("--joint-masses", type=int, default=None,
                   help="benchmark the joint curve on this many masses and extrapolate")
    p.add_argument("--json")
    args = p.parse_args(argv)
    result = {}
    if args.what in ("coverage", "all"):
        print("| truth | statistic (bins) | mode | asymptotic fraction | t_crit (asymptotic) | "
              "calibrated fraction | time |\n|---|---|---|---|---|---|---|")
        cases = None if args.cases is None else [
            (c.split(":")[0], float(c.split(":")[1])) for c in args.cases.split(",")]
        result["coverage"] = run_coverage(args.toys, args.seed, tuple(args.statistics.split(",")),
                                          args.sm_truth, cases=cases,
                                          modes=tuple(args.modes.split(",")))
    if args.what in ("bench", "all"):
        result["bench"] = run_bench(args.toys, args.seed, args.joint_masses)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
