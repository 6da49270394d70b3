"""Convert the raw XENONnT 8B CEvNS data release into one compact NetCDF file.

Usage::

    python scripts/convert_xenonnt_8b.py RAW_DIR -o nuinfer/data/xenonnt_8b_cevns.nc

RAW_DIR is the release folder (GitHub XENONnT/cevns_data_release or zenodo DOI 10.5281/zenodo.20576156)
with binning/, data/ and templates/.  Needs h5py.  The layout of the output is documented in
:mod:`nuinfer.releases.xenonnt_8b`; the mono-energetic templates are stored as float32 (relative rounding
< 6e-8), everything else as read; all variables are zlib-compressed.  The release is CC-BY-4.0: keep the
attribution (global attributes ``citation``, ``license``, ``attribution``) and ship
xenonnt_8b_cevns_LICENSE.txt next to the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nuinfer.exceptions import NuinferError
from nuinfer.io import atomic_target
from nuinfer.releases import xenonnt_8b


def convert(raw_dir, out) -> Path:
    """Read ``raw_dir`` (validated), write the NetCDF ``out`` atomically, re-read and validate it."""
    ds = xenonnt_8b.read_raw(raw_dir)
    ds.attrs["source"] = f"{xenonnt_8b.REPO} commit {xenonnt_8b.REPO_COMMIT} (raw release folder)"
    enc = {v: {"zlib": True, "complevel": 9, "shuffle": True} for v in ds.data_vars if ds[v].ndim > 0}
    out = Path(out)
    with atomic_target(out) as tmp:
        ds.to_netcdf(tmp, mode="w", engine="netcdf4", encoding=enc)
    xenonnt_8b.load(out)  # validates shapes and values of what was written
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("raw_dir", help="raw release folder (binning/, data/, templates/)")
    ap.add_argument("-o", "--output", default="nuinfer/data/xenonnt_8b_cevns.nc", help="output NetCDF file")
    args = ap.parse_args(argv)
    try:
        out = convert(args.raw_dir, args.output)
    except NuinferError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
