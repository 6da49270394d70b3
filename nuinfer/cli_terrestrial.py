"""Subcommands for terrestrial data-driven fits: ``fit``, ``fit-sample``, ``coherent``, ``dresden``,
``terrestrial-figures``.

:func:`register` adds them to the ``nuinfer`` command (``nuinfer.cli``); :func:`main` runs them
stand-alone with the same exit codes (2 for bad input, 1 for runtime failures)::

    nuinfer fit models/coherent_csi2017.toml -o outputs/coherent.nc --data-dir DIR
    nuinfer fit-sample models/coherent_csi2017.toml -o outputs/coherent_posterior.nc --task sin2w
    nuinfer coherent -o outputs/coherent.nc --data-dir DIR
    nuinfer dresden -o outputs/dresden.nc [--quenching-table fe_filter.txt]
    nuinfer terrestrial-figures --outdir outputs --data-dir DIR

Each prints a sorted-key JSON summary on stdout; NetCDF (and PNG figures next to it) are written
atomically.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .exceptions import ConfigError


def _out(path: str | None, default: str) -> Path:
    p = Path(path or default)
    if p.suffix != ".nc":
        raise ConfigError(f"output file {str(p)!r} must end in .nc", key="--output-file")
    return p


def _print(res) -> int:
    print(json.dumps(res, indent=2, sort_keys=True, default=float))
    return 0


def cmd_fit(args) -> int:
    from . import terrestrial_workflows as tw
    res = tw.run_fit(args.analysis, _out(args.output_file, "outputs/fit.nc"), data_dir=args.data_dir,
                     tasks=args.task or None, plot=not args.no_plot, quiet=args.quiet)
    return _print(res)


def cmd_fit_sample(args) -> int:
    from . import terrestrial_workflows as tw
    res = tw.run_posterior(args.analysis, _out(args.output_file, "outputs/fit_posterior.nc"), task=args.task,
                           walkers=args.walkers, steps=args.steps, seed=args.seed, data_dir=args.data_dir,
                           quiet=args.quiet)
    return _print(res)


def cmd_coherent(args) -> int:
    from . import terrestrial_workflows as tw
    res = tw.run_coherent(_out(args.output_file, "outputs/coherent_csi2017.nc"), preset=args.preset,
                          data_dir=args.data_dir, tasks=args.task or None, plot=not args.no_plot, quiet=args.quiet)
    return _print(res)


def cmd_dresden(args) -> int:
    from . import terrestrial_workflows as tw
    res = tw.run_dresden(_out(args.output_file, "outputs/dresden2.nc"), preset=args.preset, data_dir=args.data_dir,
                         tasks=args.task or None, quenching_table=args.quenching_table, plot=not args.no_plot,
                         quiet=args.quiet)
    return _print(res)


def cmd_review_figures(args) -> int:
    from . import terrestrial_workflows as tw
    res = tw.review_figures(args.outdir, coherent_data_dir=args.data_dir, quenching_table=args.quenching_table,
                            quick=args.quick, quiet=args.quiet)
    return _print(res)


def register(subparsers) -> None:
    """Add the terrestrial subcommands to an argparse ``subparsers`` object."""
    def common(sp):
        sp.add_argument("-o", "--output-file", help="NetCDF file to write")
        sp.add_argument("--data-dir", help="folder of the user data files (overrides [data].dir)")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    sp = subparsers.add_parser("fit", help="data-driven fit of a terrestrial analysis (reactor / pi-DAR)")
    sp.add_argument("analysis", help="terrestrial analysis TOML (see models/coherent_csi2017.toml)")
    common(sp)
    sp.add_argument("--task", action="append", help="run only this task (sin2w, V, S, ..., dipole); repeatable")
    sp.add_argument("--no-plot", action="store_true")
    sp.set_defaults(func=cmd_fit)

    sp = subparsers.add_parser("fit-sample", help="emcee posterior of a terrestrial analysis task")
    sp.add_argument("analysis")
    common(sp)
    sp.add_argument("--task", help="sin2w, a mediator model, dipole or ngi (default: [posterior].task)")
    sp.add_argument("--walkers", type=int)
    sp.add_argument("--steps", type=int)
    sp.add_argument("--seed", type=int)
    sp.set_defaults(func=cmd_fit_sample)

    sp = subparsers.add_parser("coherent", help="COHERENT CsI 2017 worked analysis (preset coherent_csi2017)")
    common(sp)
    sp.add_argument("--preset", default="coherent_csi2017")
    sp.add_argument("--task", action="append")
    sp.add_argument("--no-plot", action="store_true")
    sp.set_defaults(func=cmd_coherent)

    sp = subparsers.add_parser("dresden", help="Dresden-II-like reactor sensitivity per quenching choice")
    common(sp)
    sp.add_argument("--preset", default="dresden2_asimov")
    sp.add_argument("--task", action="append")
    sp.add_argument("--quenching-table", help="user quenching curve (E_nr keV, Q_f), e.g. the iron-filter one")
    sp.add_argument("--no-plot", action="store_true")
    sp.set_defaults(func=cmd_dresden)

    sp = subparsers.add_parser("terrestrial-figures",
                               help="COHERENT + Dresden-II-like analyses and the review's Figs. 1-3")
    sp.add_argument("--outdir", default="outputs")
    sp.add_argument("--data-dir", help="folder of the COHERENT user data files")
    sp.add_argument("--quenching-table", help="user germanium quenching curve for the Dresden analysis")
    sp.add_argument("--quick", action="store_true", help="coarse grids")
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.set_defaults(func=cmd_review_figures)


def main(argv=None) -> int:
    """Same as ``nuinfer`` (these subcommands are registered there); kept for ``python -m``."""
    from .cli import main as nuinfer_main
    return nuinfer_main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
