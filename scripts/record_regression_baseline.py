#!/usr/bin/env python
"""Record tests/regression_baseline.json with the CURRENT code (issue 12, item 5).

The quantities are computed by the functions at the top of tests/test_regression.py (one function
per quantity), so the recorded numbers and the test use exactly the same calls.  Floats are stored
with repr precision (json round-trips them exactly), together with the git commit of the package
they were recorded at and whether nuinfer/ or models/ had uncommitted changes then.

    python scripts/record_regression_baseline.py [--out tests/regression_baseline.json]

Re-record only on purpose (a physics change), never to make a restructuring pass.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load_test_module():
    spec = importlib.util.spec_from_file_location("nuinfer_test_regression", ROOT / "tests" / "test_regression.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _git(*args) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "tests" / "regression_baseline.json"))
    args = p.parse_args(argv)
    import numpy as np
    import scipy

    import nuinfer
    t = _load_test_module()
    t0 = time.perf_counter()
    if not t.COHERENT_DATA.is_dir():
        print(f"COHERENT data folder {t.COHERENT_DATA} missing: cannot record", file=sys.stderr)
        return 2

    g90 = {st: {} for st in t.STATISTICS}
    for st in t.STATISTICS:
        for (proc, mo) in sorted(t.CURVES):
            g90[st].setdefault(proc, {})[mo] = t.compute_g90(proc, mo, st)
    coherent = t.compute_coherent()
    dresden = t.compute_dresden()
    floor = t.compute_floor()
    with tempfile.TemporaryDirectory() as d:
        chain = t.chain_summary(t.compute_chain(d))

    # tracked files of the package or presets changed since the commit (untracked new files are
    # listed separately: they cannot change what the recorded calls import)
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "nuinfer", "models")
    untracked = _git("status", "--porcelain", "--", "nuinfer", "models")
    base = {
        "description": "nuinfer regression baseline (issue 12, item 5); see tests/test_regression.py",
        "nuinfer_commit": _git("rev-parse", "HEAD"),
        "nuinfer_worktree_dirty": bool(dirty),
        "nuinfer_worktree_status": sorted(set(untracked.splitlines()) | set(dirty.splitlines())),
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"nuinfer": nuinfer.__version__, "python": platform.python_version(),
                     "numpy": np.__version__, "scipy": scipy.__version__},
        "g90_masses_MeV": list(t.MASSES_MEV),
        "g90_g_grid": t.G_GRID,
        "g90_presets": {f"{p}/{m}": v for (p, m), v in sorted(t.CURVES.items())},
        "g90": g90,
        "coherent_csi2017": coherent,
        "dresden2_g90_V_1MeV": dresden,
        "floor_xenon_SM": floor,
        "posterior_chain": {**chain, "config": "models/bayes_eves_vector.toml", **t.CHAIN},
        "tolerances_rel": t.TOL,
    }
    out = Path(args.out)
    out.write_text(json.dumps(base, indent=1) + "\n")
    print(f"wrote {out} at {base['nuinfer_commit'][:12]}{' (DIRTY nuinfer/ or models/)' if dirty else ''} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
