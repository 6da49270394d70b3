"""The analysis-file schema: one layout for every analysis (:mod:`nuinfer.spec.schema`), its
families, and the tasks each family supports.

Four families share the schema: ``xenon`` (astrophysical neutrinos in a xenon detector, the
paper's analyses), ``xenonnt`` (real XENONnT data releases), ``terrestrial`` (reactor and pi-DAR
data fits) and ``floor`` (WIMP discovery limits and the neutrino floor).  Every command reads a file
through :func:`require`, so a command refuses a file it cannot run with one line saying which
commands the file supports.  Reading: :mod:`.files`; the schema and its lowering: :mod:`.schema`;
validation per family: :mod:`.xenon`, :mod:`.terrestrial`, :mod:`.xenonnt` (the floor's in
:mod:`nuinfer.tasks.floor`); shared bounds and the memory estimate: :mod:`.limits`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nuinfer.spec.files import read, read_analysis, read_toml, require
from nuinfer.spec.schema import FAMILIES, TASKS, family_of, internal_key, is_unified, lower, public_key, translated

__all__ = ["FAMILIES", "TASKS", "family_of", "internal_key", "lower", "public_key", "read", "read_analysis",
           "require", "translated", "read_toml", "is_unified", "load_xenonnt", "Analysis", "load"]


def load_xenonnt(path_or_dict, overrides: dict | None = None) -> dict:
    """Validated configuration of a real-data XENONnT analysis (family ``xenonnt``); ``overrides``
    (internal dotted keys -> values, e.g. command-line options) are set before validation."""
    from nuinfer.spec.xenon import set_dotted
    from nuinfer.spec.xenonnt import validate

    raw, path, fam = read_analysis(path_or_dict, "xenonnt")
    for k, v in (overrides or {}).items():
        set_dotted(raw, k, v)
    with translated(fam):
        cfg = validate(raw)
    cfg["_path"] = path
    return cfg


@dataclass(frozen=True)
class Analysis:
    """Any validated analysis file: its family, the tasks it supports and the family's validated form.

    ``config`` is :class:`nuinfer.spec.xenon.Analysis`, :class:`nuinfer.spec.terrestrial.TerrestrialAnalysis`
    or the validated mapping of a floor or xenonnt analysis; attributes not found here are looked up
    on it (``nuinfer.load("models/fig2_cevns.toml").forward_model()``).
    """

    family: str
    name: str
    path: str | None
    tasks: tuple
    config: object = field(repr=False)

    def __getattr__(self, item):
        if item.startswith("__"):
            raise AttributeError(item)
        return getattr(object.__getattribute__(self, "config"), item)


def load(path_or_dict, overrides: dict | None = None, *, data_dir=None) -> Analysis:
    """Read and validate any analysis file (or a mapping in the file layout) -> :class:`Analysis`.

    ``overrides`` use the file's dotted keys (``{"nuisances.sigma_sys": 0.2}``).
    """
    import copy

    from nuinfer.spec.files import read_toml
    from nuinfer.spec.schema import set_file_key

    raw, path = read_toml(path_or_dict)
    edited = copy.deepcopy(raw)
    for k, v in (overrides or {}).items():
        set_file_key(edited, k, v)
    fam, low = lower(edited)
    tasks = tuple(low.get("_tasks") or TASKS[fam])
    internal = {internal_key(fam, k): v for k, v in (overrides or {}).items()}
    # files keep their path (relative data paths resolve against it); overrides go in as internal keys
    src = edited if path is None else path
    if fam == "xenon":
        from nuinfer.spec.xenon import load as _load
        cfg = _load(src, internal if path is not None else None)
        name = cfg.name
    elif fam == "terrestrial":
        from nuinfer.spec.terrestrial import load as _load
        cfg = _load(src, internal if path is not None else None, data_dir=data_dir)
        name = cfg.name
    elif fam == "floor":
        from nuinfer.spec.floor import load_floor_config
        cfg = load_floor_config(edited if overrides else src)
        name = cfg["name"]
    else:
        cfg = load_xenonnt(edited if overrides else src)
        name = cfg["name"]
    return Analysis(fam, name, path, tasks, cfg)
