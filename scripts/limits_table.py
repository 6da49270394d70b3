#!/usr/bin/env python
"""g90 at m_X = 0.01, 1, 100, 1000 MeV for the 14 curves of Figs. 2-4 (S, P, V, A, T, B-L, Lmu-Ltau in
CEvNS and EvES), for Eq. 26 and the Poisson statistic, at both 90% CL thresholds (2 dof: 4.61,
1 dof: 2.71), on the presets' 200 x 200 grids.  Prints Markdown tables and the wall time of the
14-curve set per (statistic, ndof); writes outputs/limits_table.md.

    python scripts/limits_table.py [--grid 200]
"""

import argparse
import time
from pathlib import Path

from nuinfer.spec import xenon as config
from nuinfer.tasks.xenon import REFERENCE_MASSES_MEV, g90_table, models_dir, scan_model

CURVES = [("fig2", ["S", "P", "V", "A", "T"]), ("fig4", ["B-L", "Lmu-Ltau"])]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", type=int, default=200)
    ap.add_argument("--out", default="outputs/limits_table.md")
    args = ap.parse_args()
    lines = []
    for statistic in ("eq26", "poisson"):
        for ndof in (2, 1):
            t0 = time.perf_counter()
            rows = []
            for proc in ("cevns", "eves"):
                for fig, models in CURVES:
                    ana = config.load(models_dir() / f"{fig}_{proc}.toml",
                                      {"statistics.statistic": statistic, "statistics.ndof": ndof,
                                       "scan.m_X_MeV.n": args.grid, "scan.g_X.n": args.grid})
                    fm = ana.forward_model()
                    for mo in models:
                        ds = scan_model(ana, mo, fm=fm)
                        rows.append((proc, mo, g90_table(ds), float(ds.attrs["threshold"])))
            wall = time.perf_counter() - t0
            lines.append(f"### {statistic}, ndof = {ndof} (threshold {rows[0][3]:.3f}); "
                         f"14 curves at {args.grid} x {args.grid} from a cold start: {wall:.1f} s")
            lines.append("")
            cols = [f"{m:g}" for m in REFERENCE_MASSES_MEV]
            lines.append("| process | model | " + " | ".join(f"{c} MeV" for c in cols) + " |")
            lines.append("| --- | --- | " + " | ".join("---" for _ in cols) + " |")
            for proc, mo, g, _ in rows:
                lines.append(f"| {proc} | {mo} | " + " | ".join(
                    "-" if g[c] is None else f"{g[c]:.3g}" for c in cols) + " |")
            lines.append("")
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
