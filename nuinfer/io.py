"""NetCDF input/output: safe writes, attribute encoding, provenance.

* :func:`write_netcdf` writes an ``xr.Dataset`` or ``xr.DataTree`` atomically: to a temporary
  file in the target directory, flushed to disk (fsync), then ``os.replace``-d over the target.
  An exception or interruption leaves any previous file untouched and removes the temporary.
* Safe writes (:func:`atomic_target`, used by every writer): the temporary has a deterministic
  name ``.{name}.{pid}.tmp{suffix}``; SIGTERM/SIGHUP during a write remove it and exit with
  128 + signum and one line on stderr (:func:`interruptible`); temporaries left by a killed
  process are removed by the next write of the same output; a lock ``.{name}.lock``
  (:func:`output_lock`) makes a second writer fail at once (:class:`OutputBusy`).
* :func:`output_group` writes all outputs of one command and replaces them together at the end
  (or none); :func:`check_writable` validates an output path before any work.
* Attributes are sanitised on a copy so the netCDF4 engine accepts them: bool -> int,
  None -> "", dict/list/tuple -> JSON string, numpy scalars -> Python numbers, paths -> str.
* :func:`read_netcdf` loads a file fully into memory and closes it (no lingering handle, so the
  file can be replaced right after).
* :func:`provenance_attrs` builds the root attrs every output should carry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import os
import re
import signal
import stat
import sys
import threading
import time
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only; xarray is imported where a file is read or written
    import xarray as xr

from nuinfer.exceptions import DataFileError, InvalidConfig, NuinferError

__all__ = [
    "LOCK_TIMEOUT",
    "OutputBusy",
    "OutputGroup",
    "atomic_target",
    "atomic_write_text",
    "check_writable",
    "incomplete_groups",
    "interruptible",
    "lock_path",
    "output_group",
    "output_lock",
    "provenance_attrs",
    "read_datatree",
    "read_netcdf",
    "remove_stale_temporaries",
    "sanitize_attrs",
    "temporary_path",
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
    import xarray as xr

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


def write_netcdf(obj, path, *, lock_timeout: float | None = None, beside: bool = False) -> Path:
    """Write a dataset or data tree to NetCDF atomically.

    Parameters
    ----------
    obj : xarray.Dataset, xarray.DataArray or xarray.DataTree
        What to write (attributes are sanitised on a copy; ``obj`` is not modified).
    path : str or os.PathLike
        Target file; its directory must exist.
    lock_timeout : float, optional
        Seconds to wait for another process writing ``path`` (see :func:`atomic_target`).
        Default :data:`LOCK_TIMEOUT` (0: fail at once).
    beside : bool
        Inside an active :class:`nuinfer.render.Renderer` with a worker, let the worker encode and
        write the file while this process goes on (the attributes are checked here first); the
        file appears when the renderer finishes.  Only for files this process does not read back
        before then.  Default ``False``: written before returning.

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
    OutputBusy
        Another process holds the lock of ``path``.

    Notes
    -----
    The data go to a temporary file next to the target (same file system), are fsync-ed, and
    the file is renamed over the target with :func:`os.replace` (atomic on POSIX and Windows).
    On any exception, and on SIGTERM/SIGHUP, the temporary file is removed and a previous file at
    ``path`` is left as it was. Inside :func:`output_group` the rename waits for the end of the
    group. The new file gets the usual permissions (0666 minus the umask).
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise DataFileError(f"directory {str(directory)!r} does not exist; create it first",
                            key="path")
    clean = _sanitize(obj)
    if beside:
        from nuinfer import render
        r = render.current()
        if r is not None and r.parallel:  # the xarray/netCDF4 encoding (~60 ms a file) runs there
            return r.submit_file(path, _to_netcdf, clean)
    with atomic_target(path, lock_timeout=lock_timeout) as tmp:
        _to_netcdf(clean, tmp)
    return path


def _to_netcdf(clean, file) -> None:
    """Write a sanitised dataset or data tree (:func:`write_netcdf`) to ``file``."""
    clean.to_netcdf(file, mode="w", engine="netcdf4")


def atomic_write_text(path, text: str, *, lock_timeout: float | None = None) -> Path:
    """Write a text file atomically (see :func:`atomic_target`)."""
    with atomic_target(path, lock_timeout=lock_timeout) as tmp:
        tmp.write_text(text)
    return Path(path)


# --------------------------------------------------------------------------------------------
# safe writes: deterministic temporaries, signals, locks, output groups
# --------------------------------------------------------------------------------------------
#: Default seconds a writer waits for the lock of an output held by another process
#: (0: fail at once with :class:`OutputBusy`; negative: wait for ever).
LOCK_TIMEOUT = 0.0

_log = logging.getLogger("nuinfer.io")
_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
_TMP_TAG = ".tmp"
_MARKER_RE = re.compile(r"\A\..+\.(\d+)\.group\.json\Z")


class OutputBusy(NuinferError):
    """Another nuinfer process (or another thread of this one) holds the lock of an output."""


def temporary_path(path, pid: int | None = None) -> Path:
    """The temporary file a process writes before renaming it over ``path``:
    ``.{name}.{pid}.tmp{suffix}`` in the directory of ``path`` (``outputs/.x.nc.4242.tmp.nc``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else int(pid)}"
                          f"{_TMP_TAG}{path.suffix}")


def lock_path(path) -> Path:
    """The lock file of an output: ``.{name}.lock`` next to it (``outputs/.x.nc.lock``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def _dir(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _key(path) -> str:
    return os.path.abspath(os.fspath(path))


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (conservative: True when unsure)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) would terminate it on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: exists, belongs to another user
        return True
    return True


# ---------------------------------------------------------------------------- signal handling
class _SignalState:
    depth = 0                  # nesting of interruptible() in the main thread
    saved: dict = {}           # signum -> previous handler (outermost interruptible only)
    committing = 0             # > 0 while renames run: signals are deferred, not acted on
    deferred: int | None = None
    exiting = False            # the handler already ran: ignore further signals
    written: list = []         # targets replaced since the outermost interruptible() began


_SIG = _SignalState()
#: Temporaries being written by this process (absolute path -> path as shown to the user).
_ACTIVE: dict[str, Path] = {}


#: How the signal handler ends the process. ``os._exit``: no unwinding, because raising an
#: exception from a signal handler can leave a library lock taken (xarray's HDF5 lock: the
#: process then hangs in ``to_netcdf`` -> ``close``). Tests replace it.
_exit = os._exit


def _stderr_line(line: str) -> None:
    # the handler may have interrupted a write to sys.stderr (progress bar): a buffered write
    # here could raise "reentrant call", so flush what we can and write the line directly
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())


def _join(paths) -> str:
    return ", ".join(str(p) for p in paths)


def _die(signum: int) -> None:
    """Remove every temporary and lock file of this process, print one line, exit 128 + signum."""
    _SIG.exiting = True
    removed = []
    for absolute, shown in list(_ACTIVE.items()):
        try:
            os.unlink(absolute)
        except OSError:
            continue
        removed.append(shown)
    for held in list(_LOCKS.values()):  # the kernel drops the locks themselves at exit
        with contextlib.suppress(OSError):
            if held.stat is not None and os.path.samestat(os.stat(held.lock_file), held.stat):
                os.unlink(held.lock_file)
    try:
        name = signal.Signals(signum).name
    except ValueError:  # pragma: no cover
        name = f"signal {signum}"
    parts = [f"nuinfer: interrupted by {name}"]
    if removed:
        parts.append(f"removed the partial {_join(removed)}")
    if _SIG.written:
        parts.append(f"kept {_join(_SIG.written)} (complete, written before the signal)")
    else:
        parts.append("nothing was written")
    _stderr_line("; ".join(parts))
    _exit(128 + signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _note_written(path: Path) -> None:
    if _SIG.depth and _in_main_thread() and path not in _SIG.written:
        _SIG.written.append(path)


def _on_signal(signum, frame) -> None:
    if _SIG.exiting:
        return
    if _SIG.committing:
        _SIG.deferred = signum
        return
    _die(signum)


@contextlib.contextmanager
def interruptible(*, sigint: bool = False):
    """Handle SIGTERM and SIGHUP (and SIGINT if ``sigint``) for the duration of the block.

    On the signal the temporaries and lock files of this process are removed, one line is
    printed on stderr (``nuinfer: interrupted by SIGTERM; removed the partial
    outputs/.x.nc.4242.tmp.nc; nothing was written``) and the process exits at once with status
    128 + signum (143 for SIGTERM, 129 for SIGHUP, 130 for SIGINT) via ``os._exit``: no
    exception is raised into the interrupted code (that could leave a library lock taken and
    hang the process), so ``finally`` blocks and ``atexit`` handlers do not run. A signal
    arriving while outputs are being renamed into place is acted on right after the renames.

    Nested blocks are cheap; the outermost one installs the handlers (``sigint`` of inner
    blocks is ignored) and restores the previous ones on exit. A signal that is ignored when the
    block starts (SIGHUP under ``nohup``) stays ignored. Main thread only: elsewhere this does
    nothing (Python runs handlers in the main thread; one installed there removes the
    temporaries of every thread). Without ``sigint``, Ctrl-C keeps raising
    ``KeyboardInterrupt`` (which removes the temporary as it unwinds), as a notebook expects.
    """
    if not _SIGNALS or not _in_main_thread():
        yield
        return
    outer = _SIG.depth == 0
    if outer:
        saved = {}
        for sig in _SIGNALS + ((signal.SIGINT,) if sigint else ()):
            previous = signal.getsignal(sig)
            if previous is signal.SIG_IGN:
                continue
            try:
                signal.signal(sig, _on_signal)
            except (ValueError, OSError):  # pragma: no cover
                continue
            saved[sig] = signal.SIG_DFL if previous is None else previous
        _SIG.saved, _SIG.written, _SIG.deferred = saved, [], None
        _SIG.committing, _SIG.exiting = 0, False
    _SIG.depth += 1
    try:
        yield
    finally:
        _SIG.depth -= 1
        if outer:
            for sig, previous in _SIG.saved.items():
                signal.signal(sig, previous)
            _SIG.saved, _SIG.written, _SIG.deferred = {}, [], None
            _SIG.committing, _SIG.exiting = 0, False


@contextlib.contextmanager
def _signals_deferred():
    """Renames run here: a SIGTERM/SIGHUP is recorded and acted on when the block ends."""
    if not _in_main_thread():  # handlers run in the main thread; nothing to defer here
        yield
        return
    _SIG.committing += 1
    try:
        yield
    finally:
        _SIG.committing -= 1
        if not _SIG.committing and _SIG.deferred is not None and not _SIG.exiting:
            signum, _SIG.deferred = _SIG.deferred, None
            _die(signum)


# ---------------------------------------------------------------------------- locks
class _Held:
    __slots__ = ("lock", "count", "thread", "path", "lock_file", "stat")

    def __init__(self, lock, thread, path, lock_file):
        self.lock, self.count, self.thread = lock, 1, thread
        self.path, self.lock_file, self.stat = path, lock_file, None


_LOCKS: dict[str, _Held] = {}
_LOCKS_MUTEX = threading.Lock()


def _lock_holder_pid(lock_file: Path) -> int | None:
    try:
        text = lock_file.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    first = text.strip().split("\n", 1)[0].strip()
    return int(first) if first.isdigit() else None


def _busy(path: Path, lock_file: Path, timeout: float, key: str, pid: int | None = None,
          thread: bool = False) -> OutputBusy:
    if thread:
        who = "another thread of this nuinfer process"
        where = f"lock {lock_file}"
    else:
        who = "another nuinfer process"
        where = (f"pid {pid}, " if pid else "") + f"lock {lock_file}"
    waited = f" (waited {timeout:g} s)" if timeout > 0 else ""
    return OutputBusy(f"{path} is being written by {who} ({where}){waited}; wait for it or "
                      f"choose another {key}")


def _acquire(path: Path, timeout: float | None, key: str) -> None:
    """Take the lock of ``path`` (re-entrant within a thread; see :func:`output_lock`)."""
    timeout = LOCK_TIMEOUT if timeout is None else float(timeout)
    k = _key(path)
    me = threading.get_ident()
    lock_file = lock_path(path)
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        with _LOCKS_MUTEX:
            held = _LOCKS.get(k)
            if held is None:
                break
            if held.thread == me:
                held.count += 1
                return
        if timeout >= 0 and time.monotonic() >= deadline:
            raise _busy(path, lock_file, timeout, key, thread=True)
        time.sleep(0.02)
    import filelock

    stat_box: list = []

    def _stamp(fd: int) -> None:
        # record who holds the lock (read back by a second writer for its message)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            stat_box.append(os.fstat(fd))
        except OSError:  # pragma: no cover
            pass

    try:
        lock = filelock.FileLock(str(lock_file), on_acquired=_stamp)
        stamped = True
    except TypeError:  # pragma: no cover - filelock < 3.20 has no on_acquired
        lock = filelock.FileLock(str(lock_file))
        stamped = False
    try:
        lock.acquire(timeout=timeout if timeout >= 0 else -1)
    except filelock.Timeout:
        raise _busy(path, lock_file, timeout, key, pid=_lock_holder_pid(lock_file)) from None
    if not stamped:  # pragma: no cover
        try:
            with open(lock_file, "r+") as fh:
                fh.truncate(0)
                fh.write(f"{os.getpid()}\n")
            stat_box.append(os.stat(lock_file))
        except OSError:
            pass
    held = _Held(lock, me, path, lock_file)
    held.stat = stat_box[0] if stat_box else None
    with _LOCKS_MUTEX:
        _LOCKS[k] = held


def _release(path: Path) -> None:
    k = _key(path)
    with _LOCKS_MUTEX:
        held = _LOCKS.get(k)
        if held is None:
            return
        held.count -= 1
        if held.count > 0:
            return
        del _LOCKS[k]
    # Remove the lock file while still holding the lock, and only if it is still our inode: a
    # process that opened it meanwhile then locks an unlinked inode, which filelock detects.
    try:
        if held.stat is not None and os.path.samestat(os.stat(held.lock_file), held.stat):
            os.unlink(held.lock_file)
    except OSError:
        pass
    try:
        held.lock.release()
    except Exception:  # pragma: no cover - nothing useful to do; the kernel drops it at exit
        pass


@contextlib.contextmanager
def output_lock(path, *, timeout: float | None = None, key: str = "-o"):
    """Hold the lock of output ``path`` for the block (``.{name}.lock`` next to it).

    Parameters
    ----------
    path : str or os.PathLike
        The output to protect (its directory must exist).
    timeout : float, optional
        Seconds to wait when another process holds it. Default :data:`LOCK_TIMEOUT` (0: fail
        at once); negative: wait for ever.
    key : str
        The option naming the output in messages (``"-o"``, ``"--output-file"``).

    Raises
    ------
    OutputBusy
        ``outputs/x.nc is being written by another nuinfer process (pid 4242, lock
        outputs/.x.nc.lock); wait for it or choose another -o``.

    Notes
    -----
    Re-entrant within one thread. The lock is a ``filelock.FileLock`` (``flock``), released by
    the kernel when the holder dies, so a lock file left by a killed process never blocks; the
    file holds the holder's pid and is removed on release.
    """
    path = Path(path)
    _acquire(path, timeout, key)
    try:
        yield lock_path(path)
    finally:
        _release(path)


# ---------------------------------------------------------------------------- stale files
def _read_marker(marker: Path) -> dict | None:
    try:
        info = json.loads(marker.read_text())
        renames = [(str(t), str(g)) for t, g in info["renames"]]
        return {"pid": int(info["pid"]), "renames": renames,
                "markers": [str(m) for m in info.get("markers", [marker])]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _markers_in(directory: Path):
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        m = _MARKER_RE.match(entry.name)
        if m:
            yield directory / entry.name, int(m.group(1))


def _roll_forward(marker: Path, info: dict, key: str) -> None:
    """Finish the renames of a group whose process died after all its files were complete."""
    targets = sorted({g for _, g in info["renames"]})
    taken = []
    try:
        for target in targets:
            try:
                _acquire(Path(target), 0, key)
            except (OutputBusy, OSError):
                return  # another live writer owns one of them (or it is gone): leave it
            taken.append(target)
        done = []
        for tmp, target in info["renames"]:
            if os.path.exists(tmp):
                os.replace(tmp, target)
                done.append(target)
        for d in {os.path.dirname(g) for g in targets}:
            _fsync_dir(Path(d or "."))
        for m in info["markers"]:
            with contextlib.suppress(OSError):
                os.unlink(m)
        with contextlib.suppress(OSError):
            os.unlink(marker)
        if done:
            _log.warning("nuinfer: finished the output group interrupted in process %d (killed "
                         "while renaming): moved the complete %s into place", info["pid"],
                         _join(done))
    finally:
        for target in reversed(taken):
            _release(Path(target))


def _prepare(path: Path, key: str) -> list[Path]:
    """Under the lock of ``path``: finish an interrupted group that lists it, then remove its
    temporaries left by dead processes. Returns the removed temporaries."""
    directory = _dir(path)
    k = _key(path)
    for marker, pid in list(_markers_in(directory)):
        if pid == os.getpid() or _pid_alive(pid):
            continue
        info = _read_marker(marker)
        if info is None:  # torn marker (killed while writing it: no rename had started)
            with contextlib.suppress(OSError):
                os.unlink(marker)
            continue
        if k in {_key(g) for _, g in info["renames"]}:
            try:
                _roll_forward(marker, info, key)
            except OSError as err:  # pragma: no cover - e.g. a member's directory was removed
                _log.warning("nuinfer: could not finish the interrupted output group %s (%s)",
                             marker, err)
    pattern = re.compile(r"\A\." + re.escape(path.name) + r"\.(\d+)" + re.escape(_TMP_TAG)
                         + re.escape(path.suffix) + r"\Z")
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if not m:
            continue
        pid = int(m.group(1))
        stale = directory / entry.name
        if pid == os.getpid():
            if _key(stale) in _ACTIVE:
                continue
        elif _pid_alive(pid):
            continue
        try:
            os.unlink(stale)
        except OSError:
            continue
        removed.append(stale)
    if removed:
        _log.info("removed %s left by a killed nuinfer process", _join(removed))
    return removed


def remove_stale_temporaries(path) -> list[Path]:
    """Remove the temporaries of output ``path`` left by processes that no longer run (killed
    with SIGKILL, power loss), and finish a group interrupted while renaming. Every write does
    this under the output's lock; call it directly to tidy up. Returns the removed files."""
    path = Path(path)
    with output_lock(path, key="path"):
        return _prepare(path, "path")


def incomplete_groups(directory) -> list[dict]:
    """Output groups that were killed while being renamed into place in ``directory``.

    Returns
    -------
    list of dict
        One per marker ``.{first output}.{pid}.group.json``: ``marker``, ``pid``, ``alive``
        (the process still runs: probably committing right now), ``replaced`` (targets already
        new) and ``pending`` (targets still old; their complete new version waits as a
        temporary and is moved into place by the next write of any of them).
    """
    out = []
    for marker, pid in _markers_in(Path(directory)):
        info = _read_marker(marker)
        if info is None:
            continue
        pending = [Path(g) for t, g in info["renames"] if os.path.exists(t)]
        replaced = [Path(g) for t, g in info["renames"] if not os.path.exists(t)]
        out.append({"marker": marker, "pid": info["pid"],
                    "alive": info["pid"] == os.getpid() or _pid_alive(info["pid"]),
                    "replaced": replaced, "pending": pending})
    return out


# ---------------------------------------------------------------------------- temporaries
def _create_temporary(tmp: Path) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    os.close(os.open(tmp, flags, 0o600))


def _finish_temporary(tmp: Path) -> None:
    """fsync the finished temporary and give it the usual permissions (0666 minus the umask)."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def _register(tmp: Path) -> str:
    k = _key(tmp)
    if k in _ACTIVE:
        raise RuntimeError(f"{tmp} is already being written by this process (nested writes of "
                           "one output)")
    _ACTIVE[k] = tmp
    return k


# ---------------------------------------------------------------------------- groups
class _GroupStack(threading.local):
    def __init__(self):
        self.groups: list[OutputGroup] = []


_GROUPS = _GroupStack()


class OutputGroup:
    """The outputs of one command, committed together (see :func:`output_group`)."""

    def __init__(self, paths):
        self.paths: list[Path] = list(paths)
        self._members = {_key(p): p for p in self.paths}
        self._ready: dict[str, tuple[Path, Path]] = {}

    def __contains__(self, path) -> bool:
        return _key(path) in self._members

    @property
    def written(self) -> list[Path]:
        """Outputs whose temporary is complete (renamed into place when the group ends)."""
        return [self._members[k] for k in self._members if k in self._ready]

    @contextlib.contextmanager
    def target(self, path):
        """Yield the temporary of member ``path``; it is renamed over ``path`` when the group
        ends without error (like :func:`atomic_target`, deferred to the end of the group)."""
        k = _key(path)
        if k not in self._members:
            raise ValueError(f"{path} is not an output of this group ({_join(self.paths)}); "
                             "list it in output_group([...])")
        target = self._members[k]
        tmp = temporary_path(target)
        self._ready.pop(k, None)
        tk = _register(tmp)
        try:
            _create_temporary(tmp)
            yield tmp
            _finish_temporary(tmp)
        except BaseException:
            _ACTIVE.pop(tk, None)
            tmp.unlink(missing_ok=True)
            raise
        self._ready[k] = (tmp, target)

    def write_netcdf(self, obj, path) -> Path:
        """:func:`write_netcdf` into the group."""
        with _pushed(self):
            return write_netcdf(obj, path)

    def write_text(self, path, text: str) -> Path:
        """:func:`atomic_write_text` into the group."""
        with self.target(path) as tmp:
            tmp.write_text(text)
        return Path(path)

    def _discard(self) -> None:
        for tmp, _ in self._ready.values():
            _ACTIVE.pop(_key(tmp), None)
            tmp.unlink(missing_ok=True)
        self._ready.clear()

    def _commit(self) -> list[Path]:
        items = [self._ready[k] for k in self._members if k in self._ready]
        if not items:
            return []
        markers: list[Path] = []
        done: list[Path] = []
        with _signals_deferred():
            if len(items) > 1:
                markers = _write_markers(items)
            for i, (tmp, target) in enumerate(items):
                try:
                    os.replace(tmp, target)
                except OSError as err:
                    rest = [t for _, t in items[i:]]
                    self._discard()
                    for m in markers:
                        m.unlink(missing_ok=True)
                    raise DataFileError(
                        f"cannot move the new {target} into place ({err.strerror}); "
                        + (f"{_join(done)} already replaced, " if done else "")
                        + f"{_join(rest)} left as before", key="path") from None
                _ACTIVE.pop(_key(tmp), None)
                self._ready.pop(_key(target), None)
                done.append(target)
                _note_written(target)
            for d in {_key(_dir(t)) for _, t in items}:
                _fsync_dir(Path(d))
            for m in markers:
                m.unlink(missing_ok=True)
        return done


def _write_markers(items) -> list[Path]:
    """Before renaming several files: record the renames (one marker per directory, fsync-ed),
    so that a process killed during the renames leaves a list a later write can finish."""
    first = items[0][1]
    dirs = sorted({_key(_dir(t)) for _, t in items})
    name = f".{first.name}.{os.getpid()}.group.json"
    markers = [Path(d) / name for d in dirs]
    text = json.dumps({"nuinfer_output_group": 1, "pid": os.getpid(),
                       "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                       "renames": [[_key(t), _key(g)] for t, g in items],
                       "markers": [str(m) for m in markers]}, indent=1)
    for m in markers:
        with open(m, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    for d in dirs:
        _fsync_dir(Path(d))
    return markers


@contextlib.contextmanager
def _pushed(group: OutputGroup):
    _GROUPS.groups.append(group)
    try:
        yield
    finally:
        _GROUPS.groups.remove(group)


def _group_of(path) -> OutputGroup | None:
    for group in reversed(_GROUPS.groups):
        if path in group:
            return group
    return None


@contextlib.contextmanager
def output_group(paths, *, lock_timeout: float | None = None, key: str = "-o",
                 check: bool = True, create_parents: bool = False):
    """Write the outputs of one command together: all are replaced at the end, or none.

    Parameters
    ----------
    paths : path or iterable of paths
        Every output the command may write (NetCDF, PNG, CSV, ...). Members that are not
        written in the block are left untouched.
    lock_timeout : float, optional
        Seconds to wait for another process holding the lock of one of them. Default
        :data:`LOCK_TIMEOUT` (0: fail at once with :class:`OutputBusy`).
    key : str
        Option naming the outputs in messages (``"-o"``, ``"--output-file"``).
    check : bool
        Validate every path with :func:`check_writable` first (default).
    create_parents : bool
        Create missing parent directories instead of rejecting them.

    Yields
    ------
    OutputGroup
        ``group.target(path)`` yields a temporary; ``group.write_netcdf(obj, path)`` and
        ``group.write_text(path, text)`` write into it. Inside the block, :func:`write_netcdf`,
        :func:`atomic_write_text` and :func:`atomic_target` (hence ``plotting.save``) called on a
        member path in the same thread also write into the group.

    Notes
    -----
    On entry: paths are validated, the locks of all members are taken (sorted, so two groups
    cannot deadlock) and held until the end, SIGTERM/SIGHUP are handled (:func:`interruptible`),
    and temporaries left by killed processes are removed. Work done in the block (reading a
    previous output for ``--resume``, computing) is thus protected from a concurrent run.

    On an exception or signal every temporary is removed and no member is replaced. On success
    the temporaries are renamed over their targets one after the other. A rename sequence is
    not atomic across files: SIGTERM/SIGHUP arriving then is deferred until the renames are
    done, but SIGKILL or a power cut between two renames leaves some members new and others
    old. For that window (a few system calls; all files are complete and fsync-ed before it
    starts) a marker ``.{first}.{pid}.group.json`` lists the renames; the next write of any
    member finishes them (the new versions are complete), and :func:`incomplete_groups`
    reports them.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    unique: dict[str, Path] = {}
    for p in paths:
        unique.setdefault(_key(p), Path(p))
    members = list(unique.values())
    if check:
        for p in members:
            check_writable(p, key=key, create_parent=create_parents)
    group = OutputGroup(members)
    with interruptible():
        held: list[Path] = []
        try:
            for k in sorted(unique):
                _acquire(unique[k], lock_timeout, key)
                held.append(unique[k])
            for p in members:
                _prepare(p, key)
            try:
                with _pushed(group):
                    yield group
                group._commit()
            except BaseException:
                group._discard()
                raise
        finally:
            for p in reversed(held):
                _release(p)


@contextlib.contextmanager
def atomic_target(path, *, lock_timeout: float | None = None, key: str = "-o"):
    """Context manager yielding a temporary path next to ``path``; on success the file is fsync-ed,
    given the usual permissions (0666 minus the umask) and renamed over ``path`` (atomic); on any
    exception it is removed and a previous file at ``path`` is left as it was.

    The temporary is ``.{name}.{pid}.tmp{suffix}`` (:func:`temporary_path`). While it is written
    the lock of ``path`` is held (:func:`output_lock`; another process gets :class:`OutputBusy`
    after ``lock_timeout`` seconds, default :data:`LOCK_TIMEOUT` = 0), SIGTERM/SIGHUP remove it
    and exit (:func:`interruptible`), and temporaries of ``path`` left by killed processes are
    removed first. Inside :func:`output_group` of this thread, a member ``path`` is written into
    the group and renamed when the group ends.
    """
    path = Path(path)
    group = _group_of(path)
    if group is not None:
        with group.target(path) as tmp:
            yield tmp
        return
    directory = _dir(path)
    directory.mkdir(parents=True, exist_ok=True)
    with interruptible():
        _acquire(path, lock_timeout, key)
        try:
            _prepare(path, key)
            tmp = temporary_path(path)
            tk = _register(tmp)
            try:
                _create_temporary(tmp)
                yield tmp
                _finish_temporary(tmp)
                with _signals_deferred():
                    os.replace(tmp, path)
                    _ACTIVE.pop(tk, None)
                    _note_written(path)
            except BaseException:
                _ACTIVE.pop(tk, None)
                tmp.unlink(missing_ok=True)
                raise
            _fsync_dir(directory)
        finally:
            _release(path)


# ---------------------------------------------------------------------------- validation
def check_writable(path, key: str = "-o", *, create_parent: bool = False) -> Path:
    """Check, before any work, that an output can be written at ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The output file.
    key : str
        Option naming it in messages (``"-o"``, ``"--output-file"``).
    create_parent : bool
        Create a missing parent directory (with its parents) instead of rejecting it.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InvalidConfig
        One line naming the path and the fix: ``path`` is a directory, or an existing file that
        is not a regular file (``/dev/null``, a pipe, a socket: outputs are renamed over the
        target, which would replace the device node rather than write into it); the parent does
        not exist or is not a directory; no file can be created in the parent (permissions,
        read-only file system). The last is tested with a real probe (create and remove a
        hidden file) because root ignores permission bits.
    """
    p = Path(path)
    if p.name in ("", ".", ".."):
        raise InvalidConfig(f"{str(p)!r} is not a file name; give a file such as "
                            "'outputs/run.nc'", key=key)
    if p.is_dir():
        raise InvalidConfig(f"{str(p)!r} is a directory; give a file inside it, e.g. "
                            f"{str(p / 'run.nc')!r}", key=key)
    if p.exists():
        if not stat.S_ISREG(p.stat().st_mode):
            kind = {stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
                    stat.S_ISFIFO: "a named pipe", stat.S_ISSOCK: "a socket"}
            what = next((v for f, v in kind.items() if f(p.stat().st_mode)), "not a regular file")
            raise InvalidConfig(
                f"{str(p)!r} is {what}, not a regular file; nuinfer writes a complete new file "
                "and renames it over the target, which would replace it; give a regular file "
                "path (to discard the output, write it to a temporary directory)", key=key)
    parent = _dir(p)
    if not parent.exists():
        if not create_parent:
            raise InvalidConfig(f"directory {str(parent)!r} does not exist; create it "
                                f"(mkdir -p {parent}) or choose another path", key=key)
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InvalidConfig(f"cannot create directory {str(parent)!r} ({err.strerror}); "
                                "choose another path", key=key) from None
    if not parent.is_dir():
        raise InvalidConfig(f"{str(parent)!r} is not a directory; choose another path", key=key)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidConfig(f"directory {str(parent)!r} is not writable (permission denied); "
                            "choose another path", key=key)
    probe = parent / f".{p.name}.{os.getpid()}.probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # pragma: no cover - our own leftover
        fd = None
    except OSError as err:
        raise InvalidConfig(f"cannot create files in directory {str(parent)!r} "
                            f"({err.strerror or err}); choose another path on a writable file "
                            "system", key=key) from None
    if fd is not None:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return p


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
    import xarray as xr

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
    import xarray as xr

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
    import xarray as xr

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

