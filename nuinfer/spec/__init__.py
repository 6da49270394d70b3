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

from nuinfer.spec.files import read, read_analysis, read_toml, require
from nuinfer.spec.schema import FAMILIES, TASKS, family_of, internal_key, is_unified, lower, public_key, translated

__all__ = ["FAMILIES", "TASKS", "family_of", "internal_key", "lower", "public_key", "read", "read_analysis",
           "require", "translated", "read_toml", "is_unified", "load_xenonnt"]


def load_xenonnt(path_or_dict) -> dict:
    """Validated configuration of a real-data XENONnT analysis (family ``xenonnt``)."""
    from nuinfer.spec.xenonnt import validate

    raw, path, fam = read_analysis(path_or_dict, "xenonnt")
    with translated(fam):
        cfg = validate(raw)
    cfg["_path"] = path
    return cfg
