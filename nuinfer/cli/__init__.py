"""The ``nuinfer`` command: one entry point, one error path.

Every subcommand is a thin wrapper over a library task (:mod:`nuinfer.cli.commands`).  Exit status:
0 on success; 2 for bad input (configuration, arguments, user files, output paths), with a single
line on stderr naming the key or file and the fix; 1 for a runtime failure.  BLAS is pinned to one
thread for the whole command (faster under load and the same bits whatever the machine's core
count; see docs/reliability.md).
"""

from __future__ import annotations

import argparse
import os
import sys

from nuinfer.exceptions import ConfigError, NuinferError

__all__ = ["build_parser", "main", "run"]

_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def _pin_blas():
    """One BLAS thread: environment before numpy loads, threadpoolctl if it already has."""
    for k in _BLAS_ENV:
        os.environ.setdefault(k, "1")
    if "numpy" in sys.modules:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=1, user_api="blas")
    return None


def _common(sp, *, output=True, data_dir=False, plot=False):
    if output:
        sp.add_argument("-o", "--output-file", metavar="FILE.nc", help="NetCDF file to write (figures go next to it)")
    if data_dir:
        sp.add_argument("--data-dir", metavar="DIR",
                        help="folder of user data files for terrestrial analyses (overrides [data].dir)")
    if plot:
        sp.add_argument("--no-plot", action="store_true", help="write the NetCDF only, no figures")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")


def build_parser() -> argparse.ArgumentParser:
    from nuinfer import __version__
    from nuinfer.cli import commands as c

    p = argparse.ArgumentParser(prog="nuinfer", description="CEvNS/EvES light-mediator inference: spectra, "
                                "profile-likelihood limits, posteriors, neutrino floor and data fits")
    p.add_argument("--version", action="version", version=f"nuinfer {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ana_help = "analysis file (TOML, see models/ and docs/analysis-files.md)"

    sp = sub.add_parser("inspect", help="validate an analysis file; print its set-up, SM counts and supported tasks")
    sp.add_argument("analysis", help=ana_help)
    sp.add_argument("--data-dir", metavar="DIR", help="folder of user data files (terrestrial analyses)")
    sp.add_argument("-q", "--quiet", action="store_true",
                    help="no progress output on stderr (inspect prints none; accepted like every command)")
    sp.set_defaults(func=c.cmd_inspect)

    sp = sub.add_parser("spectrum", help="SM and new-physics binned spectra (NetCDF + plot)")
    sp.add_argument("analysis", help=ana_help)
    _common(sp, data_dir=True, plot=True)
    sp.set_defaults(func=c.cmd_spectrum)

    sp = sub.add_parser("contour", help="profile scan over (m_X, g_X): 90%% CL regions and g90 per mass",
                        description="Profile scan over (m_X, g_X): 90% CL regions and g90 per mass.  Paper-style "
                                    "(xenon) files take every option below but --data-dir; real-data (xenonnt) files --model, "
                                    "--grid, --ndof and --statistic (poisson: the binned ER likelihood); terrestrial "
                                    "files --model, --grid, --ndof, --statistic and --data-dir.  The toy options "
                                    "(--toys ... --coverage) need --calibrate toys.  An option a file does not use "
                                    "is refused (exit 2), never ignored.")
    sp.add_argument("analysis", help=ana_help)
    _common(sp, data_dir=True, plot=True)
    sp.add_argument("--model", help="only this interaction model of the file (S, P, V, A, T, B-L, Lmu-Ltau)")
    sp.add_argument("--statistic", choices=["eq26", "poisson"], help="override [statistics].statistic")
    sp.add_argument("--profiler", choices=["analytic", "minuit"], help="closed form/Newton or one MIGRAD per point")
    sp.add_argument("--ndof", type=int, choices=[1, 2], help="2: joint (m, g) region; 1: raster per mass")
    sp.add_argument("--grid", type=int, metavar="N", help="points per axis of the (m_X, g_X) grid (overrides the file)")
    sp.add_argument("--calibrate", choices=["asymptotic", "toys"], default="asymptotic",
                    help="critical values from chi2.ppf (default) or from toys (Neyman; xenon analyses)")
    sp.add_argument("--toys", type=int, default=1000, metavar="N", help="toys per tested point with --calibrate toys")
    sp.add_argument("--mode", choices=["raster", "joint"], default="raster",
                    help="toy calibration of the per-mass (raster, 1 dof) or joint (2 dof) test")
    sp.add_argument("--nuisances", choices=["sampled", "fixed"], default="sampled",
                    help="toy nuisances drawn from their constraints (sampled) or at their best fit (fixed)")
    sp.add_argument("--seed", type=int, help="seed of the toys (default 1)")
    sp.add_argument("--scheduler", metavar="ADDRESS",
                    help="run the toys on Dask: 'local', 'local-threads' or a scheduler address tcp://host:port "
                         "(overrides [statistics].scheduler; needs pip install \"nuinfer[dask]\")")
    sp.add_argument("--workers", type=int, metavar="N", help="workers of a local Dask cluster (default 2)")
    sp.add_argument("--coverage", action="store_true", help="also write the coverage map (fraction of toys excluding the truth)")
    sp.set_defaults(func=c.cmd_contour)

    sp = sub.add_parser("profile", help="one-parameter profile likelihood (e.g. sin^2 theta_W): best fit and intervals")
    sp.add_argument("analysis", help=ana_help)
    _common(sp, data_dir=True, plot=True)
    sp.set_defaults(func=c.cmd_profile)

    sp = sub.add_parser("sample", help="emcee posterior (ArviZ-layout NetCDF)")
    sp.add_argument("analysis", help=ana_help)
    _common(sp, data_dir=True)
    sp.add_argument("--walkers", type=int, help="number of walkers (overrides [posterior].walkers)")
    sp.add_argument("--steps", type=int, help="total number of steps (with --resume: total after resuming)")
    sp.add_argument("--seed", type=int, help="random seed (overrides [posterior].seed)")
    sp.add_argument("--model", help="which model (xenon) or task (terrestrial) of the file; default: the first")
    sp.add_argument("--resume", action="store_true", help="continue an existing output file (xenon)")
    sp.add_argument("--data", metavar="FILE", help="observed counts per bin (overrides [data].observed; xenon)")
    sp.add_argument("--prior-check", nargs="?", type=float, const=0.5, metavar="DEX",
                    help="prior sensitivity: shift each prior bound by DEX decades (default 0.5) and report how "
                         "much every credible limit moves (xenon)")
    sp.set_defaults(func=c.cmd_sample)

    sp = sub.add_parser("plot", help="corner plot and credible limits of a posterior file")
    sp.add_argument("posterior", help="posterior NetCDF written by `nuinfer sample`")
    sp.add_argument("--outdir", help="folder for the figures (default: next to the file)")
    sp.add_argument("-q", "--quiet", action="store_true",
                    help="no progress output on stderr (plot prints none; accepted like every command)")
    sp.set_defaults(func=c.cmd_plot)

    sp = sub.add_parser("compare", help="limits under several systematic assumptions, stacked along `scenario`")
    sp.add_argument("analysis", help=ana_help)
    _common(sp)
    sp.add_argument("--vary", action="append", required=True, metavar="KEY=V1,V2",
                    help="dotted config key and values, e.g. statistics.sigma_sys=0,0.1,0.2 (repeatable)")
    sp.add_argument("--model", help="which model of the file (default: the first)")
    sp.add_argument("--grid", type=int, metavar="N", help="points per axis (overrides the file)")
    sp.add_argument("--scheduler", metavar="ADDRESS",
                    help="run one scenario per task on Dask: 'local', 'local-threads' or tcp://host:port "
                         "(overrides [statistics] scheduler; needs pip install \"nuinfer[dask]\")")
    sp.set_defaults(func=c.cmd_compare)

    sp = sub.add_parser("floor", help="WIMP discovery limits, neutrino floor and fog (NetCDF + plots)")
    sp.add_argument("analysis", help="floor analysis file (e.g. models/floor_xenon.toml)")
    _common(sp, plot=True)
    sp.add_argument("--quick", action="store_true", help="coarse grids from the file's [quick] table")
    sp.add_argument("--scheduler", metavar="ADDRESS",
                    help="run the scenarios on Dask: 'local', 'local-threads' or tcp://host:port (overrides "
                         "[floor] scheduler; needs pip install \"nuinfer[dask]\")")
    sp.set_defaults(func=c.cmd_floor)

    sp = sub.add_parser("fit", help="every task of a terrestrial data fit (reactor / pi-DAR), all variants")
    sp.add_argument("analysis", help=ana_help)
    _common(sp, data_dir=True, plot=True)
    sp.add_argument("--task", action="append", help="run only this task (sin2w, V, S, ..., dipole); repeatable")
    sp.set_defaults(func=c.cmd_fit)

    sp = sub.add_parser("coherent", help="COHERENT CsI 2017 worked analysis (preset coherent_csi2017)")
    _common(sp, data_dir=True, plot=True)
    sp.add_argument("--preset", default="coherent_csi2017", help="preset name in models/")
    sp.add_argument("--task", action="append", help="run only this task; repeatable")
    sp.set_defaults(func=c.cmd_coherent)

    sp = sub.add_parser("dresden", help="Dresden-II-like reactor sensitivity per quenching choice")
    _common(sp, data_dir=True, plot=True)
    sp.add_argument("--preset", default="dresden2_asimov", help="preset name in models/")
    sp.add_argument("--task", action="append", help="run only this task; repeatable")
    sp.add_argument("--quenching-table", metavar="FILE", help="user quenching curve (E_nr keV, Q_f)")
    sp.set_defaults(func=c.cmd_dresden)

    sp = sub.add_parser("terrestrial-figures", help="COHERENT + Dresden-II-like analyses and the review's Figs. 1-3")
    sp.add_argument("--outdir", default="outputs", help="output folder")
    sp.add_argument("--data-dir", metavar="DIR", help="folder of the COHERENT user data files")
    sp.add_argument("--quenching-table", metavar="FILE", help="user germanium quenching curve")
    sp.add_argument("--quick", action="store_true", help="coarse grids")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")
    sp.set_defaults(func=c.cmd_review_figures)

    sp = sub.add_parser("reproduce", help="the whole paper: Figs. 1-4, systematics, a posterior, limits from "
                                          "current data, report")
    sp.add_argument("--outdir", default="outputs", help="output folder (default outputs/)")
    sp.add_argument("--quick", action="store_true",
                    help="a fast check: coarse grids, a short chain, the systematics of V only and real-data "
                         "scans of S and V only")
    sp.add_argument("--only", action="append", metavar="STEPS",
                    help="run only these steps, a comma list or repeated (fig1, fig2, fig3, fig4, systematics, "
                         "bayes, current); the report keeps the other sections of an earlier run")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")
    sp.set_defaults(func=c.cmd_reproduce)
    for sp in sub.choices.values():  # each command knows its parser's defaults (options given or not)
        sp.set_defaults(_parser=sp)
    return p


def _check_options(args) -> None:
    """Numbers given on the command line: sizes within their bounds, seeds numpy accepts."""
    from nuinfer.spec.limits import MAX, check_count, check_seed
    bounds = {"grid": (2, MAX["grid"]), "steps": (1, MAX["steps"]), "walkers": (1, MAX["walkers"])}
    for k, (lo, hi) in bounds.items():
        v = getattr(args, k, None)
        if v is not None:
            check_count(v, f"--{k}", lo, hi)
    if getattr(args, "seed", None) is not None:
        check_seed(args.seed, "--seed")


def _run(args) -> int:
    """The command, with SIGTERM/SIGHUP/SIGINT removing partial outputs (:func:`nuinfer.io.interruptible`)
    and warnings held back: printed (once each) after a success, dropped before a one-line error."""
    import warnings

    from nuinfer import io
    with io.interruptible(sigint=True), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for cat in (DeprecationWarning, PendingDeprecationWarning, ImportWarning):  # hidden by default
            warnings.filterwarnings("ignore", category=cat)
        status = args.func(args)
    seen = set()
    for w in caught:
        line = f"{w.category.__name__}: {w.message}"
        if line not in seen and not getattr(args, "quiet", False):
            seen.add(line)
            print(f"nuinfer: warning: {line}", file=sys.stderr)
    return status


class _NoStatsForEmceeKDE:
    """Import hook of the command line: ``emcee.moves.kde`` (emcee's optional KDE move, which nuinfer
    never uses) imports ``scipy.stats`` at ``import emcee``, 0.6 s of a command's start-up; here that
    one import is refused, which emcee handles (its KDE move then says it needs scipy.stats).  Every
    other import of scipy.stats goes through; the library (``import nuinfer``) installs no hook."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "scipy.stats" and "scipy.stats" not in sys.modules:
            f = sys._getframe(1)
            while f is not None:
                if f.f_globals.get("__name__") == "emcee.moves.kde":
                    raise ImportError("scipy.stats is not loaded for emcee's KDE move by the nuinfer command")
                f = f.f_back
        return None


def main(argv=None) -> int:
    """Run one ``nuinfer`` command; returns the exit status."""
    if not any(isinstance(h, _NoStatsForEmceeKDE) for h in sys.meta_path):
        sys.meta_path.insert(0, _NoStatsForEmceeKDE())
    limiter = _pin_blas()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        _check_options(args)
        return _run(args)
    except ConfigError as exc:
        print(f"nuinfer: error: {exc}", file=sys.stderr)
        return 2
    except NuinferError as exc:
        print(f"nuinfer: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover
        print("nuinfer: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("nuinfer: failed: out of memory; reduce the grid, binning or chain sizes of the analysis",
              file=sys.stderr)
        return 1
    except Exception as exc:  # no traceback for any input; NUINFER_DEBUG=1 shows it
        if os.environ.get("NUINFER_DEBUG"):
            raise
        msg = " ".join(str(exc).split()) or "(no message)"
        print(f"nuinfer: failed: internal error {type(exc).__name__}: {msg[:300]} (please report it; "
              "NUINFER_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    finally:
        if limiter is not None:
            limiter.restore_original_limits()


def run() -> None:
    """Console entry point: :func:`main`, then a fast exit.

    Every output is written and closed when :func:`main` returns, and the exit handlers run here;
    the interpreter's final teardown (freeing every object of numpy, scipy, xarray and pandas one by
    one, ~0.15 s) is skipped with ``os._exit``, as the operating system frees the memory anyway.
    ``NUINFER_SLOW_EXIT=1`` keeps the ordinary exit.
    """
    status = main()
    if os.environ.get("NUINFER_SLOW_EXIT"):
        sys.exit(status)
    import atexit
    try:
        atexit._run_exitfuncs()  # logging, multiprocessing and library handlers, as at a normal exit
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed or broken pipe: nothing more to say
                pass
        os._exit(status if isinstance(status, int) else 1)
