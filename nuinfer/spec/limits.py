"""Bounds shared by every validator: seeds, sizes, magnitudes, and a memory estimate.

Every number of an analysis file or a command-line option is bounded so that no input can
overflow (values near 1e308), exhaust memory (sizes with no upper bound) or reach numpy with an
invalid seed.  :func:`require_memory` compares a conservative estimate of the largest arrays a
command allocates with the memory available on this machine (``MemAvailable`` of
``/proc/meminfo``, else physical pages x page size) and refuses the run before any work, with
the estimate and the key to change.
"""

from __future__ import annotations

import math
import os

from nuinfer.exceptions import InvalidConfig, UnphysicalInput

__all__ = ["MAX", "SEED_MAX", "available_memory", "check_count", "check_number", "check_seed",
           "estimate_floor", "estimate_sample", "estimate_terrestrial", "estimate_xenon",
           "require_memory", "unique"]

#: numpy's seeds are 32-bit unsigned integers
SEED_MAX = 2 ** 32

#: upper bounds of sizes (the memory estimate refuses smaller sizes that still do not fit)
MAX = {
    "bins": 100_000,
    "grid": 100_000,
    "nodes": 1_000,
    "flux_grid": 1_000_000,
    "walkers": 100_000,
    "steps": 10_000_000,
    "qf_nodes": 200,
    "toys": 10_000_000,
    "mass_grid": 100_000,
}

NUM = (int, float)


def check_seed(v, key: str) -> int:
    """A seed numpy accepts: an integer in [0, 2**32), not a boolean (the one seed rule)."""
    import numbers

    import numpy as np
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise InvalidConfig(f"a seed is an integer in [0, 2**32), got {v!r}", key=key)
    v = int(v)
    if not 0 <= v < SEED_MAX:
        raise UnphysicalInput(f"a seed must be in [0, 2**32 - 1 = {SEED_MAX - 1}], got {v}; choose a smaller "
                              "non-negative integer", key=key)
    return v


def check_count(v, key: str, lo: int, hi: int) -> int:
    """An integer size in [lo, hi]."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidConfig(f"expected an integer in [{lo}, {hi}], got {v!r}", key=key)
    if not lo <= v <= hi:
        raise UnphysicalInput(f"must be between {lo} and {hi:,}, got {v:,}", key=key)
    return v


def check_number(v, key: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
                 allow_inf: bool = False, what: str = "") -> float:
    """A real number, finite (or +inf if ``allow_inf``), in [lo, hi] (``(lo, hi]`` if ``lo_open``)."""
    if isinstance(v, bool) or not isinstance(v, NUM):
        raise InvalidConfig(f"expected a number, got {v!r}", key=key)
    x = float(v)
    if math.isnan(x) or (math.isinf(x) and not (allow_inf and x > 0)):
        extra = " (inf frees it)" if allow_inf else ""
        raise UnphysicalInput(f"must be a finite number{extra}, got {v}", key=key)
    if math.isinf(x):
        return x
    rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]" if lo is not None and hi is not None else ""
    if lo is not None and (x <= lo if lo_open else x < lo):
        raise UnphysicalInput(f"must be {'>' if lo_open else '>='} {lo:g}{' ' + what if what else ''}"
                              f"{'; allowed ' + rng if rng else ''}, got {v}", key=key)
    if hi is not None and x > hi:
        extra = "; use inf to free it" if allow_inf else ""
        raise UnphysicalInput(f"must be <= {hi:g}{' ' + what if what else ''}{extra}, got {v}", key=key)
    return x


def unique(items, key: str, what: str = "entries") -> None:
    """Reject a list with repeated entries (naming the first repeat)."""
    seen = set()
    for i, s in enumerate(items):
        try:
            h = s if not isinstance(s, (list, dict)) else repr(s)
        except Exception:  # pragma: no cover
            h = repr(s)
        if h in seen:
            raise InvalidConfig(f"{s!r} is given twice; list each of the {what} once", key=f"{key}[{i}]")
        seen.add(h)


# ----------------------------------------------------------------------------- memory
def available_memory() -> int:
    """Bytes of memory available to a new computation (``MemAvailable``, else total physical)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 1 << 62


def _fmt(n: float) -> str:
    for unit, f in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20)):
        if n >= f:
            return f"{n / f:.1f} {unit}"
    return f"{n / 1024:.0f} KiB"


def require_memory(estimate: tuple[float, str, str] | None) -> None:
    """Refuse ``(bytes, what, key)`` if it does not fit in the available memory (80 % of it)."""
    if not estimate:
        return
    nbytes, what, key = estimate
    avail = available_memory()
    if nbytes > 0.8 * avail:
        raise UnphysicalInput(f"{what} needs about {_fmt(nbytes)} of memory, more than this machine has "
                              f"available ({_fmt(avail)}); reduce it", key=key)


def _largest(terms):
    """The total of the terms, attributed to the key of the largest one."""
    terms = [t for t in terms if t[0] > 0]
    total = sum(t[0] for t in terms)
    big = max(terms, key=lambda t: t[0])
    return total, big[1], big[2]


# Measured (peak RSS, 2-core VM): the forward model holds about two (bins x nodes, bins) float64
# response matrices (4000 bins x 6 nodes: 1.5 GB), three more with a resolution; the scan and
# templates are a few float64 per (mass, coupling) and (mass, bin).  Estimates are doubled.
def _forward_bytes(nbins: int, nodes: int, flux_grid: int, resolution: bool) -> float:
    return 2 * 8 * nbins * nbins * nodes * (3 if resolution else 2) + 2 * 8 * 16 * nbins * nodes + 2 * 8 * 50 * flux_grid


def estimate_xenon(cfg: dict, command: str, *, keys=None) -> tuple[float, str, str]:
    """``(bytes, what, key)`` of a xenon command (keys in the internal form; translate with spec)."""
    b, num, sc = cfg["binning"], cfg["numerics"], cfg["scan"]
    nb, nn, nf = int(b["n"]), int(num["n_nodes"]), int(num["n_flux_grid"])
    res = cfg["detector"]["resolution"] != "none"
    terms = [(_forward_bytes(nb, nn, nf, res), f"the forward model ({nb} bins x {nn} nodes)", "binning.n")]
    nm, ng = int(sc["m_X_MeV"]["n"]), int(sc["g_X"]["n"])
    if command in ("contour", "compare"):
        terms.append((2 * 8 * 4 * nm * nb, f"the templates ({nm} masses x {nb} bins)", "scan.m_X_MeV.n"))
        terms.append((2 * 8 * 6 * nm * ng, f"the scan ({nm} x {ng} points)", "scan.g_X.n"))
    if command == "sample":
        p = cfg["posterior"]
        terms.append((2 * 8 * 4 * int(p["mass_grid_n"]) * nb, "the posterior templates", "posterior.mass_grid_n"))
        terms.append(estimate_sample(int(p["walkers"]), int(p["steps"]), 3, "posterior.steps"))
    return _largest(terms)


def estimate_sample(walkers: int, steps: int, ndim: int, key: str) -> tuple[float, str, str]:
    # emcee chain + log-probabilities, our copies (thinning, burn-in views, NetCDF encoding)
    return 4 * 8 * walkers * steps * (ndim + 2), f"the chain ({walkers} walkers x {steps} steps)", key


def estimate_terrestrial(cfg: dict, command: str) -> tuple[float, str, str]:
    b, d, sc = cfg["binning"], cfg["detector"], cfg["scan"]
    nb = len(b["edges"]) - 1 if "edges" in b else int(b["n"])
    nn = int(d["n_nodes"])
    nq = int(cfg["nuisances"]["qf_nodes"])
    res = d["resolution"] != "none"
    terms = [(_forward_bytes(nb, nn, 400, res) * (nq + 1) / 2, f"the forward models ({nb} bins, {nq} quenching nodes)",
              "binning.n" if nb > 4 * nq else "nuisances.qf_nodes")]
    nm, ng = int(sc["m_X_MeV"]["n"]), int(sc["g_X"]["n"])
    terms.append((2 * 8 * 4 * nm * ng * max(nb, 1), f"the (m_X, g_X) scans ({nm} x {ng} points x {nb} bins)",
                  "scan.g_X.n"))
    if command == "sample":
        p = cfg["posterior"]
        terms.append(estimate_sample(int(p["walkers"]), int(p["steps"]), 6, "posterior.steps"))
    return _largest(terms)


def estimate_floor(cfg: dict) -> tuple[float, str, str]:
    nb, num = int(cfg["binning"]["n"]), cfg["numerics"]
    nm, ns = int(cfg["wimp"]["m_GeV"]["n"]), int(cfg["wimp"]["sigma_cm2"]["n"])
    ne = int(cfg["exposure"]["tonne_year"]["n"])
    nsc = max(1, len(cfg["scenarios"]))
    terms = [(_forward_bytes(nb, int(num["n_nodes"]), int(num["n_flux_grid"]), False),
              f"the forward model ({nb} bins)", "binning.n"),
             (2 * 8 * 8 * nm * nb, f"the WIMP spectra ({nm} masses x {nb} bins)", "wimp.m_GeV.n"),
             (2 * 8 * 4 * nm * ns * ne * nsc, f"the fog maps ({nm} masses x {ns} cross sections x {ne} exposures)",
              "wimp.sigma_cm2.n"),
             (2 * 8 * 4 * int(cfg["toys"]["n"]) * nb, f"the toys ({cfg['toys']['n']} x {nb} bins)", "toys.n")]
    return _largest(terms)
