"""The neutrino floor (fog) for WIMP searches in xenon, and how light mediators move it.

Scope: section 3 of the review (De Romeri, LHEP 2023; Figs. 4-7) and the fog of O'Hare,
PRL 127 (2021) 251802.  What :func:`run_floor` computes, per *scenario* of the neutrino background:

1. WIMP spin-independent spectra in the analysis' keVee bins (:mod:`nuinfer.physics.wimp`).
2. Neutrino backgrounds per source from :class:`nuinfer.forward.ForwardModel` (SM, or SM plus a light
   mediator at a benchmark ``(g_X, m_X)``), one Gaussian normalisation nuisance per flux (the two
   7Be lines share one), optionally a sin^2 theta_W nuisance.
3. The discovery limit (3 sigma in 90 % of experiments, Asimov/asymptotic; :mod:`nuinfer.tasks.discovery`)
   on a grid of WIMP masses x exposures, the fog index ``n = -(d ln sigma / d ln exposure)^-1``, the
   floor (the limit where ``n`` first rises through 2) and the fog map ``n(m_chi, sigma)``.
4. The 8B-WIMP degeneracy of the review's Fig. 4 (best-matching WIMP mass and cross section) and a
   toy check of the 90 % / 3 sigma asymptotic rule at one point.

The weak-mixing-angle nuisance uses templates at sin^2 theta_W = s0 - delta, s0, s0 + delta
(``delta`` = the configured relative uncertainty times s0): CEvNS counts are exactly quadratic in
sin^2 theta_W (the weak charge is linear in it and the form factor does not depend on it), so the
three templates give the exact dependence, ``b(t) = B0 + t B1 + t^2 B2`` with ``t = (s - s0)/delta``
constrained by a unit Gaussian.

Configuration: a TOML file (``models/floor_xenon.toml``) with its own schema (:data:`SCHEMA`), validated
before any work; every error names the key path.  ``quick`` mode applies the ``[quick]`` table
(coarser grids).
"""

from __future__ import annotations

import copy
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

from nuinfer import __version__
from nuinfer.exceptions import InvalidConfig
from nuinfer.spec.floor import (  # noqa: F401  (the floor configuration: schema, defaults, validation)
    DEFAULT_UNCERTAINTIES,
    DEFAULTS,
    SCHEMA,
    XSEC_OUTSIDE_DEFAULT,
    _components,
    _xsec_preset_path,
    load_floor_config,
)
from nuinfer.io import provenance_attrs, write_netcdf

__all__ = [
    "DEFAULTS",
    "DEFAULT_UNCERTAINTIES",
    "SCHEMA",
    "XSEC_OUTSIDE_DEFAULT",
    "b8_mimic",
    "background_model",
    "bin_momentum_transfer",
    "coherent_xsec_precision",
    "compute_floor",
    "forward_model",
    "load_floor_config",
    "plot_floor",
    "resolve_coupling",
    "run_floor",
    "xsec_widths",
]

def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[nuinfer] {msg}", file=sys.stderr, flush=True)


def _grid(r: dict) -> np.ndarray:
    return np.geomspace(float(r["lo"]), float(r["hi"]), int(r["n"]))


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------
def forward_model(cfg: dict, *, sin2w: float | None = None):
    """The CEvNS :class:`~nuinfer.forward.ForwardModel` of a floor configuration (1 tonne-year)."""
    from nuinfer.physics.detector import Binning, Detector, Quenching
    from nuinfer.forward import ForwardModel
    from nuinfer.physics.sources import NORMALISATIONS
    from nuinfer.physics.targets import get_target

    tgt = get_target(cfg["target"])
    b = cfg["binning"]
    d = cfg["detector"]
    q = Quenching("lindhard", k=float(d["k"]), Z=tgt.Z) if d["quenching"] == "lindhard" else Quenching("none")
    bg = cfg["background"]
    norm: object = bg["flux"]
    if bg["override"]:
        norm = {**NORMALISATIONS[bg["flux"]], **{k: float(v) for k, v in bg["override"].items()}}
    return ForwardModel(process="cevns", target=tgt, sources=tuple(bg["sources"]), normalisation=norm,
                        binning=Binning(float(b["lo"]), float(b["hi"]), int(b["n"])), detector=Detector(q),
                        exposure_tonne_year=1.0, sin2w=sin2w, n_nodes=int(cfg["numerics"]["n_nodes"]),
                        n_flux_grid=int(cfg["numerics"]["n_flux_grid"]))


def _group_counts(counts: np.ndarray, sources, groups) -> tuple[np.ndarray, list[str]]:
    comps = _components(sources, groups)
    member = {s: g for g, ms in groups.items() for s in ms}
    out = np.zeros((len(comps),) + counts.shape[1:])
    for i, s in enumerate(sources):
        out[comps.index(member.get(s, s))] += counts[i]
    return out, comps


def coherent_xsec_precision(preset: str = "coherent_csi2017", *, data_dir=None, cfg_path=None) -> dict:
    """Per-bin precision of a CEvNS cross-section measurement, in bins of momentum transfer.

    The review (sec. 3.2, ref. [34]) fits a factor ``n_sigma`` multiplying the SM cross section in each
    recoil bin of the COHERENT data.  Here each bin is fitted on its own: ``n_sigma,k = d_k / p_k`` with
    ``d_k`` the observed (beam-on minus beam-off) counts and ``p_k`` the SM prediction of the package's
    forward model for that analysis (``nuinfer coherent``), and the relative 1-sigma precision is the data
    error bar plus the normalisation systematics of the analysis (flux and efficiency, ``[nuisances]``) in
    quadrature::

        s_k = sqrt((sigma_k / p_k)^2 + sigma_flux^2 + sigma_eff^2)

    The quenching uncertainty is not included in ``s_k``: it moves the recoil energy (and ``q``) of a
    bin rather than the rate.  The momentum transfer of bin ``k`` follows from its edges (PE or keVee)
    through the analysis' light yield and quenching to keVnr, ``q = sqrt(2 m_N E_nr)`` with ``m_N`` the
    mean nuclear mass of the target.

    Returns
    -------
    dict
        ``q_lo``, ``q_hi`` [MeV] (arrays per COHERENT bin), ``rel_sigma`` (``s_k``), ``ratio``
        (``n_sigma,k``), ``predicted``, ``observed``, ``sigma_obs``, ``total_ratio`` and ``total_rel_sigma``
        (the same for the sum of all bins), ``name`` and ``label``.
    """
    from nuinfer.spec import terrestrial as tcfg
    ana = tcfg.load(_xsec_preset_path(preset, cfg_path), data_dir=data_dir)
    fm = ana.forward_model()
    pred = fm.sm_spectrum()["total"].values
    data = ana.binned_data(pred)
    if data.sigma is None:
        raise InvalidConfig(f"{ana.name} has no per-bin error bars (data.lower/upper or data.sigma)", key="xsec_from")
    if data.label.startswith("asimov"):
        raise InvalidConfig(f"{ana.name} uses Asimov data, not a measurement", key="xsec_from")
    nu = ana.cfg["nuisances"]
    syst2 = float(nu["flux"]) ** 2 + float(nu["efficiency"]) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.sqrt((data.sigma / pred) ** 2 + syst2)
    e_nr = fm.detector.quenching.e_nr(ana.to_keVee(ana.edges()))  # keVnr
    tgt = fm.target
    mN = float(sum(i.abundance * i.m_N for i in tgt.isotopes) / sum(i.abundance for i in tgt.isotopes))
    q = np.sqrt(2.0 * mN * e_nr * 1e-3)
    tot_p = float(pred.sum())
    return {"name": ana.name, "label": data.label, "q_lo": q[:-1], "q_hi": q[1:], "rel_sigma": rel,
            "ratio": data.observed / pred, "predicted": pred, "observed": data.observed, "sigma_obs": data.sigma,
            "total_ratio": float(data.observed.sum()) / tot_p,
            "total_rel_sigma": float(np.sqrt((data.sigma**2).sum() / tot_p**2 + syst2)),
            "target": tgt.name, "m_N_MeV": mN}


def bin_momentum_transfer(fm) -> np.ndarray:
    """Momentum transfer ``q = sqrt(2 m_N E_nr)`` [MeV] at the (geometric) centre of each analysis bin.

    keVee bins are mapped to keVnr with the forward model's quenching; ``m_N`` is the abundance-weighted
    mean nuclear mass of the target.
    """
    e = fm.detector.quenching.e_nr(fm.binning.edges)
    c = np.sqrt(e[:-1] * e[1:])
    tgt = fm.target
    mN = float(sum(i.abundance * i.m_N for i in tgt.isotopes) / sum(i.abundance for i in tgt.isotopes))
    return np.sqrt(2.0 * mN * c * 1e-3)


def xsec_widths(cfg: dict, fm, scenario: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per-bin widths ``s_i`` (and nuisance groups) of the CEvNS cross-section nuisances of a scenario.

    * ``xsec_rel_sigma = s``: the same ``s`` in every bin, one nuisance per bin.
    * ``xsec_from = "coherent_csi2017"`` (or a terrestrial-analysis TOML): bins whose momentum transfer
      (:func:`bin_momentum_transfer`) lies inside COHERENT bin ``k`` (:func:`coherent_xsec_precision`) get
      ``s_k``; the others get ``xsec_outside`` (default :data:`XSEC_OUTSIDE_DEFAULT`).  One nuisance per
      analysis bin (the review's bin-dependent ``n_sigma``), or with ``xsec_shared = true`` one per
      COHERENT bin shared by all analysis bins inside it (bins outside keep their own).

    Returns
    -------
    (sigma, group, info)
        ``sigma`` and ``group`` per analysis bin; ``info`` is JSON-able (what was used).
    """
    nb = fm.binning.nbins
    group = np.arange(nb)
    if "xsec_from" not in scenario:
        s = float(scenario.get("xsec_rel_sigma", 0.0))
        return np.full(nb, s), group, ({"mode": "uniform", "rel_sigma": s} if s > 0 else {})
    prec = coherent_xsec_precision(scenario["xsec_from"], data_dir=scenario.get("xsec_data_dir"),
                                   cfg_path=cfg.get("_path"))
    out = float(scenario.get("xsec_outside", XSEC_OUTSIDE_DEFAULT))
    q = bin_momentum_transfer(fm)
    sigma = np.full(nb, out)
    k = np.searchsorted(prec["q_hi"], q, side="right")
    inside = (q >= prec["q_lo"][0]) & (q < prec["q_hi"][-1])
    k = np.clip(k, 0, prec["q_lo"].size - 1)
    sigma[inside] = prec["rel_sigma"][k[inside]]
    if scenario.get("xsec_shared", False):
        group = np.where(inside, nb + k, group)
    info = {"mode": "coherent_shared" if scenario.get("xsec_shared", False) else "coherent_per_bin",
            "source": prec["name"], "data": prec["label"], "outside": out,
            "q_range_MeV": [float(prec["q_lo"][0]), float(prec["q_hi"][-1])],
            "coherent_q_lo_MeV": prec["q_lo"].round(3).tolist(), "coherent_q_hi_MeV": prec["q_hi"].round(3).tolist(),
            "coherent_rel_sigma": prec["rel_sigma"].round(4).tolist(),
            "coherent_ratio": prec["ratio"].round(4).tolist(),
            "coherent_total_ratio": round(prec["total_ratio"], 4),
            "coherent_total_rel_sigma": round(prec["total_rel_sigma"], 4),
            "n_bins_inside": int(inside.sum())}
    return sigma, group, info


def background_model(cfg: dict, fm, *, model: str = "SM", g_X: float = 0.0, m_X_MeV: float = 1.0,
                     sin2w_rel_sigma: float = 0.0, xsec_sigma=0.0, xsec_group=None):
    """Neutrino background per tonne-year with flux (and optional sin^2 theta_W) nuisances.

    Parameters
    ----------
    cfg : dict
        Validated floor configuration.
    fm : ForwardModel
        Baseline forward model (its sin^2 theta_W is the central value).
    model, g_X, m_X_MeV : optional
        Interaction in the background (``"SM"`` by default) and its benchmark point.
    sin2w_rel_sigma : float, optional
        Relative uncertainty on sin^2 theta_W; > 0 adds the shape nuisance ``t`` (module docstring).
    xsec_sigma, xsec_group : optional
        Bin-dependent CEvNS cross-section nuisances (:func:`xsec_widths`,
        :class:`~nuinfer.tasks.discovery.BackgroundModel`); 0 = none.

    Returns
    -------
    (BackgroundModel, numpy.ndarray)
        The model and the nominal counts per source (source, bin).
    """
    from nuinfer.tasks.discovery import BackgroundModel

    def per_source(f):
        return f.spectrum(model, g_X, m_X_MeV)["counts"].values

    nominal = per_source(fm)
    groups = cfg["background"]["groups"]
    srcs = list(fm.sources)
    C0, comps = _group_counts(nominal, srcs, {g: [s for s in m if s in srcs] for g, m in groups.items()})
    unc = cfg["uncertainties"]
    sigma = [float(unc[c]) for c in comps]
    if sin2w_rel_sigma > 0:
        s0 = fm.sin2w
        delta = sin2w_rel_sigma * s0
        lo = per_source(forward_model(cfg, sin2w=s0 - delta))
        hi = per_source(forward_model(cfg, sin2w=s0 + delta))
        g = {g: [s for s in m if s in srcs] for g, m in groups.items()}
        Clo, _ = _group_counts(lo, srcs, g)
        Chi, _ = _group_counts(hi, srcs, g)
        B = np.stack([C0, 0.5 * (Chi - Clo), 0.5 * (Chi + Clo) - C0], axis=1)
        return BackgroundModel(B, sigma, tuple(comps), sigma_t=1.0, t_name="sin2w_pull", xsec_sigma=xsec_sigma,
                               xsec_group=xsec_group), nominal
    return BackgroundModel(C0, sigma, tuple(comps), xsec_sigma=xsec_sigma, xsec_group=xsec_group), nominal


def resolve_coupling(cfg: dict, scenario: dict, *, quiet: bool = True) -> tuple[float, str]:
    """The benchmark coupling of a new-physics scenario and a note on where it comes from.

    ``g_X = "auto"``: the package's own 90 % CL sensitivity at ``m_X`` -- the lowest excluded coupling
    (:func:`nuinfer.tasks.xenon.g90_table`) of a profile scan (:func:`nuinfer.tasks.xenon.scan_model`) of
    the ``auto_limit.preset`` analysis (default ``models/fig3_cevns.toml``: CEvNS on xenon, 1 tonne-year,
    Eq. 26 with 10 % systematics) on the masses ``m_X / 2, m_X, 2 m_X`` and ``auto_limit.g_points``
    log-spaced couplings.
    """
    g = scenario["g_X"]
    if not isinstance(g, str):
        return float(g), "configured"
    from nuinfer.spec import xenon as _config
    from nuinfer.tasks import xenon as workflows
    al = cfg["auto_limit"]
    m = float(scenario["m_X_MeV"])
    ov = {"scan.m_X_MeV": {"lo": m / 2.0, "hi": 2.0 * m, "n": 3},
          "scan.g_X": {"lo": float(al["g_lo"]), "hi": float(al["g_hi"]), "n": int(al["g_points"])}}
    p = Path(al["preset"])
    if p.suffix == ".toml":
        if not p.is_absolute() and cfg.get("_path"):
            p = Path(cfg["_path"]).parent / p
        ana = _config.load(p, ov)
    else:
        ana = workflows.preset(al["preset"], ov)
    _say(f"floor: benchmark coupling for {scenario['model']} at m_X = {m:g} MeV from {ana.name} "
         f"({al['g_points']} couplings)", quiet)
    ds = workflows.scan_model(ana, scenario["model"])
    val = workflows.g90_table(ds, masses=(m,))[f"{m:g}"]
    if val is None:
        raise InvalidConfig(f"the {ana.name} scan excludes no coupling at m_X = {m:g} MeV; give g_X explicitly "
                            "or widen auto_limit.g_lo/g_hi", key="auto_limit")
    note = (f"auto: 90% CL g90 of {ana.name} ({ana.cfg['statistics']['statistic']}, "
            f"{ana.cfg['exposure_tonne_year']:g} t yr, cl={ana.cfg['statistics']['cl']}, "
            f"ndof={ana.cfg['statistics']['ndof']}) at m_X = {m:g} MeV")
    return float(val), note


def b8_mimic(b8_counts, wimp_counts, masses_GeV, *, sigma_ref_cm2: float = 1e-45) -> dict:
    """WIMP mass and cross section whose binned spectrum best matches a neutrino spectrum's shape.

    For every mass the normalisation is free: ``chi2(m) = min_a sum_i (B_i - a W_i(m))^2 / B_i`` over
    bins with ``B_i > 0`` (Pearson weights; Asimov spectra, so only the shape matters).  The minimum
    over the mass grid is refined by a parabola in ``ln m``.

    Returns
    -------
    dict
        ``m_GeV``, ``sigma_cm2`` (``a`` times the reference cross section), ``chi2_per_event``
        (shape mismatch, ``chi2 / sum B``), and the per-mass curve ``chi2`` (array).
    """
    B = np.asarray(b8_counts, float)
    W = np.asarray(wimp_counts, float)
    m = np.asarray(masses_GeV, float)
    ok = B > 0
    Bk, Wk = B[ok], W[:, ok]
    den = np.einsum("mi,mi->m", Wk, Wk / Bk)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(den > 0, Wk.sum(axis=1) / np.where(den > 0, den, 1.0), 0.0)
    r = Bk - a[:, None] * Wk
    chi2 = np.einsum("mi,mi->m", r, r / Bk)
    k = int(np.argmin(chi2))
    lm = np.log(m)
    best, amp = lm[k], a[k]
    if 0 < k < m.size - 1:
        x0, x1, x2 = lm[k - 1:k + 2]
        y0, y1, y2 = chi2[k - 1:k + 2]
        d = (x0 - x1) * (x0 - x2) * (x1 - x2)
        A = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / d
        Bq = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / d
        if A > 0:
            best = float(np.clip(-Bq / (2 * A), x0, x2))
            amp = float(np.exp(np.interp(best, lm, np.log(np.maximum(a, 1e-300)))))
    return {"m_GeV": float(np.exp(best)), "sigma_cm2": float(amp * sigma_ref_cm2),
            "chi2_per_event": float(chi2[k] / Bk.sum()), "chi2": chi2}


def _fog_map(limits, n_idx, sigma_grid) -> np.ndarray:
    """n(m, sigma): the fog index at the exposure where the discovery limit equals sigma."""
    out = np.full(limits.shape[:-1] + (sigma_grid.size,), np.nan)
    ls = np.log(sigma_grid)
    for idx in np.ndindex(*limits.shape[:-1]):
        L, n = limits[idx], n_idx[idx]
        good = np.isfinite(L) & np.isfinite(n) & (L > 0)
        if good.sum() < 2:
            continue
        x = np.log(L[good])[::-1]  # increasing as the exposure decreases
        y = n[good][::-1]
        x = np.maximum.accumulate(x)
        inside = (ls >= x[0]) & (ls <= x[-1])
        out[idx][inside] = np.interp(ls[inside], x, y)
    return out


# --------------------------------------------------------------------------------------------
# the computation
# --------------------------------------------------------------------------------------------
def _floor_scenario(cfg: dict, fm, W, exposures, panels, sigma_ref: float, quiet: bool, name: str) -> dict:
    """Discovery limits of one background scenario (a unit of work for the Dask engine)."""
    from nuinfer.tasks.discovery import discovery_limit

    disc = cfg["discovery"]
    sc = cfg["scenarios"][name]
    t = time.perf_counter()
    g, note = (0.0, "SM") if sc["model"] == "SM" else resolve_coupling(cfg, sc, quiet=quiet)
    m_X = float(sc.get("m_X_MeV", 1.0))
    rel = float(sc.get("sin2w_rel_sigma", 0.0))
    xs, xg, xinfo = xsec_widths(cfg, fm, sc)
    bg, nominal = background_model(cfg, fm, model=sc["model"], g_X=g, m_X_MeV=m_X, sin2w_rel_sigma=rel,
                                   xsec_sigma=xs, xsec_group=xg)
    dl = discovery_limit(W, bg, exposures, z=disc["z"], fraction=disc["fraction"])
    panel = discovery_limit(W, bg, panels, z=disc["z"], fraction=disc["fraction"]).scale * sigma_ref
    info = {"label": sc["label"], "model": sc["model"], "g_X": g, "m_X_MeV": m_X if sc["model"] != "SM" else None,
            "g_X_source": note, "sin2w_rel_sigma": rel, "sin2w_central": fm.sin2w,
            "nuisances": list(bg.names) + ([bg.t_name] if bg.has_t else []),
            "xsec": xinfo, "n_xsec_nuisances": bg.n_xsec, "background_events_per_tonne_year": float(nominal.sum())}
    return {"xsec_sigma": xs, "bg": bg, "nominal": nominal, "limits": dl.scale * sigma_ref, "converged": dl.converged,
            "limit_panels": panel, "n_bins_used": dl.n_bins_used, "n_iter": dl.n_iter, "info": info,
            "wall_time_s": time.perf_counter() - t}


def compute_floor(cfg: dict, *, quiet: bool = False) -> xr.Dataset:
    """Run every scenario of a validated configuration and return the results as a Dataset.

    Variables (``scenario``, ``m_chi`` [GeV], ``exposure`` [t yr], ``sigma_n`` [cm^2], ``panel``,
    ``source``, ``bin``): ``discovery_limit``, ``fog_index``, ``floor``, ``floor_exposure``, ``fog_map``,
    ``limit_panels``, ``converged``, ``background_counts``, ``wimp_counts`` (per tonne-year at
    1e-45 cm^2), ``benchmark_counts``, ``b8_match_chi2``; attributes record the method, the
    thresholds, the scenario definitions, the 8B match and the toy check.
    """
    from nuinfer.tasks.discovery import (
        discovery_fraction,
        discovery_limit,
        floor_from_fog,
        fog_index,
        toy_q0,
    )
    from nuinfer.physics.wimp import StandardHalo, binned_counts

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    halo = StandardHalo(**{k: float(v) for k, v in cfg["halo"].items()})
    masses = _grid(cfg["wimp"]["m_GeV"])
    exposures = _grid(cfg["exposure"]["tonne_year"])
    sig_grid = _grid(cfg["wimp"]["sigma_cm2"])
    panels = np.asarray(cfg["exposure"]["panels"], float)
    disc = cfg["discovery"]
    sigma_ref = 1e-45

    t = time.perf_counter()
    fm = forward_model(cfg)
    W = binned_counts(masses, fm.binning, fm.detector, sigma_n_cm2=sigma_ref, target=fm.target, halo=halo)
    timings["wimp_spectra"] = time.perf_counter() - t
    _say(f"floor: {cfg['name']}: {masses.size} WIMP masses x {exposures.size} exposures, "
         f"{fm.binning.nbins} bins, scenarios {', '.join(cfg['scenarios'])}", quiet)

    names = list(cfg["scenarios"])
    limits = np.full((len(names), masses.size, exposures.size), np.nan)
    conv = np.zeros(limits.shape, dtype=np.int8)
    lim_panels = np.full((len(names), masses.size, panels.size), np.nan)
    bg_counts = np.zeros((len(names), len(fm.sources), fm.binning.nbins))
    xsec_sig = np.zeros((len(names), fm.binning.nbins))
    info: dict[str, dict] = {}
    bg_models = {}
    scheduler = cfg.get("scheduler")
    run = functools.partial(_floor_scenario, cfg, fm, W, exposures, panels, sigma_ref, quiet)
    if scheduler in (None, "inprocess"):
        rows = [run(name) for name in names]
    else:  # one task per scenario on Dask (results in scenario order)
        from nuinfer.engine import map_tasks
        rows = map_tasks(run, names, scheduler=scheduler, progress=not quiet)
    n_used = None
    for si, (name, row) in enumerate(zip(names, rows)):
        xsec_sig[si] = row["xsec_sigma"]
        bg_models[name] = row["bg"]
        bg_counts[si] = row["nominal"]
        limits[si] = row["limits"]
        conv[si] = row["converged"]
        lim_panels[si] = row["limit_panels"]
        n_used = row["n_bins_used"]
        info[name] = row["info"]
        timings[f"scenario_{name}"] = row["wall_time_s"]
        _say(f"floor: scenario {name} ({cfg['scenarios'][name]['label']}): {row['wall_time_s']:.1f} s, "
             f"{row['n_iter']} root iterations, all converged: {bool(row['converged'].all())}", quiet)
    n_idx = fog_index(exposures, limits)
    floor, floor_e = floor_from_fog(exposures, limits, n_idx, level=float(disc["fog_level"]))
    fmap = _fog_map(limits, n_idx, sig_grid)

    # 8B-WIMP degeneracy (review Fig. 4)
    t = time.perf_counter()
    mimic = None
    srcs = list(fm.sources)
    fine = np.geomspace(2.0, 30.0, 113)
    Wf = binned_counts(fine, fm.binning, fm.detector, sigma_n_cm2=sigma_ref, target=fm.target, halo=halo)
    if "8B" in srcs:
        mimic = b8_mimic(bg_counts[0, srcs.index("8B")], Wf, fine, sigma_ref_cm2=sigma_ref)
    bench = cfg["wimp"]["benchmarks"]
    bench_counts = np.stack([
        binned_counts(b["m_GeV"], fm.binning, fm.detector, sigma_n_cm2=float(b["sigma_cm2"]), target=fm.target,
                      halo=halo)
        for b in bench]) if bench else np.zeros((0, fm.binning.nbins))
    timings["b8_mimic"] = time.perf_counter() - t

    # toy check of the asymptotic 90 % / Z rule at one point (baseline scenario)
    toy = {}
    tc = cfg["toys"]
    if tc["n"] > 0:
        t = time.perf_counter()
        Wt = binned_counts(float(tc["m_GeV"]), fm.binning, fm.detector, sigma_n_cm2=sigma_ref, target=fm.target,
                           halo=halo)
        e = float(tc["exposure_tonne_year"])
        bg0 = bg_models[names[0]]
        x = discovery_limit(Wt, bg0, [e], z=disc["z"], fraction=disc["fraction"]).scale[0]
        if np.isfinite(x):
            q = toy_q0(x * Wt, bg0, exposure=e, n_toys=int(tc["n"]), seed=int(tc["seed"]))
            p, err = discovery_fraction(q, disc["z"])
            toy = {"toy_m_GeV": float(tc["m_GeV"]), "toy_exposure_tonne_year": e,
                   "toy_sigma_cm2": float(x * sigma_ref),
                   "toy_n": int(tc["n"]), "toy_seed": int(tc["seed"]), "toy_fraction": p, "toy_fraction_error": err,
                   "toy_expected_fraction": float(disc["fraction"]),
                   "toy_signal_events": float(x * Wt.sum() * e),
                   "toy_background_events": float(bg0.nominal.sum() * e)}
        timings["toys"] = time.perf_counter() - t

    nr_bins = cfg["detector"]["quenching"] == "none"
    e_attrs = {"units": "keVnr" if nr_bins else "keVee",
               "quantity": "nuclear recoil energy" if nr_bins else "electron-equivalent recoil energy"}
    edges = fm.binning.edges
    ds = xr.Dataset(
        {
            "discovery_limit": (("scenario", "m_chi", "exposure"), limits,
                                {"units": "cm^2", "long_name": f"discovery limit ({disc['z']:g} sigma in "
                                 f"{disc['fraction'] * 100:g}% of experiments), WIMP-nucleon SI cross section"}),
            "fog_index": (("scenario", "m_chi", "exposure"), n_idx,
                          {"units": "1", "long_name": "fog index n = -(d ln sigma / d ln exposure)^-1"}),
            "converged": (("scenario", "m_chi", "exposure"), conv,
                          {"units": "1", "long_name": "root finder converged"}),
            "floor": (("scenario", "m_chi"), floor,
                      {"units": "cm^2",
                       "long_name": f"neutrino floor: limit where n first reaches {disc['fog_level']:g}"}),
            "floor_exposure": (("scenario", "m_chi"), floor_e,
                               {"units": "tonne year", "long_name": "exposure at which the floor is reached"}),
            "fog_map": (("scenario", "m_chi", "sigma_n"), fmap,
                        {"units": "1", "long_name": "fog index at the exposure whose discovery limit is sigma_n"}),
            "limit_panels": (("scenario", "m_chi", "panel"), lim_panels,
                             {"units": "cm^2", "long_name": "discovery limit at the panel exposures"}),
            "background_counts": (("scenario", "source", "bin"), bg_counts,
                                  {"units": "events", "long_name": "nominal neutrino background per tonne-year"}),
            "wimp_counts": (("m_chi", "bin"), W,
                            {"units": "events", "long_name": "WIMP counts per tonne-year at sigma_n = 1e-45 cm^2"}),
            "benchmark_counts": (("benchmark", "bin"), bench_counts,
                                 {"units": "events",
                                  "long_name": "WIMP counts per tonne-year at the benchmark points"}),
            "xsec_sigma": (("scenario", "bin"), xsec_sig,
                           {"units": "1", "long_name": "width of the CEvNS cross-section nuisance per bin "
                            "(relative; 0 = none)"}),
            "b8_match_chi2": (("m_fit",), mimic["chi2"] if mimic else np.full(fine.size, np.nan),
                              {"units": "events",
                               "long_name": "Pearson chi2 of the 8B spectrum vs a free-norm WIMP spectrum"}),
        },
        coords={
            "scenario": ("scenario", names, {"long_name": "neutrino-background scenario"}),
            "m_chi": ("m_chi", masses, {"units": "GeV", "long_name": "WIMP mass"}),
            "exposure": ("exposure", exposures, {"units": "tonne year", "long_name": "exposure"}),
            "sigma_n": ("sigma_n", sig_grid, {"units": "cm^2", "long_name": "WIMP-nucleon cross section"}),
            "panel": ("panel", panels, {"units": "tonne year", "long_name": "exposure of the limit panels"}),
            "source": ("source", srcs, {"long_name": "neutrino source"}),
            "benchmark_m_chi": ("benchmark", [float(b["m_GeV"]) for b in bench],
                                {"units": "GeV", "long_name": "benchmark WIMP mass"}),
            "benchmark_sigma": ("benchmark", [float(b["sigma_cm2"]) for b in bench],
                                {"units": "cm^2", "long_name": "benchmark cross section"}),
            "m_fit": ("m_fit", fine, {"units": "GeV", "long_name": "WIMP masses of the 8B shape match"}),
            "E_lo": ("bin", edges[:-1], {**e_attrs, "long_name": "lower bin edge"}),
            "E_hi": ("bin", edges[1:], {**e_attrs, "long_name": "upper bin edge"}),
            "E_center": ("bin", fm.binning.centers, {**e_attrs, "long_name": "bin centre"}),
            "q_center": ("bin", bin_momentum_transfer(fm),
                         {"units": "MeV", "long_name": "momentum transfer sqrt(2 m_N E_nr) at the bin centre"}),
        },
    )
    from nuinfer.tasks.discovery import required_q0
    cfg_json = {k: v for k, v in cfg.items() if not k.startswith("_")}
    ds.attrs.update(provenance_attrs(config=cfg_json))
    ds.attrs.update({
        "name": cfg["name"],
        "description": cfg["description"],
        "target": fm.target.name,
        "statistic": "q0 (Cowan et al. 2011 Eq. 12), binned Poisson likelihood, Asimov data set",
        "method": "asymptotic: a fraction f of experiments reach Z when sqrt(q0_A) >= Z + Phi^-1(f)",
        "z": float(disc["z"]),
        "fraction": float(disc["fraction"]),
        "q0_required": required_q0(disc["z"], disc["fraction"]),
        "fog_level": float(disc["fog_level"]),
        "sigma_reference_cm2": sigma_ref,
        "n_bins_used": int(n_used) if n_used is not None else 0,
        "n_bins": int(fm.binning.nbins),
        "quenching": ("none (keVnr bins)" if cfg["detector"]["quenching"] == "none"
                      else f"lindhard(k={cfg['detector']['k']:g})"),
        "halo": json.dumps(cfg["halo"], sort_keys=True),
        "flux_uncertainties": json.dumps({c: float(cfg["uncertainties"][c]) for c in bg_models[names[0]].names}),
        "scenarios_json": json.dumps(info, sort_keys=True),
        "quick": int(cfg["_quick"]),
        "nuinfer_version": __version__,
    })
    if mimic:
        ds.attrs.update(b8_mimic_m_GeV=mimic["m_GeV"], b8_mimic_sigma_cm2=mimic["sigma_cm2"],
                        b8_mimic_chi2_per_event=mimic["chi2_per_event"])
    ds.attrs.update(toy)
    timings["total"] = time.perf_counter() - t_start
    ds.attrs["timings_json"] = json.dumps({k: round(v, 3) for k, v in timings.items()})
    return ds


# --------------------------------------------------------------------------------------------
# plots (review Figs. 4, 6, 7 and an O'Hare-style fog map)
# --------------------------------------------------------------------------------------------
def _panel_styles(n):
    import matplotlib.pyplot as plt
    cmap = plt.get_cmap("viridis")
    return [cmap(x) for x in np.linspace(0.0, 0.85, n)]


def _limit_axes(ax, title):
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$m_\chi$ [GeV]")
    ax.set_ylabel(r"$\sigma_{\chi n}^{SI}$ [cm$^2$]")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both", lw=0.3)


def _compare(ax, ds, base, other, title):
    cols = _panel_styles(ds["panel"].size)
    for j, e in enumerate(ds["panel"].values):
        ax.plot(ds["m_chi"], ds["limit_panels"].sel(scenario=base)[:, j], color=cols[j], lw=1.6,
                label=f"{e:g} t yr")
        ax.plot(ds["m_chi"], ds["limit_panels"].sel(scenario=other)[:, j], color=cols[j], lw=1.6, ls="--")
    ax.plot([], [], color="k", label=str(base))
    ax.plot([], [], color="k", ls="--", label=str(other))
    ax.legend(fontsize=7, ncol=2)
    _limit_axes(ax, title)


def _xsec_scenarios(ds) -> list[str]:
    info = json.loads(ds.attrs["scenarios_json"])
    return [str(s) for s in ds["scenario"].values[1:] if info[str(s)].get("xsec")]


def plot_xsec(datasets, path) -> str | None:
    """Review Fig. 5 analogue: flux-only (solid) vs flux + CEvNS cross-section nuisances (dashed).

    One column per dataset (target: e.g. CsI, then xenon for comparison), one row per scenario with
    cross-section nuisances; the baseline is each dataset's first scenario.  Returns the path, or
    ``None`` when no dataset has such a scenario.
    """
    import matplotlib.pyplot as plt

    from nuinfer.plotting import save
    datasets = [d for d in datasets if _xsec_scenarios(d)]
    if not datasets:
        return None
    rows = max(len(_xsec_scenarios(d)) for d in datasets)
    fig, axes = plt.subplots(rows, len(datasets), figsize=(6.2 * len(datasets), 4.6 * rows), squeeze=False,
                             constrained_layout=True)
    for c, d in enumerate(datasets):
        info = json.loads(d.attrs["scenarios_json"])
        base = str(d["scenario"].values[0])
        for r in range(rows):
            ax = axes[r, c]
            scs = _xsec_scenarios(d)
            if r >= len(scs):
                ax.axis("off")
                continue
            s = scs[r]
            x = info[s]["xsec"]
            if x["mode"] == "uniform":
                what = f"{100 * x['rel_sigma']:g}% per bin"
            else:
                what = (f"{x['source']} per-bin precision in q = {x['q_range_MeV'][0]:.0f}-"
                        f"{x['q_range_MeV'][1]:.0f} MeV, {100 * x['outside']:g}% outside")
            _compare(ax, d, base, s, f"{d.attrs['target']}: flux (solid) vs + CEvNS xsec nuisances (dashed)\n{what}")
            if x["mode"] != "uniform":
                ax.text(0.02, 0.02, f"{x['n_bins_inside']} of {d['bin'].size} bins inside the COHERENT q range",
                        transform=ax.transAxes, fontsize=7)
    return str(save(fig, Path(path)))


def plot_floor(ds: xr.Dataset, stem, *, compare=()) -> dict:
    """Write the floor figures next to ``stem`` and return their paths.

    * ``<stem>_spectra.png``: neutrino spectra per source and the benchmark WIMP spectra (review Fig. 4);
    * ``<stem>_fog.png``: fog map ``n(m_chi, sigma)`` of the baseline with the floor and the limits at the
      panel exposures (the O'Hare 2021 presentation), and the limit vs exposure at a few masses;
    * ``<stem>_sin2w.png``: baseline vs scenarios with a sin^2 theta_W nuisance (review Fig. 6);
    * ``<stem>_mediators.png``: baseline vs each light-mediator scenario (review Fig. 7);
    * ``<stem>_xsec.png``: baseline vs scenarios with CEvNS cross-section nuisances (review Fig. 5), one
      column per target (``ds`` and the ``compare`` datasets, e.g. xenon next to CsI).
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from nuinfer.plotting import save
    stem = Path(stem)
    out = {}
    base = str(ds["scenario"].values[0])
    info = json.loads(ds.attrs["scenarios_json"])
    unit = ds["E_center"].attrs.get("units", "keVee")
    width = (ds["E_hi"] - ds["E_lo"]).values
    x = ds["E_center"].values

    fig, ax = plt.subplots(figsize=(6.6, 4.8))
    bgc = ds["background_counts"].sel(scenario=base)
    ls = ["-", "--", ":", "-."]
    for i, s in enumerate(ds["source"].values):
        y = bgc.sel(source=s).values / width
        if np.any(y > 0):
            ax.plot(x, np.where(y > 0, y, np.nan), lw=1.0, ls=ls[i % 4], label=str(s))
    for k in range(ds["benchmark"].size if "benchmark" in ds.dims else 0):
        y = ds["benchmark_counts"].values[k] / width
        m, s = float(ds["benchmark_m_chi"][k]), float(ds["benchmark_sigma"][k])
        ax.plot(x, np.where(y > 0, y, np.nan), lw=2.2, color=f"C{(k + 6) % 10}",
                label=fr"WIMP {m:g} GeV, {s:.0e} cm$^2$")
    tot = bgc.sum("source").values / width
    pos = tot[tot > 0]
    if pos.size:
        ax.set_ylim(pos.min() * 1e-4, pos.max() * 10)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"$E$ [{unit}]")
    ax.set_ylabel(f"$dR/dE$ [events / ({unit} t yr)]")
    txt = ""
    if "b8_mimic_m_GeV" in ds.attrs:
        txt = (f"; $^8$B best match: {ds.attrs['b8_mimic_m_GeV']:.1f} GeV, "
               f"{ds.attrs['b8_mimic_sigma_cm2']:.1e} cm$^2$")
    ax.set_title(f"Neutrino and WIMP spectra ({ds.attrs['target']}){txt}", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3, which="both", lw=0.3)
    out["spectra"] = str(save(fig, stem.with_name(stem.name + "_spectra.png")))

    fig, axes = plt.subplots(1, 2, figsize=(14, 5), constrained_layout=True)
    ax = axes[0]
    fmap = ds["fog_map"].sel(scenario=base).transpose("sigma_n", "m_chi").values
    good = np.isfinite(fmap)
    if good.any():
        vmax = max(3.0, float(np.nanpercentile(fmap, 99)))
        pc = ax.pcolormesh(ds["m_chi"], ds["sigma_n"], np.where(good, fmap, np.nan), shading="nearest",
                           cmap="Greys", norm=LogNorm(vmin=1.0, vmax=vmax))
        fig.colorbar(pc, ax=ax, label="fog index $n$")
        lvl = float(ds.attrs["fog_level"])
        if np.nanmax(fmap) > lvl:
            ax.contour(ds["m_chi"], ds["sigma_n"], np.where(good, fmap, 0.0), levels=[lvl], colors="tab:red",
                       linewidths=0.8)
    ax.plot(ds["m_chi"], ds["floor"].sel(scenario=base), color="tab:blue", lw=2.2,
            label=f"floor (n = {ds.attrs['fog_level']:g})")
    cols = _panel_styles(ds["panel"].size)
    for j, e in enumerate(ds["panel"].values):
        ax.plot(ds["m_chi"], ds["limit_panels"].sel(scenario=base)[:, j], color=cols[j], lw=1.0, ls="--",
                label=f"limit, {e:g} t yr")
    ax.set_ylim(float(ds["sigma_n"][0]), float(ds["sigma_n"][-1]))
    ax.legend(fontsize=7)
    _limit_axes(ax, f"Neutrino fog ({info[base]['label']})")
    ax = axes[1]
    for k, mt in enumerate((6.0, 30.0, 100.0, 1000.0)):
        i = int(np.argmin(np.abs(np.log(ds["m_chi"].values / mt))))
        ax.plot(ds["exposure"], ds["discovery_limit"].sel(scenario=base)[i], color=f"C{k}",
                label=f"{float(ds['m_chi'][i]):.3g} GeV")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("exposure [t yr]")
    ax.set_ylabel(r"discovery limit [cm$^2$]")
    ax.set_title("Saturation: discovery limit vs exposure", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both", lw=0.3)
    out["fog"] = str(save(fig, stem.with_name(stem.name + "_fog.png")))

    sin2w = [s for s in ds["scenario"].values[1:] if info[str(s)]["sin2w_rel_sigma"] > 0]
    if sin2w:
        fig, ax = plt.subplots(figsize=(6.6, 4.8))
        s = str(sin2w[0])
        _compare(ax, ds, base, s, fr"flux nuisances (solid) vs + $\sin^2\theta_W$ "
                 fr"{100 * info[s]['sin2w_rel_sigma']:g}% (dashed)")
        out["sin2w"] = str(save(fig, stem.with_name(stem.name + "_sin2w.png")))
    med = [str(s) for s in ds["scenario"].values[1:] if info[str(s)]["model"] != "SM"]
    if med:
        fig, axes = plt.subplots(1, len(med), figsize=(6.6 * len(med), 4.8), squeeze=False,
                                 constrained_layout=True)
        for ax, s in zip(axes[0], med):
            _compare(ax, ds, base, s, f"{info[s]['label']}: $g_X$ = {info[s]['g_X']:.2g}, "
                     f"$m_X$ = {info[s]['m_X_MeV']:g} MeV")
        out["mediators"] = str(save(fig, stem.with_name(stem.name + "_mediators.png")))
    p = plot_xsec([ds, *compare], stem.with_name(stem.name + "_xsec.png"))
    if p:
        out["xsec"] = p
    return out


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
#: WIMP masses [GeV] at which :func:`run_floor` reports the floor
REPORT_MASSES_GEV = (3.0, 6.0, 10.0, 30.0, 100.0, 1000.0)


def _at_mass(ds, var, scenario, m):
    v = ds[var].sel(scenario=scenario)
    lm = np.log(ds["m_chi"].values)
    y = v.values
    good = np.isfinite(y) & (y > 0)
    if good.sum() < 2 or not (lm[0] <= np.log(m) <= lm[-1]):
        return None
    val = float(np.exp(np.interp(np.log(m), lm[good], np.log(y[good]))))
    return val


def run_floor(config_path_or_dict, out, *, quick: bool = False, quiet: bool = False, plot: bool = True,
              scheduler: str | None = None) -> dict:
    """Compute the floor of a configuration, write NetCDF (atomically) and figures, return a summary.

    Parameters
    ----------
    config_path_or_dict : str, os.PathLike or dict
        Floor configuration (e.g. ``models/floor_xenon.toml``).
    out : str or os.PathLike
        NetCDF file to write (``.nc``); figures go next to it (``<stem>_*.png``).
    quick : bool, optional
        Coarse grids from the ``[quick]`` table (about half a minute for the preset).
    quiet : bool, optional
        No progress messages.
    plot : bool, optional
        Write the figures (default).

    Returns
    -------
    dict
        JSON-able summary: output paths, floor and fog index at reference masses, benchmark couplings,
        the 8B match, the toy check and timings.
    """
    t0 = time.perf_counter()
    cfg = load_floor_config(config_path_or_dict, quick=quick)
    if scheduler is not None:  # where the scenarios run (overrides [floor] scheduler)
        from nuinfer.engine import check_scheduler
        cfg["scheduler"] = check_scheduler(scheduler, key="--scheduler") or "inprocess"
    out = Path(out)
    if out.suffix != ".nc":
        raise InvalidConfig(f"output file {str(out)!r} must end in .nc", key="--output-file")
    out.parent.mkdir(parents=True, exist_ok=True)
    ds = compute_floor(cfg, quiet=quiet)
    write_netcdf(ds, out)
    extra = {}
    for tname in cfg["compare_targets"]:  # same scenarios on another target (review Fig. 5: CsI vs xenon)
        c2 = copy.deepcopy(cfg)
        c2["target"] = tname
        c2["name"] = f"{cfg['name']}_{tname}"
        if cfg.get("_k_auto"):
            from nuinfer.physics.detector import lindhard_k
            from nuinfer.physics.targets import get_target
            tgt = get_target(tname)
            c2["detector"]["k"] = round(float(lindhard_k(tgt.Z, tgt.mean_A)), 3)
        d2 = compute_floor(c2, quiet=quiet)
        p2 = out.with_name(f"{out.stem}_{tname}.nc")
        write_netcdf(d2, p2)
        extra[tname] = (d2, str(p2))
    plots = plot_floor(ds, out.with_suffix(""), compare=[d for d, _ in extra.values()]) if plot else {}
    summary: dict = {"output": str(out), "plots": plots, "quick": bool(quick), "scenarios": {}}
    if extra:
        summary["compare_targets"] = {}
    for key, d in [(None, ds)] + [(t, d2) for t, (d2, _) in extra.items()]:
        rows_s = _summarise(d)
        if key is None:
            summary["scenarios"] = rows_s
        else:
            summary["compare_targets"][key] = {"output": extra[key][1], "scenarios": rows_s}
    for k in ("b8_mimic_m_GeV", "b8_mimic_sigma_cm2", "toy_fraction", "toy_fraction_error", "toy_n",
              "toy_m_GeV", "toy_exposure_tonne_year", "toy_sigma_cm2", "q0_required"):
        if k in ds.attrs:
            summary[k] = ds.attrs[k]
    summary["timings_s"] = json.loads(ds.attrs["timings_json"])
    summary["wall_time_s"] = round(time.perf_counter() - t0, 2)
    _say(f"floor: wrote {out}" + (f" and {len(plots)} figures" if plots else ""), quiet)
    return summary


def _summarise(ds) -> dict:
    """Per-scenario summary rows (floor, fog index and panel limits at :data:`REPORT_MASSES_GEV`)."""
    info = json.loads(ds.attrs["scenarios_json"])
    out = {}
    big = ds["exposure"].values >= 10.0
    for s in ds["scenario"].values:
        s = str(s)
        rows = {}
        lm = np.log(ds["m_chi"].values)
        for m in REPORT_MASSES_GEV:
            i = int(np.argmin(np.abs(lm - np.log(m))))
            n_big = ds["fog_index"].sel(scenario=s).values[i][big]
            row = {"floor_cm2": _at_mass(ds, "floor", s, m), "grid_mass_GeV": float(ds["m_chi"].values[i]),
                   "max_fog_index_above_10tyr": float(np.nanmax(n_big)) if np.isfinite(n_big).any() else None}
            for j, e in enumerate(ds["panel"].values):
                v = ds["limit_panels"].sel(scenario=s).values[:, j]
                good = np.isfinite(v) & (v > 0)
                row[f"limit_{e:g}tyr_cm2"] = (float(np.exp(np.interp(np.log(m), lm[good], np.log(v[good]))))
                                              if good.sum() > 1 and lm[0] <= np.log(m) <= lm[-1] else None)
            rows[f"{m:g}"] = row
        out[s] = {"label": info[s]["label"], "g_X": info[s]["g_X"], "m_X_MeV": info[s]["m_X_MeV"],
                  "g_X_source": info[s]["g_X_source"], "by_mass": rows, "xsec": info[s].get("xsec", {}),
                  "all_converged": bool(ds["converged"].sel(scenario=s).values.all())}
    return out
