"""Reading analysis files: TOML parsing with one-line errors, lowering to a family's internal form,
and the family/task checks every command makes first."""

from __future__ import annotations

import copy
import sys

from nuinfer.exceptions import InvalidConfig
from nuinfer.spec.schema import TASKS, is_unified, lower

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["models_dir", "read", "read_analysis", "read_toml", "require"]


def read_toml(path_or_dict, *, what: str = "analysis", hint: str = "see models/ for presets"):
    """``(raw mapping, path or None)`` from a TOML file or a mapping (copied); clear errors for a
    missing file or malformed TOML."""
    if isinstance(path_or_dict, dict):
        return copy.deepcopy(path_or_dict), None
    path = str(path_or_dict)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh), path
    except FileNotFoundError:
        raise InvalidConfig(f"{what} file {path!r} not found; {hint}", key="config") from None
    except IsADirectoryError:
        raise InvalidConfig(f"{path!r} is a directory; give the {what} file (.toml) inside it", key="config") from None
    except OSError as exc:
        raise InvalidConfig(f"cannot read {path!r}: {exc.strerror or exc}", key="config") from None
    except UnicodeDecodeError as exc:
        raise InvalidConfig(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8",
                            key="config") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfig(f"{path}: malformed TOML: {exc}", key="config") from None


def read(path) -> tuple[str, dict]:
    """``(family, internal mapping)`` of an analysis file (clear errors for missing or malformed files)."""
    raw, _ = read_toml(path)
    return lower(raw)


def read_analysis(path_or_dict, expect: str):
    """``(internal mapping, path, family or None)`` for a loader of family ``expect``.

    Files always follow the analysis-file schema.  A mapping may also be given in the internal,
    already-lowered form (family ``None``: programmatic use, no key translation needed).
    """
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


def models_dir():
    """The repository's preset folder ``models/`` (the package is installed editable from a checkout)."""
    from pathlib import Path

    d = Path(__file__).resolve().parents[2] / "models"
    if not d.is_dir():
        raise InvalidConfig(f"preset folder {d} not found: run from a source checkout (pip install -e .)",
                            key="models")
    return d
