"""The one analysis-file schema, and how each family's file maps onto its validated form.

Every analysis file has the same top-level tables (docs/analysis-files.md lists every key, unit and
default)::

    name, description, tasks
    [experiment]   sources / source, target, exposure or mass and live time, flux, detector, binning
    [signal]       interaction models or parameters of interest, coupling options, scan grids,
                   benchmark point; WIMP mass/cross-section grids and halo (floor studies)
    [backgrounds]  background components (a fraction of the SM rate, per-bin tables, flat rates,
                   grouped neutrino sources)
    [data]         "asimov" or observed counts (files), their uncertainties
    [nuisances]    constraint widths: normalisations, efficiency, quenching, background, per source
    [statistics]   statistic, confidence level, ndof, profiler
    [posterior] [floor] [report] [variants] [quick] [numerics]

The file's *family* follows from its content: ``[experiment] release`` (a XENONnT data release)
makes it a real-data xenon analysis; an ``[experiment.source]`` table (a reactor or pi-DAR beam) a
terrestrial data fit; a ``[floor]`` table or ``[signal.wimp]`` a neutrino-floor
study; otherwise it is a xenon analysis of astrophysical neutrinos.  :func:`lower` maps a file onto
the validated internal form its family's computations use (:mod:`nuinfer.spec.xenon`,
:mod:`nuinfer.spec.terrestrial`, :mod:`nuinfer.tasks.floor`), and :func:`public_key` maps the key of
any validation error back to the file's own key path, so messages always name what the user wrote.
"""

from __future__ import annotations

import copy

from nuinfer.exceptions import ConfigError, InvalidConfig, UnknownKey

__all__ = ["FAMILIES", "FAMILY_MAPS", "TASKS", "TOP_LEVEL", "family_of", "internal_key", "is_unified", "lower", "public_key",
           "translated"]

#: tasks (commands) each family supports
TASKS = {
    "xenon": ("inspect", "spectrum", "contour", "sample", "compare"),
    "terrestrial": ("inspect", "spectrum", "contour", "profile", "sample", "fit"),
    "floor": ("inspect", "floor"),
    "xenonnt": ("inspect", "contour", "profile", "sample"),
}
FAMILIES = tuple(TASKS)

#: every top-level key of an analysis file
TOP_LEVEL = ("name", "description", "tasks", "experiment", "signal", "backgrounds", "data", "nuisances",
             "statistics", "posterior", "floor", "report", "variants", "quick", "numerics")
_COMMON = [("name", "name"), ("description", "description")]

#: (file key prefix, internal key prefix) per family; the longest matching prefix wins
FAMILY_MAPS = {
    "xenon": _COMMON + [
        ("experiment.process", "process"), ("experiment.target", "target"), ("experiment.sources", "sources"),
        ("experiment.exposure_tonne_year", "exposure_tonne_year"), ("experiment.flux", "flux"),
        ("experiment.detector", "detector"), ("experiment.binning", "binning"),
        ("signal.models", "models"), ("signal.axial_form", "model.axial_form"),
        ("signal.eves_vector_norm", "model.eves_vector_norm"), ("signal.lmu_ltau_nue", "model.lmu_ltau_nue"),
        ("signal.scan", "scan"), ("signal.benchmark", "spectrum"),
        ("backgrounds.sigma_bg", "statistics.sigma_bg"), ("data.observed", "statistics.data"),
        ("nuisances.sigma_sys", "statistics.sigma_sys"), ("statistics", "statistics"),
        ("posterior", "posterior"), ("numerics", "numerics"),
    ],
    "terrestrial": _COMMON + [
        ("experiment.target", "detector.target"), ("experiment.mass_kg", "detector.mass_kg"),
        ("experiment.live_days", "detector.live_days"), ("experiment.source", "source"),
        ("experiment.detector", "detector"), ("experiment.binning", "binning"),
        ("signal.models", "tasks"), ("signal.sin2w_reference", "sin2w_reference"), ("signal.scan", "scan"),
        ("backgrounds.per_bin", "data.background"), ("backgrounds.per_keV_kg_day", "data.background_per_keV_kg_day"),
        ("data", "data"), ("nuisances", "nuisances"), ("statistics", "statistics"), ("variants", "variants"),
        ("report", "report"), ("posterior.model", "posterior.task"), ("posterior", "posterior"),
    ],
    "xenonnt": _COMMON + [(k, k) for k in ("experiment", "signal", "data", "nuisances", "statistics")],
    "floor": _COMMON + [
        ("experiment.target", "target"), ("experiment.sources", "background.sources"),
        ("experiment.flux.preset", "background.flux"), ("experiment.flux.override", "background.override"),
        ("experiment.detector", "detector"), ("experiment.binning", "binning"),
        ("signal.halo", "halo"), ("signal.wimp", "wimp"), ("backgrounds.groups", "background.groups"),
        ("nuisances.flux", "uncertainties"), ("floor.exposure", "exposure"), ("floor.discovery", "discovery"),
        ("floor.scenarios", "scenarios"), ("floor.auto_limit", "auto_limit"), ("floor.toys", "toys"),
        ("floor.compare_targets", "compare_targets"), ("floor.scheduler", "scheduler"), ("quick", "quick"),
        ("numerics", "numerics"),
    ],
}


#: keys of tables mapped as a whole that must be given elsewhere in the file (key -> where)
_ELSEWHERE = {
    "xenon": {"statistics": {"sigma_sys": "nuisances.sigma_sys", "sigma_bg": "backgrounds.sigma_bg",
                             "data": "data.observed"}},
    "terrestrial": {"data": {"background": "backgrounds.per_bin",
                             "background_per_keV_kg_day": "backgrounds.per_keV_kg_day"},
                    "posterior": {"task": "posterior.model"},
                    "experiment.detector": {"target": "experiment.target", "mass_kg": "experiment.mass_kg",
                                            "live_days": "experiment.live_days"}},
    "floor": {},
    "xenonnt": {},
}


def is_unified(raw: dict) -> bool:
    """True for a mapping in the analysis-file schema (as opposed to an internal, validated form)."""
    return any(k in raw for k in ("experiment", "signal", "backgrounds", "floor"))


def family_of(raw: dict) -> str:
    """Family of a mapping in the analysis-file schema."""
    exp = raw.get("experiment")
    if isinstance(exp, dict) and "release" in exp:
        return "xenonnt"
    if isinstance(exp, dict) and "source" in exp:
        return "terrestrial"
    sig = raw.get("signal")
    if "floor" in raw or (isinstance(sig, dict) and ("wimp" in sig or "halo" in sig)):
        return "floor"
    return "xenon"


def _get(d: dict, path: str):
    cur = d
    for p in path.split("."):
        if not isinstance(cur, dict) or p not in cur:
            return None, False
        cur = cur[p]
    return cur, True


def _pop(d: dict, path: str):
    parts = path.split(".")
    cur = d
    for p in parts[:-1]:
        cur = cur[p]
    return cur.pop(parts[-1])


def _dotted_parent(d: dict, path: str) -> tuple[dict, str]:
    """``(table, key)``: the table of ``d`` that holds the last key of the dotted ``path``, with
    missing (or non-table) tables on the way created as ``{}``, and that key."""
    parts = path.split(".")
    cur = d
    for p in parts[:-1]:
        if p not in cur or not isinstance(cur[p], dict):
            cur[p] = {}
        cur = cur[p]
    return cur, parts[-1]


def _set(d: dict, path: str, val) -> None:
    cur, last = _dotted_parent(d, path)
    old = cur.get(last)
    if isinstance(old, dict) and isinstance(val, dict):
        old.update(val)
    else:
        cur[last] = val


def set_file_key(raw: dict, key: str, val) -> None:
    """Set a dotted analysis-file key in a raw mapping (creating tables as needed)."""
    _set(raw, key, val)


def _leftover(d: dict, path: str = ""):
    """First key path still present after lowering (tables emptied by the moves do not count)."""
    for k, v in d.items():
        kp = f"{path}.{k}" if path else str(k)
        if isinstance(v, dict) and v:
            inner = _leftover(v, kp)
            if inner:
                return inner
        elif not (isinstance(v, dict) and not v):
            return kp
    return None


def _allowed(fam: str, table: str) -> list[str]:
    pre = f"{table}." if table else ""
    out = set()
    for u, _ in FAMILY_MAPS[fam]:
        if u.startswith(pre):
            out.add(u[len(pre):].split(".")[0])
    if not table:
        out |= {"tasks"}
    return sorted(out)


def _translate(key: str, pairs) -> str:
    for src, dst in sorted(pairs, key=lambda p: -len(p[0])):
        if key == src or key.startswith(src + ".") or key.startswith(src + "["):
            return dst + key[len(src):]
    return key


def public_key(fam: str, key: str | None) -> str | None:
    """The analysis-file key path of an internal key path (for error messages)."""
    if key is None:
        return None
    return _translate(key, [(i, u) for u, i in FAMILY_MAPS[fam]])


def internal_key(fam: str, key: str) -> str:
    """The internal key path of an analysis-file key path (for overrides such as ``--vary``)."""
    return _translate(key, FAMILY_MAPS[fam])


def lower(raw: dict) -> tuple[str, dict]:
    """``(family, internal mapping)`` of a mapping in the analysis-file schema (validated later)."""
    raw = copy.deepcopy(raw)
    for k in raw:
        if k not in TOP_LEVEL:
            legacy = "" if k not in ("process", "target", "binning", "source", "halo", "wimp", "scan", "models",
                                     "detector", "flux", "sources", "exposure_tonne_year") else \
                " (this key moved: see docs/analysis-files.md for the layout with [experiment] and [signal])"
            raise UnknownKey(f"unknown key{legacy}; allowed here: {', '.join(TOP_LEVEL)}", key=k)
    fam = family_of(raw)
    for table, moved in _ELSEWHERE[fam].items():
        val, ok = _get(raw, table)
        if ok and isinstance(val, dict):
            for k, where in moved.items():
                if k in val:
                    raise UnknownKey(f"not part of [{table}] in a {fam} analysis; set it as {where}",
                                     key=f"{table}.{k}")
    tasks = raw.pop("tasks", None)
    out: dict = {}
    for u, i in sorted(FAMILY_MAPS[fam], key=lambda p: -len(p[0])):
        val, ok = _get(raw, u)
        if ok:
            _pop(raw, u)
            _set(out, i, val)
    left = _leftover(raw)
    if left:
        table = left.rsplit(".", 1)[0] if "." in left else ""
        raise UnknownKey(f"unknown key for a {fam} analysis; allowed here: {', '.join(_allowed(fam, table))}",
                         key=left)
    if fam == "terrestrial" and isinstance(out.get("variants"), dict):
        for vname, over in out["variants"].items():
            if isinstance(over, dict):
                out["variants"][vname] = {internal_key(fam, k): v for k, v in over.items()}
    if tasks is not None:
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise InvalidConfig("a list of command names", key="tasks")
        for j, t in enumerate(tasks):
            if t not in TASKS[fam]:
                raise InvalidConfig(f"{t!r} is not a task of a {fam} analysis; choose from {', '.join(TASKS[fam])}",
                                    key=f"tasks[{j}]")
        out["_tasks"] = list(tasks)
    return fam, out


class translated:
    """Context manager: re-raise configuration errors with the analysis-file key path."""

    def __init__(self, fam: str | None):
        self.fam = fam

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        if self.fam is None or exc is None or not isinstance(exc, ConfigError) or exc.key is None:
            return False
        new = public_key(self.fam, exc.key)
        if new == exc.key:
            return False
        msg = str(exc)
        if msg.startswith(f"{exc.key}: "):
            msg = msg[len(exc.key) + 2:]
        raise type(exc)(msg, key=new) from None
