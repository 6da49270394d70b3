"""Figures drawn by a worker process while the command goes on computing.

Drawing and encoding a figure costs a CPU-bound 0.1-1 s, and importing matplotlib another
0.5 s; on a machine with two or more cores that work can run beside the physics.  A
:class:`Renderer` forks one worker at creation (POSIX), which imports matplotlib and
:mod:`nuinfer.plotting` while the caller computes.  :meth:`Renderer.submit` sends it a figure
*job* -- a module-level function and the data it plots, pickled -- and returns at once; the
worker builds the figure, saves it to its own temporary file next to the target and reports
back.  :meth:`Renderer.finish` (or leaving the ``with`` block) waits for every job and moves
each file into place with :func:`nuinfer.io.atomic_target`, so figures obey the same rules as
every other output (locks, output groups, no partial file under the final name).  A job that
fails is reported with its figure's path and the error, after the other jobs finished.

Submitting never waits for the worker: a job larger than a pipe holds (:data:`_INLINE_MAX`) is
written to an unlinked temporary file the two processes share, and only where it lies goes down
the pipe (a pipe that fills would hold the command until the worker finished its current figure:
up to 1 s a job in ``reproduce --quick`` before this).  The worker reads every queued job before
running the next.  When the command has nothing left but to wait (:meth:`Renderer.finish`), the
worker forks a helper, which inherits matplotlib and the fonts, and the two share what is still
queued: the command's core would be idle otherwise.  A forked process opens its own font files
(:mod:`nuinfer.plotting`): FreeType reads them through file offsets a fork would share.

Off Linux, in a process running other threads, with ``NUINFER_PARALLEL_FIGURES=0`` or
``Renderer(parallel=False)`` the jobs run in the calling process at :meth:`submit`, with the same
results.  The worker is
killed if the command dies (``PR_SET_PDEATHSIG`` on Linux); temporaries it leaves carry its pid
and are removed by the next write of the same output (:func:`nuinfer.io.remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from nuinfer.exceptions import NuinferError

__all__ = ["Renderer", "current", "draw", "parallel_default"]

_ENV = "NUINFER_PARALLEL_FIGURES"


def parallel_default() -> bool:
    """Whether figures are drawn by a worker: Linux (fork), >= 2 usable CPUs, a process with no
    other running thread (forking a multi-threaded process, e.g. a Jupyter kernel or a threaded Dask
    cluster, can leave a lock held in the child), and not disabled by ``NUINFER_PARALLEL_FIGURES=0``."""
    if os.environ.get(_ENV, "1").strip().lower() in ("0", "no", "false", "off"):
        return False
    if not (hasattr(os, "fork") and sys.platform.startswith("linux")):
        return False
    import threading
    if threading.active_count() > 1:
        return False
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return n >= 2


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent exits (best effort, no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover
        pass


_CURRENT = None
#: message of :meth:`Renderer.finish`: no more jobs will come before the stop
_DRAIN = "drain"
#: jobs up to this many pickled bytes go down the pipe itself, larger ones through the spool file
#: (a pipe holds ~64-200 kB: a larger job would block the caller until the worker reads it)
_INLINE_MAX = 16384
#: modules the worker imports after matplotlib, before its first job: figure jobs carry xarray
#: objects and nuinfer.tasks.contours results
_PRELOAD = ("xarray", "nuinfer.tasks.contours")


def current():
    """The renderer made active by :meth:`Renderer.active` (None outside such a block)."""
    return _CURRENT


def draw(path, fn, *args, **kwargs) -> Path:
    """Draw the figure ``fn(*args, **kwargs)`` to ``path``: built and drawn by the active
    renderer's worker when there is one (the caller then needs neither matplotlib nor the time to
    build the figure; the file appears when the renderer finishes), else built and saved here
    (:func:`nuinfer.plotting.save`).  ``fn``: a module-level function returning a Figure, defined
    in a module that imports matplotlib only inside its functions."""
    r = current()
    if r is not None:
        return r.submit(path, fn, *args, **kwargs)
    from nuinfer.plotting import save
    return save(fn(*args, **kwargs), path)


class _Pickled:
    """A pickled figure: unpickled (by :func:`_unpickle`) only where it is drawn."""

    def __init__(self, blob: bytes):
        self.blob = blob


def _unpickle(obj):
    import pickle
    return pickle.loads(obj.blob) if isinstance(obj, _Pickled) else obj


def _figure(fn, args, kwargs):
    """The figure of a job: ``fn(*args, **kwargs)``, or the (pickled) figure itself when ``fn`` is None."""
    return _unpickle(args[0]) if fn is None else fn(*args, **kwargs)


def forked_child_setup() -> None:
    """First thing in a process forked by a command (figure worker, real-data prefetch): default
    SIGTERM/SIGHUP (the command's handlers would remove the command's temporaries), SIGINT ignored
    (Ctrl-C is the command's to handle), killed with its parent on Linux, and no active renderer
    (a figure saved in the child is drawn there, not sent down the parent's pipe)."""
    global _CURRENT
    _CURRENT = None
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()


def _pread(fd: int, offset: int, size: int) -> bytes:
    parts = []
    while size > 0:
        b = os.pread(fd, size, offset)
        if not b:
            raise OSError(f"job spool ended {size} bytes early")
        parts.append(b)
        offset += len(b)
        size -= len(b)
    return b"".join(parts)


def _run_job(msg, spool: int):
    """Run one job message in this (worker) process: ``(job, None)`` or ``(job, error text)``."""
    import pickle
    job, tmp, fmt, blob, where = msg
    try:
        if blob is None:  # spooled (Renderer._send): read it back from the shared file
            blob = _pread(spool, *where)
        fn, args, kwargs = pickle.loads(blob)
        del blob
        if fmt is None:  # a file job (Renderer.submit_file): the writer writes the temporary file
            fn(*args, Path(tmp), **kwargs)
        else:
            from nuinfer.plotting import write_figure
            write_figure(_figure(fn, args, kwargs), Path(tmp), fmt)
        return job, None
    except BaseException as exc:  # noqa: BLE001 - reported to the parent with the figure's path
        Path(tmp).unlink(missing_ok=True)
        return job, f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _tokens(fd: int):
    """Job indices from the token pipe shared by the worker and its helper (each 4-byte read
    from a pipe is atomic on Linux: every index goes to exactly one of them)."""
    while True:
        b = os.read(fd, 4)
        if len(b) < 4:
            return
        yield int.from_bytes(b, "little")


#: :func:`_drain` shares fewer jobs than this: their 4-byte numbers must fit in a pipe (64 kB on Linux) at once
_DRAIN_MAX = 16000


def _drain(conn, jobs: list, spool: int) -> None:  # pragma: no cover - runs in the forked worker
    """Run ``jobs`` with a forked helper (it inherits matplotlib and every cache): both take the
    next job from a token pipe until none is left; the helper's results are relayed at the end
    (a failure for each job it took and did not report)."""
    import pickle
    tr, tw = os.pipe()
    try:
        os.write(tw, b"".join(i.to_bytes(4, "little") for i in range(len(jobs))))  # < _DRAIN_MAX: no wait
    finally:
        os.close(tw)
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        pid = None
    if pid == 0:  # the helper
        code = 0
        try:
            os.close(r)
            _die_with_parent()
            out = pickle.dumps([_run_job(jobs[i], spool) for i in _tokens(tr)])
            with os.fdopen(w, "wb") as f:
                f.write(out)
        except BaseException:  # noqa: BLE001 - the worker reports the helper's jobs as failed
            code = 1
        os._exit(code)
    os.close(w)
    done = set()
    for i in _tokens(tr):
        conn.send(_run_job(jobs[i], spool))
        done.add(jobs[i][0])
    os.close(tr)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    if pid is not None:
        os.waitpid(pid, 0)
    try:
        got = dict(pickle.loads(data))
    except Exception:  # noqa: BLE001 - the helper died before writing (or never ran)
        got = {}
    for m in jobs:
        if m[0] not in done:
            conn.send((m[0], got.get(m[0], "the figure worker's helper process stopped")))


def _worker(conn, parent_pid: int, spool: int) -> None:  # pragma: no cover - runs in the forked child
    """The worker's loop: read every queued job, run them in order and report each.  Once the
    command waits for the last jobs (``_DRAIN``: it has nothing else to do, a core is free), the
    worker shares what is still queued with a forked helper (:func:`_drain`)."""
    from collections import deque
    forked_child_setup()
    if os.getppid() != parent_pid:
        os._exit(0)
    import nuinfer.plotting  # noqa: F401 - warm: matplotlib and the style tables
    for mod in _PRELOAD:  # what unpickling the jobs' data needs (while the caller still computes)
        try:
            __import__(mod)
        except ImportError:  # pragma: no cover
            pass
    queue: deque = deque()
    draining = stop = False
    while True:
        try:
            while not stop and (conn.poll(0) or not queue):  # everything sent so far; wait if nothing
                msg = conn.recv()
                if msg is None:
                    stop = True
                elif isinstance(msg, str) and msg == _DRAIN:
                    draining = True
                else:
                    queue.append(msg)
        except EOFError:
            break
        if draining and 2 <= len(queue) < _DRAIN_MAX:  # the command waits: share the rest with a helper
            jobs = list(queue)
            queue.clear()
            _drain(conn, jobs, spool)
        elif queue:
            conn.send(_run_job(queue.popleft(), spool))
        elif stop:
            break
    conn.close()


class Renderer:
    """Figure jobs run by one forked worker process (see the module docstring).

    Parameters
    ----------
    parallel : bool, optional
        Fork a worker (default :func:`parallel_default`); ``False`` runs every job at
        :meth:`submit` in this process.
    lazy : bool
        Fork the worker at the first job instead of at creation (checking :func:`parallel_default`
        again then).  It then inherits the modules the caller has imported meanwhile (matplotlib,
        xarray) instead of importing them itself: less CPU in all, for a caller that imports them
        anyway.  Default ``False``: the worker imports matplotlib while the caller computes, which
        is what shortens a single command.

    Examples
    --------
    >>> with Renderer() as r:                                    # doctest: +SKIP
    ...     r.submit("outputs/fig.png", plot_contours, results, title="V")
    ...     do_more_physics()                                     # the figure is drawn meanwhile
    """

    def __init__(self, parallel: bool | None = None, *, lazy: bool = False):
        self.parallel = parallel_default() if parallel is None else bool(parallel)
        self._proc = None
        self._conn = None
        self._pending: dict[int, tuple[Path, Path]] = {}
        self._next = 0
        self.paths: list[Path] = []
        self._lazy = self.parallel and lazy
        if self.parallel and not lazy:
            self._start()

    def _start_lazily(self) -> None:
        """Fork the worker of a ``lazy`` renderer at its first job, if forking is still safe."""
        if self._lazy:
            self._lazy = False
            if parallel_default():
                self._start()
            else:
                self.parallel = False

    def _start(self) -> None:
        import multiprocessing as mp
        import tempfile
        ctx = mp.get_context("fork")
        parent, child = ctx.Pipe()
        # jobs larger than _INLINE_MAX go through an unlinked temporary file shared with the worker
        # (nothing is left behind, whatever kills the two processes); the pipe carries only where
        # they are, so a submit never waits for the worker to finish its current figure and read
        self._spool = tempfile.TemporaryFile(prefix="nuinfer-figure-jobs-")
        self._spool_end = 0
        self._proc = ctx.Process(target=_worker, args=(child, os.getpid(), self._spool.fileno()), daemon=True,
                                 name="nuinfer-figures")
        self._proc.start()
        child.close()
        self._conn = parent

    # ------------------------------------------------------------------ jobs
    def submit(self, path, fn, *args, **kwargs) -> Path:
        """Draw ``fn(*args, **kwargs)`` (a function returning a matplotlib Figure) to ``path``.

        Returns ``path`` at once when a worker draws it (the file appears at :meth:`finish`);
        without a worker the figure is drawn and saved before returning.
        """
        path = Path(path)
        self.paths.append(path)
        if not self._send(path, fn, args, kwargs, path.suffix.lstrip(".") or "png"):
            from nuinfer.plotting import save
            save(_figure(fn, args, kwargs), path)
        return path

    def submit_file(self, path, writer, *args, **kwargs) -> Path:
        """Have the worker write a file: ``writer(*args, tmp, **kwargs)`` writes the temporary
        file ``tmp``, which is moved to ``path`` (atomically, under its lock) at :meth:`finish`.

        For outputs this process does not read back before :meth:`finish`; ``writer`` must be a
        module-level function and ``args`` picklable.  Without a worker, or if the job cannot be
        sent, the file is written here before returning.
        """
        path = Path(path)
        self.paths.append(path)
        if not self._send(path, writer, args, kwargs, None):
            from nuinfer.io import atomic_target
            with atomic_target(path) as tmp:
                writer(*args, tmp, **kwargs)
        return path

    def _send(self, path: Path, fn, args, kwargs, fmt) -> bool:
        """Send a job to the worker (``fmt`` None: a file job); False when there is no worker or
        the job cannot be sent (not picklable, worker gone), i.e. the caller must do it here."""
        self._start_lazily()
        if self._proc is None:
            return False
        import pickle

        from nuinfer.io import temporary_path
        tmp = temporary_path(path, pid=self._proc.pid)
        job = self._next
        try:
            blob = pickle.dumps((fn, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - not picklable: done by the caller
            return False
        where = None
        try:
            if len(blob) > _INLINE_MAX:
                where = (self._spool_end, len(blob))
                view, at = memoryview(blob), self._spool_end
                while view:
                    n = os.pwrite(self._spool.fileno(), view, at)
                    view, at = view[n:], at + n
                self._spool_end = at
                blob = None
            self._conn.send((job, str(tmp), fmt, blob, where))
        except Exception as exc:  # noqa: BLE001 - worker gone or no room for the spool: done by the caller
            if isinstance(exc, (BrokenPipeError, EOFError, ConnectionError)):
                self._stop(kill=True)
            return False
        self._next += 1
        self._pending[job] = (path, tmp)
        return True

    def submit_figure(self, fig, path) -> Path:
        """Draw an already built figure to ``path`` (pickled to the worker; closed here at once)."""
        path = Path(path)
        self._start_lazily()
        if self._proc is not None:
            import pickle

            import matplotlib.pyplot as plt
            try:
                blob = pickle.dumps(fig)
            except Exception:  # noqa: BLE001 - an artist that does not pickle: draw it here
                blob = None
            if blob is not None:
                plt.close(fig)
                return self.submit(path, None, _Pickled(blob))
        from nuinfer.plotting import save
        self.paths.append(path)
        save(fig, path)
        return path

    @contextlib.contextmanager
    def active(self):
        """Within the block, :func:`nuinfer.plotting.save` sends figures to this renderer."""
        global _CURRENT
        prev, _CURRENT = _CURRENT, self
        try:
            yield self
        finally:
            _CURRENT = prev

    def finish(self) -> list[Path]:
        """Wait for every job, move the files into place, stop the worker; raise on a failed job."""
        errors = []
        try:
            if self._pending and self._conn is not None:
                try:  # the worker may now use a second core for what is left
                    self._conn.send(_DRAIN)
                except (OSError, ValueError):
                    pass
            while self._pending:
                try:
                    job, err = self._conn.recv()
                except (EOFError, ConnectionError, OSError):
                    errors += [f"{p}: the figure worker stopped" for p, _ in self._pending.values()]
                    for _, tmp in self._pending.values():
                        tmp.unlink(missing_ok=True)
                    self._pending.clear()
                    break
                path, tmp = self._pending.pop(job)
                if err is not None:
                    errors.append(f"{path}: {err}")
                    continue
                from nuinfer.io import atomic_target
                with atomic_target(path) as target:
                    os.replace(tmp, target)
        finally:
            self._stop(kill=bool(self._pending))
        if errors:
            raise NuinferError("figure(s) failed: " + "; ".join(errors))
        return list(self.paths)

    def _stop(self, kill: bool = False) -> None:
        if self._proc is None:
            return
        try:
            if kill:
                self._proc.kill()
            else:
                self._conn.send(None)
        except (OSError, ValueError):
            self._proc.kill()
        self._proc.join(timeout=None if not kill else 5)
        self._conn.close()
        self._spool.close()
        self.parallel = False
        for _, tmp in self._pending.values():
            tmp.unlink(missing_ok=True)
        self._pending.clear()
        self._proc = self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.finish()
        else:
            self._stop(kill=True)
        return False
