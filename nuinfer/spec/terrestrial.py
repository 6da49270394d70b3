"""Analysis files for terrestrial (reactor, pi-DAR) data-driven fits: TOML -> validated analysis.

Same validation style as :mod:`nuinfer.spec.xenon` (unknown keys are errors, every message names the
dotted key path and the fix).  Relative paths are resolved against ``[data].dir`` (default: the
analysis file's folder); ``nuinfer fit --data-dir`` overrides it.  Layout (every table optional
unless stated)::

    name = "coherent_csi2017"
    tasks = ["sin2w", "V", "S"]          # also any mediator model ("T", "B-L", ...) and "dipole"
    sin2w_reference = 0.2387

    [source]                              # required
    type = "pidar"                        # "pidar" | "reactor"
    pot = 1.76e23                         # pidar: protons on target in the live time
    nu_per_proton = 0.08                  # pidar: neutrinos per flavour per proton
    distance_m = 19.3
    # reactor: power_GW = 2.96, fission_fractions = {U235 = 0.58, ...}, model = "HM",
    #          low_energy = "vogel-engel", E_max_MeV = 10.0

    [detector]                            # required
    target = "CsI"                        # "CsI" | "Ge" | "Ar" | "Ar40" | "Xe" | single isotopes
    mass_kg = 14.57
    live_days = 308.1
    form_factor = "klein-nystrand"        # "helm" | "klein-nystrand"
    quenching = "constant"                # "lindhard" | "lindhard_adiabatic" | "constant" | "table"
    value = 0.0878                        # constant Q_f;  k, xi_keV for Lindhard;  table = "qf.txt"
    light_yield_PE_per_keVee = 13.348     # bins and efficiency in photoelectrons
    efficiency = "COHERENT_eff.txt"       # 2 columns (energy in binning units, efficiency) or "ideal"
    resolution = "none"                   # "none" | "germanium" (noise_keV, fano) | [a, b]

    [binning]
    units = "PE"                          # "PE" | "keVee"
    lo = 6.0; hi = 30.0; n = 12; scale = "linear"   # or edges = [...]

    [data]
    dir = "path/to/user/files"
    observed = "COHERENT_data.txt"        # or "asimov" (SM + background)
    lower = "COHERENT_lower.txt"          # error bars -> sigma = (upper - lower)/2; or sigma = "file"
    upper = "COHERENT_upper.txt"
    background = 0.0                      # per-bin file, a number per bin, or
    background_per_keV_kg_day = 10.0      # a flat rate in keVee

    [nuisances]
    flux = 0.10; efficiency = 0.05; quenching = 0.19; background = 0.25; qf_nodes = 7

    [statistics]
    statistic = "gauss"                   # "gauss" | "poisson"
    cl = 0.9
    ndof = 2                              # for (m, g) scans

    [scan]
    sin2_theta_W = { lo = 0.05, hi = 0.45, n = 161 }
    m_X_MeV = { lo = 0.1, hi = 1e4, n = 50 }
    g_X = { lo = 1e-7, hi = 1e-2, n = 80 }
    m4_MeV = { lo = 0.01, hi = 100, n = 40 }
    mu_nu = { lo = 1e-12, hi = 1e-7, n = 60 }

    [variants.modified_lindhard]          # named overrides, each run as a separate analysis
    "detector.quenching" = "lindhard_adiabatic"

    [report]
    published_sm_total = 173.0            # compared with the prediction over full_range
    published_sm_total_error = 48.0
    full_range = [0.5, 50.0]              # in binning units
    reference_spectrum = "COHERENT_spectrum.txt"

    [posterior]
    task = "sin2w"; walkers = 32; steps = 1500; seed = 1
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nuinfer.spec.xenon import NUM, _check, _merge, _data_floats, _data_lines, _read_data_text, set_dotted
from nuinfer.exceptions import DataFileError, InvalidConfig, UnphysicalInput


_RANGE = {"lo": NUM, "hi": NUM, "n": int, "scale": str}

SCHEMA: dict = {
    "name": str,
    "description": str,
    "tasks": list,
    "sin2w_reference": NUM,
    "source": {"type": str, "pot": NUM, "nu_per_proton": NUM, "distance_m": NUM, "power_GW": NUM,
               "fission_fractions": dict, "model": str, "low_energy": str, "E_max_MeV": NUM},
    "detector": {"target": str, "mass_kg": NUM, "live_days": NUM, "form_factor": str, "quenching": str,
                 "value": NUM, "k": NUM, "xi_keV": NUM, "table": str, "light_yield_PE_per_keVee": NUM,
                 "efficiency": str, "resolution": (str, list), "noise_keV": NUM, "fano": NUM,
                 "n_nodes": int},
    "binning": {"units": str, "lo": NUM, "hi": NUM, "n": int, "scale": str, "edges": list},
    "data": {"dir": str, "observed": str, "sigma": str, "lower": str, "upper": str,
             "background": (NUM, str), "background_per_keV_kg_day": NUM},
    "nuisances": {"flux": NUM, "efficiency": NUM, "quenching": NUM, "background": NUM, "qf_nodes": int},
    "statistics": {"statistic": str, "cl": NUM, "ndof": int},
    "scan": {"sin2_theta_W": _RANGE, "m_X_MeV": _RANGE, "g_X": _RANGE, "m4_MeV": _RANGE, "mu_nu": _RANGE},
    "variants": dict,
    "report": {"published_sm_total": NUM, "published_sm_total_error": NUM, "full_range": list,
               "reference_spectrum": str},
    "posterior": {"task": str, "walkers": int, "steps": int, "seed": int, "burn": int, "thin": int},
}

DEFAULTS: dict = {
    "name": "terrestrial",
    "description": "",
    "tasks": ["sin2w"],
    "sin2w_reference": 0.2387,
    "source": {"nu_per_proton": 0.08, "model": "HM", "low_energy": "vogel-engel", "E_max_MeV": 10.0},
    "detector": {"form_factor": "helm", "quenching": "lindhard", "efficiency": "ideal", "resolution": "none",
                 "noise_keV": 0.07, "fano": 0.11, "xi_keV": 0.16, "n_nodes": 6},
    "binning": {"units": "keVee", "scale": "linear"},
    "data": {"observed": "asimov", "background": 0.0},
    "nuisances": {"flux": 0.1, "efficiency": 0.0, "quenching": 0.0, "background": 0.0, "qf_nodes": 7},
    "statistics": {"statistic": "gauss", "cl": 0.9, "ndof": 2},
    "scan": {"sin2_theta_W": {"lo": 0.05, "hi": 0.45, "n": 161, "scale": "linear"},
             "m_X_MeV": {"lo": 0.1, "hi": 1e4, "n": 50, "scale": "log"},
             "g_X": {"lo": 1e-7, "hi": 1e-2, "n": 80, "scale": "log"},
             "m4_MeV": {"lo": 0.01, "hi": 100.0, "n": 40, "scale": "log"},
             "mu_nu": {"lo": 1e-12, "hi": 1e-7, "n": 60, "scale": "log"}},
    "variants": {},
    "report": {},
    "posterior": {"task": "sin2w", "walkers": 32, "steps": 1500, "seed": 1, "thin": 1},
}

_CHOICES = {
    "source.type": ("pidar", "reactor"),
    "source.model": ("HM", "M"),
    "source.low_energy": ("vogel-engel", "none"),
    "detector.form_factor": ("helm", "klein-nystrand"),
    "detector.quenching": ("lindhard", "lindhard_adiabatic", "constant", "table"),
    "binning.units": ("keVee", "PE"),
    "binning.scale": ("linear", "log"),
    "statistics.statistic": ("gauss", "poisson"),
    "statistics.ndof": (1, 2),
}


def _tasks() -> tuple[str, ...]:
    from nuinfer.physics.mediators import MODELS
    return ("sin2w", "dipole") + tuple(m for m in MODELS if m not in ("SM",))


def _get(d, path):
    for p in path.split("."):
        d = d[p]
    return d


def _pos(cfg, path, allow_zero=False):
    try:
        v = _get(cfg, path)
    except KeyError:
        return
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, NUM) or not math.isfinite(v) or (v < 0 if allow_zero else v <= 0):
        raise UnphysicalInput(f"must be a finite number {'>= 0' if allow_zero else '> 0'}, got {v!r}", key=path)


def validate(raw: dict) -> dict:
    """Check a raw mapping against :data:`SCHEMA` and return it merged with :data:`DEFAULTS`."""
    _check(raw, SCHEMA)
    for req in ("source", "detector"):
        if req not in raw:
            raise InvalidConfig(f"missing table [{req}]", key=req)
    cfg = _merge(DEFAULTS, raw)
    for path, allowed in _CHOICES.items():
        try:
            v = _get(cfg, path)
        except KeyError:
            if path == "source.type":
                raise InvalidConfig("missing: use type = \"pidar\" or \"reactor\"", key=path) from None
            continue
        if v not in allowed:
            raise InvalidConfig(f"{v!r} is not one of {', '.join(map(str, allowed))}", key=path)
    src, det = cfg["source"], cfg["detector"]
    need = ("pot", "distance_m") if src["type"] == "pidar" else ("power_GW", "distance_m")
    for k in need:
        if k not in src:
            raise InvalidConfig(f"missing (needed for type = {src['type']!r})", key=f"source.{k}")
    for k in ("pot", "nu_per_proton", "distance_m", "power_GW", "E_max_MeV"):
        _pos(cfg, f"source.{k}")
    for k in ("target", "mass_kg", "live_days"):
        if k not in det:
            raise InvalidConfig("missing", key=f"detector.{k}")
    for k in ("mass_kg", "live_days", "value", "k", "xi_keV", "light_yield_PE_per_keVee"):
        _pos(cfg, f"detector.{k}")
    _pos(cfg, "detector.noise_keV", allow_zero=True)
    _pos(cfg, "detector.fano", allow_zero=True)
    if det["quenching"] == "constant" and "value" not in det:
        raise InvalidConfig("quenching = \"constant\" needs value = Q_f", key="detector.value")
    if det["quenching"] == "table" and "table" not in det:
        raise InvalidConfig("quenching = \"table\" needs table = \"file\" (E_nr keV, Q_f)", key="detector.table")
    res = det["resolution"]
    if isinstance(res, list):
        if len(res) != 2 or not all(isinstance(x, NUM) and not isinstance(x, bool) and x >= 0 for x in res):
            raise InvalidConfig("resolution = [a, b] with sigma = a sqrt(E) + b E (keVee), both >= 0",
                                key="detector.resolution")
    elif res not in ("none", "germanium"):
        raise InvalidConfig(f"{res!r}: use \"none\", \"germanium\" or [a, b]", key="detector.resolution")
    b = cfg["binning"]
    if b["units"] == "PE" and "light_yield_PE_per_keVee" not in det:
        raise InvalidConfig("binning in PE needs detector.light_yield_PE_per_keVee", key="binning.units")
    if "edges" in b:
        e = b["edges"]
        if (len(e) < 2 or not all(isinstance(x, NUM) and not isinstance(x, bool) for x in e)
                or np.any(np.diff(np.asarray(e, float)) <= 0) or e[0] <= 0):
            raise UnphysicalInput("edges must be >= 2 increasing positive numbers", key="binning.edges")
    else:
        for k in ("lo", "hi", "n"):
            if k not in b:
                raise InvalidConfig(f"missing '{k}' (or give edges = [...])", key=f"binning.{k}")
        if not (b["lo"] > 0 and b["hi"] > b["lo"] and b["n"] >= 1):
            raise UnphysicalInput("need 0 < lo < hi and n >= 1", key="binning.lo")
    for k in ("flux", "efficiency", "quenching", "background"):
        v = cfg["nuisances"][k]
        if isinstance(v, bool) or not (v >= 0) or (k == "quenching" and not math.isfinite(v)):
            raise UnphysicalInput(f"must be >= 0 (0 fixes the nuisance{'' if k == 'quenching' else ', inf frees it'})",
                                  key=f"nuisances.{k}")
    if cfg["nuisances"]["qf_nodes"] < 4:
        raise UnphysicalInput("needs >= 4 morphing nodes", key="nuisances.qf_nodes")
    cl = cfg["statistics"]["cl"]
    if not 0 < cl < 1:
        raise UnphysicalInput(f"must be in (0, 1), got {cl}", key="statistics.cl")
    for name, r in cfg["scan"].items():
        for k in ("lo", "hi", "n"):
            if k not in r:
                raise InvalidConfig(f"missing '{k}'", key=f"scan.{name}.{k}")
        if r.get("scale", "log") not in ("log", "linear"):
            raise InvalidConfig("scale must be 'log' or 'linear'", key=f"scan.{name}.scale")
        if not (r["hi"] > r["lo"] and r["n"] >= 2) or (r.get("scale", "log") == "log" and r["lo"] <= 0):
            raise UnphysicalInput("need lo < hi (lo > 0 on a log scale) and n >= 2", key=f"scan.{name}.lo")
    tasks = cfg["tasks"]
    if not tasks:
        raise InvalidConfig("empty; give at least one of " + ", ".join(_tasks()), key="tasks")
    from nuinfer.physics.mediators import canonical_model
    out = []
    for i, t in enumerate(tasks):
        if not isinstance(t, str):
            raise InvalidConfig(f"task names are strings, got {t!r}", key=f"tasks[{i}]")
        if t in ("sin2w", "dipole"):
            out.append(t)
            continue
        try:
            m = canonical_model(t)
        except InvalidConfig:
            raise InvalidConfig(f"unknown task {t!r}; use one of {', '.join(_tasks())}", key=f"tasks[{i}]") from None
        if m == "SM":
            raise InvalidConfig("SM is always computed; list sin2w or a new-physics model", key=f"tasks[{i}]")
        out.append(m)
    cfg["tasks"] = out
    _bounds(cfg)
    for vname, over in cfg["variants"].items():
        if not isinstance(over, dict):
            raise InvalidConfig("a variant is a table of dotted overrides, e.g. \"detector.quenching\" = \"lindhard\"",
                                key=f"variants.{vname}")
        trial = copy.deepcopy(raw)
        trial.pop("variants", None)
        for k, v in over.items():
            set_dotted(trial, k, v)
        try:
            validate(trial)
        except InvalidConfig as exc:
            raise InvalidConfig(f"invalid override: {exc}", key=f"variants.{vname}") from None
    rep = cfg["report"]
    if "full_range" in rep:
        fr = rep["full_range"]
        if (len(fr) != 2 or not all(isinstance(x, NUM) and not isinstance(x, bool) for x in fr)
                or not all(math.isfinite(x) for x in fr) or not (0 < fr[0] < fr[1])):
            raise UnphysicalInput("full_range = [lo, hi] with 0 < lo < hi", key="report.full_range")
    post = cfg["posterior"]
    if post["task"] not in _tasks() and post["task"] != "ngi":
        raise InvalidConfig(f"unknown task {post['task']!r}", key="posterior.task")
    return cfg


def _bounds(cfg: dict) -> None:
    """Magnitudes, sizes, seeds and repeats (no overflow, no unbounded allocation, no numpy seed error)."""
    from nuinfer.spec.limits import MAX, check_count, check_number, check_seed, unique
    ref = cfg["sin2w_reference"]
    check_number(ref, "sin2w_reference")
    if not 0 < ref < 1:
        raise UnphysicalInput(f"sin^2 theta_W must be in (0, 1), got {ref}", key="sin2w_reference")
    src = cfg["source"]
    for k, hi in (("pot", 1e30), ("nu_per_proton", 100.0), ("distance_m", 1e7), ("power_GW", 1e3),
                  ("E_max_MeV", 1e3)):
        if k in src:
            check_number(src[k], f"source.{k}", lo=0, hi=hi, lo_open=True)
    for iso, f in (src.get("fission_fractions") or {}).items():
        check_number(f, f"source.fission_fractions.{iso}", lo=0, hi=1)
    det = cfg["detector"]
    for k, hi in (("mass_kg", 1e9), ("live_days", 1e6), ("value", 1.0), ("k", 10.0), ("xi_keV", 1e6),
                  ("light_yield_PE_per_keVee", 1e6), ("noise_keV", 1e3), ("fano", 100.0)):
        if k in det:
            check_number(det[k], f"detector.{k}", lo=0, hi=hi, lo_open=k not in ("noise_keV", "fano"))
    check_count(det["n_nodes"], "detector.n_nodes", 2, MAX["nodes"])
    if isinstance(det["resolution"], list):
        check_number(det["resolution"][0], "detector.resolution[0]", lo=0, hi=100)
        check_number(det["resolution"][1], "detector.resolution[1]", lo=0, hi=10)
    b = cfg["binning"]
    if "edges" in b:
        if len(b["edges"]) - 1 > MAX["bins"]:
            raise UnphysicalInput(f"at most {MAX['bins']:,} bins, got {len(b['edges']) - 1:,}", key="binning.edges")
        for i, e in enumerate(b["edges"]):
            check_number(e, f"binning.edges[{i}]", lo=0, hi=1e7)
    else:
        check_count(b["n"], "binning.n", 1, MAX["bins"])
        check_number(b["lo"], "binning.lo", lo=0, hi=1e7, lo_open=True)
        check_number(b["hi"], "binning.hi", lo=0, hi=1e7, lo_open=True)
    d = cfg["data"]
    if not isinstance(d["background"], str):
        check_number(d["background"], "data.background", lo=0, hi=1e15, what="events per bin")
    if "background_per_keV_kg_day" in d:
        check_number(d["background_per_keV_kg_day"], "data.background_per_keV_kg_day", lo=0, hi=1e12)
    nu = cfg["nuisances"]
    for k in ("flux", "efficiency", "quenching", "background"):
        check_number(nu[k], f"nuisances.{k}", lo=0, hi=1e3, allow_inf=k != "quenching", what="(relative width)")
    check_count(nu["qf_nodes"], "nuisances.qf_nodes", 4, MAX["qf_nodes"])
    bounds = {"sin2_theta_W": (0.0, 1.0), "m_X_MeV": (1e-9, 1e9), "g_X": (1e-30, 10.0), "m4_MeV": (1e-9, 1e9),
              "mu_nu": (1e-20, 1e-3)}
    for name, r in cfg["scan"].items():
        lo, hi = bounds[name]
        check_count(r["n"], f"scan.{name}.n", 2, MAX["grid"])
        for e in ("lo", "hi"):
            check_number(r[e], f"scan.{name}.{e}", lo=lo, hi=hi)
    unique(cfg["tasks"], "tasks", "tasks")
    rep = cfg["report"]
    if "published_sm_total" in rep:
        check_number(rep["published_sm_total"], "report.published_sm_total", lo=0, hi=1e15, lo_open=True,
                     what="events")
    if "published_sm_total_error" in rep:
        check_number(rep["published_sm_total_error"], "report.published_sm_total_error", lo=0, hi=1e15)
        if "published_sm_total" not in rep:
            raise InvalidConfig("an error without a value; set report.published_sm_total too",
                                key="report.published_sm_total_error")
    if "full_range" in rep:
        for i, x in enumerate(rep["full_range"]):
            check_number(x, f"report.full_range[{i}]", lo=0, hi=1e7)
    p = cfg["posterior"]
    check_count(p["walkers"], "posterior.walkers", 1, MAX["walkers"])
    check_count(p["steps"], "posterior.steps", 1, MAX["steps"])
    check_seed(p["seed"], "posterior.seed")
    check_count(p["thin"], "posterior.thin", 1, p["steps"])
    if p.get("burn") is not None:
        check_count(p["burn"], "posterior.burn", 0, p["steps"] - 1)


def _per_bin_table(path: Path, edges: np.ndarray, key: str) -> np.ndarray:
    """Values per bin from a file: 1 column (one per bin), 2 (centre, value) or 3 (lo, hi, value)."""
    rows = []
    for ln, s in _data_lines(_read_data_text(path, key)):
        vals = _data_floats(s.replace(",", " ").split(), path, ln, s, key)
        if not all(math.isfinite(v) for v in vals):
            raise DataFileError(f"{path}:{ln}: NaN or inf", key=key)
        rows.append(vals)
    if not rows:
        raise DataFileError(f"{path}: no data rows", key=key)
    ncol = {len(r) for r in rows}
    if len(ncol) != 1 or ncol.pop() not in (1, 2, 3):
        raise DataFileError(f"{path}: every row needs 1 (value), 2 (centre, value) or 3 (lo, hi, value) columns",
                            key=key)
    arr = np.asarray(rows)
    nb = edges.size - 1
    if arr.shape[1] == 1:
        if arr.shape[0] != nb:
            raise DataFileError(f"{path}: {arr.shape[0]} values for {nb} bins", key=key)
        return arr[:, 0]
    out = np.empty(nb)
    centre = arr[:, 0] if arr.shape[1] == 2 else 0.5 * (arr[:, 0] + arr[:, 1])
    for i in range(nb):
        inside = np.flatnonzero((centre >= edges[i]) & (centre < edges[i + 1]))
        if inside.size != 1:
            raise DataFileError(f"{path}: {inside.size} rows have their centre in bin [{edges[i]:g}, {edges[i + 1]:g}); "
                                "need exactly one per analysis bin (match the binning to the file)", key=key)
        out[i] = arr[inside[0], -1]
    return out


@dataclass(frozen=True)
class TerrestrialAnalysis:
    """A validated terrestrial analysis (merged configuration plus where its files are)."""

    cfg: dict = field(repr=False)
    path: str | None = None
    raw: dict = field(default_factory=dict, repr=False)
    data_dir: str | None = None
    family: str | None = None  #: "terrestrial" when read from an analysis file (error keys are translated)

    @property
    def name(self) -> str:
        return self.cfg["name"]

    @property
    def tasks(self) -> list[str]:
        return list(self.cfg["tasks"])

    def to_json(self) -> str:
        return json.dumps(self.cfg, sort_keys=True, default=str)

    def resolve(self, p: str) -> Path:
        path = Path(p)
        if path.is_absolute():
            return path
        base = self.data_dir or self.cfg["data"].get("dir")
        root = Path(self.path).parent if self.path is not None else Path(".")
        if isinstance(base, str) and base.startswith("package:"):  # data shipped in nuinfer/data/
            return Path(__file__).resolve().parents[1] / "data" / base[len("package:"):] / path
        if base is not None:
            b = Path(base)
            root = b if b.is_absolute() or self.data_dir is not None else root / b
        return root / path

    def replace(self, **overrides) -> TerrestrialAnalysis:
        """A new analysis with dotted-key overrides."""
        raw = copy.deepcopy(self.raw)
        for k, v in overrides.items():
            set_dotted(raw, k, v)
        from nuinfer.spec.schema import translated
        with translated(self.family):
            return TerrestrialAnalysis(validate(copy.deepcopy(raw)), self.path, raw, self.data_dir, self.family)

    def variants(self) -> dict[str, TerrestrialAnalysis]:
        """``{name: analysis}`` for every ``[variants]`` entry, or ``{"nominal": self}``."""
        if not self.cfg["variants"]:
            return {"nominal": self}
        out = {}
        for vname, over in self.cfg["variants"].items():
            raw = copy.deepcopy(self.raw)
            raw.pop("variants", None)
            for k, v in over.items():
                set_dotted(raw, k, v)
            raw["name"] = f"{self.name}:{vname}"
            from nuinfer.spec.schema import translated
            with translated(self.family):
                out[vname] = TerrestrialAnalysis(validate(copy.deepcopy(raw)), self.path, raw, self.data_dir,
                                                 self.family)
        return out

    # ------------------------------------------------------------------ physics
    def grid(self, which: str) -> np.ndarray:
        r = self.cfg["scan"][which]
        if r.get("scale", "log") == "log":
            return np.geomspace(r["lo"], r["hi"], int(r["n"]))
        return np.linspace(r["lo"], r["hi"], int(r["n"]))

    @property
    def live_time_s(self) -> float:
        return float(self.cfg["detector"]["live_days"]) * 86400.0

    @property
    def exposure_tonne_year(self) -> float:
        d = self.cfg["detector"]
        return float(d["mass_kg"]) * 1e-3 * float(d["live_days"]) / 365.25

    def sources(self) -> dict:
        """Forward-model sources ``{name: [Emission]}``."""
        from nuinfer.physics import terrestrial as ter
        s = self.cfg["source"]
        if s["type"] == "pidar":
            return ter.pion_dar_sources(s["pot"], s["distance_m"], self.live_time_s, nu_per_proton=s["nu_per_proton"])
        return ter.reactor_sources(s["power_GW"], s["distance_m"], s.get("fission_fractions"), model=s["model"],
                                   low_energy=s["low_energy"], E_max=s["E_max_MeV"])

    @property
    def light_yield(self) -> float | None:
        ly = self.cfg["detector"].get("light_yield_PE_per_keVee")
        return float(ly) if ly is not None else None

    def edges(self) -> np.ndarray:
        """Analysis bin edges in the binning units."""
        b = self.cfg["binning"]
        if "edges" in b:
            return np.asarray(b["edges"], float)
        if b["scale"] == "log":
            return np.geomspace(b["lo"], b["hi"], int(b["n"]) + 1)
        return np.linspace(b["lo"], b["hi"], int(b["n"]) + 1)

    def to_keVee(self, x) -> np.ndarray:
        x = np.asarray(x, float)
        return x / self.light_yield if self.cfg["binning"]["units"] == "PE" else x

    def quenching(self, scale: float = 1.0):
        from nuinfer.physics.detector import Quenching, lindhard_k
        from nuinfer.physics.targets import get_target
        d = self.cfg["detector"]
        t = get_target(d["target"])
        table = None
        if d["quenching"] == "table":
            from nuinfer.spec.xenon import load_table
            table = tuple(load_table(self.resolve(d["table"]), "detector.table").T)
        k = float(d["k"]) if "k" in d else float(lindhard_k(t.Z, t.mean_A))
        return Quenching(d["quenching"], k=k, Z=t.Z, value=float(d.get("value", 0.15)), table=table,
                         xi_keV=float(d["xi_keV"]), scale=float(scale))

    def efficiency(self):
        d = self.cfg["detector"]
        if d["efficiency"] == "ideal":
            return None
        from nuinfer.spec.xenon import load_table
        E, eff = load_table(self.resolve(d["efficiency"]), "detector.efficiency").T
        from nuinfer.spec.xenon import _check_efficiency
        _check_efficiency(eff, self.resolve(d["efficiency"]))
        ly = self.light_yield if self.cfg["binning"]["units"] == "PE" else None
        return _Efficiency(E, eff, ly)

    def resolution(self):
        from nuinfer.physics.detector import GermaniumResolution
        d = self.cfg["detector"]
        r = d["resolution"]
        if r == "none":
            return None
        if r == "germanium":
            return GermaniumResolution(float(d["noise_keV"]), float(d["fano"]))
        return tuple(float(x) for x in r)

    def forward_model(self, *, qf_scale: float = 1.0, sin2w: float | None = None, edges_units=None):
        """The CEvNS forward model of this analysis (optionally at a quenching scale / sin^2 theta_W)."""
        from nuinfer.physics.detector import Binning, Detector
        from nuinfer.forward import ForwardModel
        d = self.cfg["detector"]
        src = self.sources()
        e = self.edges() if edges_units is None else np.asarray(edges_units, float)
        det = Detector(self.quenching(qf_scale), self.efficiency(), self.resolution())
        return ForwardModel("cevns", target=d["target"], sources=tuple(src), user_tables=src,
                            binning=Binning(edges_keVee=tuple(self.to_keVee(e))), detector=det,
                            exposure_tonne_year=self.exposure_tonne_year, sin2w=sin2w,
                            form_factor=d["form_factor"], n_nodes=int(d["n_nodes"]))

    # ------------------------------------------------------------------ data
    def nuisances(self):
        from nuinfer.likelihood.data import Nuisances
        n = self.cfg["nuisances"]
        return Nuisances(n["flux"], n["efficiency"], n["quenching"], n["background"])

    def qf_nodes(self) -> np.ndarray:
        from nuinfer.likelihood.data import qf_nodes
        n = self.cfg["nuisances"]
        return qf_nodes(n["quenching"], n["qf_nodes"])

    def background(self) -> np.ndarray:
        """Expected background per analysis bin [events]."""
        d = self.cfg["data"]
        e = self.edges()
        if "background_per_keV_kg_day" in d:
            w = np.diff(self.to_keVee(e))
            det = self.cfg["detector"]
            return float(d["background_per_keV_kg_day"]) * w * float(det["mass_kg"]) * float(det["live_days"])
        bg = d["background"]
        if isinstance(bg, str):
            out = _per_bin_table(self.resolve(bg), e, "data.background")
            if np.any(out < 0):
                raise DataFileError("background must be >= 0", key="data.background")
            return out
        if isinstance(bg, bool) or bg < 0:
            raise UnphysicalInput("background must be a number >= 0 per bin or a file", key="data.background")
        return np.full(e.size - 1, float(bg))

    def binned_data(self, sm_signal) -> object:
        """:class:`~nuinfer.likelihood.data.BinnedData` (Asimov = SM signal + background)."""
        from nuinfer.likelihood.data import BinnedData
        d = self.cfg["data"]
        e = self.edges()
        bg = self.background()
        sigma = None
        if "sigma" in d:
            sigma = _per_bin_table(self.resolve(d["sigma"]), e, "data.sigma")
        elif "lower" in d or "upper" in d:
            if not ("lower" in d and "upper" in d):
                raise InvalidConfig("give both lower and upper error-bar files", key="data.lower")
            lo = _per_bin_table(self.resolve(d["lower"]), e, "data.lower")
            hi = _per_bin_table(self.resolve(d["upper"]), e, "data.upper")
            sigma = 0.5 * (hi - lo)
            if np.any(sigma <= 0):
                raise DataFileError("upper must exceed lower in every bin", key="data.upper")
        if d["observed"] == "asimov":
            obs, label = np.asarray(sm_signal, float) + bg, "asimov_sm"
        else:
            obs, label = _per_bin_table(self.resolve(d["observed"]), e, "data.observed"), str(d["observed"])
        return BinnedData(obs, bg, sigma, e, self.cfg["binning"]["units"], label)


class _Efficiency:
    """Efficiency table as a function of E_ee [keVee] (tabulated in keVee or PE)."""

    def __init__(self, E, eff, light_yield):
        self.E, self.eff, self.ly = np.asarray(E, float), np.asarray(eff, float), light_yield

    @property
    def knots_keVee(self) -> np.ndarray:
        """Table abscissae in keVee (kinks of the piecewise-linear efficiency: quadrature breaks)."""
        return self.E / (self.ly if self.ly else 1.0)

    def __call__(self, E_keVee):
        x = np.asarray(E_keVee, float) * (self.ly if self.ly else 1.0)
        return np.interp(x, self.E, self.eff, left=0.0, right=float(self.eff[-1]))


def load(path_or_dict, overrides: dict | None = None, *, data_dir: str | None = None) -> TerrestrialAnalysis:
    """Load and validate a terrestrial analysis from a TOML path (or a mapping)."""
    if isinstance(path_or_dict, TerrestrialAnalysis):
        ana = path_or_dict
        if overrides:
            ana = ana.replace(**overrides)
        if data_dir is not None:
            ana = TerrestrialAnalysis(ana.cfg, ana.path, ana.raw, str(data_dir), ana.family)
        return ana
    from nuinfer.spec.files import read_analysis
    from nuinfer.spec.schema import translated

    raw, path, fam = read_analysis(path_or_dict, "terrestrial")
    for k, v in (overrides or {}).items():
        set_dotted(raw, k, v)
    with translated(fam):
        return TerrestrialAnalysis(validate(copy.deepcopy(raw)), path, raw, None if data_dir is None else str(data_dir),
                                   fam)


def _check_reference(ana: TerrestrialAnalysis) -> None:
    """``report.reference_spectrum`` must exist and hold finite numbers (read at the end of a fit)."""
    rep = ana.cfg["report"]
    if "reference_spectrum" not in rep:
        return
    p = ana.resolve(rep["reference_spectrum"])
    key = "report.reference_spectrum"
    text = _read_data_text(p, key, missing=(
        f"file {str(p)!r} not found; give the path relative to the data folder "
        "(data.dir or --data-dir) or remove the key"))
    n = 0
    for ln, st in _data_lines(text):
        vals = _data_floats(st.replace(",", " ").split(), p, ln, st, key)
        if not all(math.isfinite(v) for v in vals):
            raise DataFileError(f"{p}:{ln}: NaN or inf value", key=key)
        n += 1
    if not n:
        raise DataFileError(f"{p}: no data rows", key=key)
