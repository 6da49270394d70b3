"""A small execution engine for chunked random work (toy ensembles, large sweeps).

:func:`run_chunks` splits ``n_items`` work items into fixed chunks of ``chunk_size`` items and
gives every chunk its own random stream, ``np.random.default_rng(child)`` with the children from
``np.random.SeedSequence(seed).spawn(n_chunks)``.  The chunking depends only on ``n_items`` and
``chunk_size`` (never on the number of workers), so a given ``(seed, chunk_size)`` produces the
same numbers in-process, on one Dask worker or on many.

Schedulers
----------
* ``None`` or ``"inprocess"`` (default): a plain loop in the calling process;
* ``"local"``: a ``dask.distributed.LocalCluster`` with ``n_workers`` worker *processes*,
  ``threads_per_worker=1``, started for this call and closed afterwards;
* ``"local-threads"``: the same with worker threads in this process (``processes=False``; cheap
  to start, for tests and notebooks; numpy releases the GIL only in its larger kernels);
* ``"tcp://host:port"`` (or ``"tls://..."``): connect a ``Client`` to a running scheduler;
* a ``distributed.Client`` instance: use it as is (not closed).

Dask is optional (``pip install "nuinfer[dask]"``); it is imported only when a distributed
scheduler is asked for.  In distributed runs each chunk runs with BLAS pinned to one thread
(``threadpoolctl``) so that workers do not oversubscribe the cores.
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import Any, Callable

import numpy as np

from nuinfer.exceptions import InvalidConfig
from nuinfer.progress import Progress

__all__ = ["SCHEDULERS", "chunk_slices", "check_scheduler", "check_seed", "map_tasks",
           "run_chunks"]


#: Named schedulers (besides ``"tcp://..."`` addresses and ``Client`` instances).
SCHEDULERS = ("inprocess", "local", "local-threads")

_DASK_HINT = 'dask is not installed; install the optional extra: pip install "nuinfer[dask]"'


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def check_seed(seed, key: str = "seed") -> int:
    """The one seed rule of the package (:func:`nuinfer.spec.limits.check_seed`): an integer in [0, 2**32)."""
    from nuinfer.spec.limits import check_seed as _check
    return _check(seed, key)


def _check_positive_int(value, key: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidConfig(f"must be a positive integer; got {value!r}", key=key)
    return int(value)


def check_scheduler(scheduler, key: str = "scheduler"):
    """Validate a scheduler setting (CLI ``--scheduler``, ``[statistics] scheduler``) early.

    Returns the value unchanged (``None`` for ``"inprocess"``); raises :class:`InvalidConfig`
    naming ``key`` for anything :func:`run_chunks` would not accept.  Does not import dask.
    """
    try:
        kind, _ = _check_scheduler(scheduler)
    except InvalidConfig as exc:
        msg = exc.args[0]
        if exc.key and msg.startswith(f"{exc.key}: "):
            msg = msg[len(exc.key) + 2:]
        raise InvalidConfig(msg, key=key) from None
    return None if kind == "inprocess" else scheduler


def _check_scheduler(scheduler):
    """Return ("inprocess"|"local"|"local-threads"|"address"|"client", value)."""
    if scheduler is None or scheduler == "inprocess":
        return "inprocess", None
    if isinstance(scheduler, str):
        if scheduler in ("local", "local-threads"):
            return scheduler, None
        if scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            return "address", scheduler
        raise InvalidConfig(
            f"unknown scheduler {scheduler!r}; use None/'inprocess', 'local', 'local-threads', "
            "a scheduler address 'tcp://host:port' or a dask.distributed.Client",
            key="scheduler",
        )
    if type(scheduler).__name__ == "Client" and hasattr(scheduler, "submit"):
        return "client", scheduler
    raise InvalidConfig(
        f"scheduler must be None, a string or a dask.distributed.Client; "
        f"got {type(scheduler).__name__}",
        key="scheduler",
    )


def chunk_slices(n_items: int, chunk_size: int) -> list[range]:
    """The fixed chunking: ``range`` objects of ``chunk_size`` consecutive items (last shorter)."""
    n_items = _check_positive_int(n_items, "n_items")
    chunk_size = _check_positive_int(chunk_size, "chunk_size")
    return [range(s, min(s + chunk_size, n_items)) for s in range(0, n_items, chunk_size)]


# --------------------------------------------------------------------------------------------
# execution
# --------------------------------------------------------------------------------------------
def _run_one(fn, chunk: range, child: np.random.SeedSequence):
    return fn(chunk, np.random.default_rng(child))


def _run_one_pinned(fn, chunk: range, child: np.random.SeedSequence):
    """Worker-side wrapper: BLAS pinned to one thread while the chunk runs."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return fn(chunk, np.random.default_rng(child))


def _import_distributed():
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise InvalidConfig(_DASK_HINT, key="scheduler") from None
    return distributed


def run_chunks(
    fn: Callable[[range, np.random.Generator], Any],
    n_items: int,
    *,
    seed: int,
    chunk_size: int,
    scheduler=None,
    n_workers: int | None = None,
    progress=None,
) -> list:
    """Run ``fn(chunk, rng)`` on fixed chunks of ``range(n_items)``; return results in order.

    Parameters
    ----------
    fn : callable(range, numpy.random.Generator) -> object
        Work on the items of one chunk with the chunk's own random stream.  For distributed
        schedulers it must be picklable (a module-level function or a ``functools.partial`` of
        one); it is shipped to the workers once (``Client.scatter``).
    n_items : int
        Number of work items (>= 1).
    seed : int
        In [0, 2**63).  Chunk ``k`` uses ``default_rng(SeedSequence(seed).spawn(n_chunks)[k])``.
    chunk_size : int
        Items per chunk (>= 1).  Results depend on ``(seed, chunk_size)``, never on the
        scheduler or the number of workers.
    scheduler : None, str or distributed.Client, optional
        ``None``/``"inprocess"`` (default), ``"local"``, ``"local-threads"``,
        ``"tcp://host:port"`` or a ``Client`` (see the module docstring).
    n_workers : int, optional
        Workers of a ``"local"``/``"local-threads"`` cluster. Default 2.  Ignored (must be None)
        otherwise.
    progress : None, bool or callable(done, total, elapsed_s), optional
        ``True``: plain lines "engine: done k/n chunks, elapsed s" on stderr (at most one per
        second); a callable is called after every chunk.  Default None (silent).

    Returns
    -------
    list
        ``[fn(chunk_0, rng_0), fn(chunk_1, rng_1), ...]`` in chunk order.

    Raises
    ------
    InvalidConfig
        Bad seed, sizes, scheduler or n_workers (checked before any work), or dask missing.

    Examples
    --------
    >>> out = run_chunks(lambda c, rng: rng.random(len(c)), 5, seed=1, chunk_size=2)
    >>> [len(x) for x in out]
    [2, 2, 1]
    """
    if not callable(fn):
        raise InvalidConfig(f"must be callable(chunk, rng); got {fn!r}", key="fn")
    seed = check_seed(seed)
    chunks = chunk_slices(n_items, chunk_size)
    kind, value = _check_scheduler(scheduler)
    if n_workers is not None:
        n_workers = _check_positive_int(n_workers, "n_workers")
        if kind not in ("local", "local-threads"):
            raise InvalidConfig(
                f"n_workers applies to scheduler='local' or 'local-threads' only; got "
                f"scheduler={scheduler!r}", key="n_workers")
    bar = Progress(len(chunks), "[nuinfer] engine", unit=" chunks", enabled=progress)
    children = np.random.SeedSequence(seed).spawn(len(chunks))
    if kind == "inprocess":
        out = []
        for chunk, child in zip(chunks, children):
            out.append(_run_one(fn, chunk, child))
            bar.update()
        return out

    _import_distributed()
    from distributed import Client, LocalCluster

    if kind == "client":
        return _run_distributed(value, fn, chunks, children, bar)
    if kind == "address":
        with Client(value) as client:
            return _run_distributed(client, fn, chunks, children, bar)
    kw = dict(
        n_workers=n_workers or 2,
        threads_per_worker=1,
        processes=(kind == "local"),
        dashboard_address=":0",  # any free port: no "port 8787 in use" warning on shared hosts
        scheduler_kwargs={"dashboard": False},
        silence_logs=logging.ERROR,
    )
    if kind == "local":
        kw["host"] = "127.0.0.1"
    with LocalCluster(**kw) as cluster, Client(cluster) as client:
        return _run_distributed(client, fn, chunks, children, bar)


def _run_distributed(client, fn, chunks, children, bar) -> list:
    from distributed import as_completed

    [fn_future] = client.scatter([fn], broadcast=True, hash=False)
    futures = [
        client.submit(_run_one_pinned, fn_future, chunk, child, pure=False, priority=-k)
        for k, (chunk, child) in enumerate(zip(chunks, children))
    ]
    try:
        for _ in as_completed(futures):
            bar.update()
        return client.gather(futures)
    finally:
        client.cancel(futures + [fn_future])


def _map_chunk(fn, items, chunk: range, rng):  # rng unused: map_tasks work is deterministic
    return [fn(items[k]) for k in chunk]


def map_tasks(
    fn: Callable[[Any], Any],
    items,
    *,
    scheduler=None,
    n_workers: int | None = None,
    progress=None,
) -> list:
    """``[fn(item) for item in items]``, in order, in-process or on a Dask cluster.

    For deterministic sweeps (``nuinfer compare`` scenarios, floor-map scenarios): one task per
    item, no random stream.  Same schedulers as :func:`run_chunks`; with ``scheduler=None`` it is
    a plain loop and dask is never imported.

    Parameters
    ----------
    fn : callable(item) -> object
        Picklable for distributed schedulers (module-level function or ``functools.partial``).
    items : sequence
        Work items (picklable for distributed schedulers); at least one.
    scheduler, n_workers, progress
        As in :func:`run_chunks`.

    Returns
    -------
    list
        ``[fn(items[0]), fn(items[1]), ...]``.

    Examples
    --------
    >>> map_tasks(abs, [-1, 2, -3])
    [1, 2, 3]
    """
    if not callable(fn):
        raise InvalidConfig(f"must be callable(item); got {fn!r}", key="fn")
    items = list(items)
    if not items:
        raise InvalidConfig("must contain at least one item", key="items")
    import functools

    res = run_chunks(functools.partial(_map_chunk, fn, items), len(items), seed=0, chunk_size=1,
                     scheduler=scheduler, n_workers=n_workers, progress=progress)
    return [r for chunk in res for r in chunk]


def default_chunk_size(n_items: int, target_chunks: int = 64) -> int:
    """A chunk size giving about ``target_chunks`` chunks (deterministic in ``n_items``)."""
    return max(1, math.ceil(n_items / target_chunks))
