"""Which family an analysis file belongs to, and which tasks it supports.

Three kinds of analysis files exist today (see docs/analysis-files.md): xenon paper-style analyses
(:mod:`nuinfer.config`), terrestrial data fits (:mod:`nuinfer.terrestrial_config`: a ``[source]``
table) and neutrino-floor studies (:mod:`nuinfer.floor`: ``[halo]``, ``[wimp]`` or ``[scenarios]``).
Every command reads a file through :func:`read`, which names the family and the tasks it supports,
so a command refuses a file it cannot run with one line saying which commands the file supports.
"""

from __future__ import annotations

from nuinfer.exceptions import InvalidConfig

__all__ = ["FAMILIES", "TASKS", "family", "read", "require"]

#: tasks (commands) each family supports
TASKS = {
    "xenon": ("inspect", "spectrum", "contour", "sample", "compare"),
    "terrestrial": ("inspect", "spectrum", "contour", "profile", "sample", "fit"),
    "floor": ("inspect", "floor", "discovery"),
}
FAMILIES = tuple(TASKS)
_FLOOR_KEYS = ("halo", "wimp", "scenarios", "discovery", "uncertainties", "compare_targets")


def family(raw: dict) -> str:
    """The family of a raw (parsed, not yet validated) analysis mapping."""
    if "source" in raw:
        return "terrestrial"
    if any(k in raw for k in _FLOOR_KEYS):
        return "floor"
    return "xenon"


def read(path) -> tuple[str, dict]:
    """``(family, raw mapping)`` of an analysis file (clear errors for missing or malformed files)."""
    from nuinfer.config import read_toml

    raw, _ = read_toml(path)
    return family(raw), raw


def require(path, task: str) -> str:
    """The family of ``path``; a one-line error if it does not support ``task``."""
    fam, _ = read(path)
    if task not in TASKS[fam]:
        raise InvalidConfig(f"{path} is a {fam} analysis: it supports {', '.join(TASKS[fam])}, not {task!r}",
                            key="command")
    return fam
