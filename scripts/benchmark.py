#!/usr/bin/env python
"""nuinfer benchmark against informed peers (issue 16, item 5).

    python scripts/benchmark.py                  # full run
    python scripts/benchmark.py --quick          # fewer repeats, smaller reference subsets
    python scripts/benchmark.py --json out.json  # also write every number
    python scripts/benchmark.py --only ab        # sections a, b, c, d, e, f

Sections (peers in scripts/peers.py, fed with tables built once from nuinfer's own source shapes,
so the physics is identical; every peer is checked against nuinfer before it is timed):
  a. binned SM spectra and V templates (200 masses), CEvNS and EvES:
     nuinfer vs (i) SNuDD-style vectorised trapezoid over a ~500-point E_nu table per source,
     (ii) bradkav-style scipy quad per recoil point on the same tables (timed on a subset of
     bins, extrapolated by the number of recoil points; said in the output).
  b. one 200 x 200 (m_X, g_X) scan of the profiled Eq. 26 chi2 (EvES V, 100 bins):
     nuinfer (whole-grid closed form) vs (i) per-mass closed form vectorised over g,
     (ii) one iminuit MIGRAD fit per grid point (random subset, extrapolated; said so).
     Plus nuinfer's 14 curves of Figs. 2-4 (absolute time, no peer).
  c. posterior throughput: log-likelihood evaluations per second of an emcee run,
     nuinfer (vectorised) vs a per-walker log-likelihood (emcee vectorize=False).
     No tracemalloc anywhere; resident memory is read from the OS after each section.
  d. real-data (XENONnT) scans, every nuisance profiled: 8B CEvNS SR0-SR2 and SR0 electron
     recoils, 200 x 200 V grid, nuinfer vs one iminuit MIGRAD fit per point (random subset,
     extrapolated; said so).
  e. toy-calibrated limits (issue 14): raster curve (200 masses, 1000 toys per tested point)
     in-process and on 2 local dask workers; joint curve on a subset of masses on 1 and 2 local
     workers (speed-up measured, extrapolated to 200 masses; said so).  No peer.
  f. what a user waits for: wall time of whole commands, each in a fresh process (cold start:
     interpreter, imports, physics, files, figures) -- `nuinfer contour models/fig3_cevns.toml`
     with and without its figure, `nuinfer reproduce` into an empty folder, the same without its
     current-data step (the workload issue 16 timed), and `--quick`; the figures drawn in-process
     (NUINFER_PARALLEL_FIGURES=0) as the comparison.  Medians of 3 (the three reproduce commands
     alternately, 3 rounds; 1 with --quick); the ratio full / quick per round and its median; a
     pure-Python probe before and after each round (the VM's speed drifts).  No peer.

All timed code runs inside threadpoolctl.threadpool_limits(1) (BLAS pinned to one thread).
Times are medians of repeats (5 by default, 3 with --quick; fewer where stated); every ratio is
measured in this run.  The machine state (load average, cores, BLAS) is printed at the start and
the end, since the numbers depend on what else runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402


# =============================================================================================
# ADAPTER: every call into nuinfer lives in this section (the package API may change; update
# only here).
# =============================================================================================
def nu_version() -> str:
    import nuinfer
    return getattr(nuinfer, "__version__", "?")


def nu_clear_caches() -> None:
    """Forget the cached per-source flux channels (a true cold start)."""
    from nuinfer import forward
    forward._cached_channels.cache_clear()


def nu_forward(process: str, nbins: int = 100):
    from nuinfer.physics.detector import Binning
    from nuinfer.forward import ForwardModel
    return ForwardModel(process, binning=Binning(0.1, 100.0 if process == "cevns" else 1e4, nbins))


def nu_sm_counts(process: str) -> np.ndarray:
    """Binned SM counts of a freshly built forward model (default sources of the process)."""
    return nu_forward(process).sm_spectrum()["total"].values


def nu_templates(process: str, model: str, masses) -> np.ndarray:
    """Templates T(power, m_X, bin) of a freshly built forward model."""
    return nu_forward(process).templates(model, masses)["T"].values


def nu_templates_ds(process: str, model: str, masses, nbins: int = 100):
    return nu_forward(process, nbins).templates(model, masses)


def nu_scan(templates_ds, g):
    """(chi2, a_hat) of nuinfer's whole-grid closed-form profile of Eq. 26."""
    from nuinfer.tasks import scan
    ds = scan(templates_ds, g)
    return ds["chi2"].values, ds["a_hat"].values


def nu_fourteen_curves(n_m=200, n_g=200, nbins=100):
    """The 14 curves of Figs. 2-4 from scratch (templates, scan, contour)."""
    from nuinfer.tasks import exclusion, scan
    m = np.geomspace(0.01, 1e4, n_m)
    g = np.geomspace(1e-8, 1.0, n_g)
    for proc in ("cevns", "eves"):
        fm = nu_forward(proc, nbins)
        for mo in ("S", "P", "V", "A", "T", "B-L", "Lmu-Ltau"):
            exclusion(scan(fm.templates(mo, m), g))


def nu_posterior():
    """nuinfer's vectorised posterior of models/bayes_eves_vector.toml and its inputs."""
    from nuinfer.spec import xenon as config
    from nuinfer.tasks.bayes import parameters_from_config
    from nuinfer.tasks import posterior as post
    from nuinfer.tasks.xenon import models_dir
    ana = config.load(models_dir() / "bayes_eves_vector.toml")
    fm = ana.forward_model()
    pars = parameters_from_config(ana)
    x = np.linspace(pars[0].lo, pars[0].hi, int(ana.cfg["posterior"]["mass_grid_n"]))
    T = fm.templates(ana.interaction("V"), 10.0**x)
    T1, T2, r_sm = T["T"].values[1], T["T"].values[2], T["R_SM"].values
    like = post.TemplateLikelihood(x, T1, T2, r_sm)
    p = post.Posterior.from_likelihood(pars, like)
    inputs = dict(x=x, T1=T1, T2=T2, r_sm=r_sm, box_m=(pars[0].lo, pars[0].hi),
                  box_g=(pars[1].lo, pars[1].hi), sigma_a=pars[2].sigma)
    return p, inputs


def nu_posterior_draws(p, n, seed=1):
    return p.draw_prior(np.random.default_rng(seed), n)


def nu_loglike(p, theta):
    return p.likelihood(theta[:, 0], theta[:, 1], theta[:, 2])


def nu_run_emcee(p, nwalkers, nsteps, seed):
    """(wall seconds of the sampling loop, log-likelihood evaluations in it)."""
    from nuinfer.tasks import posterior as post
    n0 = p.n_evaluations
    run = post.run_sampler(p, nwalkers=nwalkers, nsteps=nsteps, seed=seed)
    return run.wall_time_s, p.n_evaluations - n0 - nwalkers  # minus the initial-state call


def nu_peer_problem(process: str, n_table: int = 500) -> dict:
    """Plain-numpy inputs of scripts/peers.py, tabulated once from nuinfer's source shapes.

    Per source: one E_nu table of at most ``n_table`` points (the union of nuinfer's clustered
    grids of its components and Chebyshev points, thinned to n_table), flux x flavour weight per cross-section class
    (CEvNS: flavour blind, one column; EvES: nu_e, anti-nu_e, nu_mu+tau, anti-nu_mu+tau), lines
    separately.  Same oscillation treatment as nuinfer.forward.
    """
    from nuinfer.constants import G_F, HBARC2_MEV2_CM2, KEV, M_E, SECONDS_PER_YEAR, tonne_year_targets
    from nuinfer.physics import cevns, eves
    from nuinfer.physics import oscillation as osc
    from nuinfer.physics import sources as src
    from nuinfer.physics.mediators import get_interaction

    fm = nu_forward(process)
    target = fm.target
    V = get_interaction("V")

    def weights(name, em, E):
        if name in src.SOLAR_SOURCES and em.flavour == "e" and not em.anti:
            return osc.flavour_weights(E, name, osc.OscillationParams())
        if name == "atm" and em.flavour == "mu":
            return {fl: np.full(E.shape, w) for fl, w in osc.ATM_NUMU_TO.items()}
        return {em.flavour: np.ones(E.shape)}

    def key(fl, anti):
        if process == "cevns":
            return "all"
        return ("e" if fl == "e" else "x") + ("bar" if anti else "")

    sources = []
    for name in fm.sources:
        ems = src.emissions(name, normalisation=fm.normalisation)
        lines, cont = [], [em for em in ems if em.line_energy is None]
        for em in ems:
            if em.line_energy is not None:
                fl = {}
                for f, w in weights(name, em, np.array([em.line_energy])).items():
                    if w[0] > 0:
                        fl[key(f, em.anti)] = fl.get(key(f, em.anti), 0.0) + em.flux * float(w[0])
                lines.append((float(em.line_energy), fl))
        entry = {"name": name, "lines": lines, "columns": {}, "E": None,
                 "E_max": max(E for E, _ in lines) if lines else 0.0}
        if cont:
            # nuinfer's knot-clustered grid plus Chebyshev-Lobatto points (dense at both ends,
            # where a spectrum falls to zero and linear interpolation is least accurate)
            lo, hi = min(em.E_min for em in cont), max(em.E_max for em in cont)
            cheb = lo + (hi - lo) * 0.5 * (1.0 - np.cos(np.pi * np.linspace(0.0, 1.0, n_table // 2)))
            E = np.unique(np.concatenate([em.grid(n_table // 2) for em in cont] + [cheb]))
            E = E[E > 0]
            if E.size > n_table:
                E = E[np.unique(np.round(np.linspace(0, E.size - 1, n_table)).astype(int))]
            cols = {}
            for em in cont:
                phi = em.flux * em.shape(E)
                for f, w in weights(name, em, E).items():
                    k = key(f, em.anti)
                    cols[k] = cols.get(k, 0.0) + phi * w
            entry.update(E=E, E_max=float(E[-1]), columns={k: v for k, v in cols.items() if np.any(v > 0)})
        sources.append(entry)

    n_atoms = tonne_year_targets(target.molar_mass)
    problem = {"process": process, "sources": sources, "n_nodes": fm.n_nodes,
               "unit_scale": fm.exposure_tonne_year * SECONDS_PER_YEAR * HBARC2_MEV2_CM2}
    edges = fm.binning.edges
    if process == "cevns":
        problem["edges_MeV"] = fm.detector.quenching.e_nr(edges) * KEV
        sp = []
        for iso in target.isotopes:
            if iso.abundance <= 0:
                continue
            qsm0 = cevns.weak_charge_sm(iso, fm.sin2w)
            pre = G_F**2 * iso.m_N / np.pi

            def A(E_r, iso=iso, qsm0=qsm0, pre=pre):
                return pre * (qsm0 * cevns.form_factor(2.0 * iso.m_N * E_r, iso.A, fm.form_factor)) ** 2
            cx = cevns.charges(iso, V)["V"] / (np.sqrt(2.0) * G_F * qsm0)
            sp.append({"mass": iso.m_N, "n_targets": n_atoms * iso.abundance, "A": A, "cx": cx,
                       "s1": 1.0 / abs(cx)})
        problem["species"] = sp
    else:
        problem["edges_MeV"] = edges * KEV
        kV = eves._shift(V, "e")[0]
        problem["kV"] = kV
        problem["eves_pre"] = G_F**2 * M_E / (2.0 * np.pi)
        problem["eves_couplings"] = {}
        for k, fl in (("e", "e"), ("x", "mu")):
            gV, gA = eves.sm_couplings(fl, fm.sin2w)
            problem["eves_couplings"][k] = (gV, gA, False)
            problem["eves_couplings"][k + "bar"] = (gV, gA, True)
        problem["species"] = [{"mass": M_E, "n_targets": n_atoms, "s1": 0.5 / kV}]
        if fm.binding:
            problem["electrons"] = target.electrons_accessible
            problem["binding_edges"] = target.binding_edges_MeV()
        else:
            problem["electrons"] = lambda T: np.full(np.shape(T), float(target.Z))
    return problem


# =============================================================================================
# measurement helpers (no nuinfer below this line except through the adapter)
# =============================================================================================
RESULTS: dict = {}


def median_time(fn, repeat):
    ts, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def rss_mib() -> tuple[float, float | None]:
    """(peak resident set size so far, current RSS) in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
    try:
        import psutil
        cur = psutil.Process().memory_info().rss / 2**20
    except ImportError:
        cur = None
    return peak, cur


def report_memory(section: str) -> None:
    peak, cur = rss_mib()
    RESULTS.setdefault("memory_MiB", {})[section] = {"peak_rss": peak, "rss": cur}
    print(f"  memory after {section}: peak RSS of the process {peak:.0f} MiB"
          + (f", current RSS {cur:.0f} MiB" if cur is not None else ""))


def machine_state(label: str) -> dict:
    load = os.getloadavg()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    blas = [{k: d.get(k) for k in ("user_api", "internal_api", "num_threads", "version", "architecture")}
            for d in threadpool_info()]
    st = {"load_avg_1_5_15": [round(x, 2) for x in load], "cpu_count": os.cpu_count(), "usable_cores": usable,
          "threadpools": blas, "python": platform.python_version(), "numpy": np.__version__,
          "machine": platform.machine(), "nuinfer": nu_version()}
    pools = "; ".join(f"{b['internal_api']} {b['version']} ({b['architecture']}) threads={b['num_threads']}"
                      for b in blas) or "none loaded"
    print(f"[machine state, {label}] load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} | "
          f"cores {os.cpu_count()} ({usable} usable) | BLAS/OpenMP: {pools} | "
          f"python {st['python']}, numpy {st['numpy']}, {st['machine']}, nuinfer {st['nuinfer']}")
    return st


def max_rel_diff(peer, ref, floor=1e-6):
    """max |peer/ref - 1| over entries with |ref| > floor * max|ref| (per last-axis row)."""
    peer, ref = np.asarray(peer, float), np.asarray(ref, float)
    scale = np.max(np.abs(ref), axis=-1, keepdims=True)
    ok = np.abs(ref) > floor * scale
    return float(np.max(np.abs(peer[ok] / ref[ok] - 1.0)))


# =============================================================================================
# a. spectra and templates
# =============================================================================================
MASSES = np.geomspace(0.01, 1e4, 200)
# A peer further than this from nuinfer is a bug, not a comparison.  The peers' own floor is
# their ~500-point linear flux tables: ~1.5e-3 (trapezoid) and ~3e-3 (plain quad, whose error
# estimate misses the table kinks) near the 8B/hep endpoints; printed, peer vs peer too.
SPECTRA_TOL = 5e-3


def bench_a(quick: bool, rep: int):
    print("\n== a. binned SM spectra and V templates (200 masses), 100 bins, default sources ==")
    out = {}
    for proc in ("cevns", "eves"):
        t = time.perf_counter()
        prob = nu_peer_problem(proc)
        t_tab = time.perf_counter() - t
        nb = prob["edges_MeV"].size - 1

        # nuinfer: cold (flux channels recomputed) and warm (channels cached; new forward model)
        def cold():
            nu_clear_caches()
            return nu_sm_counts(proc)
        t_cold, ref = median_time(cold, rep)
        t_warm, _ = median_time(lambda: nu_sm_counts(proc), rep)
        t_tpl, ref_T = median_time(lambda: nu_templates(proc, "V", MASSES), rep)

        # peers: agreement first, then time
        trap, n_run, n_nodes = peers.sm_spectrum(prob, "trapezoid")
        d_trap = max_rel_diff(trap, ref)
        T_trap, _, _ = peers.templates(prob, MASSES, "trapezoid")
        d_trapT = max(max_rel_diff(T_trap[p], ref_T[p]) for p in range(3))
        step = 25 if quick else 10
        bins = [b for b in range(0, nb, step) if ref[b] > 1e-6 * ref.max()]
        t = time.perf_counter()
        quad, n_q, _ = peers.sm_spectrum(prob, "quad", bins=bins)
        t_quad = (time.perf_counter() - t) * n_nodes / n_q
        d_quad = max_rel_diff(quad[bins], ref[bins])
        bins_T = bins[::2] if quick else bins
        t = time.perf_counter()
        T_quad, n_qT, _ = peers.templates(prob, MASSES, "quad", bins=bins_T)
        t_quadT = (time.perf_counter() - t) * n_nodes / n_qT
        d_quadT = max(max_rel_diff(T_quad[p][:, bins_T], ref_T[p][:, bins_T]) for p in range(3))
        d_pp = max_rel_diff(quad[bins], trap[bins])
        print(f"{proc}: {n_nodes} recoil points (all species), {nb} bins; peer tables built once in "
              f"{t_tab:.2f} s (not timed below)")
        print(f"  agreement with nuinfer (max rel diff over bins): trapezoid SM {d_trap:.1e}, templates "
              f"{d_trapT:.1e} | quad SM {d_quad:.1e} ({len(bins)} bins), templates {d_quadT:.1e} "
              f"({len(bins_T)} bins) | quad vs trapezoid SM {d_pp:.1e}")
        bad = [n for n, d in (("trapezoid", max(d_trap, d_trapT)), ("quad", max(d_quad, d_quadT)))
               if not d < SPECTRA_TOL]
        if bad:
            raise SystemExit(f"peer(s) {bad} disagree with nuinfer by more than {SPECTRA_TOL:g}: fix before timing")
        t_trap, _ = median_time(lambda: peers.sm_spectrum(prob, "trapezoid"), rep)
        t_trapT, _ = median_time(lambda: peers.templates(prob, MASSES, "trapezoid"), rep)
        print(f"  SM spectrum : nuinfer {t_warm * 1e3:8.1f} ms (cached flux channels; {t_cold * 1e3:.1f} ms cold) | "
              f"trapezoid {t_trap * 1e3:8.1f} ms | quad {t_quad:7.1f} s (timed on {n_q} of {n_nodes} points)")
        print(f"  V templates : nuinfer {t_tpl * 1e3:8.1f} ms | trapezoid {t_trapT * 1e3:8.1f} ms | "
              f"quad {t_quadT:7.1f} s (timed on {n_qT} of {n_nodes} points)")
        print(f"  ratios (peer / nuinfer cached): SM trapezoid {t_trap / t_warm:.1f}x, quad {t_quad / t_warm:.0f}x; "
              f"templates trapezoid {t_trapT / t_tpl:.1f}x, quad {t_quadT / t_tpl:.0f}x | vs nuinfer cold: "
              f"SM trapezoid {t_trap / t_cold:.1f}x, quad {t_quad / t_cold:.0f}x")
        out[proc] = dict(n_points=n_nodes, nuinfer_sm_cold_s=t_cold, nuinfer_sm_cached_s=t_warm,
                         nuinfer_templates_s=t_tpl, trapezoid_sm_s=t_trap, trapezoid_templates_s=t_trapT,
                         quad_sm_s_extrapolated=t_quad, quad_sm_points_timed=n_q,
                         quad_templates_s_extrapolated=t_quadT, quad_templates_points_timed=n_qT,
                         maxrel_trapezoid_sm=d_trap, maxrel_trapezoid_templates=d_trapT,
                         maxrel_quad_sm=d_quad, maxrel_quad_templates=d_quadT, maxrel_quad_vs_trapezoid=d_pp,
                         peer_tables_s=t_tab)
    RESULTS["a"] = out
    report_memory("a")


# =============================================================================================
# b. scans
# =============================================================================================
def bench_b(quick: bool, rep: int):
    print("\n== b. one 200 x 200 (m_X, g_X) scan of the profiled Eq. 26 chi2 (EvES V, 100 bins) ==")
    ds = nu_templates_ds("eves", "V", MASSES)
    T, r_sm = ds["T"].values, ds["R_SM"].values
    g = np.geomspace(1e-8, 1.0, 200)
    t_nu, (chi2, a_hat) = median_time(lambda: nu_scan(ds, g), rep)
    t_pm, (chi2_pm, _) = median_time(lambda: peers.scan_per_mass(T, g, r_sm), rep)
    d_pm = float(np.max(np.abs(chi2_pm - chi2) / np.maximum(chi2, 1.0)))
    n_fit = 100 if quick else 400
    idx = np.random.default_rng(0).integers(0, 200, size=(n_fit, 2))
    t = time.perf_counter()
    fits = peers.migrad_points(T, g, r_sm, idx)
    t_mi = (time.perf_counter() - t) / n_fit * chi2.size
    reg = [(f, i, j) for (f, ok, _), (i, j) in zip(fits, idx) if ok and abs(1 + a_hat[i, j]) > 1e-3]
    d_mi = max((abs(f - chi2[i, j]) / max(chi2[i, j], 1.0) for f, i, j in reg), default=float("nan"))
    below = max((chi2[i, j] - f for (f, _, _), (i, j) in zip(fits, idx)), default=float("nan"))
    print(f"  agreement: per-mass peer max |chi2 diff|/max(chi2,1) = {d_pm:.1e} (all 40000 points); MIGRAD "
          f"{d_mi:.1e} on {len(reg)}/{n_fit} points (valid minimum, 1 + a_hat > 1e-3); nuinfer is never above "
          f"MIGRAD by more than {max(below, 0.0):.1e}")
    if not d_pm < 1e-9:
        raise SystemExit("per-mass peer disagrees with nuinfer: fix before timing")
    print(f"  nuinfer whole grid {t_nu * 1e3:.1f} ms | per-mass closed form {t_pm * 1e3:.1f} ms | "
          f"MIGRAD per point {t_mi:.1f} s ({n_fit} random points timed, extrapolated to 40000: "
          f"{t_mi / chi2.size * 1e3:.2f} ms/fit)")
    print(f"  ratios (peer / nuinfer): per-mass closed form {t_pm / t_nu:.1f}x, MIGRAD per point "
          f"{t_mi / t_nu:.0f}x")
    rep14 = 1 if quick else 3
    t14, _ = median_time(lambda: (nu_clear_caches(), nu_fourteen_curves()), rep14)
    print(f"  nuinfer, the 14 curves of Figs. 2-4 at 200 x 200 from a cold start (templates, scans, "
          f"contours): {t14:.2f} s (median of {rep14}; no peer)")
    RESULTS["b"] = dict(nuinfer_scan_s=t_nu, per_mass_s=t_pm, migrad_s_extrapolated=t_mi, migrad_points_timed=n_fit,
                        maxrel_per_mass=d_pm, maxrel_migrad=d_mi, migrad_regular_points=len(reg),
                        nuinfer_14_curves_cold_s=t14, repeats_14_curves=rep14)
    report_memory("b")


# =============================================================================================
# c. posterior throughput
# =============================================================================================
def bench_c(quick: bool, rep: int):
    import emcee
    print("\n== c. posterior throughput, emcee (32 walkers), EvES V, Eq. 26, models/bayes_eves_vector.toml ==")
    p, inp = nu_posterior()
    peer = peers.PerPointLikelihood(inp["x"], inp["T1"], inp["T2"], inp["r_sm"], inp["box_m"], inp["box_g"],
                                    inp["sigma_a"])
    th = nu_posterior_draws(p, 500)
    ll_nu = nu_loglike(p, th)
    ll_peer = np.array([peer.loglike(*t) for t in th])
    d = float(np.max(np.abs(ll_peer - ll_nu) / np.maximum(np.abs(ll_nu), 1.0)))
    print(f"  agreement: per-walker log-likelihood vs nuinfer on 500 prior draws, max |diff|/max(|logL|,1) = {d:.1e}")
    if not d < 1e-9:
        raise SystemExit("per-walker peer disagrees with nuinfer: fix before timing")
    nw = 32
    steps_nu = 500 if quick else 2000
    rates = []
    for r in range(rep):
        wall, n = nu_run_emcee(p, nw, steps_nu, seed=r)
        rates.append(n / wall)
    r_nu = statistics.median(rates)
    steps_pe = 100 if quick else 300
    rates = []
    for r in range(rep):
        peer.n_evaluations = 0
        s = emcee.EnsembleSampler(nw, 3, peer)
        p0 = nu_posterior_draws(p, nw, seed=100 + r)
        t = time.perf_counter()
        s.run_mcmc(p0, steps_pe)
        rates.append(peer.n_evaluations / (time.perf_counter() - t))
    r_pe = statistics.median(rates)
    print(f"  nuinfer vectorised log-probability: {r_nu:.3g} evaluations/s ({steps_nu} steps, median of {rep} runs) | "
          f"per-walker peer: {r_pe:.3g} evaluations/s ({steps_pe} steps, median of {rep}) | ratio {r_nu / r_pe:.1f}x")
    RESULTS["c"] = dict(nuinfer_evals_per_s=r_nu, per_walker_evals_per_s=r_pe, steps_nuinfer=steps_nu,
                        steps_peer=steps_pe, walkers=nw, maxrel_loglike=d)
    report_memory("c")


# =============================================================================================
# d. real data: XENONnT likelihoods, every nuisance profiled
# =============================================================================================
def nu_xenonnt():
    """The two real-data likelihoods (adapter): 8B CEvNS SR0-SR2 and SR0 electron recoils."""
    from nuinfer.tasks.xenonnt import B8Cevns, ElectronRecoils
    return {"8B CEvNS SR0-SR2": B8Cevns(science_runs=("sr0", "sr1", "sr2"), flux_sigma=0.0381),
            "ER SR0": ElectronRecoils()}


def nu_xenonnt_point_templates(lik, model, masses):
    """``templates(i, g2)`` of one grid point, exactly as ``lik.scan`` builds them (adapter)."""
    from nuinfer.likelihood.model import PolyTemplate
    if hasattr(lik, "mediator_nodes"):  # B8Cevns
        N = lik.mediator_nodes(model, masses)
        return (lambda i, g2: lik.templates(PolyTemplate(np.array([[1.0, g2, g2 * g2]]), N[:, i])),
                lik.data, "poisson")
    T = lik.er.er_templates(lik.data, model, np.atleast_1d(masses), flux_preset=lik.flux_preset)
    C = lik.columns(T["T"].transpose("group", "power", "m_X", "E").values)
    return (lambda i, g2: lik.templates([PolyTemplate(np.array([[1.0, g2, g2 * g2]]), C[k, :, i])
                                         for k in range(len(lik.groups))]), lik.n, lik.cost)


def bench_real_data(quick: bool = False, rep: int = 5):
    """XENONnT likelihoods: 200 x 200 (m, g) with every nuisance profiled, nuinfer vs per-point MIGRAD.

    nuinfer: ``B8Cevns(...).scan("V", masses, g)`` / ``ElectronRecoils().scan(...)`` (vectorised
    Newton over the whole g row of a mass, every nuisance profiled; median of 1 run: each takes
    minutes).  Peer: one iminuit MIGRAD fit over all parameters per grid point
    (``nuinfer.likelihood.profile(..., method="minuit")`` on the same templates), timed on a
    random subset and extrapolated linearly to 40000 points (said in the output); the two are
    compared where MIGRAD reports a valid minimum.
    """
    from nuinfer.likelihood import profile
    print("\n== d. real data: XENONnT likelihoods, 200 x 200 (m_X, g_X) V scan, every nuisance profiled ==")
    masses, g = np.geomspace(0.01, 1e4, 200), np.geomspace(1e-8, 1e-1, 200)
    n_sub = 10 if quick else 25
    out = {}
    for label, lik in nu_xenonnt().items():
        t = time.perf_counter()
        ds = lik.scan("V", masses, g)
        t_nu = time.perf_counter() - t
        var = ds.attrs["statistic_scale"] if "statistic_scale" in ds.attrs else "twice_nll"
        conv = ds["converged"].values.astype(bool)
        tmpl, data, cost = nu_xenonnt_point_templates(lik, "V", masses)
        rng = np.random.default_rng(7)
        pts = [(int(rng.integers(200)), int(rng.integers(200))) for _ in range(n_sub)]
        ts, diffs, n_valid, below, below_flagged, above = [], [], 0, 0, 0, 0
        for i, j in pts:
            T = tmpl(i, float(g[j]) ** 2)
            t = time.perf_counter()
            r = profile(lik.model, T, data, cost=cost, method="minuit")
            ts.append(time.perf_counter() - t)
            ref = float(ds[var].values[i, j])
            d = float(r.minimum[0]) - ref
            tol = 1e-6 * max(abs(ref), 1.0)
            if not conv[i, j]:  # nuinfer flagged this point: no agreement claimed
                below_flagged += int(d < -tol)
                continue
            if bool(np.all(r.converged)):
                n_valid += 1
                if d > tol:  # MIGRAD "valid" but higher: MIGRAD stopped short, not a nuinfer error
                    above += 1
                    continue
                diffs.append(abs(d) / max(abs(ref), 1.0))
                below += int(d < -tol)
        per_fit = statistics.mean(ts)
        t_peer = per_fit * masses.size * g.size
        n_par = lik.model.n_par
        print(f"{label}: {n_par} parameters profiled; nuinfer whole grid {t_nu:.1f} s (median of 1), "
              f"{int((~conv).sum())} of 40000 points flagged not converged")
        print(f"  MIGRAD per point: {per_fit * 1e3:.0f} ms/fit ({n_sub} random points timed, extrapolated to "
              f"40000: {t_peer:.0f} s) | ratio {t_peer / t_nu:.0f}x")
        n_fl = sum(int(not conv[i, j]) for i, j in pts)
        print(f"  agreement where nuinfer is converged and MIGRAD valid ({n_valid}/{n_sub}): max |diff|/max(stat,1) = "
              f"{max(diffs) if diffs else float('nan'):.1e} over {len(diffs)}; MIGRAD below nuinfer by > 1e-6 at "
              f"{below}; MIGRAD 'valid' but above nuinfer at {above} | nuinfer flagged {n_fl} of the {n_sub} points "
              f"(MIGRAD lower at {below_flagged} of them)")
        out[label] = dict(nuinfer_scan_s=t_nu, migrad_per_fit_s=per_fit, migrad_s_extrapolated=t_peer,
                          n_subset=n_sub, n_valid=n_valid, max_rel_diff=max(diffs) if diffs else None,
                          migrad_lower=below, migrad_valid_but_higher=above, nuinfer_flagged_in_subset=n_fl,
                          migrad_lower_where_flagged=below_flagged, n_parameters=n_par,
                          n_not_converged=int((~conv).sum()))
    RESULTS["d"] = out
    report_memory("d")


# =============================================================================================
# e. toy-calibrated limits (issue 14): one curve, raster and joint, local engine
# =============================================================================================
def nu_toy_setup():
    """EvES scalar, 50 log bins 0.1-1e4 keVee, 200 masses 1e-3-1e2 MeV, 200 couplings (adapter)."""
    from nuinfer.forward import ForwardModel
    from nuinfer.physics.detector import Binning
    fm = ForwardModel("eves", binning=Binning(0.1, 1e4, 50))
    return fm.templates("S", np.geomspace(1e-3, 1e2, 200)), np.geomspace(1e-9, 1e-1, 200)


def nu_calibrated(tp, g, masses=None, **kw):
    from nuinfer.tasks.calibration import calibrated_limits
    return calibrated_limits(tp, g, masses, statistic="eq26", n_toys=1000, seed=20240614, **kw)


def bench_toys(quick: bool = False, rep: int = 5, joint_masses: int = 40):
    """Raster and joint toy calibration of one curve (1000 toys per tested point).

    Raster: all 200 masses in-process and on a local dask cluster with 2 worker processes
    (median of 1 each: ~1 min).  Joint: ``joint_masses`` of the 200 masses (every 5th) on 1 and
    2 local workers, extrapolated linearly to 200 masses (said in the output); the speed-up
    1 -> 2 workers is measured on that subset.  Every run must give bit-identical limits.
    """
    print("\n== e. toy-calibrated limits, one curve: EvES scalar, 200 masses x 200 couplings, Eq. 26, "
          "1000 toys per tested point ==")
    tp, g = nu_toy_setup()
    masses = tp["m_X"].values
    out = {}
    ref = None
    for label, kw in (("in-process", {}), ("local, 2 workers", dict(scheduler="local", n_workers=2))):
        t = time.perf_counter()
        ds = nu_calibrated(tp, g, mode="raster", **kw)
        dt = time.perf_counter() - t
        ev = int(ds.n_evaluations.sum())
        same = "" if ref is None else (
            f"; identical to in-process: {np.array_equal(ds.g90_calibrated.values, ref.g90_calibrated.values, equal_nan=True)}")
        print(f"  raster, 200 masses, {label}: {dt:.1f} s ({ev} toy calibrations of 1000 toys, "
              f"status {np.bincount(ds.status.values).tolist()}){same}")
        out[f"raster_{label}_s"] = dt
        ref = ds if ref is None else ref
    r = (ref.g90_calibrated / ref.g90_asymptotic).values
    r = r[np.isfinite(r)]
    print(f"  raster g90 calibrated / asymptotic: median {np.median(r):.3f} (range {r.min():.3f}-{r.max():.3f}); "
          f"t_crit median {np.nanmedian(ref.t_crit.values):.2f} +- {np.nanmedian(ref.t_crit_err.values):.2f} "
          f"(asymptotic 2.71)")
    out["raster_ratio_median"] = float(np.median(r))
    sel = masses[:: max(1, 200 // joint_masses)]
    jt = {}
    jref = None
    for nw in (1, 2):
        t = time.perf_counter()
        dj = nu_calibrated(tp, g, sel, mode="joint", scheduler="local", n_workers=nw)
        jt[nw] = time.perf_counter() - t
        same = "" if jref is None else (
            f"; identical to 1 worker: {np.array_equal(dj.g90_calibrated.values, jref.g90_calibrated.values, equal_nan=True)}")
        print(f"  joint, {sel.size} of 200 masses, local {nw} worker{'s' if nw > 1 else ''}: {jt[nw]:.1f} s "
              f"(extrapolated to 200 masses: {jt[nw] * 200 / sel.size:.0f} s){same}")
        jref = dj if jref is None else jref
    sp = jt[1] / jt[2]
    rj = (jref.g90_calibrated / jref.g90_asymptotic).values
    rj = rj[np.isfinite(rj)]
    print(f"  joint speed-up 1 -> 2 local workers: {sp:.2f}x; extrapolated joint curve on n workers of this "
          f"machine type ~ {jt[1] * 200 / sel.size:.0f} s / (n x {sp / 2:.2f} efficiency)")
    print(f"  joint g90 calibrated / asymptotic: median {np.median(rj):.3f} (range {rj.min():.3f}-{rj.max():.3f}); "
          f"t_crit median {np.nanmedian(jref.t_crit.values):.2f} (asymptotic 4.61)")
    out.update(joint_masses=int(sel.size), joint_1_worker_s=jt[1], joint_2_workers_s=jt[2], joint_speedup=sp,
               joint_extrapolated_200_1_worker_s=jt[1] * 200 / sel.size,
               joint_extrapolated_200_2_workers_s=jt[2] * 200 / sel.size, joint_ratio_median=float(np.median(rj)))
    RESULTS["e"] = out
    report_memory("e")


# =============================================================================================
def _command_wall(args, env_extra=None, outdir=None) -> float:
    """Wall time of ``nuinfer ARGS`` in a fresh process (the entry point next to this Python)."""
    import shutil
    import subprocess
    import tempfile
    exe = Path(sys.executable).with_name("nuinfer")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "import sys; from nuinfer.cli import main; "
                                                               "sys.exit(main())"]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", **(env_extra or {}))
    d = Path(tempfile.mkdtemp(prefix="nuinfer-bench-"))
    try:
        argv = [a.replace("{out}", str(d)) for a in args]
        t = time.perf_counter()
        r = subprocess.run(cmd + argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        dt = time.perf_counter() - t
        if r.returncode != 0:
            raise RuntimeError(f"nuinfer {' '.join(argv)} failed: {r.stderr.strip()[-300:]}")
        return dt
    finally:
        shutil.rmtree(d, ignore_errors=True)


#: the steps issue 16's "reproduce in 12 s" ran (before the current-data step joined reproduce)
PAPER_STEPS = "fig1,fig2,fig3,fig4,systematics,bayes"
#: additions in :func:`python_probe`
PROBE_N = 10 ** 7


def python_probe() -> float:
    """Wall seconds of a fresh ``python -c`` running PROBE_N integer additions in a module-level
    loop (the probe quoted in docs/performance.md): the VM's speed of the moment, which has ranged
    from 0.5 to 3.5 s on the same machine.  Quoted beside the command times."""
    import subprocess
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"s = 0\nfor i in range({PROBE_N}):\n    s += i\n"], check=True)
    return time.perf_counter() - t


def bench_commands(quick: bool = False, rep: int = 3):
    print("\n== f. commands from a cold start (fresh process each; wall time) ==")
    rep = min(rep, 3)
    contour = ["contour", "models/fig3_cevns.toml", "-q", "-o", "{out}/c.nc"]
    out = {}
    for label, args, extra in (
            ("contour fig3_cevns (figure drawn beside)", contour, None),
            ("contour fig3_cevns (figure in-process)", contour, {"NUINFER_PARALLEL_FIGURES": "0"}),
            ("contour fig3_cevns --no-plot", contour + ["--no-plot"], None)):
        ts = [_command_wall(args, extra) for _ in range(rep)]
        out[label] = statistics.median(ts)
        print(f"  {label:<45} median {out[label]:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in ts)})")
    # full, full without the current-data step and quick alternately, so that all see the same
    # machine state (the VM's speed drifts by tens of percent within minutes); the ratio of each
    # full / quick pair, and the median over pairs.  PAPER_STEPS is the workload issue 16 timed
    # (Figs. 1-4, systematics, posterior): the current-data step (XENONnT 8B and SR0 ER scans of
    # seven models, COHERENT CsI) joined reproduce after it (issue 13).
    n = 1 if quick else 3
    commands = (("reproduce", ["reproduce", "-q", "--outdir", "{out}/r"]),
                (f"reproduce --only {PAPER_STEPS}", ["reproduce", "-q", "--only", PAPER_STEPS, "--outdir", "{out}/r"]),
                ("reproduce --quick", ["reproduce", "--quick", "-q", "--outdir", "{out}/r"]))
    runs: dict = {label: [] for label, _ in commands}
    probes = [python_probe()]
    for _ in range(n):
        for label, args in commands:
            runs[label].append(_command_wall(args))
        probes.append(python_probe())
    out["python_probe_s"] = probes
    print(f"  pure-Python probe ({PROBE_N:.0e} additions) before and after each round: "
          f"{', '.join(f'{t:.2f}' for t in probes)} s")
    for label, ts in runs.items():
        out[label] = statistics.median(ts)
        print(f"  {label:<45} median {out[label]:.1f} s  (runs: {', '.join(f'{t:.1f}' for t in ts)})")
    pairs = [a / b for a, b in zip(runs["reproduce"], runs["reproduce --quick"])]
    out["full_over_quick_pairs"] = pairs
    out["full_over_quick"] = statistics.median(pairs)
    print(f"  reproduce full / --quick: {out['full_over_quick']:.2f}x (median of the pairs "
          f"{', '.join(f'{r:.2f}' for r in pairs)})")
    RESULTS["f"] = out


def summary():
    print("\n== summary (this run; times are medians; ratio = peer time / nuinfer time, or nuinfer rate / peer rate) ==")
    rows = []
    a = RESULTS.get("a") or {}
    for proc, v in a.items():
        rows += [
            (f"a {proc} SM spectrum", f"{v['nuinfer_sm_cached_s'] * 1e3:.1f} ms", "trapezoid (SNuDD-style)",
             f"{v['trapezoid_sm_s'] * 1e3:.1f} ms", v["trapezoid_sm_s"] / v["nuinfer_sm_cached_s"]),
            (f"a {proc} SM spectrum", "", "quad per point (bradkav-style)*",
             f"{v['quad_sm_s_extrapolated']:.1f} s", v["quad_sm_s_extrapolated"] / v["nuinfer_sm_cached_s"]),
            (f"a {proc} V templates x200", f"{v['nuinfer_templates_s'] * 1e3:.1f} ms", "trapezoid",
             f"{v['trapezoid_templates_s'] * 1e3:.1f} ms", v["trapezoid_templates_s"] / v["nuinfer_templates_s"]),
            (f"a {proc} V templates x200", "", "quad per point*",
             f"{v['quad_templates_s_extrapolated']:.1f} s",
             v["quad_templates_s_extrapolated"] / v["nuinfer_templates_s"]),
        ]
    b = RESULTS.get("b")
    if b:
        rows += [("b 200x200 Eq. 26 scan", f"{b['nuinfer_scan_s'] * 1e3:.1f} ms", "per-mass closed form",
                  f"{b['per_mass_s'] * 1e3:.1f} ms", b["per_mass_s"] / b["nuinfer_scan_s"]),
                 ("b 200x200 Eq. 26 scan", "", "MIGRAD per point*", f"{b['migrad_s_extrapolated']:.1f} s",
                  b["migrad_s_extrapolated"] / b["nuinfer_scan_s"])]
    c = RESULTS.get("c")
    if c:
        rows += [("c emcee log-likelihood", f"{c['nuinfer_evals_per_s']:.3g} /s", "per-walker (vectorize=False)",
                  f"{c['per_walker_evals_per_s']:.3g} /s", c["nuinfer_evals_per_s"] / c["per_walker_evals_per_s"])]
    for label, v in (RESULTS.get("d") or {}).items():
        rows.append((f"d {label} 200x200", f"{v['nuinfer_scan_s']:.1f} s", "MIGRAD per point*",
                     f"{v['migrad_s_extrapolated']:.0f} s", v["migrad_s_extrapolated"] / v["nuinfer_scan_s"]))
    e = RESULTS.get("e")
    if e:
        rows += [("e raster toy curve (200 m)", f"{e['raster_in-process_s']:.1f} s", "2 local workers",
                  f"{e['raster_local, 2 workers_s']:.1f} s", None),
                 ("e joint toy curve (200 m)*", f"{e['joint_extrapolated_200_1_worker_s']:.0f} s (1 worker)",
                  "2 local workers*", f"{e['joint_extrapolated_200_2_workers_s']:.0f} s", None)]
    f = RESULTS.get("f")
    if f:
        rows += [("f contour fig3_cevns, cold", f"{f['contour fig3_cevns (figure drawn beside)']:.2f} s",
                  "figure drawn in-process", f"{f['contour fig3_cevns (figure in-process)']:.2f} s",
                  f["contour fig3_cevns (figure in-process)"] / f["contour fig3_cevns (figure drawn beside)"]),
                 ("f reproduce, cold", f"{f['reproduce']:.1f} s", "reproduce --quick",
                  f"{f['reproduce --quick']:.1f} s", None),
                 ("f reproduce, cold", f"{f['reproduce']:.1f} s", "without the current-data step",
                  f"{f[f'reproduce --only {PAPER_STEPS}']:.1f} s", None)]
    w = [max(len(str(r[i])) for r in rows) for i in range(4)] if rows else [0] * 4
    for r in rows:
        ratio = "" if r[4] is None else f"{r[4]:8.1f}x"
        print(f"  {r[0]:<{w[0]}} | nuinfer {r[1]:>{w[1]}} | {r[2]:<{w[2]}} {r[3]:>{w[3]}} | {ratio}")
    print("  * timed on a subset (recoil points / grid points) and extrapolated linearly; see the section output.")
    RESULTS["summary"] = [dict(what=r[0], nuinfer=r[1], peer=r[2], peer_value=r[3], ratio=r[4]) for r in rows]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 repeats, smaller reference subsets")
    ap.add_argument("--json", metavar="FILE", help="write every number to FILE")
    ap.add_argument("--only", default="abcdef", help="sections to run (default abcdef)")
    args = ap.parse_args()
    rep = 3 if args.quick else 5
    RESULTS["options"] = {"quick": args.quick, "repeats": rep, "only": args.only}
    os.chdir(Path(__file__).resolve().parents[1])  # models/ of this checkout for section f
    RESULTS["machine_start"] = machine_state("start")
    t0 = time.perf_counter()
    with threadpool_limits(limits=1):
        import scipy.linalg  # noqa: F401  (load the BLAS so that its pool is visible and pinned)
        RESULTS["machine_pinned"] = machine_state("inside threadpool_limits(1), where all timing happens")
        if "a" in args.only:
            bench_a(args.quick, rep)
        if "b" in args.only:
            bench_b(args.quick, rep)
        if "c" in args.only:
            bench_c(args.quick, rep)
        if "d" in args.only:
            bench_real_data(args.quick, rep)
        if "e" in args.only:
            bench_toys(args.quick, rep)
    if "f" in args.only:  # whole commands in fresh processes (they pin BLAS themselves)
        bench_commands(args.quick, rep)
    RESULTS["wall_s"] = time.perf_counter() - t0
    summary()
    RESULTS["machine_end"] = machine_state("end")
    print(f"total wall time {RESULTS['wall_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(RESULTS, indent=1, default=float))
        print(f"numbers written to {args.json}")


if __name__ == "__main__":
    main()
