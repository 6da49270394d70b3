"""Figures drawn by the forked worker (nuinfer.render): same files as drawn in-process, atomic
placement, errors reported with the figure's path, nothing left behind on failure."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nuinfer import render
from nuinfer.exceptions import NuinferError

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the figure worker needs fork (POSIX)")


def _line_figure(n: int, title: str):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(3, 2))
    x = np.linspace(0.0, 1.0, n)
    ax.plot(x, x**2)
    ax.set_title(title)
    return fig


def _failing_figure():
    raise ValueError("no such curve")


def _leftovers(d):
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


def test_worker_draws_the_same_file_as_the_caller(tmp_path):
    with render.Renderer(parallel=True) as r:
        assert r._proc is not None and r._proc.is_alive()
        p = r.submit(tmp_path / "a.png", _line_figure, 50, title="worker")
        assert not p.exists()  # drawn meanwhile; placed at finish
    with render.Renderer(parallel=False) as r:
        q = r.submit(tmp_path / "b.png", _line_figure, 50, title="worker")
        assert q.exists()  # no worker: drawn at submit
    assert p.read_bytes() == q.read_bytes()
    assert _leftovers(tmp_path) == []


def test_saved_figures_go_to_the_active_renderer(tmp_path):
    from nuinfer.plotting import save
    with render.Renderer(parallel=True) as r, r.active():
        assert render.current() is r
        out = save(_line_figure(20, "via save"), tmp_path / "c.png")
        assert out == tmp_path / "c.png"
    assert render.current() is None
    assert out.exists() and out.stat().st_size > 1000
    assert _leftovers(tmp_path) == []


def test_failed_job_names_its_figure_and_the_others_are_written(tmp_path):
    r = render.Renderer(parallel=True)
    r.submit(tmp_path / "ok1.png", _line_figure, 10, title="1")
    r.submit(tmp_path / "bad.png", _failing_figure)
    r.submit(tmp_path / "ok2.png", _line_figure, 10, title="2")
    with pytest.raises(NuinferError, match=r"bad\.png: ValueError: no such curve"):
        r.finish()
    assert (tmp_path / "ok1.png").exists() and (tmp_path / "ok2.png").exists()
    assert not (tmp_path / "bad.png").exists()
    assert _leftovers(tmp_path) == []


def test_error_in_the_command_kills_the_worker_and_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="physics failed"):
        with render.Renderer(parallel=True) as r:
            proc = r._proc
            r.submit(tmp_path / "never.png", _line_figure, 10, title="x")
            raise RuntimeError("physics failed")
    proc.join(5)
    assert not proc.is_alive()
    assert not (tmp_path / "never.png").exists()
    assert _leftovers(tmp_path) == []


def _slow_figure():
    import time
    time.sleep(60)


def test_worker_killed_mid_job_is_reported_not_hung(tmp_path):
    import time
    r = render.Renderer(parallel=True)
    r.submit(tmp_path / "slow.png", _slow_figure)
    time.sleep(0.3)
    r._proc.kill()
    with pytest.raises(NuinferError, match=r"slow\.png: the figure worker stopped"):
        r.finish()
    assert not (tmp_path / "slow.png").exists()
    assert _leftovers(tmp_path) == []


def test_dead_worker_falls_back_to_drawing_here(tmp_path):
    r = render.Renderer(parallel=True)
    r._proc.kill()
    r._proc.join(5)
    p = r.submit(tmp_path / "x.png", _line_figure, 10, title="x")
    assert p.exists()  # the broken pipe is seen at submit: drawn in this process
    r.finish()
    assert _leftovers(tmp_path) == []


def test_parallel_figures_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("NUINFER_PARALLEL_FIGURES", "0")
    assert render.parallel_default() is False
    r = render.Renderer()
    assert r._proc is None and not r.parallel


def test_no_worker_is_forked_from_a_threaded_process():
    """Forking while another thread runs (a notebook kernel, a threaded cluster) is avoided."""
    import threading
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, daemon=True)
    t.start()
    try:
        assert render.parallel_default() is False
        assert render.Renderer()._proc is None
    finally:
        stop.set()
        t.join()
    if threading.active_count() == 1:  # other tests of the session may have left threads running
        assert render.parallel_default() is (len(os.sched_getaffinity(0)) >= 2)


def test_lazy_renderer_forks_at_the_first_job_and_rechecks_threads(tmp_path, monkeypatch):
    """``lazy=True``: no worker until the first figure; then one forked if forking is still safe
    (same file as in-process), or the figure drawn here when a thread started meanwhile."""
    import threading
    monkeypatch.setattr(render, "parallel_default", lambda: threading.active_count() == 1)
    with render.Renderer(parallel=True, lazy=True) as r:
        assert r._proc is None and r.parallel
        p = r.submit(tmp_path / "a.png", _line_figure, 40, title="lazy")
        forked = r._proc is not None
        assert forked == (threading.active_count() == 1)
    with render.Renderer(parallel=False) as r:
        q = r.submit(tmp_path / "b.png", _line_figure, 40, title="lazy")
    assert p.read_bytes() == q.read_bytes()
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, daemon=True)
    t.start()
    try:
        with render.Renderer(parallel=True, lazy=True) as r:
            s = r.submit(tmp_path / "c.png", _line_figure, 40, title="lazy")
            assert r._proc is None and not r.parallel and s.exists()  # drawn here, at submit
    finally:
        stop.set()
        t.join()
    assert s.read_bytes() == q.read_bytes()
    assert _leftovers(tmp_path) == []


def test_forked_child_has_no_active_renderer(monkeypatch):
    """A process forked by a command (figure worker, real-data process) must not send figures down
    its parent's pipe: forked_child_setup clears the active renderer."""
    import signal
    monkeypatch.setattr(render, "_die_with_parent", lambda: None)  # not in the test process itself
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    r = render.Renderer(parallel=False)
    try:
        with r.active():
            assert render.current() is r
            render.forked_child_setup()
            assert render.current() is None
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _dataset(n: int):
    import xarray as xr
    x = np.linspace(0.0, 1.0, n)
    return xr.Dataset({"y": ("x", x**2, {"units": "1", "meta": {"a": [1, 2]}})}, coords={"x": x},
                      attrs={"flag": True, "note": "beside"})


def test_netcdf_written_beside_appears_at_finish_equal_to_a_direct_write(tmp_path):
    """write_netcdf(..., beside=True): the worker writes it, the file appears at finish, and it
    reopens equal to the same dataset written here; bad attributes are refused before any job."""
    import xarray as xr

    from nuinfer.exceptions import InvalidConfig
    from nuinfer.io import write_netcdf
    direct = write_netcdf(_dataset(30), tmp_path / "direct.nc")
    with render.Renderer(parallel=True) as r, r.active():
        p = write_netcdf(_dataset(30), tmp_path / "beside.nc", beside=True)
        assert not p.exists() and r._pending  # written by the worker, placed at finish
        bad = _dataset(3)
        bad.attrs["obj"] = object()
        with pytest.raises(InvalidConfig, match="obj"):
            write_netcdf(bad, tmp_path / "bad.nc", beside=True)
    assert p.exists() and not (tmp_path / "bad.nc").exists()
    with xr.open_dataset(p) as a, xr.open_dataset(direct) as b:
        xr.testing.assert_identical(a.load(), b.load())
    q = write_netcdf(_dataset(30), tmp_path / "now.nc", beside=True)  # no active renderer: written at once
    assert q.exists()
    with render.Renderer(parallel=False) as r, r.active():  # no worker: written at once
        s = write_netcdf(_dataset(30), tmp_path / "here.nc", beside=True)
        assert s.exists()
    assert _leftovers(tmp_path) == []


def _failing_writer(tmp):
    raise OSError("disk full")


def test_failed_file_job_names_its_file(tmp_path):
    r = render.Renderer(parallel=True)
    r.submit_file(tmp_path / "bad.nc", _failing_writer)
    r.submit(tmp_path / "ok.png", _line_figure, 10, title="ok")
    with pytest.raises(NuinferError, match=r"bad\.nc: OSError: disk full"):
        r.finish()
    assert (tmp_path / "ok.png").exists() and not (tmp_path / "bad.nc").exists()
    assert _leftovers(tmp_path) == []


# ------------------------------------------------------------------ large jobs, the drain helper
def _wait_for(flag: str, target) -> None:
    """File job: say it started (``flag``.started), wait (up to 60 s) until ``flag`` exists, then
    write 'ok'."""
    import time
    Path(flag + ".started").touch()
    t0 = time.monotonic()
    while not os.path.exists(flag):
        if time.monotonic() - t0 > 60:
            raise TimeoutError(f"{flag} never appeared: the command was blocked")
        time.sleep(0.01)
    target.write_text("ok")


def _started(flag, timeout: float = 60.0) -> None:
    import time
    t0 = time.monotonic()
    while not Path(str(flag) + ".started").exists():
        assert time.monotonic() - t0 < timeout, "the worker never started the first job"
        time.sleep(0.01)


def _write_array(a, target) -> None:
    np.save(target, a, allow_pickle=False)


def _write_pid(seconds: float, target) -> None:
    import time
    time.sleep(seconds)
    target.write_text(str(os.getpid()))


def _kill_self(target) -> None:
    import signal
    os.kill(os.getpid(), signal.SIGKILL)


def _text_figure(k: int):
    """Many glyphs and mathtext labels: what the worker and its helper draw at the same time."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 3, figsize=(7, 4))
    for j, ax in enumerate(axes.flat):
        x = np.geomspace(1e-3, 1e4, 30)
        ax.loglog(x, x ** (0.2 * (j + k)), label=rf"$g_X^{{{j}}}$ = {j + k}e-4, $m_X$ = {10 * k} MeV")
        ax.set_title(rf"panel {j}: $\Delta\chi^2$ = {4.61 + j:.2f}, CE$\nu$NS")
        ax.set_xlabel(r"$m_X$ [MeV]")
        ax.legend(fontsize=6)
    return fig


def test_a_large_job_does_not_wait_for_the_worker(tmp_path):
    """A job larger than a pipe holds goes through the spool file: the command hands it over
    while the worker is still busy (here: waiting for the command itself), and it arrives intact."""
    flag = tmp_path / "flag"
    big = np.arange(400_000, dtype=float)  # 3.2 MB, far above what a socket buffers
    with render.Renderer(parallel=True) as r:
        r.submit_file(tmp_path / "first.txt", _wait_for, str(flag))
        _started(flag)  # the worker is inside the first job, reading nothing
        r.submit_file(tmp_path / "big.npy", _write_array, big)  # would block here, before the flag
        flag.touch()
    assert (tmp_path / "first.txt").read_text() == "ok"
    np.testing.assert_array_equal(np.load(tmp_path / "big.npy"), big)
    assert _leftovers(tmp_path) == []


def test_jobs_left_at_finish_are_shared_with_a_helper(tmp_path):
    """At finish the worker forks a helper for what is still queued: every job runs exactly once,
    in two processes."""
    flag = tmp_path / "flag"
    with render.Renderer(parallel=True) as r:
        worker = r._proc.pid
        r.submit_file(tmp_path / "first.txt", _wait_for, str(flag))
        _started(flag)
        for k in range(8):
            r.submit_file(tmp_path / f"p{k}.txt", _write_pid, 0.2)
        flag.touch()
    pids = {int((tmp_path / f"p{k}.txt").read_text()) for k in range(8)}
    assert worker in pids and len(pids) == 2
    assert _leftovers(tmp_path) == []


def test_figures_drawn_by_the_worker_and_its_helper_match_the_caller(tmp_path):
    """The helper must not share the worker's open font files (corrupt glyphs, FreeType errors):
    text-heavy figures drawn by both at once equal those drawn in-process, pixel for pixel."""
    from PIL import Image
    flag = tmp_path / "flag"
    with render.Renderer(parallel=True) as r:
        r.submit(tmp_path / "w0.png", _text_figure, 0)  # warms fonts and mathtext in the worker
        r.submit_file(tmp_path / "first.txt", _wait_for, str(flag))
        _started(flag)
        for k in range(1, 7):
            r.submit(tmp_path / f"w{k}.png", _text_figure, k)
        flag.touch()
    with render.Renderer(parallel=False) as r:
        for k in range(7):
            r.submit(tmp_path / f"c{k}.png", _text_figure, k)
    for k in range(7):
        a = np.asarray(Image.open(tmp_path / f"w{k}.png"))
        b = np.asarray(Image.open(tmp_path / f"c{k}.png"))
        np.testing.assert_array_equal(a, b, err_msg=f"figure {k}")


def test_a_job_that_kills_its_process_is_reported(tmp_path):
    """A job that kills the process running it (worker or helper) fails with its path; the
    command does not hang."""
    flag = tmp_path / "flag"
    r = render.Renderer(parallel=True)
    r.submit_file(tmp_path / "first.txt", _wait_for, str(flag))
    _started(flag)
    for k in range(3):
        r.submit_file(tmp_path / f"p{k}.txt", _write_pid, 0.1)
    r.submit_file(tmp_path / "dies.txt", _kill_self)
    flag.touch()
    with pytest.raises(NuinferError, match=r"dies\.txt: "):
        r.finish()
    assert not (tmp_path / "dies.txt").exists()
