"""Interrupted and concurrent writes (issue 15, item 2): signals, stale temporaries, locks,
output groups, output-path validation.

Real processes are killed: a child writer (``_CHILD`` below) creates its temporary, prints
``READY`` and waits; the test then sends SIGTERM, SIGHUP or SIGKILL and checks the exit status,
the stderr line, what is left in the directory and that the previous outputs are untouched.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from nuinfer.exceptions import ConfigError, InvalidConfig
import nuinfer.io as nio
from nuinfer.io import (
    OutputBusy,
    atomic_target,
    atomic_write_text,
    check_writable,
    incomplete_groups,
    interruptible,
    lock_path,
    output_group,
    output_lock,
    read_netcdf,
    remove_stale_temporaries,
    temporary_path,
    write_netcdf,
)

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")

_CHILD = r'''
import os, sys, time
from pathlib import Path
import nuinfer.io as io

mode, first = sys.argv[1], Path(sys.argv[2])

def ready():
    print("READY", flush=True)

if mode == "single":            # slow writer: the temporary exists, then it waits
    with io.atomic_target(first) as tmp:
        tmp.write_bytes(b"partial new content")
        ready()
        time.sleep(60)
elif mode == "hold":            # holds the output (group) until a line arrives on stdin
    with io.output_group([first]) as group:
        ready()
        sys.stdin.readline()
        group.write_text(first, "from the first writer\n")
elif mode == "group":           # first output complete, second half-written, then waits
    second = Path(sys.argv[3])
    with io.output_group([first, second]) as group:
        group.write_text(first, "new a\n")
        with group.target(second) as tmp:
            tmp.write_text("half of new b")
            ready()
            time.sleep(60)
elif mode == "netcdf":          # real NetCDF writes, over and over, until a signal
    import numpy as np, xarray as xr
    ds = xr.Dataset({"v": (("a", "b"), np.random.default_rng(1).random((1500, 1500)))})
    with io.interruptible():
        io.write_netcdf(ds, first)
        ready()
        while True:
            io.write_netcdf(ds, first)
elif mode == "commit":          # pauses between the two renames of the group
    second, pause = Path(sys.argv[3]), float(sys.argv[4])
    real, calls = os.replace, []
    def slow_replace(src, dst):
        real(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            ready()
            time.sleep(pause)
    os.replace = slow_replace
    with io.output_group([first, second]) as group:
        group.write_text(first, "new a\n")
        group.write_text(second, "new b\n")
'''


@pytest.fixture
def child(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    procs = []

    def start(*args):
        proc = subprocess.Popen([sys.executable, str(script), *map(str, args)], cwd=tmp_path,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "READY":
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"child did not get ready: {line!r} {err}")
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def _stop(proc, sig):
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def outdir(tmp_path):
    d = tmp_path / "outputs"
    d.mkdir()
    return d


# --------------------------------------------------------------------------------- signals
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_during_write_removes_temporary_and_exits(child, outdir, sig):
    target = outdir / "x.nc"
    target.write_text("old")
    proc = child("single", "outputs/x.nc")
    tmp = temporary_path(target, proc.pid)
    assert tmp.is_file() and tmp.name == f".x.nc.{proc.pid}.tmp.nc"
    code, out, err = _stop(proc, sig)
    assert code == 128 + sig
    assert err.splitlines() == [f"nuinfer: interrupted by {sig.name}; removed the partial "
                                f"outputs/.x.nc.{proc.pid}.tmp.nc; nothing was written"]
    assert target.read_text() == "old"
    assert _files(outdir) == ["x.nc"]  # no temporary, no lock file


def test_sigkill_leaves_temporary_that_the_next_write_removes(child, outdir):
    target = outdir / "x.nc"
    target.write_text("old")
    proc = child("single", target)
    code, _, _ = _stop(proc, signal.SIGKILL)
    assert code == -signal.SIGKILL
    stale = temporary_path(target, proc.pid)
    assert stale.is_file() and target.read_text() == "old"
    assert _files(outdir) == sorted(["x.nc", stale.name, lock_path(target).name])
    atomic_write_text(target, "new")  # the kernel dropped the dead holder's lock
    assert target.read_text() == "new"
    assert _files(outdir) == ["x.nc"]


def test_signal_during_netcdf_write_exits_without_hanging(child, outdir):
    # Raising an exception from the handler can leave xarray's HDF5 lock taken (the process
    # then hangs in to_netcdf -> close); the handler exits with os._exit instead.
    target = outdir / "x.nc"
    proc = child("netcdf", "outputs/x.nc")
    old = read_netcdf(target)
    code, _, err = _stop(proc, signal.SIGTERM)  # communicate(timeout=30) fails on a hang
    assert code == 143
    [line] = err.splitlines()
    assert line.startswith("nuinfer: interrupted by SIGTERM; ")
    assert _files(outdir) == ["x.nc"]
    xr.testing.assert_identical(read_netcdf(target), old)  # a complete file, old or new


class _FakeExit(Exception):
    pass


def _fake_exit(code):
    raise _FakeExit(code)


@pytest.mark.parametrize("sig, sigint", [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_signal_in_process_removes_temporary_and_restores_handlers(outdir, capfd, monkeypatch,
                                                                   sig, sigint):
    monkeypatch.setattr(nio, "_exit", _fake_exit)  # instead of os._exit (pytest would end)
    target = outdir / "x.nc"
    target.write_text("old")
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    with pytest.raises(_FakeExit) as info:
        with interruptible(sigint=sigint), atomic_target(target) as tmp:
            tmp.write_text("partial")
            os.kill(os.getpid(), sig)
            for _ in range(10**6):  # the handler runs at the next bytecode
                pass
    assert info.value.args == (128 + sig,)
    assert capfd.readouterr().err == (f"nuinfer: interrupted by {sig.name}; removed the partial "
                                      f"{tmp}; nothing was written\n")
    assert target.read_text() == "old" and _files(outdir) == ["x.nc"]
    assert {s: signal.getsignal(s) for s in before} == before


def test_handlers_only_during_writes_and_ignored_signals_stay_ignored(outdir):
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        term = signal.getsignal(signal.SIGTERM)
        with interruptible():
            assert signal.getsignal(signal.SIGTERM) is not term
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            with interruptible():  # nested: nothing changes
                pass
            assert signal.getsignal(signal.SIGTERM) is not term
        assert signal.getsignal(signal.SIGTERM) is term
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_writes_from_a_thread_leave_signal_handlers_alone(outdir):
    term = signal.getsignal(signal.SIGTERM)
    seen, errors = [], []

    def work():
        try:
            with atomic_target(outdir / "t.txt") as tmp:
                seen.append(signal.getsignal(signal.SIGTERM))
                tmp.write_text("from a thread")
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert not errors and seen == [term]
    assert (outdir / "t.txt").read_text() == "from a thread" and _files(outdir) == ["t.txt"]


# --------------------------------------------------------------------------------- stale files
def test_only_temporaries_of_dead_processes_are_removed(outdir):
    target = outdir / "x.nc"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = temporary_path(target, dead.pid)
    live = temporary_path(target, os.getppid())  # a running process (pytest's parent)
    other = temporary_path(outdir / "y.nc", dead.pid)  # another output's: not ours to touch
    for p in (stale, live, other):
        p.write_text("x")
    assert remove_stale_temporaries(target) == [stale]
    assert _files(outdir) == sorted([live.name, other.name])


# --------------------------------------------------------------------------------- locks
def test_second_writer_fails_clearly_then_succeeds(child, outdir):
    target = outdir / "x.nc"
    ds = xr.Dataset({"v": ("i", np.arange(3.0))})
    proc = child("hold", target)
    lock = lock_path(target)
    assert lock.name == ".x.nc.lock" and lock.read_text().strip() == str(proc.pid)
    expected = (f"{target} is being written by another nuinfer process (pid {proc.pid}, lock "
                f"{lock}); wait for it or choose another -o")
    with pytest.raises(OutputBusy) as info:
        write_netcdf(ds, target)
    assert str(info.value) == expected
    with pytest.raises(OutputBusy, match=r"\(waited 0.2 s\); wait for it"):
        with output_group([target], lock_timeout=0.2, key="--output-file"):
            pass  # pragma: no cover
    assert not target.exists() and _files(outdir) == [lock.name]
    proc.stdin.write("go\n")
    proc.stdin.flush()
    write_netcdf(ds, target, lock_timeout=30)  # waits for the first writer, then replaces
    assert proc.wait(timeout=30) == 0
    xr.testing.assert_identical(read_netcdf(target), ds)
    assert _files(outdir) == ["x.nc"]


def test_lock_is_reentrant_in_a_thread_and_exclusive_across_threads(outdir):
    target = outdir / "x.nc"
    errors = []
    with output_lock(target):
        atomic_write_text(target, "same thread")  # re-entrant

        def other():
            try:
                atomic_write_text(target, "other thread")
            except OutputBusy as err:
                errors.append(str(err))

        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert errors and "another thread of this nuinfer process" in errors[0]
    assert target.read_text() == "same thread" and _files(outdir) == ["x.nc"]


# --------------------------------------------------------------------------------- groups
def test_group_interrupted_between_files_replaces_nothing(child, outdir):
    a, b = outdir / "a.csv", outdir / "b.png"
    a.write_text("old a\n")
    b.write_text("old b\n")
    proc = child("group", "outputs/a.csv", "outputs/b.png")
    code, _, err = _stop(proc, signal.SIGTERM)
    assert code == 143
    assert err.splitlines() == [
        f"nuinfer: interrupted by SIGTERM; removed the partial outputs/.a.csv.{proc.pid}.tmp.csv, "
        f"outputs/.b.png.{proc.pid}.tmp.png; nothing was written"]
    assert a.read_text() == "old a\n" and b.read_text() == "old b\n"
    assert _files(outdir) == ["a.csv", "b.png"]


def test_group_killed_before_commit_replaces_nothing(child, outdir):
    a, b = outdir / "a.csv", outdir / "b.png"
    a.write_text("old a\n")
    b.write_text("old b\n")
    proc = child("group", a, b)
    _stop(proc, signal.SIGKILL)
    assert a.read_text() == "old a\n" and b.read_text() == "old b\n"
    with output_group([a, b]):  # the next run tidies up; members it does not write stay
        pass
    assert _files(outdir) == ["a.csv", "b.png"] and a.read_text() == "old a\n"


def test_signal_during_the_renames_is_deferred_until_they_are_done(child, outdir):
    a, b = outdir / "a.csv", outdir / "b.png"
    b.write_text("old b\n")
    proc = child("commit", "outputs/a.csv", "outputs/b.png", 1.0)
    code, _, err = _stop(proc, signal.SIGTERM)
    assert code == 143
    assert err.splitlines() == ["nuinfer: interrupted by SIGTERM; kept outputs/a.csv, "
                                "outputs/b.png (complete, written before the signal)"]
    assert a.read_text() == "new a\n" and b.read_text() == "new b\n"
    assert _files(outdir) == ["a.csv", "b.png"]


def test_group_killed_during_the_renames_is_finished_by_the_next_write(child, outdir):
    a, b = outdir / "a.csv", outdir / "b.png"
    b.write_text("old b\n")
    proc = child("commit", a, b, 60)
    _stop(proc, signal.SIGKILL)
    assert a.read_text() == "new a\n" and b.read_text() == "old b\n"  # the window
    [state] = incomplete_groups(outdir)
    assert state["pid"] == proc.pid and not state["alive"]
    assert state["replaced"] == [a] and state["pending"] == [b]
    assert state["marker"].name == f".a.csv.{proc.pid}.group.json"
    atomic_write_text(a, "newer a\n")  # any write of a member completes the group first
    assert b.read_text() == "new b\n" and a.read_text() == "newer a\n"
    assert incomplete_groups(outdir) == [] and _files(outdir) == ["a.csv", "b.png"]


def test_group_commits_at_the_end_and_routes_plain_writers(outdir):
    a, b, other = outdir / "a.nc", outdir / "a.png", outdir / "other.txt"
    b.write_text("old png")
    ds = xr.Dataset({"v": ("i", [1.0, 2.0])})
    with output_group([a, b]) as group:
        write_netcdf(ds, a)  # a member: written into the group
        with atomic_target(b) as tmp:  # e.g. plotting.save
            tmp.write_text("new png")
        atomic_write_text(other, "not a member")  # replaced at once
        assert not a.exists() and b.read_text() == "old png"
        assert other.read_text() == "not a member" and group.written == [a, b]
        with pytest.raises(ValueError, match="not an output of this group"):
            with group.target(outdir / "c.txt"):
                pass  # pragma: no cover
    xr.testing.assert_identical(read_netcdf(a), ds)
    assert b.read_text() == "new png"
    assert _files(outdir) == ["a.nc", "a.png", "other.txt"]


def test_group_error_replaces_nothing(outdir):
    a, b = outdir / "a.txt", outdir / "b.txt"
    a.write_text("old a")
    with pytest.raises(RuntimeError, match="boom"):
        with output_group([a, b]) as group:
            group.write_text(a, "new a")
            group.write_text(b, "new b")
            raise RuntimeError("boom")
    assert a.read_text() == "old a" and not b.exists() and _files(outdir) == ["a.txt"]


# --------------------------------------------------------------------------------- validation
def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.startswith("-o: ")
    return text


def test_check_writable(outdir, tmp_path):
    ok = outdir / "x.nc"
    assert check_writable(ok) == ok and _files(outdir) == []  # the probe is removed
    with pytest.raises(InvalidConfig, match="is a directory; give a file inside it") as e:
        check_writable(outdir)
    _one_line(e)
    with pytest.raises(InvalidConfig, match=r"does not exist; create it \(mkdir -p") as e:
        check_writable(tmp_path / "missing" / "x.nc")
    _one_line(e)
    assert check_writable(tmp_path / "made" / "x.nc", create_parent=True).parent.is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidConfig, match="is not a directory"):
        check_writable(tmp_path / "file" / "x.nc")
    with pytest.raises(InvalidConfig, match="'/dev/null' is a character device, not a regular"):
        check_writable("/dev/null")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ConfigError, match="is a named pipe"):
        check_writable(tmp_path / "fifo", key="--output-file")
    # read-only / pseudo file systems (root ignores permission bits: the probe catches these)
    for special in ("/sys/x.nc", "/proc/x.nc"):
        if Path(special).parent.is_dir():
            with pytest.raises(InvalidConfig, match="cannot create files in directory") as e:
                check_writable(special)
            assert special.rsplit("/", 1)[0] in _one_line(e)
