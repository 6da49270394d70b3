"""The ``nuinfer`` command.

Subcommands: ``inspect``, ``spectrum``, ``contour``, ``sample``, ``plot``, ``compare``, ``reproduce``,
``floor`` (neutrino floor, :mod:`nuinfer.cli_floor`); ``fit``, ``fit-sample``, ``coherent``,
``dresden``, ``terrestrial-figures`` (reactor and pi-DAR analyses, :mod:`nuinfer.cli_terrestrial`).
Bad input (configuration, arguments, user files) exits with status 2 and a one-line message naming
the key and the fix; runtime failures exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .exceptions import ConfigError, NuinferError


def _out_path(args, default: str) -> Path:
    p = Path(args.output_file or default)
    if p.suffix != ".nc":
        raise ConfigError(f"output file {str(p)!r} must end in .nc", key="--output-file")
    return p


def _log(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def cmd_inspect(args) -> int:
    from . import config
    ana = config.load(args.analysis)
    fm = ana.forward_model()
    sm = fm.sm_spectrum()
    summary = {
        "name": ana.name,
        "process": ana.process,
        "models": ana.models,
        "target": fm.target.name,
        "exposure_tonne_year": fm.exposure_tonne_year,
        "bins": [float(fm.binning.edges[0]), float(fm.binning.edges[-1]), fm.binning.nbins],
        "sm_counts_per_source": {str(s): float(v) for s, v in sm["counts"].sum("bin").to_series().items()},
        "sm_total": float(sm["total"].sum()),
    }
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def cmd_spectrum(args) -> int:
    from . import workflows
    out = _out_path(args, "outputs/spectrum.nc")
    ds, png = workflows.run_spectrum(args.analysis, out, plot=not args.no_plot, quiet=args.quiet)
    totals = {m: float(ds["total_model"].sel(model=m).sum()) for m in ds["model"].values}
    print(json.dumps({"output": str(out), "plot": str(png) if png else None,
                      "sm_total": float(ds["total"].sum()), "model_totals": totals}, indent=2, sort_keys=True))
    return 0


def cmd_contour(args) -> int:
    from . import workflows
    out = _out_path(args, "outputs/scan.nc")
    overrides = {}
    if args.statistic:
        overrides["statistics.statistic"] = args.statistic
    if args.profiler:
        overrides["statistics.profiler"] = args.profiler
    if args.ndof:
        overrides["statistics.ndof"] = args.ndof
    if args.grid:
        overrides["scan.m_X_MeV.n"] = args.grid
        overrides["scan.g_X.n"] = args.grid
    res = workflows.run_contour(args.analysis, out, overrides=overrides, plot=not args.no_plot,
                                quiet=args.quiet)
    print(json.dumps(res, indent=2, sort_keys=True, default=str))
    return 0


def cmd_sample(args) -> int:
    from . import bayes
    out = _out_path(args, "outputs/posterior.nc")
    res = bayes.run_sample(args.analysis, out, walkers=args.walkers, steps=args.steps, seed=args.seed,
                               resume=args.resume, progress=not args.quiet, model=args.model)
    print(json.dumps(res, indent=2, sort_keys=True, default=str))
    return 0


def cmd_plot(args) -> int:
    from . import bayes
    res = bayes.run_plot(args.posterior, outdir=args.outdir)
    print(json.dumps(res, indent=2, sort_keys=True, default=str))
    return 0


def cmd_compare(args) -> int:
    from . import workflows
    out = _out_path(args, "outputs/compare.nc")
    res = workflows.run_compare(args.analysis, args.vary, out, model=args.model, quiet=args.quiet,
                                grid=args.grid)
    print(json.dumps(res, indent=2, sort_keys=True, default=str))
    return 0


def cmd_reproduce(args) -> int:
    from . import workflows
    t0 = time.perf_counter()
    res = workflows.reproduce(args.outdir, quick=args.quick, quiet=args.quiet, only=args.only)
    res["wall_time_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res, indent=2, sort_keys=True, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    p = argparse.ArgumentParser(prog="nuinfer", description="CEvNS/EvES light-mediator inference at xenon detectors")
    p.add_argument("--version", action="version", version=f"nuinfer {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, with_output=True):
        if with_output:
            sp.add_argument("-o", "--output-file", help="NetCDF file to write")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    sp = sub.add_parser("inspect", help="validate an analysis file and print its SM event counts")
    sp.add_argument("analysis")
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("spectrum", help="SM and new-physics binned spectra (NetCDF + plot)")
    sp.add_argument("analysis")
    common(sp)
    sp.add_argument("--no-plot", action="store_true")
    sp.set_defaults(func=cmd_spectrum)

    sp = sub.add_parser("contour", help="profile scan over (m_X, g_X) and 90%% CL contours")
    sp.add_argument("analysis")
    common(sp)
    sp.add_argument("--statistic", choices=["eq26", "poisson"])
    sp.add_argument("--profiler", choices=["analytic", "minuit"])
    sp.add_argument("--ndof", type=int, choices=[1, 2])
    sp.add_argument("--grid", type=int, help="points per axis (overrides the file)")
    sp.add_argument("--no-plot", action="store_true")
    sp.set_defaults(func=cmd_contour)

    sp = sub.add_parser("sample", help="emcee posterior over (log10 m_X, log10 g_X, a)")
    sp.add_argument("analysis")
    common(sp)
    sp.add_argument("--walkers", type=int)
    sp.add_argument("--steps", type=int, help="total number of steps (with --resume: total after resuming)")
    sp.add_argument("--seed", type=int)
    sp.add_argument("--model", help="which model of the file (default: the first)")
    sp.add_argument("--resume", action="store_true", help="continue an existing output file")
    sp.set_defaults(func=cmd_sample)

    sp = sub.add_parser("plot", help="corner plot and credible limits of a posterior file")
    sp.add_argument("posterior")
    sp.add_argument("--outdir", help="folder for the figures (default: next to the file)")
    sp.set_defaults(func=cmd_plot)

    sp = sub.add_parser("compare", help="limits under several systematic assumptions")
    sp.add_argument("analysis")
    common(sp)
    sp.add_argument("--vary", action="append", required=True, metavar="KEY=V1,V2",
                    help="dotted config key and values, e.g. statistics.sigma_sys=0,0.1,0.2")
    sp.add_argument("--model", help="which model of the file (default: the first)")
    sp.add_argument("--grid", type=int, help="points per axis (overrides the file)")
    sp.set_defaults(func=cmd_compare)

    sp = sub.add_parser("reproduce", help="the whole paper: Figs. 1-4, systematics, a posterior, report")
    sp.add_argument("--outdir", default="outputs")
    sp.add_argument("--quick", action="store_true", help="coarse grids (about a minute)")
    sp.add_argument("--only", action="append", help="run only these steps (fig1 fig2 fig3 fig4 systematics bayes)")
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.set_defaults(func=cmd_reproduce)

    from .cli_floor import register as register_floor
    from .cli_terrestrial import register as register_terrestrial
    register_floor(sub)
    register_terrestrial(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"nuinfer: error: {exc}", file=sys.stderr)
        return 2
    except NuinferError as exc:
        print(f"nuinfer: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover
        print("nuinfer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
