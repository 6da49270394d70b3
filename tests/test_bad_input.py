"""Bad input for every command and every analysis family (issue 15).

Every case must stop before any work with exit status 2, exactly one line on stderr that names
the offending key (as written in the file, or the option) and no output file.  The cases run the
CLI in-process on tiny analysis files written to ``tmp_path``; the kill tests run it as a
subprocess and interrupt it while it writes; the reproducibility test runs a preset-size fig2
contour twice.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from nuinfer.cli import main

MODELS = Path(__file__).resolve().parents[1] / "models"

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# ----------------------------------------------------------------------------- tiny analyses
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def dump_toml(d: dict) -> str:
    return "\n".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in d.items()) + "\n"


def _set(d: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


BASE = {
    "xenon": {
        "name": "tiny_xenon",
        "experiment": {"process": "eves", "binning": {"n": 8}},
        "signal": {"models": ["V"], "scan": {"m_X_MeV": {"lo": 0.01, "hi": 1e4, "n": 6},
                                             "g_X": {"lo": 1e-9, "hi": 1e-3, "n": 6}}},
        "posterior": {"walkers": 8, "steps": 20, "mass_grid_n": 8},
    },
    "terrestrial": None,  # dresden2_asimov shrunk (below)
    "floor": None,        # floor_xenon shrunk (below)
    "xenonnt": None,      # xenonnt_8b_cevns as shipped
}


def _base(fam: str) -> dict:
    if fam == "terrestrial":
        d = tomllib.loads((MODELS / "dresden2_asimov.toml").read_text())
        d["experiment"]["binning"]["n"] = 6
        for k in d["signal"]["scan"]:
            d["signal"]["scan"][k]["n"] = 5
        d["nuisances"]["qf_nodes"] = 4
        d["posterior"].update(walkers=8, steps=20)
        return d
    if fam == "floor":
        d = tomllib.loads((MODELS / "floor_xenon.toml").read_text())
        d["signal"]["wimp"]["m_GeV"]["n"] = 4
        d["signal"]["wimp"]["sigma_cm2"]["n"] = 4
        d["experiment"]["binning"]["n"] = 8
        d["floor"]["exposure"]["tonne_year"]["n"] = 4
        d["floor"]["toys"] = {"n": 0}
        return d
    if fam == "xenonnt":
        return tomllib.loads((MODELS / "xenonnt_8b_cevns.toml").read_text())
    return copy.deepcopy(BASE[fam])


COMMANDS = {
    "xenon": ("inspect", "spectrum", "contour", "sample", "compare"),
    "terrestrial": ("inspect", "spectrum", "contour", "profile", "sample", "fit"),
    "floor": ("inspect", "floor"),
    "xenonnt": ("inspect", "contour", "profile"),
}

# (family, id, {file key: value}, key named in the message)
BIG = 1e308
MUTATIONS = [
    # xenon: overflow, infinities, sizes, memory, seeds, repeats, unvalidated tables
    ("xenon", "sigma_sys_1e308", {"nuisances.sigma_sys": BIG}, "nuisances.sigma_sys"),
    ("xenon", "sigma_bg_1e308", {"backgrounds.sigma_bg": BIG}, "backgrounds.sigma_bg"),
    ("xenon", "exposure_1e308", {"experiment.exposure_tonne_year": BIG}, "experiment.exposure_tonne_year"),
    ("xenon", "binning_hi_1e308", {"experiment.binning.hi": BIG}, "experiment.binning.hi"),
    ("xenon", "binning_hi_inf", {"experiment.binning.hi": math.inf}, "experiment.binning.hi"),
    ("xenon", "resolution_inf", {"experiment.detector.resolution": [math.inf, 0.0]},
     "experiment.detector.resolution"),
    ("xenon", "g_hi_1e308", {"signal.scan.g_X.hi": BIG}, "signal.scan.g_X.hi"),
    ("xenon", "m_hi_1e308", {"signal.scan.m_X_MeV.hi": BIG}, "signal.scan.m_X_MeV.hi"),
    ("xenon", "benchmark_g_1e308", {"signal.benchmark.g_X": BIG}, "signal.benchmark.g_X"),
    ("xenon", "benchmark_models_bogus", {"signal.benchmark.models": ["bogus"]}, "signal.benchmark.models[0]"),
    ("xenon", "benchmark_models_dup", {"signal.benchmark.models": ["V", "V"]}, "signal.benchmark.models[1]"),
    ("xenon", "flux_override_1e308", {"experiment.flux.override": {"8B": BIG}}, "experiment.flux.override.8B"),
    ("xenon", "prior_1e308", {"posterior.log10_g_X": {"lo": -8.0, "hi": BIG}}, "posterior.log10_g_X.hi"),
    ("xenon", "models_dup", {"signal.models": ["V", "vector"]}, "signal.models[1]"),
    ("xenon", "sources_dup", {"experiment.sources": ["pp", "pp"]}, "experiment.sources[1]"),
    ("xenon", "sources_table", {"experiment.sources": [{"a": 1}]}, "experiment.sources[0]"),
    ("xenon", "bins_huge", {"experiment.binning.n": 10 ** 9}, "experiment.binning.n"),
    ("xenon", "bins_memory", {"experiment.binning.n": 50_000}, "experiment.binning.n"),
    ("xenon", "grid_huge", {"signal.scan.g_X.n": 10 ** 9}, "signal.scan.g_X.n"),
    ("xenon", "nodes_huge", {"numerics.n_nodes": 10 ** 7}, "numerics.n_nodes"),
    ("xenon", "flux_grid_huge", {"numerics.n_flux_grid": 10 ** 9}, "numerics.n_flux_grid"),
    ("xenon", "walkers_huge", {"posterior.walkers": 10 ** 9}, "posterior.walkers"),
    ("xenon", "steps_huge", {"posterior.steps": 10 ** 10}, "posterior.steps"),
    ("xenon", "thin_above_steps", {"posterior.thin": 10 ** 12}, "posterior.thin"),
    ("xenon", "seed_2_32", {"posterior.seed": 2 ** 32}, "posterior.seed"),
    ("xenon", "seed_negative", {"posterior.seed": -1}, "posterior.seed"),
    ("xenon", "seed_bool", {"posterior.seed": True}, "posterior.seed"),
    ("xenon", "unknown_key", {"signal.bogus": 1}, "signal.bogus"),
    # terrestrial
    ("terrestrial", "sin2w_ref_nan", {"signal.sin2w_reference": math.nan}, "signal.sin2w_reference"),
    ("terrestrial", "sin2w_ref_inf", {"signal.sin2w_reference": math.inf}, "signal.sin2w_reference"),
    ("terrestrial", "sin2w_ref_5", {"signal.sin2w_reference": 5.0}, "signal.sin2w_reference"),
    ("terrestrial", "sin2w_ref_negative", {"signal.sin2w_reference": -1.0}, "signal.sin2w_reference"),
    ("terrestrial", "full_range_strings", {"report.full_range": ["a", "b"]}, "report.full_range"),
    ("terrestrial", "published_total_zero", {"report.published_sm_total": 0.0}, "report.published_sm_total"),
    ("terrestrial", "published_total_nan", {"report.published_sm_total": math.nan}, "report.published_sm_total"),
    ("terrestrial", "reference_missing", {"report.reference_spectrum": "no_such_file.txt"},
     "report.reference_spectrum"),
    ("terrestrial", "scan_negative", {"signal.scan.sin2_theta_W": {"lo": -0.5, "hi": 0.5, "n": 5,
                                                                   "scale": "linear"}},
     "signal.scan.sin2_theta_W.lo"),
    ("terrestrial", "power_1e308", {"experiment.source.power_GW": BIG}, "experiment.source.power_GW"),
    ("terrestrial", "flux_nuisance_1e308", {"nuisances.flux": BIG}, "nuisances.flux"),
    ("terrestrial", "qf_nodes_huge", {"nuisances.qf_nodes": 10 ** 6}, "nuisances.qf_nodes"),
    ("terrestrial", "bins_memory", {"experiment.binning.n": 50_000}, "experiment.binning.n"),
    ("terrestrial", "models_dup", {"signal.models": ["V", "V"]}, "signal.models[1]"),
    ("terrestrial", "seed_2_64", {"posterior.seed": 2 ** 63 - 1}, "posterior.seed"),
    ("terrestrial", "thin_above_steps", {"posterior.thin": 10 ** 6}, "posterior.thin"),
    # floor
    ("floor", "toys_seed_2_32", {"floor.toys.seed": 2 ** 32}, "floor.toys.seed"),
    ("floor", "toys_seed_negative", {"floor.toys.seed": -5}, "floor.toys.seed"),
    ("floor", "toys_huge", {"floor.toys.n": 10 ** 12}, "floor.toys.n"),
    ("floor", "sigma_grid_memory", {"signal.wimp.sigma_cm2": {"lo": 1e-50, "hi": 1e-40, "n": 50_000},
                                    "signal.wimp.m_GeV": {"lo": 1.0, "hi": 1e4, "n": 50_000}},
     "signal.wimp"),
    ("floor", "override_1e308", {"experiment.flux.override": {"8B": BIG}}, "experiment.flux.override.8B"),
    ("floor", "g_X_1e308", {"floor.scenarios": {"V": {"model": "V", "g_X": BIG, "m_X_MeV": 1.0}}},
     "floor.scenarios.V.g_X"),
    ("floor", "sources_dup", {"experiment.sources": ["8B", "8B"]}, "experiment.sources[1]"),
    ("floor", "quick_too_small", {"quick.exposure_n": 2}, "quick.exposure_n"),
    ("floor", "nodes_huge", {"numerics.n_nodes": 10 ** 6}, "numerics.n_nodes"),
    # xenonnt
    ("xenonnt", "grid_huge", {"signal.scan.g_X.n": 10 ** 9}, "signal.scan.g_X.n"),
    ("xenonnt", "g_hi_1e308", {"signal.scan.g_X.hi": BIG}, "signal.scan.g_X.lo"),
    ("xenonnt", "models_dup", {"signal.models": ["V", "V"]}, "signal.models"),
    ("xenonnt", "flux_nuisance_nan", {"nuisances.flux_8B": math.nan}, "nuisances.flux_8B"),
]

CASES = [pytest.param(fam, cmd, mut, key, id=f"{fam}-{name}-{cmd}")
         for fam, name, mut, key in MUTATIONS for cmd in COMMANDS[fam]]


def _write(tmp_path: Path, fam: str, mut: dict) -> Path:
    d = _base(fam)
    for k, v in mut.items():
        _set(d, k, v)
    p = tmp_path / "in" / "analysis.toml"
    p.parent.mkdir(exist_ok=True)
    p.write_text(dump_toml(d))
    return p


def _argv(cmd: str, path: Path, out: Path) -> list[str]:
    argv = [cmd, str(path)]
    if cmd != "inspect":
        argv += ["-o", str(out), "-q"]
    if cmd == "compare":
        argv += ["--vary", "nuisances.sigma_sys=0,0.1"]
    return argv


def run_bad(capsys, argv, key: str, outdir: Path | None = None):
    before = set(outdir.rglob("*")) if outdir is not None else set()
    code = main(argv)
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert code == 2, (code, cap.err)
    assert len(lines) == 1, cap.err
    assert lines[0].startswith("nuinfer: error: ")
    assert key in lines[0], lines[0]
    assert "Traceback" not in cap.err
    if outdir is not None:
        assert set(outdir.rglob("*")) == before, sorted(set(outdir.rglob("*")) - before)
    return lines[0]


@pytest.mark.parametrize("fam, cmd, mut, key", CASES)
def test_bad_file_value(tmp_path, capsys, fam, cmd, mut, key):
    path = _write(tmp_path, fam, mut)
    out = tmp_path / "out"
    out.mkdir()
    run_bad(capsys, _argv(cmd, path, out / "run.nc"), key, out)


def test_every_family_and_command_has_cases():
    covered = {(c.values[0], c.values[1]) for c in CASES}
    assert covered == {(f, c) for f, cmds in COMMANDS.items() for c in cmds}
    assert len(CASES) >= 200


# ----------------------------------------------------------------------------- options and paths
OPTION_CASES = [
    ("xenon", ["sample", "{a}", "-o", "{o}", "--seed", str(2 ** 32)], "--seed"),
    ("xenon", ["sample", "{a}", "-o", "{o}", "--seed", "-1"], "--seed"),
    ("terrestrial", ["sample", "{a}", "-o", "{o}", "--seed", str(2 ** 64)], "--seed"),
    ("xenon", ["sample", "{a}", "-o", "{o}", "--steps", "0"], "--steps"),
    ("xenon", ["sample", "{a}", "-o", "{o}", "--walkers", str(10 ** 9)], "--walkers"),
    ("xenon", ["sample", "{a}", "-o", "{o}", "--steps", "10"], "posterior.thin"),  # thin 15 in the file
    ("xenon", ["contour", "{a}", "-o", "{o}", "--grid", "0"], "--grid"),
    ("xenon", ["contour", "{a}", "-o", "{o}", "--grid", "1"], "--grid"),
    ("xenon", ["contour", "{a}", "-o", "{o}", "--grid", str(10 ** 9)], "--grid"),
    ("xenon", ["contour", "{a}", "-o", "{o}", "--grid", "30000"], "signal.scan"),  # memory
    ("xenon", ["compare", "{a}", "-o", "{o}", "--grid", "0", "--vary", "nuisances.sigma_sys=0,0.1"], "--grid"),
    ("xenon", ["contour", "{a}", "-o", "{o}", "--model", "bogus"], "--model"),
    ("terrestrial", ["fit", "{a}", "-o", "{o}", "--task", "bogus"], "--task"),
    ("terrestrial", ["contour", "{a}", "-o", "{o}", "--model", "bogus"], "--model"),
    ("xenonnt", ["contour", "{a}", "-o", "{o}", "--model", "bogus"], "--model"),
    ("xenon", ["profile", "{a}", "-o", "{o}"], "command"),
    ("floor", ["contour", "{a}", "-o", "{o}"], "command"),
    ("xenon", ["contour", "{a}", "-o", "{d}"], "--output-file"),                # a directory
    ("xenon", ["spectrum", "{a}", "-o", "{d}/missing/x.nc"], "--output-file"),  # missing parent
    ("terrestrial", ["fit", "{a}", "-o", "{d}/missing/x.nc"], "--output-file"),
    ("floor", ["floor", "{a}", "-o", "{d}/missing/x.nc"], "--output-file"),
    ("xenonnt", ["profile", "{a}", "-o", "{d}/missing/x.nc"], "--output-file"),
    ("xenon", ["sample", "{a}", "-o", "{d}/x.txt"], "--output-file"),
    ("xenon", ["contour", "{d}", "-o", "{o}"], "config"),                       # config is a directory
    ("xenon", ["reproduce", "--only", "bogus", "--outdir", "{d}"], "--only"),
    ("xenon", ["reproduce", "--outdir", "{a}"], "--outdir"),
    # contour options a family does not use are refused, never ignored silently
    ("xenon", ["contour", "{a}", "-o", "{o}", "--toys", "50"], "--toys"),           # needs --calibrate toys
    ("xenon", ["contour", "{a}", "-o", "{o}", "--coverage"], "--coverage"),
    ("xenon", ["contour", "{a}", "-o", "{o}", "--data-dir", "{d}"], "--data-dir"),
    ("xenonnt", ["contour", "{a}", "-o", "{o}", "--profiler", "minuit"], "--profiler"),
    ("xenonnt", ["contour", "{a}", "-o", "{o}", "--calibrate", "toys"], "--calibrate"),
    ("xenonnt", ["contour", "{a}", "-o", "{o}", "--seed", "3"], "--seed"),
    ("xenonnt", ["contour", "{a}", "-o", "{o}", "--statistic", "eq26"], "--statistic"),  # validated by the file's rules
    ("xenonnt", ["contour", "{a}", "-o", "{o}", "--grid", "2"], "--grid"),              # 3 to 2000 for real data
    ("terrestrial", ["contour", "{a}", "-o", "{o}", "--profiler", "minuit"], "--profiler"),
    ("terrestrial", ["contour", "{a}", "-o", "{o}", "--mode", "joint"], "--mode"),
    ("terrestrial", ["contour", "{a}", "-o", "{o}", "--statistic", "eq26"], "--statistic"),
    ("xenonnt", ["sample", "{a}", "-o", "{o}", "--resume"], "--resume"),
    ("xenonnt", ["sample", "{a}", "-o", "{o}", "--walkers", "4"], "--walkers"),  # the file has no [posterior]
    ("xenonnt", ["sample", "{a}", "-o", "{o}", "--data", "{a}"], "--data"),
    ("terrestrial", ["sample", "{a}", "-o", "{o}", "--prior-check"], "--prior-check"),
    ("xenon", ["sample", "{a}", "-o", "{o}", "--data-dir", "{d}"], "--data-dir"),
    ("xenon", ["spectrum", "{a}", "-o", "{o}", "--data-dir", "{d}"], "--data-dir"),
    ("xenon", ["inspect", "{a}", "--data-dir", "{d}"], "--data-dir"),
    ("xenonnt", ["profile", "{a}", "-o", "{o}", "--data-dir", "{d}"], "--data-dir"),
]


@pytest.mark.parametrize("fam, argv, key", OPTION_CASES,
                         ids=[f"{f}-{'_'.join(a[:1] + a[3:])[:60]}" for f, a, _ in OPTION_CASES])
def test_bad_option(tmp_path, capsys, fam, argv, key):
    mut = {"posterior.thin": 15} if fam == "xenon" else {}
    path = _write(tmp_path, fam, mut)
    out = tmp_path / "out"
    out.mkdir()
    argv = [a.format(a=path, o=out / "run.nc", d=out) for a in argv]
    if "-q" not in argv and argv[0] not in ("reproduce",):
        argv.append("-q")
    run_bad(capsys, argv, key, out)


@pytest.mark.skipif(not os.path.exists("/dev/null") or os.geteuid() == 0 and False, reason="POSIX only")
def test_special_file_output_is_rejected(tmp_path, capsys):
    path = _write(tmp_path, "xenon", {})
    run_bad(capsys, ["spectrum", str(path), "-o", "/dev/null", "-q"], "--output-file")


@pytest.mark.parametrize("content, key", [
    (b"name = \"\xff\xfe\"\n", "config"),
    (b"name = [\n", "config"),
])
def test_unreadable_toml(tmp_path, capsys, content, key):
    p = tmp_path / "a.toml"
    p.write_bytes(content)
    for cmd in ("inspect", "contour"):
        run_bad(capsys, [cmd, str(p)] + (["-o", str(tmp_path / "x.nc")] if cmd != "inspect" else []), key, None)


@pytest.mark.parametrize("table, key", [
    (b"0.1 0\n1 0\n10 0\n", "experiment.detector.efficiency"),           # all-zero efficiency
    (b"0.1 0.5\n1 \xff\n", "experiment.detector.efficiency"),             # non-UTF-8 bytes
    (b"0.1 0.5\n1 nan\n", "experiment.detector.efficiency"),              # NaN
])
def test_bad_user_table(tmp_path, capsys, table, key):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "eff.txt").write_bytes(table)
    path = _write(tmp_path, "xenon", {"experiment.detector.efficiency": "eff.txt"})
    out = tmp_path / "out"
    out.mkdir()
    for cmd in ("inspect", "spectrum", "contour"):
        run_bad(capsys, _argv(cmd, path, out / "run.nc"), key, out)


def test_nan_in_reference_spectrum(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ref.txt").write_text("0.3 1.0\n0.5 nan\n")
    path = _write(tmp_path, "terrestrial", {"report.reference_spectrum": "ref.txt"})
    out = tmp_path / "out"
    out.mkdir()
    for cmd in COMMANDS["terrestrial"]:
        run_bad(capsys, _argv(cmd, path, out / "run.nc"), "report.reference_spectrum", out)


def test_quick_value_is_not_blamed_on_the_file(tmp_path, capsys):
    """With --quick, an invalid value the user wrote is named, never a [quick] key they did not set."""
    path = _write(tmp_path, "floor", {"experiment.binning.n": 0})
    line = run_bad(capsys, ["floor", str(path), "--quick", "-o", str(tmp_path / "f.nc"), "-q"],
                   "experiment.binning.n")
    assert "quick" not in line


def test_runtime_warnings_are_held_back(tmp_path, capsys, monkeypatch):
    """A RuntimeWarning raised before a bad-input error is not printed: one line only."""
    from nuinfer.cli import commands

    real = commands._xenon

    def noisy(*a, **k):
        np.log(np.zeros(1))  # RuntimeWarning: divide by zero
        return real(*a, **k)

    monkeypatch.setattr(commands, "_xenon", noisy)
    path = _write(tmp_path, "xenon", {"nuisances.sigma_sys": BIG})
    run_bad(capsys, ["contour", str(path), "-o", str(tmp_path / "x.nc"), "-q"], "nuisances.sigma_sys")


def test_memory_message_gives_the_estimate(tmp_path, capsys):
    path = _write(tmp_path, "xenon", {"experiment.binning.n": 50_000})
    line = run_bad(capsys, ["inspect", str(path)], "experiment.binning.n")
    assert "memory" in line and "GiB" in line or "TiB" in line


# ----------------------------------------------------------------------------- honest results
def test_g90_at_the_grid_bottom_is_reported_as_an_upper_bound(tmp_path, capsys):
    # a grid starting far above the sensitivity: everything excluded at the smallest coupling
    path = _write(tmp_path, "xenon", {"signal.scan.g_X": {"lo": 1e-2, "hi": 1e-1, "n": 4}})
    code = main(["contour", str(path), "-o", str(tmp_path / "c.nc"), "-q", "--no-plot"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    res = json.loads(cap.out)
    flags = res["g90_upper_bound"]["V"]
    assert flags["grid_masses_MeV"] and any(flags["reference_masses"].values())
    assert res["notes"] and "upper bound" in res["notes"][0]


def test_floor_warns_when_discovery_fits_fail(tmp_path):
    import xarray as xr

    from nuinfer.cli.commands import _floor_warnings
    from nuinfer.io import write_netcdf
    conv = np.ones((2, 5, 4), dtype=np.int8)
    conv[1, :4] = 0
    ds = xr.Dataset({"converged": (("scenario", "m_chi", "exposure"), conv)},
                    coords={"scenario": ["SM", "V"]})
    write_netcdf(ds, tmp_path / "f.nc")
    lines = _floor_warnings(tmp_path / "f.nc")
    assert len(lines) == 1 and "'V'" in lines[0] and "80%" in lines[0]


# ----------------------------------------------------------------------------- signals
_KILL_SCRIPT = textwrap.dedent("""
    import os, sys, time
    import nuinfer.io as io
    marker, argv = sys.argv[1], sys.argv[2:]
    real = io._finish_temporary
    def slow(tmp):
        real(tmp)
        if str(tmp).endswith(".nc"):   # the NetCDF is complete in its temporary; the PNG is next
            open(marker, "w").close()
            time.sleep(60)
    io._finish_temporary = slow
    from nuinfer.cli import main
    sys.exit(main(argv))
""")


def _start(tmp_path, argv):
    marker = tmp_path / "ready"
    marker.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(marker)] + argv, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() - t0 > 60:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the CLI did not reach the write: {err}")
        time.sleep(0.02)
    return proc


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_kill_during_a_cli_write(tmp_path, sig):
    path = _write(tmp_path, "xenon", {})
    out = tmp_path / "out"
    out.mkdir()
    nc, png = out / "run.nc", out / "run.png"
    nc.write_text("old nc")
    png.write_text("old png")
    proc = _start(tmp_path, ["spectrum", str(path), "-o", str(nc), "-q"])
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=30)
    # the previous outputs are untouched: never a new .nc beside an old .png
    assert nc.read_text() == "old nc" and png.read_text() == "old png"
    left = sorted(p.name for p in out.iterdir() if p.name not in ("run.nc", "run.png"))
    if sig == "SIGTERM":
        assert proc.returncode == 128 + signal.SIGTERM
        assert err.strip().splitlines()[-1].startswith("nuinfer: interrupted by SIGTERM")
        assert left == []
    else:
        assert proc.returncode == -signal.SIGKILL
        assert any(".tmp" in n for n in left)  # what SIGKILL leaves ...
        assert main(["spectrum", str(path), "-o", str(nc), "-q"]) == 0  # ... the next run removes
        assert sorted(p.name for p in out.iterdir()) == ["run.nc", "run.png"]
        assert nc.read_bytes()[:3] == b"\x89HD"  # a real NetCDF-4 file now


def test_second_writer_of_the_same_output_fails_clearly(tmp_path):
    path = _write(tmp_path, "xenon", {})
    nc = tmp_path / "run.nc"
    proc = _start(tmp_path, ["spectrum", str(path), "-o", str(nc), "-q"])
    try:
        r = subprocess.run([sys.executable, "-m", "nuinfer.cli", "spectrum", str(path), "-o", str(nc), "-q"],
                           capture_output=True, text=True, timeout=120)
    finally:
        proc.kill()
        proc.communicate()
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "being written by another nuinfer process" in r.stderr


# ----------------------------------------------------------------------------- reproducibility
def test_fig2_contour_is_bit_identical_at_preset_size(tmp_path, capsys):
    """The preset fig2 (EvES, 5 models, 200 x 200) contour twice: identical NetCDF variables."""
    import xarray as xr
    outs = []
    for i in range(2):
        p = tmp_path / f"r{i}.nc"
        assert main(["contour", str(MODELS / "fig2_eves.toml"), "-o", str(p), "-q", "--no-plot"]) == 0
        capsys.readouterr()
        outs.append(xr.open_dataset(p).load())
    a, b = outs
    assert set(a.data_vars) == set(b.data_vars)
    for v in a.data_vars:
        assert a[v].values.tobytes() == b[v].values.tobytes(), v
    for c in a.coords:
        assert a[c].values.tobytes() == b[c].values.tobytes(), c
