"""The ``nuinfer floor`` subcommand: WIMP discovery limits, the neutrino floor and fog (issue 9).

Usage::

    nuinfer floor models/floor_xenon.toml -o outputs/floor_xenon.nc [--quick] [--no-plot] [-q]

Writes the NetCDF results (atomically) and figures next to them (``<stem>_spectra.png``,
``<stem>_fog.png``, ``<stem>_sin2w.png``, ``<stem>_mediators.png``) and prints a JSON summary.
Bad input raises :class:`~nuinfer.exceptions.ConfigError`, which ``nuinfer.cli.main`` turns into exit
status 2 with a one-line message naming the key path.
"""

from __future__ import annotations

import json
from pathlib import Path

from .exceptions import ConfigError


def cmd_floor(args) -> int:
    """Run :func:`nuinfer.floor.run_floor` for the parsed arguments and print its summary."""
    from .floor import run_floor
    out = Path(args.output_file or "outputs/floor.nc")
    if out.suffix != ".nc":
        raise ConfigError(f"output file {str(out)!r} must end in .nc", key="--output-file")
    res = run_floor(args.analysis, out, quick=args.quick, quiet=args.quiet, plot=not args.no_plot)
    print(json.dumps(res, indent=2, sort_keys=True, default=str))
    return 0


def register(subparsers) -> None:
    """Add the ``floor`` subcommand to the ``nuinfer`` argument parser's subparsers."""
    sp = subparsers.add_parser("floor", help="WIMP discovery limits, neutrino floor and fog (NetCDF + plots)")
    sp.add_argument("analysis", help="floor configuration (e.g. models/floor_xenon.toml)")
    sp.add_argument("-o", "--output-file", help="NetCDF file to write (default outputs/floor.nc)")
    sp.add_argument("--quick", action="store_true", help="coarse grids from the [quick] table (seconds)")
    sp.add_argument("--no-plot", action="store_true", help="skip the figures")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    sp.set_defaults(func=cmd_floor)
