#!/usr/bin/env python
"""Tabulate the default 8B neutrino spectrum for fast interpolation at run time.

    python scripts/make_b8_table.py [-o nuinfer/data/b8_spectrum_table.txt]

Evaluates :func:`nuinfer.physics.sources.b8_spectrum_exact` (allowed beta+ shape folded over the
two-level R-matrix 8Be final-state density with the exact l = 2 Coulomb penetrability, default
:data:`~nuinfer.physics.sources.B8_LEVEL_PARAMS` and channel radius) and its slope (central
differences, step 1e-6 E; zero at E = 0 where the spectrum starts as E^2) on 1641 energies
uniform in 0-16.4 MeV and 801 uniform in 16.4 MeV-endpoint (the fall-off near the endpoint is
steep).  :func:`nuinfer.physics.sources.b8_spectrum` reads the table back when the constants in
its second header line match the package's, and interpolates it with cubic Hermite polynomials;
tests/test_b8_shape.py checks the interpolant against the exact function.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from nuinfer.physics import sources as src


def table() -> np.ndarray:
    E0 = src.B8_E_NU_MAX
    E = np.unique(np.r_[np.linspace(0.0, 16.4, 1641), np.linspace(16.4, E0, 801)])
    f = src.b8_spectrum_exact(E)
    h = 1e-6 * np.maximum(E, 1e-3)
    lo, hi = np.clip(E - h, 0.0, E0), np.clip(E + h, 0.0, E0)
    d = (src.b8_spectrum_exact(hi) - src.b8_spectrum_exact(lo)) / (hi - lo)
    d[0] = 0.0
    return np.column_stack([E, f, d])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(src.__file__).resolve().parent.parent / "data" / src.B8_TABLE_FILE
    ap.add_argument("-o", "--output", default=str(default), help="target text file")
    args = ap.parse_args(argv)
    t = table()
    header = "\n".join([
        "8B neutrino spectrum (arbitrary normalisation) from nuinfer.physics.sources.b8_spectrum_exact",
        f"params {src.B8_LEVEL_PARAMS!r} channel_radius_fm {src.BE8_CHANNEL_RADIUS_FM!r} E_max {src.B8_E_NU_MAX!r}",
        "columns: E_nu [MeV], dN/dE [arb.], d(dN/dE)/dE [arb./MeV]; written by scripts/make_b8_table.py",
    ])
    np.savetxt(args.output, t, fmt="%.17g", header=header)
    print(f"wrote {args.output}: {len(t)} energies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
