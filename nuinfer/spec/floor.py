"""Validation of neutrino-floor analyses (family ``floor``): WIMP grids, halo, exposures, the neutrino
backgrounds with their flux uncertainties, scenarios, and the discovery settings.  The computation
is :mod:`nuinfer.tasks.floor`; docs/floor.md explains the physics and the defaults."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from nuinfer.exceptions import InvalidConfig, UnphysicalInput
from nuinfer.spec.limits import MAX, check_count, check_number, check_seed, unique
from nuinfer.spec.xenon import NUM, _check

__all__ = ["DEFAULTS", "DEFAULT_UNCERTAINTIES", "SCHEMA", "XSEC_OUTSIDE_DEFAULT", "load_floor_config"]

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


def _xsec_preset_path(name: str, cfg_path=None) -> Path:
    """The terrestrial analysis a cross-section precision is derived from (preset name or TOML path)."""
    p = Path(name)
    if p.suffix == ".toml":
        if not p.is_absolute() and cfg_path:
            p = Path(cfg_path).parent / p
    else:
        from nuinfer.spec.files import models_dir
        p = models_dir() / (name if name.endswith(".toml") else f"{name}.toml")
    if not p.is_file():
        raise InvalidConfig(f"no terrestrial analysis {str(p)!r}; use a preset name such as \"coherent_csi2017\" "
                            "or a .toml path", key="xsec_from")
    return p
