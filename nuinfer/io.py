"""NetCDF input/output: atomic writes, attribute encoding, provenance.

* :func:`write_netcdf` writes an ``xr.Dataset`` or ``xr.DataTree`` atomically: to a temporary
  file in the target directory, flushed to disk (fsync), then ``os.replace``-d over the target.
  An exception or interruption leaves any previous file untouched and removes the temporary.
* Attributes are sanitised on a copy so the netCDF4 engine accepts them: bool -> int,
  None -> "", dict/list/tuple -> JSON string, numpy scalars -> Python numbers, paths -> str.
* :func:`read_netcdf` loads a file fully into memory and closes it (no lingering handle, so the
  file can be replaced right after).
* :func:`provenance_attrs` builds the root attrs every output should carry.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import contextlib
import os
import tempfile
from pathlib import Path, PurePath

import numpy as np
import xarray as xr

from nuinfer.exceptions import DataFileError, InvalidConfig

__all__ = [
    "provenance_attrs",
    "read_datatree",
    "read_netcdf",
    "sanitize_attrs",
    "write_netcdf",
]


# --------------------------------------------------------------------------------------------
# attributes
# --------------------------------------------------------------------------------------------
def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, PurePath):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _to_json(value, key: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise InvalidConfig(
            f"attribute cannot be encoded as JSON for NetCDF ({err}); convert it to str, a "
            "number, or plain lists/dicts",
            key=key,
        ) from None


def _sanitize_value(value, key: str):
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic):
        if isinstance(value, (np.integer, np.floating)):
            return value.item()
        if isinstance(value, np.str_):
            return str(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "b":
            return value.astype(np.int8)
        if value.dtype.kind in "iuf" and value.ndim <= 1:
            return value
        return _to_json(value.tolist(), key)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, (dict, list, tuple, set, frozenset)) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    ):
        return _to_json(value, key)
    raise InvalidConfig(
        f"attribute of type {type(value).__name__} cannot be stored in NetCDF; use str, a "
        "number, or a JSON-encodable dict/list",
        key=key,
    )


def sanitize_attrs(attrs: dict, *, where: str = "attrs") -> dict:
    """Return a copy of ``attrs`` that the netCDF4 engine accepts.

    Parameters
    ----------
    attrs : dict
        Attributes (keys are converted to str).
    where : str, optional
        Prefix naming the owner in error messages. Default ``"attrs"``.

    Returns
    -------
    dict
        bool -> int, None -> "", dict/list/tuple/set/dataclass -> JSON string (sorted keys),
        numpy scalars -> Python numbers, paths and dates -> str; numeric 1-D arrays kept.

    Raises
    ------
    InvalidConfig
        A value of another type (the message names the attribute).

    Examples
    --------
    >>> sanitize_attrs({"ok": True, "none": None, "cfg": {"b": 1, "a": [1, 2]}})
    {'ok': 1, 'none': '', 'cfg': '{"a": [1, 2], "b": 1}'}
    """
    return {str(k): _sanitize_value(v, f"{where}.{k}") for k, v in attrs.items()}


def _sanitize_dataset(ds: xr.Dataset, where: str) -> xr.Dataset:
    out = ds.copy(deep=False)
    out.attrs = sanitize_attrs(ds.attrs, where=where)
    for name, var in out.variables.items():
        var.attrs = sanitize_attrs(ds.variables[name].attrs, where=f"{where}{name}.attrs")
    return out


def _sanitize(obj):
    if isinstance(obj, xr.DataTree):
        nodes = {node.path: _sanitize_dataset(node.to_dataset(inherit=False), f"{node.path}:")
                 for node in obj.subtree}
        return xr.DataTree.from_dict(nodes)
    if isinstance(obj, xr.DataArray):
        return _sanitize_dataset(obj.to_dataset(name=obj.name or "data"), "")
    if isinstance(obj, xr.Dataset):
        return _sanitize_dataset(obj, "")
    raise InvalidConfig(
        f"can only write xarray.Dataset, DataArray or DataTree; got {type(obj).__name__}",
        key="obj",
    )


# --------------------------------------------------------------------------------------------
# write / read
# --------------------------------------------------------------------------------------------
def _fsync_dir(directory: Path) -> None:
    """Persist a rename on POSIX (best effort; directories cannot be opened on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_netcdf(obj, path) -> Path:
    """Write a dataset or data tree to NetCDF atomically.

    Parameters
    ----------
    obj : xarray.Dataset, xarray.DataArray or xarray.DataTree
        What to write (attributes are sanitised on a copy; ``obj`` is not modified).
    path : str or os.PathLike
        Target file; its directory must exist.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    DataFileError
        The target directory does not exist.
    InvalidConfig
        An attribute cannot be encoded.

    Notes
    -----
    The data go to a temporary file next to the target (same file system), are fsync-ed, and
    the file is renamed over the target with :func:`os.replace` (atomic on POSIX and Windows).
    On any exception the temporary file is removed and a previous file at ``path`` is left as
    it was. The new file gets the usual permissions (0666 minus the umask).
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise DataFileError(f"directory {str(directory)!r} does not exist; create it first",
                            key="path")
    clean = _sanitize(obj)
    with atomic_target(path) as tmp:
        clean.to_netcdf(tmp, mode="w", engine="netcdf4")
    return path


@contextlib.contextmanager
def atomic_target(path):
    """Context manager yielding a temporary path next to ``path``; on success the file is fsync-ed,
    given the usual permissions (0666 minus the umask) and renamed over ``path`` (atomic); on any
    exception it is removed and a previous file at ``path`` is left as it was."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)


def atomic_write_text(path, text: str) -> Path:
    """Write a text file atomically (see :func:`atomic_target`)."""
    with atomic_target(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _check_readable(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"file {str(path)!r} does not exist", key="path")
    return path


def read_netcdf(path, *, group: str | None = None) -> xr.Dataset:
    """Read a NetCDF file (or one group of it) fully into memory and close the file.

    Parameters
    ----------
    path : str or os.PathLike
        File to read.
    group : str, optional
        Group path inside the file (e.g. ``"posterior"``). Default: the root group.

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    DataFileError
        The file does not exist or is not a readable NetCDF file.
    """
    path = _check_readable(path)
    try:
        with xr.open_dataset(path, engine="netcdf4", group=group) as ds:
            return ds.load()
    except (OSError, ValueError) as err:
        raise DataFileError(f"cannot read {str(path)!r} as NetCDF: {err}", key="path") from None


def read_datatree(path) -> xr.DataTree:
    """Read every group of a NetCDF file into memory as an ``xr.DataTree`` and close it.

    Parameters
    ----------
    path : str or os.PathLike
        File to read.

    Returns
    -------
    xarray.DataTree

    Raises
    ------
    DataFileError
        The file does not exist or is not a readable NetCDF file.
    """
    path = _check_readable(path)
    try:
        with xr.open_datatree(path, engine="netcdf4") as tree:
            return tree.load().copy()
    except (OSError, ValueError) as err:
        raise DataFileError(f"cannot read {str(path)!r} as NetCDF: {err}", key="path") from None


# --------------------------------------------------------------------------------------------
# provenance
# --------------------------------------------------------------------------------------------
def _version(module_name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(module_name)
    except metadata.PackageNotFoundError:
        return ""


def provenance_attrs(config=None, seed: int | None = None) -> dict:
    """Root attributes recording how an output was made.

    Parameters
    ----------
    config : dict, dataclass, str or None, optional
        The analysis configuration; stored as JSON (sorted keys) in ``config_json``. A str is
        stored as given (assumed to be JSON already). Default ``None`` -> ``""``.
    seed : int or None, optional
        The seed of every random draw. Default ``None`` -> ``""`` (no randomness).

    Returns
    -------
    dict
        ``creation_library="nuinfer"``, ``nuinfer_version``, ``numpy_version``,
        ``scipy_version``, ``xarray_version``, ``iminuit_version``, ``created_at`` (UTC,
        ISO 8601), ``config_json``, ``seed``: str or numbers only.
    """
    import scipy

    import nuinfer

    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise InvalidConfig(f"must be an integer or None; got {seed!r}", key="seed")
        seed = int(seed)
    if config is None:
        config_json = ""
    elif isinstance(config, str):
        config_json = config
    else:
        config_json = _to_json(config, "config")
    return {
        "creation_library": "nuinfer",
        "nuinfer_version": nuinfer.__version__,
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "xarray_version": xr.__version__,
        "iminuit_version": _version("iminuit"),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config_json": config_json,
        "seed": "" if seed is None else seed,
    }

