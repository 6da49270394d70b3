"""Analysis configuration: TOML files -> validated, frozen :class:`Analysis`.

Validation happens before any work.  Every error names the dotted key path (``scan.m_X_MeV.lo``)
and says how to fix it; unknown keys are errors (they are usually typos).

File layout (every table optional; defaults are the paper preset)::

    name = "fig2_cevns"
    process = "cevns"                 # "cevns" | "eves"
    target = "Xe"                     # natural xenon, or one isotope: "Xe131"
    sources = ["8B", "hep", ...]      # default: all (CEvNS), solar (EvES)
    exposure_tonne_year = 1.0
    models = ["S", "P", "V", "A", "T"] # or a single [model] table

    [model]                 # options shared by every model of the file
    axial_form = "paper"    # "paper" | "standard"
    eves_vector_norm = "paper"
    lmu_ltau_nue = "paper"  # "paper" | "background"

    [flux]
    preset = "paper"        # "paper" | "b16-gs98"
    override = { "8B" = 5.46e6 }
    tables = { mysrc = { path = "flux.txt", flavour = "e", anti = false } }

    [binning]
    lo = 0.1                # keVee
    hi = 100.0
    n = 100
    scale = "log"

    [detector]
    quenching = "lindhard"  # "lindhard" | "lindhard_adiabatic" | "constant" | "table" | "none"
    k = 0.166
    xi_keV = 0.16           # adiabatic correction scale (lindhard_adiabatic)
    efficiency = "ideal"    # "ideal" | "xenonnt" | path to a 2-column table (keVee, eff)
    resolution = "none"     # "none" | "xenon" | [a, b]
    binding = true          # EvES atomic binding (Eq. 25)

    [statistics]
    statistic = "eq26"      # "eq26" | "poisson"
    sigma_sys = 0.1
    sigma_bg = 0.1
    cl = 0.9
    ndof = 2
    profiler = "analytic"   # "analytic" | "minuit"
    data = "asimov"         # or a file of observed counts per bin (neutrino events + background);
                            # the expected background sigma_bg * R_SM is subtracted before the fit

    [scan]
    m_X_MeV = { lo = 0.01, hi = 1e4, n = 200 }
    g_X = { lo = 1e-8, hi = 1e-1, n = 200 }

    [spectrum]              # benchmark point for spectrum plots (Fig. 1)
    g_X = 0.01
    m_X_MeV = 1000.0

    [posterior]
    walkers = 32
    steps = 2000
    seed = 1
    log10_m_X = { lo = -2, hi = 4, label = "$\\log_{10}(m_X/\\mathrm{MeV})$" }
    log10_g_X = { lo = -8, hi = -1 }
    a = { sigma = 0.1 }
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nuinfer.exceptions import DataFileError, InvalidConfig, UnknownKey, UnphysicalInput
from nuinfer.spec.schema import _dotted_parent



# ----------------------------------------------------------------------------- schema
NUM = (int, float)
_RANGE = {"lo": NUM, "hi": NUM, "n": int, "scale": str}
_PARAM = {"lo": NUM, "hi": NUM, "label": str, "unit": str}

SCHEMA: dict = {
    "name": str,
    "description": str,
    "process": str,
    "target": str,
    "sources": list,
    "exposure_tonne_year": NUM,
    "models": list,
    "model": {"name": str, "axial_form": str, "eves_vector_norm": str, "lmu_ltau_nue": str},
    "flux": {"preset": str, "override": dict, "tables": dict},
    "binning": {"lo": NUM, "hi": NUM, "n": int, "scale": str},
    "detector": {"quenching": str, "k": NUM, "value": NUM, "xi_keV": NUM, "table": str, "efficiency": str,
                 "resolution": (str, list), "binding": bool},
    "statistics": {"statistic": str, "sigma_sys": NUM, "sigma_bg": NUM, "cl": NUM, "ndof": int,
                   "profiler": str, "data": str, "min_expected": NUM, "scheduler": str},
    "scan": {"m_X_MeV": _RANGE, "g_X": _RANGE},
    "spectrum": {"g_X": NUM, "m_X_MeV": NUM, "models": list},
    "posterior": {"walkers": int, "steps": int, "seed": int, "burn": int, "thin": int,
                  "log10_m_X": _PARAM, "log10_g_X": _PARAM, "a": {"sigma": NUM},
                  "mass_grid_n": int},
    "numerics": {"n_nodes": int, "n_flux_grid": int},
}

DEFAULTS: dict = {
    "name": "analysis",
    "description": "",
    "process": "cevns",
    "target": "Xe",
    "exposure_tonne_year": 1.0,
    "model": {"axial_form": "paper", "eves_vector_norm": "paper", "lmu_ltau_nue": "paper"},
    "flux": {"preset": "paper", "override": {}, "tables": {}},
    "binning": {"lo": 0.1, "n": 100, "scale": "log"},
    "detector": {"quenching": None, "k": 0.166, "efficiency": "ideal", "resolution": "none",
                 "binding": True},
    "statistics": {"statistic": "eq26", "sigma_sys": 0.1, "sigma_bg": 0.1, "cl": 0.9, "ndof": 2,
                   "profiler": "analytic", "data": "asimov", "min_expected": 1e-6},
    "scan": {"m_X_MeV": {"lo": 0.01, "hi": 1e4, "n": 200, "scale": "log"},
             "g_X": {"lo": 1e-8, "hi": 1e-1, "n": 200, "scale": "log"}},
    "spectrum": {"g_X": 0.01, "m_X_MeV": 1000.0},
    "posterior": {"walkers": 32, "steps": 2000, "seed": 1, "thin": 1,
                  "log10_m_X": {"lo": -2.0, "hi": 4.0}, "log10_g_X": {"lo": -8.0, "hi": -1.0},
                  "a": {"sigma": None}, "mass_grid_n": 241},
    "numerics": {"n_nodes": 6, "n_flux_grid": 400},
}

_CHOICES = {
    "process": ("cevns", "eves"),
    "statistics.statistic": ("eq26", "poisson"),
    "statistics.profiler": ("analytic", "minuit"),
    "statistics.ndof": (1, 2),
    "detector.quenching": ("lindhard", "lindhard_adiabatic", "constant", "table", "none"),
    "binning.scale": ("log", "linear"),
    "scan.m_X_MeV.scale": ("log", "linear"),
    "scan.g_X.scale": ("log", "linear"),
    "flux.preset": ("paper", "b16-gs98"),
    "model.axial_form": ("paper", "standard"),
    "model.eves_vector_norm": ("paper", "standard"),
    "model.lmu_ltau_nue": ("paper", "background"),
}


def _typename(t) -> str:
    if isinstance(t, tuple):
        return " or ".join(sorted({_typename(x) for x in t}))
    return {int: "integer", float: "number", str: "string", bool: "true/false", list: "array",
            dict: "table"}.get(t, str(t))


def _check(data: dict, schema: dict, path: str = "", defaults: dict | None = None) -> None:
    """Keys and types of ``data`` against ``schema``; a null (JSON, as :meth:`Analysis.to_json`
    writes a setting left unset) is accepted where the default in ``defaults`` is null too."""
    if not isinstance(data, dict):
        raise InvalidConfig(f"expected a table, got {type(data).__name__}", key=path or "<root>")
    defaults = defaults if isinstance(defaults, dict) else {}
    for key, val in data.items():
        kp = f"{path}.{key}" if path else key
        if key not in schema:
            close = [k for k in schema if k.lower() == str(key).lower() or str(key) in k or k in str(key)]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownKey(f"unknown key{hint}; allowed here: {', '.join(sorted(schema))}", key=kp)
        spec = schema[key]
        if isinstance(spec, dict):
            _check(val, spec, kp, defaults.get(key))
            continue
        if val is None and key in defaults and defaults[key] is None:
            continue
        types = spec if isinstance(spec, tuple) else (spec,)
        if isinstance(val, bool) and bool not in types:
            raise InvalidConfig(f"expected {_typename(spec)}, got a boolean", key=kp)
        if not isinstance(val, types):
            raise InvalidConfig(f"expected {_typename(spec)}, got {type(val).__name__} {val!r}", key=kp)


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("override", "tables"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _get(d: dict, path: str):
    for p in path.split("."):
        d = d[p]
    return d


def _positive(d: dict, path: str, *, allow_zero: bool = False):
    v = _get(d, path)
    if v is None:
        return
    if not np.isfinite(v) or (v < 0 if allow_zero else v <= 0):
        need = ">= 0" if allow_zero else "> 0"
        raise UnphysicalInput(f"must be finite and {need}, got {v}", key=path)


def _range(d: dict, path: str):
    r = _get(d, path)
    for k in ("lo", "hi", "n"):
        if k not in r:
            raise InvalidConfig(f"missing '{k}'", key=f"{path}.{k}")
    if r.get("scale", "log") == "log" or path.startswith("scan"):
        if not (np.isfinite(r["lo"]) and r["lo"] > 0):
            raise UnphysicalInput(f"must be finite and > 0, got {r['lo']}", key=f"{path}.lo")
    for k in ("lo", "hi"):
        if not np.isfinite(r[k]):
            raise UnphysicalInput(f"must be a finite number, got {r[k]}", key=f"{path}.{k}")
    if r["lo"] >= r["hi"]:
        raise UnphysicalInput(f"lo ({r['lo']}) must be below hi ({r['hi']}); swap them or widen the range",
                              key=f"{path}.lo")
    if r["n"] < 1 if path == "binning" else r["n"] < 2:
        raise UnphysicalInput(f"needs at least {1 if path == 'binning' else 2} points, got {r['n']}",
                              key=f"{path}.n")


def validate(raw: dict) -> dict:
    """Check a raw config mapping and return it merged with defaults (a plain dict)."""
    _check(raw, SCHEMA, defaults=DEFAULTS)
    cfg = _merge(DEFAULTS, raw)
    if "hi" not in cfg["binning"]:
        cfg["binning"]["hi"] = 100.0 if cfg["process"] == "cevns" else 1e4
    if cfg["detector"]["quenching"] is None:
        cfg["detector"]["quenching"] = "lindhard" if cfg["process"] == "cevns" else "none"
    for path, allowed in _CHOICES.items():
        try:
            v = _get(cfg, path)
        except KeyError:
            continue
        if v not in allowed:
            raise InvalidConfig(f"{v!r} is not one of {', '.join(map(str, allowed))}", key=path)
    if cfg["process"] == "eves" and cfg["detector"]["quenching"] != "none":
        raise InvalidConfig("electron recoils are not quenched; set quenching = \"none\" or remove it",
                            key="detector.quenching")
    _positive(cfg, "exposure_tonne_year")
    _positive(cfg, "detector.k")
    _positive(cfg, "statistics.sigma_sys", allow_zero=True)
    _positive(cfg, "statistics.sigma_bg", allow_zero=True)
    _positive(cfg, "statistics.min_expected", allow_zero=True)
    cl = cfg["statistics"]["cl"]
    if not 0 < cl < 1:
        raise UnphysicalInput(f"confidence level must be in (0, 1), got {cl}", key="statistics.cl")
    _range(cfg, "binning")
    _range(cfg, "scan.m_X_MeV")
    _range(cfg, "scan.g_X")
    _positive(cfg, "spectrum.g_X", allow_zero=True)
    _positive(cfg, "spectrum.m_X_MeV")
    post = cfg["posterior"]
    for k in ("walkers", "steps"):
        if post[k] < 1:
            raise UnphysicalInput(f"must be >= 1, got {post[k]}", key=f"posterior.{k}")
    for k in ("log10_m_X", "log10_g_X"):
        p = post[k]
        if p["lo"] >= p["hi"]:
            raise UnphysicalInput(f"lo ({p['lo']}) must be below hi ({p['hi']})", key=f"posterior.{k}.lo")
    if post["a"]["sigma"] is not None:
        _positive(cfg, "posterior.a.sigma")
    # models
    models = cfg.get("models")
    if models is None:
        models = [cfg["model"].get("name", "SM")]
    if not models:
        raise InvalidConfig("empty list; give at least one of S, P, V, A, T, B-L, Lmu-Ltau", key="models")
    _canonical_models(models, "models")
    cfg["models"] = models
    # sources
    from nuinfer.physics.sources import SOURCE_NAMES
    srcs = cfg.get("sources")
    if srcs is not None:
        if not srcs:
            raise InvalidConfig("empty list of sources; remove the key to use the default set", key="sources")
        for i, s in enumerate(srcs):
            if not isinstance(s, str):
                raise InvalidConfig(f"source names are strings, got {s!r}", key=f"sources[{i}]")
            if s not in SOURCE_NAMES and s not in cfg["flux"]["tables"]:
                raise InvalidConfig(f"unknown source {s!r}; choose from {', '.join(SOURCE_NAMES)} "
                                    "or declare it under [flux.tables]", key=f"sources[{i}]")
    for s, v in cfg["flux"]["override"].items():
        if s not in SOURCE_NAMES:
            raise InvalidConfig(f"unknown source; choose from {', '.join(SOURCE_NAMES)}", key=f"flux.override.{s}")
        if isinstance(v, bool) or not isinstance(v, NUM) or not np.isfinite(v) or v < 0:
            raise UnphysicalInput(f"flux must be a finite number >= 0 (cm^-2 s^-1), got {v!r}",
                                  key=f"flux.override.{s}")
    for s, t in cfg["flux"]["tables"].items():
        if not isinstance(t, dict) or "path" not in t:
            raise InvalidConfig("a user flux table needs at least path = \"file.txt\"", key=f"flux.tables.{s}")
        _check(t, {"path": str, "flavour": str, "anti": bool, "flux": NUM}, f"flux.tables.{s}")
    res = cfg["detector"]["resolution"]
    if isinstance(res, list):
        if len(res) != 2 or not all(isinstance(x, NUM) and x >= 0 for x in res):
            raise InvalidConfig("resolution = [a, b] with sigma = a sqrt(E) + b E, both >= 0",
                                key="detector.resolution")
    elif res not in ("none", "xenon"):
        raise InvalidConfig(f"{res!r}: use \"none\", \"xenon\" or [a, b]", key="detector.resolution")
    _bounds(cfg)
    return cfg


def _bounds(cfg: dict) -> None:
    """Magnitudes, sizes, seeds and repeats (no overflow, no unbounded allocation, no numpy seed error)."""
    from nuinfer.spec.limits import MAX, check_count, check_number, check_seed, unique
    check_number(cfg["exposure_tonne_year"], "exposure_tonne_year", lo=0, hi=1e9, lo_open=True, what="t yr")
    check_number(cfg["detector"]["k"], "detector.k", lo=0, hi=10, lo_open=True)
    for k, hi in (("value", 1.0), ("xi_keV", 1e6)):
        if k in cfg["detector"]:
            check_number(cfg["detector"][k], f"detector.{k}", lo=0, hi=hi, lo_open=True)
    res = cfg["detector"]["resolution"]
    if isinstance(res, list):
        check_number(res[0], "detector.resolution[0]", lo=0, hi=100, what="(sigma = a sqrt(E/keV) keV)")
        check_number(res[1], "detector.resolution[1]", lo=0, hi=10, what="(sigma = b E)")
    st = cfg["statistics"]
    check_number(st["sigma_sys"], "statistics.sigma_sys", lo=0, hi=1e3, allow_inf=True, what="(relative width)")
    check_number(st["sigma_bg"], "statistics.sigma_bg", lo=0, hi=1e3, what="(background / SM rate)")
    check_number(st["min_expected"], "statistics.min_expected", lo=0, hi=1e6)
    b = cfg["binning"]
    check_count(b["n"], "binning.n", 1, MAX["bins"])
    check_number(b["hi"], "binning.hi", lo=0, hi=1e6, lo_open=True, what="keVee")
    check_number(b["lo"], "binning.lo", lo=0, hi=1e6, what="keVee")
    for ax, (lo, hi, unit) in {"m_X_MeV": (1e-9, 1e9, "MeV"), "g_X": (1e-30, 10.0, "")}.items():
        r = cfg["scan"][ax]
        check_count(r["n"], f"scan.{ax}.n", 2, MAX["grid"])
        check_number(r["lo"], f"scan.{ax}.lo", lo=lo, hi=hi, what=unit)
        check_number(r["hi"], f"scan.{ax}.hi", lo=lo, hi=hi, what=unit)
    sp = cfg["spectrum"]
    check_number(sp["g_X"], "spectrum.g_X", lo=0, hi=10.0)
    check_number(sp["m_X_MeV"], "spectrum.m_X_MeV", lo=1e-9, hi=1e9, what="MeV")
    if "models" in sp:
        if not sp["models"]:
            raise InvalidConfig("empty list; remove the key to use every model of signal.models", key="spectrum.models")
        _canonical_models(sp["models"], "spectrum.models")
        unique(sp["models"], "spectrum.models", "models")
    unique(cfg["models"], "models", "models")
    if cfg.get("sources"):
        unique(cfg["sources"], "sources", "sources")
    for s, v in cfg["flux"]["override"].items():
        check_number(v, f"flux.override.{s}", lo=0, hi=1e20, what="cm^-2 s^-1")
    for s, t in cfg["flux"]["tables"].items():
        if "flux" in t:
            check_number(t["flux"], f"flux.tables.{s}.flux", lo=0, hi=1e20, lo_open=True, what="cm^-2 s^-1")
    num = cfg["numerics"]
    check_count(num["n_nodes"], "numerics.n_nodes", 2, MAX["nodes"])
    check_count(num["n_flux_grid"], "numerics.n_flux_grid", 10, MAX["flux_grid"])
    post = cfg["posterior"]
    check_count(post["walkers"], "posterior.walkers", 1, MAX["walkers"])
    check_count(post["steps"], "posterior.steps", 1, MAX["steps"])
    check_seed(post["seed"], "posterior.seed")
    if "scheduler" in cfg["statistics"]:  # toy calibration on Dask: "local", "local-threads" or an address
        from nuinfer.engine import check_scheduler
        check_scheduler(cfg["statistics"]["scheduler"], key="statistics.scheduler")
    check_count(post["mass_grid_n"], "posterior.mass_grid_n", 4, MAX["mass_grid"])
    check_count(post["thin"], "posterior.thin", 1, post["steps"])
    if post.get("burn") is not None:
        check_count(post["burn"], "posterior.burn", 0, post["steps"] - 1)
    for k, (lo, hi) in {"log10_m_X": (-9.0, 9.0), "log10_g_X": (-30.0, 1.0)}.items():
        for e in ("lo", "hi"):
            check_number(post[k][e], f"posterior.{k}.{e}", lo=lo, hi=hi)
    if post["a"]["sigma"] is not None:
        check_number(post["a"]["sigma"], "posterior.a.sigma", lo=0, hi=1e3, lo_open=True)


@dataclass(frozen=True)
class Analysis:
    """A validated analysis: the merged configuration plus where it came from."""

    cfg: dict = field(repr=False)
    path: str | None = None
    raw: dict = field(default_factory=dict, repr=False)
    family: str | None = None  #: "xenon" when read from an analysis file (error keys are translated)

    @property
    def name(self) -> str:
        return self.cfg["name"]

    @property
    def process(self) -> str:
        return self.cfg["process"]

    @property
    def models(self) -> list[str]:
        return list(self.cfg["models"])

    def to_json(self) -> str:
        return json.dumps(self.cfg, sort_keys=True, default=str)

    def interaction(self, name: str):
        from nuinfer.physics.mediators import Interaction
        m = self.cfg["model"]
        return Interaction(name, axial_form=m["axial_form"], eves_vector_norm=m["eves_vector_norm"],
                           lmu_ltau_nue=m["lmu_ltau_nue"])

    def _resolve(self, p: str) -> Path:
        path = Path(p)
        if not path.is_absolute() and self.path is not None:
            path = Path(self.path).parent / path
        return path

    def forward_model(self):
        """Build the :class:`~nuinfer.forward.ForwardModel` described by this analysis (errors about
        user tables name the file's keys)."""
        from nuinfer.spec.schema import translated
        with translated(self.family):
            return self._forward_model()

    def _forward_model(self):
        from nuinfer.physics.detector import XENON_ER_RESOLUTION, Binning, Detector, Quenching
        from nuinfer.forward import ForwardModel
        from nuinfer.physics import sources as src
        c = self.cfg
        d = c["detector"]
        qmodel = d["quenching"]
        table = None
        if qmodel == "table":
            if "table" not in d:
                raise InvalidConfig("quenching = \"table\" needs table = \"file\" (E_nr keV, Q_f)",
                                    key="detector.table")
            table = tuple(load_table(self._resolve(d["table"]), "detector.table").T)
        quench = Quenching(qmodel, k=float(d["k"]), value=float(d.get("value", 0.15)), table=table,
                           xi_keV=float(d.get("xi_keV", 0.16)))
        eff = d["efficiency"]
        if eff == "ideal":
            eff = None
        elif eff == "xenonnt":
            from nuinfer.physics.detector import xenonnt_er_efficiency
            eff = xenonnt_er_efficiency
        else:
            eff = tuple(load_table(self._resolve(eff), "detector.efficiency").T)
            _check_efficiency(eff[1], self._resolve(d["efficiency"]))
        res = d["resolution"]
        res = None if res == "none" else XENON_ER_RESOLUTION if res == "xenon" else tuple(map(float, res))
        detector = Detector(quench, eff, res)
        b = c["binning"]
        binning = Binning(float(b["lo"]), float(b["hi"]), int(b["n"]), b["scale"])
        norm: object = c["flux"]["preset"]
        if c["flux"]["override"]:
            norm = {**src.NORMALISATIONS[norm], **c["flux"]["override"]}
        user = {}
        for s, t in c["flux"]["tables"].items():
            user[s] = src.from_table(s, str(self._resolve(t["path"])), flavour=t.get("flavour", "e"),
                                     anti=t.get("anti", False), flux=t.get("flux"))
        return ForwardModel(
            process=c["process"], target=c["target"], sources=c.get("sources"), normalisation=norm,
            binning=binning, detector=detector, exposure_tonne_year=float(c["exposure_tonne_year"]),
            binding=bool(d["binding"]), n_nodes=int(c["numerics"]["n_nodes"]),
            n_flux_grid=int(c["numerics"]["n_flux_grid"]), user_tables=user or None,
        )

    def grid(self, which: str) -> np.ndarray:
        r = self.cfg["scan"][which]
        if r.get("scale", "log") == "log":
            return np.geomspace(r["lo"], r["hi"], int(r["n"]))
        return np.linspace(r["lo"], r["hi"], int(r["n"]))

    def replace(self, **overrides) -> "Analysis":
        """A new analysis with dotted-key overrides, e.g. ``replace(**{"statistics.sigma_sys": 0})``."""
        raw = copy.deepcopy(self.raw)
        for key, val in overrides.items():
            set_dotted(raw, key, val)
        from nuinfer.spec.schema import translated
        with translated(self.family):
            return Analysis(validate(copy.deepcopy(raw)), self.path, raw, self.family)


def _check_efficiency(eff, path, key: str = "detector.efficiency") -> None:
    """An efficiency table must hold fractions in [0, 1], not all zero."""
    eff = np.asarray(eff, float)
    if np.any(eff > 1):
        raise DataFileError(f"{path}: efficiency values must be <= 1 (fractions, not percent)", key=key)
    if not np.any(eff > 0):
        raise DataFileError(f"{path}: every efficiency value is 0, so no event would be detected; "
                            "give the detection efficiency (fractions in [0, 1]) per energy", key=key)


def _canonical_models(models: list, key: str) -> None:
    """Replace each name of ``models`` by its canonical model name, in place; errors keyed
    ``key[i]``."""
    from nuinfer.physics.mediators import canonical_model
    for i, m in enumerate(models):
        if not isinstance(m, str):
            raise InvalidConfig(f"model names are strings, got {m!r}", key=f"{key}[{i}]")
        try:
            models[i] = canonical_model(m)
        except InvalidConfig as exc:
            raise InvalidConfig(str(exc).split(": ", 1)[-1], key=f"{key}[{i}]") from None


def set_dotted(d: dict, key: str, val) -> None:
    cur, last = _dotted_parent(d, key)
    cur[last] = val


def _read_data_text(p: Path, key: str, missing: str | None = None) -> str:
    """Text of the data file ``p``; :class:`DataFileError` (``key``) if it cannot be read or is not
    UTF-8 (with the message ``missing`` instead for a file that does not exist, if given)."""
    try:
        return p.read_text()
    except OSError as exc:
        if missing is not None and isinstance(exc, FileNotFoundError):
            raise DataFileError(missing, key=key) from None
        raise DataFileError(f"cannot read {p}: {exc.strerror or exc}", key=key) from None
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8",
                            key=key) from None


def _data_lines(text: str):
    """``(line number, content)`` of each line of a data file that is not blank once its ``#``
    comment is removed (content stripped)."""
    for ln, line in enumerate(text.splitlines(), start=1):
        s = line.split("#", 1)[0].strip()
        if s:
            yield ln, s


def _data_floats(fields, p, ln: int, s: str, key: str) -> list[float]:
    """``fields`` of line ``ln`` (content ``s``) of the data file ``p`` as floats;
    :class:`DataFileError` (``key``) naming the file and line if one is not a number."""
    try:
        return [float(x) for x in fields]
    except ValueError:
        raise DataFileError(f"{p}:{ln}: non-numeric value in {s!r}", key=key) from None


def load_table(path, key: str, ncol: int = 2) -> np.ndarray:
    """Read a whitespace/comma separated numeric table, validating every line.

    Raises :class:`DataFileError` naming the file and line for unreadable files, wrong column
    counts, non-numeric, NaN/inf or negative values and non-increasing first columns.
    """
    p = Path(path)
    rows, lines = [], []
    for ln, s in _data_lines(_read_data_text(p, key)):
        parts = [x for x in s.replace(",", " ").split() if x]
        if len(parts) != ncol:
            raise DataFileError(f"{p}:{ln}: expected {ncol} columns, found {len(parts)}", key=key)
        vals = _data_floats(parts, p, ln, s, key)
        if not all(np.isfinite(vals)):
            raise DataFileError(f"{p}:{ln}: NaN or inf value", key=key)
        if any(v < 0 for v in vals):
            raise DataFileError(f"{p}:{ln}: negative value", key=key)
        if rows and vals[0] <= rows[-1][0]:
            raise DataFileError(f"{p}:{ln}: first column must increase strictly "
                                f"({vals[0]} after {rows[-1][0]} on line {lines[-1]})", key=key)
        rows.append(vals)
        lines.append(ln)
    if not rows:
        raise DataFileError(f"{p}: no data rows", key=key)
    return np.asarray(rows)


def load_counts(path, nbins: int, key: str = "statistics.data") -> np.ndarray:
    """Observed counts per bin from a text file (one value per line, or rows ``E_lo E_hi counts`` /
    ``E counts`` whose last column is the count) or a NetCDF file with a ``counts`` variable.

    Raises :class:`DataFileError` naming the file (and line) for unreadable files, non-numeric,
    negative, NaN/inf values or a number of bins different from the analysis binning.
    """
    p = Path(path)
    if p.suffix == ".nc":
        import xarray as xr
        try:
            with xr.open_dataset(p) as ds:
                arr = np.asarray(ds["counts"].values, float)
        except (OSError, KeyError, ValueError) as exc:
            raise DataFileError(f"cannot read a 'counts' variable from {p}: {exc}", key=key) from None
        if arr.ndim != 1 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise DataFileError(f"{p}: counts must be a 1-D array of finite values >= 0", key=key)
    else:
        vals = []
        for ln, s in _data_lines(_read_data_text(p, key)):
            parts = s.replace(",", " ").split()
            v = _data_floats(parts[-1:], p, ln, s, key)[0]
            if not np.isfinite(v) or v < 0:
                raise DataFileError(f"{p}:{ln}: counts must be finite and >= 0, got {parts[-1]}", key=key)
            vals.append(v)
        arr = np.asarray(vals)
    if arr.shape != (nbins,):
        raise DataFileError(f"{p}: observed counts need {nbins} values (one per bin), found {arr.size}",
                            key=key)
    return arr


def load(path_or_dict, overrides: dict | None = None) -> Analysis:
    """Load and validate a xenon analysis from a TOML path (or a mapping).

    ``overrides`` use internal key paths (``statistics.sigma_sys``); translate analysis-file keys
    with :func:`nuinfer.spec.internal_key`.
    """
    from nuinfer.spec.files import read_analysis
    from nuinfer.spec.schema import translated

    raw, path, fam = read_analysis(path_or_dict, "xenon")
    for k, v in (overrides or {}).items():
        set_dotted(raw, k, v)
    with translated(fam):
        return Analysis(validate(copy.deepcopy(raw)), path, raw, fam)
