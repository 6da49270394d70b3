"""Progress lines (nuinfer.progress): self-overwriting on a terminal, plain lines with real elapsed
times in a log, numbers to a callable; the sampler and the scans use it."""

from __future__ import annotations

import pytest

from nuinfer import progress as prog
from nuinfer.exceptions import InvalidConfig


def test_log_lines_are_plain_spaced_and_end_with_the_total(capsys, monkeypatch):
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr(prog.time, "perf_counter", lambda: next(clock))  # one second per update
    bar = prog.Progress(10, "[nuinfer] job", unit=" items", tty=False)
    for _ in range(10):
        bar.update(info=", ok")
    bar.close()
    lines = capsys.readouterr().err.splitlines(keepends=True)
    assert all(ln.endswith("\n") and "\r" not in ln for ln in lines)
    # updates at t = 1..10 s: a line at most every LOG_EVERY_S (2 s) from the start, and the last
    assert [ln.split(" done ")[1].split(",")[0] for ln in lines] == ["2/10 items", "4/10 items", "6/10 items",
                                                                      "8/10 items", "10/10 items"]
    assert lines[-1] == "[nuinfer] job: done 10/10 items, elapsed 10.0 s (100.0%), ok\n"
    ticks = iter([0.0] + [0.01 * k for k in range(1, 51)])  # a loop faster than LOG_EVERY_S: the last line only
    monkeypatch.setattr(prog.time, "perf_counter", lambda: next(ticks))
    fast = prog.Progress(50, "fast", tty=False, rate=True)
    for _ in range(50):
        fast.update()
    assert capsys.readouterr().err == "fast: done 50/50, elapsed 0.5 s (100.0%), 100/s\n"


def test_terminal_line_overwrites_itself_and_is_closed(capsys):
    bar = prog.Progress(3, "scan", unit=" m_X", tty=True)
    for _ in range(3):
        bar.update()
    bar.close()
    err = capsys.readouterr().err
    assert err.startswith("\rscan: done 1/3 m_X") and err.endswith("\n") and err.count("\n") == 1
    assert "done 3/3 m_X" in err  # the last update is always shown


def test_callback_silence_and_bad_values(capsys):
    seen = []
    bar = prog.Progress(2, "x", enabled=lambda d, n, s: seen.append((d, n, s >= 0)))
    bar.update()
    bar.update()
    assert seen == [(1, 2, True), (2, 2, True)]
    quiet = prog.Progress(2, "x", enabled=False)
    quiet.update(2)
    assert quiet.done == 2 and capsys.readouterr().err == ""
    with pytest.raises(InvalidConfig, match="progress"):
        prog.Progress(2, "x", enabled="yes")


def test_sampler_progress_in_a_log_has_no_carriage_returns(capsys, tmp_path):
    from nuinfer.tasks import bayes
    small = {"process": "eves", "exposure_tonne_year": 1.0, "models": ["V"],
             "binning": {"lo": 1.0, "hi": 100.0, "n": 8}, "sources": ["pp", "7Be_861"],
             "posterior": {"walkers": 8, "steps": 30, "seed": 3, "mass_grid_n": 13,
                           "log10_m_X": {"lo": -1.0, "hi": 1.0}, "log10_g_X": {"lo": -7.0, "hi": -4.0}}}
    bayes.run_sample(small, tmp_path / "post.nc", progress=True, log_likelihood=False)
    err = capsys.readouterr().err
    assert "\r" not in err
    last = [ln for ln in err.splitlines() if "sample: done" in ln][-1]
    assert "done 30/30 steps" in last and "steps/s, acceptance" in last and "elapsed" in last
