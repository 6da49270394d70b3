"""The analysis-file schema: one layout for every analysis (:mod:`nuinfer.spec.schema`), its
families, and the tasks each family supports.

Four families share the schema: ``xenon`` (astrophysical neutrinos in a xenon detector, the
paper's analyses), ``xenonnt`` (real XENONnT data releases), ``terrestrial`` (reactor and pi-DAR
data fits) and ``floor`` (WIMP discovery limits and the neutrino floor).  Every command reads a file through :func:`require`, so a command
refuses a file it cannot run with one line saying which commands the file supports.
"""

from __future__ import annotations

from nuinfer.exceptions import InvalidConfig
from nuinfer.spec.schema import family_of, internal_key, is_unified, lower, public_key, translated

__all__ = ["FAMILIES", "TASKS", "family_of", "internal_key", "lower", "public_key", "read", "read_analysis",
           "require", "translated"]

#: tasks (commands) each family supports
TASKS = {
    "xenon": ("inspect", "spectrum", "contour", "sample", "compare"),
    "terrestrial": ("inspect", "spectrum", "contour", "profile", "sample", "fit"),
    "floor": ("inspect", "floor"),
    "xenonnt": ("inspect", "contour", "profile", "sample"),
}
FAMILIES = tuple(TASKS)


def read(path) -> tuple[str, dict]:
    """``(family, internal mapping)`` of an analysis file (clear errors for missing or malformed files)."""
    from nuinfer.spec.xenon import read_toml

    raw, _ = read_toml(path)
    return lower(raw)


def read_analysis(path_or_dict, expect: str):
    """``(internal mapping, path, family or None)`` for a loader of family ``expect``.

    Files always follow the analysis-file schema.  A mapping may also be given in the internal,
    already-lowered form (family ``None``: programmatic use, no key translation needed).
    """
    from nuinfer.spec.xenon import read_toml

    raw, path = read_toml(path_or_dict)
    if isinstance(path_or_dict, dict) and not is_unified(raw):
        return raw, path, None
    fam, low = lower(raw)
    if fam != expect:
        raise InvalidConfig(f"{path or 'this analysis'} is a {fam} analysis; it supports "
                            f"{', '.join(TASKS[fam])}", key="command")
    low.pop("_tasks", None)
    return low, path, fam


def require(path, task: str) -> str:
    """The family of ``path``; a one-line error if it does not support ``task``."""
    fam, low = read(path)
    allowed = low.get("_tasks") or TASKS[fam]
    if task not in allowed:
        raise InvalidConfig(f"{path} is a {fam} analysis: it supports {', '.join(allowed)}, not {task!r}",
                            key="command")
    return fam


def load_xenonnt(path_or_dict) -> dict:
    """Validated configuration of a real-data XENONnT analysis (family ``xenonnt``)."""
    from nuinfer.spec.xenonnt import validate

    raw, path, fam = read_analysis(path_or_dict, "xenonnt")
    with translated(fam):
        cfg = validate(raw)
    cfg["_path"] = path
    return cfg
