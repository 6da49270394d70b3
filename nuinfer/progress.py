"""Progress of long loops on stderr, readable on a terminal and in a log file.

On a terminal the line overwrites itself (at most two updates a second).  Anywhere else -- a log
file, a pipe, a batch system -- each update is a plain line of its own, at most one every
:data:`LOG_EVERY_S` seconds plus the last one, with the real elapsed time, so a log never holds
carriage returns.  A callable ``progress(done, total, elapsed_s)`` receives the numbers instead
of any text (for notebooks and GUIs).
"""

from __future__ import annotations

import logging
import sys
import time

from nuinfer.exceptions import InvalidConfig

__all__ = ["LOG_EVERY_S", "Progress", "stderr_is_tty"]

#: seconds between two plain progress lines when stderr is not a terminal
LOG_EVERY_S = 2.0
#: seconds between two updates of the self-overwriting line on a terminal
TTY_EVERY_S = 0.5

_log = logging.getLogger("nuinfer.progress")


def stderr_is_tty() -> bool:
    """Whether stderr is a terminal (False when it is a file, a pipe or closed)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Progress of ``total`` units of work (see the module docstring).

    Parameters
    ----------
    total : int
        Units in all.
    label : str
        Start of every line, e.g. ``"[nuinfer] sample"``.
    unit : str
        Shown after the counts, e.g. ``" steps"``.
    enabled : bool or callable
        ``False``: silent; ``True``: lines on stderr; a callable ``f(done, total, elapsed_s)``:
        called at every update instead.
    start : int
        Units already done before this run (a resumed chain).
    rate : bool
        Also show the units per second of this run.
    tty : bool, optional
        Terminal or not (default: :func:`stderr_is_tty`).
    """

    def __init__(self, total: int, label: str, *, unit: str = "", enabled=True, start: int = 0,
                 rate: bool = False, tty: bool | None = None):
        if enabled is not None and not isinstance(enabled, bool) and not callable(enabled):
            raise InvalidConfig(
                f"must be None, True/False or a callable(done, total, elapsed_s); got {enabled!r}",
                key="progress")
        self.total, self.label, self.unit = int(total), label, unit
        self.callback = enabled if callable(enabled) else None
        self.enabled = bool(enabled)
        self.tty = stderr_is_tty() if tty is None else bool(tty)
        self.done = self.start = int(start)
        self.show_rate = bool(rate)
        self.t0 = time.perf_counter()
        # a terminal shows the first update at once; a log's first line comes after LOG_EVERY_S
        # (a loop faster than that leaves one line, the last)
        self.last = self.t0 - TTY_EVERY_S if self.tty else self.t0
        self._open = False  # a self-overwriting line is on the terminal

    def update(self, k: int = 1, info: str = "") -> None:
        """``k`` more units done; ``info``: text appended to the line (e.g. an acceptance)."""
        self.done += k
        if not self.enabled:
            return
        now = time.perf_counter()
        elapsed = now - self.t0
        if self.callback is not None:
            self.callback(self.done, self.total, elapsed)
            return
        _log.debug("%s: done %d/%d%s, elapsed %.1f s", self.label, self.done, self.total, self.unit, elapsed)
        every = TTY_EVERY_S if self.tty else LOG_EVERY_S
        if now - self.last < every and self.done < self.total:
            return
        self.last = now
        pct = 100.0 * self.done / max(self.total, 1)
        speed = f", {(self.done - self.start) / max(elapsed, 1e-9):,.0f}{self.unit}/s" if self.show_rate else ""
        line = (f"{self.label}: done {self.done}/{self.total}{self.unit}, elapsed {elapsed:.1f} s "
                f"({pct:.1f}%){speed}{info}")
        if self.tty:
            sys.stderr.write(f"\r{line}   ")
            self._open = True
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        """End the self-overwriting line (terminal); nothing to do for plain lines."""
        if self._open:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._open = False
