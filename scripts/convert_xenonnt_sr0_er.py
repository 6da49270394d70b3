#!/usr/bin/env python
"""Convert the XENONnT SR0 electronic-recoil data release into one small NetCDF file.

    python scripts/convert_xenonnt_sr0_er.py RAW_DIR -o nuinfer/data/xenonnt_sr0_er.nc

RAW_DIR holds the collaboration's files of PRL 129, 161805 (2022) (arXiv:2207.11330):
``data_unbinned_1to30kev.txt`` (433 event energies, keV), ``bkg_model.txt`` (B0, events/(t yr keV)
vs keV) and ``efficiency.txt`` (total efficiency vs keV).  The values are copied unchanged
(float64); the file adds the exposure (1.16 t yr), the window (1, 30) keV and the citation as
attributes.  Read it back with :func:`nuinfer.releases.xenonnt_er.load`.
"""

from __future__ import annotations

import argparse
import sys

from nuinfer.exceptions import NuinferError
from nuinfer.io import write_netcdf
from nuinfer.releases import xenonnt_er


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("raw_dir", help="folder with the release's three text files")
    ap.add_argument("-o", "--output", required=True, help="target .nc file")
    args = ap.parse_args(argv)
    try:
        data = xenonnt_er.read_raw(args.raw_dir)
        path = write_netcdf(data.to_dataset(), args.output)
    except NuinferError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}: {data.n_events} events in {data.window_keV} keV, exposure {data.exposure_t_yr} t yr")
    return 0


if __name__ == "__main__":
    sys.exit(main())
