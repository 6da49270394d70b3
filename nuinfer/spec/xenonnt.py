"""Validation of real-data XENONnT analyses (family ``xenonnt``: an ``[experiment] release`` key).

Layout (every key is listed in docs/analysis-files.md)::

    name = "xenonnt_8b_cevns"
    [experiment]
    release = "xenonnt_8b"          # "xenonnt_8b" (8B CEvNS data release) | "xenonnt_sr0_er"
    science_runs = ["sr0", "sr1"]   # xenonnt_8b only
    [experiment.flux]
    preset = "b16-gs98"             # xenonnt_sr0_er: solar normalisations
    [signal]
    models = ["S", "P", "V", "A", "T", "B-L", "Lmu-Ltau"]
    [signal.scan]
    m_X_MeV = { lo = 0.01, hi = 1e4, n = 200 }
    g_X = { lo = 1e-7, hi = 1e-2, n = 200 }
    flux_8B = { lo = 0.0, hi = 25.0, n = 101 }     # 1e6 cm^-2 s^-1 (profile of the 8B flux)
    mu_nu = { lo = 0.0, hi = 2.0, n = 81 }          # 1e-11 mu_B (magnetic-moment profile)
    [data]
    path = ""                       # raw release folder or converted file; "" = the shipped copy
    [nuisances]
    flux_8B = 0.0381                # 8B flux constraint in (m, g) scans (SNO); the flux profile frees it
    interpolation = "spline"        # yield nuisances between the release's anchors: spline | bilinear
    pp = 0.01                       # xenonnt_sr0_er: solar-group and efficiency widths
    [statistics]
    statistic = "poisson"           # xenonnt_8b: poisson; xenonnt_sr0_er: unbinned | poisson (1-keV bins)
    cl = 0.9
    ndof = 2
"""

from __future__ import annotations

import copy
import math

import numpy as np

from nuinfer.exceptions import InvalidConfig, UnphysicalInput

__all__ = ["DEFAULTS", "RELEASES", "validate"]

RELEASES = ("xenonnt_8b", "xenonnt_sr0_er")
NUM = (int, float)
_RANGE = {"lo": NUM, "hi": NUM, "n": int, "scale": str}
SCHEMA = {
    "name": str, "description": str,
    "experiment": {"release": str, "science_runs": list, "flux": {"preset": str}},
    "signal": {"models": list, "scan": {"m_X_MeV": _RANGE, "g_X": _RANGE, "flux_8B": _RANGE, "mu_nu": _RANGE}},
    "data": {"path": str},
    "nuisances": {"flux_8B": NUM, "interpolation": str, "pp": NUM, "7Be": NUM, "other": NUM, "efficiency": NUM},
    "statistics": {"statistic": str, "cl": NUM, "ndof": int},
}
DEFAULTS = {
    "name": "xenonnt", "description": "",
    "experiment": {"science_runs": ["sr0", "sr1"], "flux": {"preset": "b16-gs98"}},
    "signal": {"models": ["S", "P", "V", "A", "T", "B-L", "Lmu-Ltau"],
               "scan": {"m_X_MeV": {"lo": 0.01, "hi": 1e4, "n": 200, "scale": "log"},
                        "g_X": {"lo": 1e-7, "hi": 1e-2, "n": 200, "scale": "log"},
                        "flux_8B": {"lo": 0.0, "hi": 25.0, "n": 101, "scale": "linear"},
                        "mu_nu": {"lo": 0.0, "hi": 2.0, "n": 81, "scale": "linear"}}},
    "data": {"path": ""},
    "nuisances": {"flux_8B": 0.0381, "interpolation": "spline", "pp": 0.01, "7Be": 0.06, "other": 0.15,
                  "efficiency": 0.05},
    "statistics": {"cl": 0.9, "ndof": 2},
}
#: numbers are bounded so that no grid or value can exhaust memory or overflow
_MAX_GRID = 2000


def _merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _range(r: dict, key: str, *, allow_zero_lo: bool):
    for k in ("lo", "hi", "n"):
        if k not in r:
            raise InvalidConfig(f"missing '{k}'", key=f"{key}.{k}")
    lo, hi, n = r["lo"], r["hi"], r["n"]
    if not (math.isfinite(lo) and math.isfinite(hi)) or abs(lo) > 1e30 or abs(hi) > 1e30:
        raise UnphysicalInput(f"lo and hi must be finite numbers below 1e30, got {lo}, {hi}", key=f"{key}.lo")
    scale = r.get("scale", "log")
    if scale not in ("log", "linear"):
        raise InvalidConfig(f"{scale!r}: use log or linear", key=f"{key}.scale")
    if lo < 0 or (lo == 0 and (scale == "log" or not allow_zero_lo)):
        raise UnphysicalInput(f"must be > 0{' (or 0 with a linear scale)' if allow_zero_lo else ''}, got {lo}",
                              key=f"{key}.lo")
    if lo >= hi:
        raise UnphysicalInput(f"lo ({lo}) must be below hi ({hi}); swap them", key=f"{key}.lo")
    if isinstance(n, bool) or not 3 <= n <= _MAX_GRID:
        raise UnphysicalInput(f"needs 3 to {_MAX_GRID} points, got {n}", key=f"{key}.n")


def validate(raw: dict) -> dict:
    """Check a lowered ``xenonnt`` mapping and return it merged with :data:`DEFAULTS`."""
    from nuinfer.spec.xenon import _canonical_models, _check

    _check(raw, SCHEMA)
    exp = raw.get("experiment", {})
    if "release" not in exp:
        raise InvalidConfig(f"missing; choose one of {', '.join(RELEASES)}", key="experiment.release")
    cfg = _merge(DEFAULTS, raw)
    rel = cfg["experiment"]["release"]
    if rel not in RELEASES:
        raise InvalidConfig(f"{rel!r} is not one of {', '.join(RELEASES)}", key="experiment.release")
    cfg["statistics"].setdefault("statistic", "poisson" if rel == "xenonnt_8b" else "unbinned")
    allowed = ("poisson",) if rel == "xenonnt_8b" else ("unbinned", "poisson")
    if cfg["statistics"]["statistic"] not in allowed:
        raise InvalidConfig(f"{cfg['statistics']['statistic']!r}: use {' or '.join(allowed)} for {rel}",
                            key="statistics.statistic")
    srs = cfg["experiment"]["science_runs"]
    if rel == "xenonnt_8b":
        if not srs or len(set(srs)) != len(srs) or any(s not in ("sr0", "sr1", "sr2") for s in srs):
            raise InvalidConfig(f"{srs!r}: distinct names from sr0, sr1, sr2", key="experiment.science_runs")
    elif "science_runs" in exp:
        raise InvalidConfig("only for the xenonnt_8b release", key="experiment.science_runs")
    if cfg["experiment"]["flux"]["preset"] not in ("paper", "b16-gs98"):
        raise InvalidConfig(f"{cfg['experiment']['flux']['preset']!r}: use paper or b16-gs98",
                            key="experiment.flux.preset")
    models = cfg["signal"]["models"]
    if not models:
        raise InvalidConfig("give at least one of S, P, V, A, T, B-L, Lmu-Ltau", key="signal.models")
    _canonical_models(models, "signal.models")
    if len(set(models)) != len(models):
        raise InvalidConfig(f"duplicated models in {models}", key="signal.models")
    for k, r in cfg["signal"]["scan"].items():
        _range(r, f"signal.scan.{k}", allow_zero_lo=k in ("flux_8B", "mu_nu"))
    nu = cfg["nuisances"]
    if nu["interpolation"] not in ("spline", "bilinear"):
        raise InvalidConfig(f"{nu['interpolation']!r}: use spline or bilinear", key="nuisances.interpolation")
    for k in ("flux_8B", "pp", "7Be", "other", "efficiency"):
        v = nu[k]
        if isinstance(v, bool) or math.isnan(v) or v < 0 or (math.isfinite(v) and v > 10):
            raise UnphysicalInput(f"relative width must be in [0, 10] (or inf for free), got {v}", key=f"nuisances.{k}")
    st = cfg["statistics"]
    if not (isinstance(st["cl"], NUM) and 0 < st["cl"] < 1):
        raise UnphysicalInput(f"must be in (0, 1), got {st['cl']}", key="statistics.cl")
    if st["ndof"] not in (1, 2):
        raise InvalidConfig(f"{st['ndof']}: 2 (joint region) or 1 (raster)", key="statistics.ndof")
    return cfg


def grid(r: dict) -> np.ndarray:
    """The values of a validated range."""
    if r.get("scale", "log") == "log":
        return np.geomspace(r["lo"], r["hi"], int(r["n"]))
    return np.linspace(r["lo"], r["hi"], int(r["n"]))
