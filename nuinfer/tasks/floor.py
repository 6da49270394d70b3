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
from nuinfer.spec.xenon import NUM, _check
from nuinfer.spec.limits import MAX, check_count, check_number, check_seed, unique
from nuinfer.exceptions import InvalidConfig, UnphysicalInput
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

#: Default relative (1 sigma) flux-normalisation uncertainties and where they come from.
#: pp, pep, 7Be, hep, 13N, 15O, 17F: B16-GS98 standard solar model (N. Vinyoles et al., ApJ 835
#: (2017) 202, Table 6: 0.6 %, 1 %, 6 %, 30 %, 15 %, 17 %, 20 %; pp rounded up to 1 %).
#: 8B: 2 %, the solar global-fit determination (J. Bergstrom et al., JHEP 03 (2016) 132) used for the
#: fog by C.A.J. O'Hare, PRL 127 (2021) 251802 (the SSM alone gives 12 %).
#: atm: 20 %, the normalisation uncertainty of the FLUKA/Honda low-energy atmospheric fluxes used by
#: J. Billard, L. Strigari, E. Figueroa-Feliciano, PRD 89 (2014) 023524 (O'Hare 2021 uses 25 %).
#: DSN: 50 % (S. Horiuchi, J. Beacom, E. Dwek, PRD 79 (2009) 083013; Billard et al. 2014).
DEFAULT_UNCERTAINTIES: dict[str, float] = {
    "pp": 0.01, "pep": 0.01, "7Be": 0.06, "7Be_384": 0.06, "7Be_861": 0.06, "8B": 0.02, "hep": 0.30,
    "13N": 0.15, "15O": 0.17, "17F": 0.20, "atm": 0.20, "DSN": 0.50,
}

_RANGE = {"lo": NUM, "hi": NUM, "n": int}
_SCENARIO = {"label": str, "model": str, "g_X": (int, float, str), "m_X_MeV": NUM, "sin2w_rel_sigma": NUM,
             "xsec_rel_sigma": NUM, "xsec_from": str, "xsec_outside": NUM, "xsec_shared": bool,
             "xsec_data_dir": str}

#: Width of the cross-section nuisance of bins outside the momentum-transfer range of the COHERENT
#: measurement (``xsec_from`` scenarios) unless ``xsec_outside`` is given: 50 %, a deliberately loose
#: prior (no CEvNS measurement there), larger than COHERENT CsI's best per-bin precision (40 %).
XSEC_OUTSIDE_DEFAULT = 0.5

#: Schema of a floor TOML file (types; values are checked by :func:`load_floor_config`).
SCHEMA: dict = {
    "name": str,
    "description": str,
    "target": str,
    "halo": {"rho_GeV_cm3": NUM, "v0_km_s": NUM, "v_esc_km_s": NUM, "v_E_km_s": NUM},
    "wimp": {"m_GeV": _RANGE, "sigma_cm2": _RANGE, "benchmarks": list},
    "exposure": {"tonne_year": _RANGE, "panels": list},
    "background": {"sources": list, "flux": str, "override": dict, "groups": dict},
    "uncertainties": dict,
    "binning": {"lo": NUM, "hi": NUM, "n": int},
    "detector": {"quenching": str, "k": NUM},
    "discovery": {"z": NUM, "fraction": NUM, "fog_level": NUM},
    "scenarios": dict,
    "auto_limit": {"preset": str, "g_points": int, "g_lo": NUM, "g_hi": NUM},
    "toys": {"n": int, "seed": int, "m_GeV": NUM, "exposure_tonne_year": NUM},
    "quick": {"m_n": int, "exposure_n": int, "sigma_n": int, "bins": int, "g_points": int, "toys": int},
    "numerics": {"n_nodes": int, "n_flux_grid": int},
    "compare_targets": list,
    "scheduler": str,
}

DEFAULTS: dict = {
    "name": "floor",
    "description": "",
    "target": "Xe",
    "halo": {"rho_GeV_cm3": 0.3, "v0_km_s": 238.0, "v_esc_km_s": 544.0, "v_E_km_s": 250.5},
    "wimp": {"m_GeV": {"lo": 1.0, "hi": 1e4, "n": 41}, "sigma_cm2": {"lo": 1e-50, "hi": 1e-40, "n": 101},
             "benchmarks": [{"m_GeV": 6.0, "sigma_cm2": 5e-45}, {"m_GeV": 100.0, "sigma_cm2": 1e-48}]},
    "exposure": {"tonne_year": {"lo": 1e-3, "hi": 1e7, "n": 81}, "panels": [1.0, 10.0, 100.0, 1000.0]},
    "background": {"sources": None, "flux": "paper", "override": {}, "groups": {"7Be": ["7Be_384", "7Be_861"]}},
    "uncertainties": dict(DEFAULT_UNCERTAINTIES),
    "binning": {"lo": 1e-4, "hi": 100.0, "n": 100},
    "detector": {"quenching": "lindhard", "k": None},
    "discovery": {"z": 3.0, "fraction": 0.9, "fog_level": 2.0},
    "scenarios": {"SM": {"label": "SM, flux uncertainties"}},
    "auto_limit": {"preset": "fig3_cevns", "g_points": 120, "g_lo": 1e-7, "g_hi": 1.0},
    "toys": {"n": 1000, "seed": 1, "m_GeV": 6.0, "exposure_tonne_year": 1.0},
    "quick": {"m_n": 13, "exposure_n": 31, "sigma_n": 41, "bins": 50, "g_points": 50, "toys": 300},
    "numerics": {"n_nodes": 6, "n_flux_grid": 400},
    "compare_targets": [],
    "scheduler": None,
}

_REPLACE = ("scenarios", "groups", "benchmarks", "panels", "sources", "override", "compare_targets")


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[nuinfer] {msg}", file=sys.stderr, flush=True)


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in _REPLACE:
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _positive(v, key: str, *, allow_zero: bool = False):
    if isinstance(v, bool) or not isinstance(v, NUM) or not np.isfinite(v) or (v < 0 if allow_zero else v <= 0):
        raise UnphysicalInput(f"must be a finite number {'>= 0' if allow_zero else '> 0'}, got {v!r}", key=key)


def _grid_range(r: dict, key: str, *, min_n: int = 2):
    for k in ("lo", "hi", "n"):
        if k not in r:
            raise InvalidConfig(f"missing '{k}'", key=f"{key}.{k}")
    _positive(r["lo"], f"{key}.lo")
    _positive(r["hi"], f"{key}.hi")
    if r["lo"] >= r["hi"]:
        raise UnphysicalInput(f"lo ({r['lo']}) must be below hi ({r['hi']}); swap them", key=f"{key}.lo")
    if r["n"] < min_n:
        raise UnphysicalInput(f"needs at least {min_n} points, got {r['n']}", key=f"{key}.n")


def load_floor_config(path_or_dict, *, quick: bool = False) -> dict:
    """Read and validate a floor configuration; return it merged with :data:`DEFAULTS`.

    Parameters
    ----------
    path_or_dict : str, os.PathLike or dict
        TOML file or an equivalent mapping.
    quick : bool, optional
        Apply the ``[quick]`` table (coarser mass, exposure, cross-section and energy grids, fewer
        coupling points and toys).

    Returns
    -------
    dict
        The validated configuration (plain dict; ``_path`` holds the file it came from, if any).

    Raises
    ------
    InvalidConfig, UnknownKey, UnphysicalInput
        With the dotted key path of the offending entry.
    """
    from nuinfer.spec.files import read_analysis
    from nuinfer.spec.schema import translated

    raw, path, fam = read_analysis(path_or_dict, "floor")
    with translated(fam):
        return _validate_floor(raw, path, quick)


def _validate_floor(raw: dict, path, quick: bool) -> dict:
    from nuinfer.physics.mediators import canonical_model
    from nuinfer.physics.sources import NORMALISATIONS, SOURCE_NAMES

    _check(raw, SCHEMA)
    for name, sc in raw.get("scenarios", {}).items():
        _check(sc, _SCENARIO, f"scenarios.{name}")
    cfg = _merge(DEFAULTS, raw)
    # ---- values (the file's own values first: a [quick] value is applied only once both are valid,
    # so a message never names a key the user did not set)
    from nuinfer.physics.targets import get_target
    get_target(cfg["target"])
    for k, v in cfg["halo"].items():
        _positive(v, f"halo.{k}", allow_zero=(k == "v_E_km_s"))
    if cfg["halo"]["v_esc_km_s"] <= cfg["halo"]["v_E_km_s"]:
        raise UnphysicalInput("the escape speed must exceed the Earth speed", key="halo.v_esc_km_s")
    _grid_range(cfg["wimp"]["m_GeV"], "wimp.m_GeV")
    _grid_range(cfg["wimp"]["sigma_cm2"], "wimp.sigma_cm2")
    _grid_range(cfg["exposure"]["tonne_year"], "exposure.tonne_year", min_n=3)
    _grid_range(cfg["binning"], "binning", min_n=1)
    for i, b in enumerate(cfg["wimp"]["benchmarks"]):
        key = f"wimp.benchmarks[{i}]"
        _check(b, {"m_GeV": NUM, "sigma_cm2": NUM}, key)
        for k in ("m_GeV", "sigma_cm2"):
            if k not in b:
                raise InvalidConfig(f"missing '{k}'", key=f"{key}.{k}")
            _positive(b[k], f"{key}.{k}")
    panels = cfg["exposure"]["panels"]
    if not panels:
        raise InvalidConfig("give at least one exposure for the limit panels", key="exposure.panels")
    for i, e in enumerate(panels):
        _positive(e, f"exposure.panels[{i}]")
    bgc = cfg["background"]
    if bgc["flux"] not in NORMALISATIONS:
        raise InvalidConfig(f"{bgc['flux']!r} is not one of {', '.join(NORMALISATIONS)}", key="background.flux")
    srcs = bgc["sources"] if bgc["sources"] is not None else list(SOURCE_NAMES)
    if not srcs:
        raise InvalidConfig("empty list of sources; remove the key to use all of them", key="background.sources")
    for i, s in enumerate(srcs):
        if not isinstance(s, str) or s not in SOURCE_NAMES:
            raise InvalidConfig(f"unknown source {s!r}; choose from {', '.join(SOURCE_NAMES)}",
                                key=f"background.sources[{i}]")
    bgc["sources"] = list(srcs)
    for s, v in bgc["override"].items():
        if s not in SOURCE_NAMES:
            raise InvalidConfig(f"unknown source; choose from {', '.join(SOURCE_NAMES)}",
                                key=f"background.override.{s}")
        _positive(v, f"background.override.{s}", allow_zero=True)
    grouped: dict[str, str] = {}
    for g, members in bgc["groups"].items():
        if not isinstance(members, list) or not members:
            raise InvalidConfig("a group is a non-empty list of source names", key=f"background.groups.{g}")
        for j, s in enumerate(members):
            if not isinstance(s, str) or s not in SOURCE_NAMES:
                raise InvalidConfig(f"unknown source {s!r}", key=f"background.groups.{g}[{j}]")
            if s in grouped:
                raise InvalidConfig(f"source {s!r} is already in group {grouped[s]!r}",
                                    key=f"background.groups.{g}[{j}]")
            grouped[s] = g
    unc = cfg["uncertainties"]
    known = set(SOURCE_NAMES) | set(bgc["groups"]) | set(DEFAULT_UNCERTAINTIES)
    for k, v in unc.items():
        if k not in known:
            raise InvalidConfig(f"not a source or group; use one of {', '.join(sorted(known))}",
                                key=f"uncertainties.{k}")
        _positive(v, f"uncertainties.{k}", allow_zero=True)
    for comp in _components(bgc["sources"], bgc["groups"]):
        if comp not in unc:
            raise InvalidConfig("no flux uncertainty for this component; add it (0 fixes the flux)",
                                key=f"uncertainties.{comp}")
    if cfg["detector"]["quenching"] not in ("lindhard", "none"):
        raise InvalidConfig(f"{cfg['detector']['quenching']!r}: use \"lindhard\" (keVee bins) or \"none\" "
                            "(keVnr bins)",
                            key="detector.quenching")
    if cfg["detector"]["k"] is None:  # Lindhard k = 0.133 Z^(2/3) A^(-1/2) of the target (0.166 for Xe)
        from nuinfer.physics.detector import lindhard_k
        tgt = get_target(cfg["target"])
        cfg["detector"]["k"] = round(float(lindhard_k(tgt.Z, tgt.mean_A)), 3)
        cfg["_k_auto"] = True
    _positive(cfg["detector"]["k"], "detector.k")
    d = cfg["discovery"]
    _positive(d["z"], "discovery.z")
    if not (isinstance(d["fraction"], NUM) and 0 < d["fraction"] < 1):
        raise UnphysicalInput(f"must be in (0, 1), got {d['fraction']!r}", key="discovery.fraction")
    _positive(d["fog_level"], "discovery.fog_level")
    if not cfg["scenarios"]:
        raise InvalidConfig("give at least one scenario (e.g. [scenarios.SM])", key="scenarios")
    for name, sc in cfg["scenarios"].items():
        key = f"scenarios.{name}"
        try:
            sc["model"] = canonical_model(sc.get("model", "SM"))
        except InvalidConfig as exc:
            raise InvalidConfig(str(exc).split(": ", 1)[-1], key=f"{key}.model") from None
        if sc["model"] != "SM":
            if "g_X" not in sc or "m_X_MeV" not in sc:
                raise InvalidConfig("a new-physics scenario needs g_X (a number or \"auto\") and m_X_MeV",
                                    key=f"{key}.g_X" if "g_X" not in sc else f"{key}.m_X_MeV")
            _positive(sc["m_X_MeV"], f"{key}.m_X_MeV")
            g = sc["g_X"]
            if isinstance(g, str):
                if g != "auto":
                    raise InvalidConfig(f"{g!r}: use a number or \"auto\" (the package's own 90% CL limit)",
                                        key=f"{key}.g_X")
            else:
                _positive(g, f"{key}.g_X", allow_zero=True)
        _positive(sc.get("sin2w_rel_sigma", 0.0), f"{key}.sin2w_rel_sigma", allow_zero=True)
        if sc.get("sin2w_rel_sigma", 0.0) >= 1:
            raise UnphysicalInput("relative uncertainty must be below 1 (0.1 = 10 %)", key=f"{key}.sin2w_rel_sigma")
        _positive(sc.get("xsec_rel_sigma", 0.0), f"{key}.xsec_rel_sigma", allow_zero=True)
        _positive(sc.get("xsec_outside", XSEC_OUTSIDE_DEFAULT), f"{key}.xsec_outside", allow_zero=True)
        if "xsec_from" in sc:
            if sc.get("xsec_rel_sigma", 0.0) > 0:
                raise InvalidConfig("give either xsec_rel_sigma (uniform) or xsec_from (COHERENT-derived), not both",
                                    key=f"{key}.xsec_rel_sigma")
            try:
                _xsec_preset_path(sc["xsec_from"], path)
            except InvalidConfig as exc:
                raise InvalidConfig(str(exc).split(": ", 1)[-1], key=f"{key}.xsec_from") from None
        else:
            for k in ("xsec_outside", "xsec_shared", "xsec_data_dir"):
                if k in sc:
                    raise InvalidConfig("only meaningful with xsec_from", key=f"{key}.{k}")
        sc.setdefault("label", name)
    al = cfg["auto_limit"]
    if al["g_points"] < 10:
        raise UnphysicalInput(f"needs at least 10 points, got {al['g_points']}", key="auto_limit.g_points")
    _positive(al["g_lo"], "auto_limit.g_lo")
    _positive(al["g_hi"], "auto_limit.g_hi")
    if al["g_lo"] >= al["g_hi"]:
        raise UnphysicalInput("g_lo must be below g_hi", key="auto_limit.g_lo")
    t = cfg["toys"]
    if t["n"] < 0:
        raise UnphysicalInput(f"must be >= 0 (0 skips the toy check), got {t['n']}", key="toys.n")
    _positive(t["m_GeV"], "toys.m_GeV")
    _positive(t["exposure_tonne_year"], "toys.exposure_tonne_year")
    _bounds(cfg)
    q = cfg["quick"]
    for k, lo in (("m_n", 2), ("exposure_n", 3), ("sigma_n", 2), ("bins", 1), ("g_points", 10), ("toys", 0)):
        check_count(q[k], f"quick.{k}", lo, MAX["toys"] if k == "toys" else MAX["grid"])
    if quick:
        cfg["wimp"]["m_GeV"]["n"] = min(cfg["wimp"]["m_GeV"]["n"], q["m_n"])
        cfg["exposure"]["tonne_year"]["n"] = min(cfg["exposure"]["tonne_year"]["n"], q["exposure_n"])
        cfg["wimp"]["sigma_cm2"]["n"] = min(cfg["wimp"]["sigma_cm2"]["n"], q["sigma_n"])
        cfg["binning"]["n"] = min(cfg["binning"]["n"], q["bins"])
        cfg["auto_limit"]["g_points"] = min(cfg["auto_limit"]["g_points"], q["g_points"])
        cfg["toys"]["n"] = min(cfg["toys"]["n"], q["toys"])
    for i, tname in enumerate(cfg["compare_targets"]):
        if not isinstance(tname, str):
            raise InvalidConfig(f"a target name, got {tname!r}", key=f"compare_targets[{i}]")
        try:
            get_target(tname)
        except InvalidConfig as exc:
            raise InvalidConfig(str(exc).split(": ", 1)[-1], key=f"compare_targets[{i}]") from None
    if cfg["scheduler"] is not None:  # scenarios on Dask: "local", "local-threads" or an address
        from nuinfer.engine import check_scheduler
        check_scheduler(cfg["scheduler"], key="scheduler")
    cfg["_path"] = path
    cfg["_quick"] = bool(quick)
    return cfg


def _bounds(cfg: dict) -> None:
    """Magnitudes, sizes, seeds and repeats (no overflow, no unbounded allocation, no numpy seed error)."""
    for k, hi in (("rho_GeV_cm3", 1e6), ("v0_km_s", 3e5), ("v_esc_km_s", 3e5), ("v_E_km_s", 3e5)):
        check_number(cfg["halo"][k], f"halo.{k}", lo=0, hi=hi)
    for key, r, (lo, hi) in (("wimp.m_GeV", cfg["wimp"]["m_GeV"], (1e-6, 1e9)),
                             ("wimp.sigma_cm2", cfg["wimp"]["sigma_cm2"], (1e-80, 1e-20)),
                             ("exposure.tonne_year", cfg["exposure"]["tonne_year"], (1e-12, 1e15))):
        check_count(r["n"], f"{key}.n", 2, MAX["grid"])
        for e in ("lo", "hi"):
            check_number(r[e], f"{key}.{e}", lo=lo, hi=hi)
    b = cfg["binning"]
    check_count(b["n"], "binning.n", 1, MAX["bins"])
    check_number(b["hi"], "binning.hi", lo=0, hi=1e6, lo_open=True)
    for i, bm in enumerate(cfg["wimp"]["benchmarks"]):
        check_number(bm["m_GeV"], f"wimp.benchmarks[{i}].m_GeV", lo=0, hi=1e9, lo_open=True)
        check_number(bm["sigma_cm2"], f"wimp.benchmarks[{i}].sigma_cm2", lo=0, hi=1e-20, lo_open=True)
    for i, e in enumerate(cfg["exposure"]["panels"]):
        check_number(e, f"exposure.panels[{i}]", lo=0, hi=1e15, lo_open=True)
    unique(cfg["exposure"]["panels"], "exposure.panels", "exposures")
    bgc = cfg["background"]
    unique(bgc["sources"], "background.sources", "sources")
    for s, v in bgc["override"].items():
        check_number(v, f"background.override.{s}", lo=0, hi=1e20, what="cm^-2 s^-1")
    for k, v in cfg["uncertainties"].items():
        check_number(v, f"uncertainties.{k}", lo=0, hi=100.0, what="(relative width)")
    check_number(cfg["detector"]["k"], "detector.k", lo=0, hi=10, lo_open=True)
    d = cfg["discovery"]
    check_number(d["z"], "discovery.z", lo=0, hi=100, lo_open=True)
    check_number(d["fog_level"], "discovery.fog_level", lo=0, hi=1e6, lo_open=True)
    for name, sc in cfg["scenarios"].items():
        key = f"scenarios.{name}"
        if isinstance(sc.get("g_X"), NUM) and not isinstance(sc.get("g_X"), bool):
            check_number(sc["g_X"], f"{key}.g_X", lo=0, hi=10.0)
        if "m_X_MeV" in sc:
            check_number(sc["m_X_MeV"], f"{key}.m_X_MeV", lo=0, hi=1e9, lo_open=True, what="MeV")
        for k in ("xsec_rel_sigma", "xsec_outside"):
            if k in sc:
                check_number(sc[k], f"{key}.{k}", lo=0, hi=100.0)
    al = cfg["auto_limit"]
    check_count(al["g_points"], "auto_limit.g_points", 10, MAX["grid"])
    check_number(al["g_hi"], "auto_limit.g_hi", lo=0, hi=10.0, lo_open=True)
    t = cfg["toys"]
    check_count(t["n"], "toys.n", 0, MAX["toys"])
    check_seed(t["seed"], "toys.seed")
    check_number(t["m_GeV"], "toys.m_GeV", lo=0, hi=1e9, lo_open=True)
    check_number(t["exposure_tonne_year"], "toys.exposure_tonne_year", lo=0, hi=1e15, lo_open=True)
    num = cfg["numerics"]
    check_count(num["n_nodes"], "numerics.n_nodes", 2, MAX["nodes"])
    check_count(num["n_flux_grid"], "numerics.n_flux_grid", 10, MAX["flux_grid"])
    unique(cfg["compare_targets"], "compare_targets", "targets")


def _components(sources, groups) -> list[str]:
    """Nuisance components in source order: a group appears where its first member does."""
    member = {s: g for g, ms in groups.items() for s in ms}
    out: list[str] = []
    for s in sources:
        c = member.get(s, s)
        if c not in out:
            out.append(c)
    return out


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


def _xsec_preset_path(name: str, cfg_path=None) -> Path:
    """The terrestrial analysis a cross-section precision is derived from (preset name or TOML path)."""
    p = Path(name)
    if p.suffix == ".toml":
        if not p.is_absolute() and cfg_path:
            p = Path(cfg_path).parent / p
    else:
        from nuinfer.tasks.terrestrial import preset_path
        p = preset_path(name)
    if not p.is_file():
        raise InvalidConfig(f"no terrestrial analysis {str(p)!r}; use a preset name such as \"coherent_csi2017\" "
                            "or a .toml path", key="xsec_from")
    return p


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
    (:func:`nuinfer.tasks.paper.g90_table`) of a profile scan (:func:`nuinfer.tasks.paper.scan_model`) of
    the ``auto_limit.preset`` analysis (default ``models/fig3_cevns.toml``: CEvNS on xenon, 1 tonne-year,
    Eq. 26 with 10 % systematics) on the masses ``m_X / 2, m_X, 2 m_X`` and ``auto_limit.g_points``
    log-spaced couplings.
    """
    g = scenario["g_X"]
    if not isinstance(g, str):
        return float(g), "configured"
    from nuinfer.spec import xenon as _config
    from nuinfer.tasks import paper as workflows
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
