"""The ``nuinfer`` command end to end on small configurations (issue 7).

* Bad input (unknown key, wrong type, lo >= hi, unknown model, malformed TOML, missing file, ...)
  exits with status 2 and one line on stderr that names the key path; never a traceback.
* A runtime failure (any other NuinferError) exits with status 1.
* ``contour``, ``spectrum`` and ``inspect`` succeed on small files; the NetCDF outputs reopen with
  plain xarray, contain no NaN/inf and carry provenance (nuinfer_version, created_at, config_json).
* One real subprocess per exit path checks the process exit code and stderr, as a user sees them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

from nuinfer import __version__
from nuinfer.tasks import xenon as xenon_tasks
from nuinfer.cli import main
from nuinfer.exceptions import NumericalError

SMALL_CONTOUR = """
name = "small_contour"

[experiment]
process = "eves"

[experiment.binning]
lo = 0.1
hi = 1e4
n = 30

[signal]
models = ["V", "S"]

[signal.scan]
m_X_MeV = { lo = 0.01, hi = 1e4, n = 12 }
g_X = { lo = 1e-8, hi = 1e-1, n = 12 }
"""

SMALL_SPECTRUM = """
name = "small_spectrum"

[experiment]
process = "cevns"

[experiment.binning]
lo = 0.1
hi = 100.0
n = 30

[signal]
models = ["S", "V"]

[signal.benchmark]
g_X = 1e-3
m_X_MeV = 10.0
"""

#: (file text, a key path the one-line message must name)
BAD_CONFIGS = {
    "unknown_key": ("[experiment.binning]\nnbins = 10\n", "experiment.binning.nbins"),
    "unknown_top_key": ("exposure = 2.0\n", "exposure"),
    "wrong_type": ('[experiment.binning]\nn = "ten"\n', "experiment.binning.n"),
    "wrong_type_table": ('[experiment]\nbinning = 3\n', "experiment.binning"),
    "lo_ge_hi": ("[signal.scan]\ng_X = { lo = 1.0, hi = 0.1, n = 5 }\n", "signal.scan.g_X.lo"),
    "lo_eq_hi_binning": ("[experiment.binning]\nlo = 10.0\nhi = 10.0\n", "experiment.binning.lo"),
    "unknown_model": ('[signal]\nmodels = ["S", "Z"]\n', "signal.models[1]"),
    "unknown_process": ('[experiment]\nprocess = "dm"\n', "experiment.process"),
    "negative_exposure": ("[experiment]\nexposure_tonne_year = -1.0\n", "experiment.exposure_tonne_year"),
    "bad_cl": ("[statistics]\ncl = 90\n", "statistics.cl"),
    "unknown_source": ('[experiment]\nsources = ["pp", "sun"]\n', "experiment.sources[1]"),
    "malformed_toml": ('name = "unterminated\n', "config"),
}


def write(tmp_path, text: str, name: str = "analysis.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def assert_one_line_error(err: str, *needles: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def assert_finite_dataset(ds: xr.Dataset) -> None:
    for name, var in ds.variables.items():
        if var.dtype.kind in "fc":
            assert np.all(np.isfinite(var.values)), f"non-finite values in {name}"
    for owner in [ds, *ds.variables.values()]:
        for k, v in owner.attrs.items():
            if np.asarray(v).dtype.kind in "fc":
                assert np.all(np.isfinite(v)), f"non-finite attribute {k} = {v!r}"


def assert_provenance(ds: xr.Dataset, name: str) -> dict:
    assert ds.attrs["nuinfer_version"] == __version__
    assert ds.attrs["creation_library"] == "nuinfer"
    assert len(ds.attrs["created_at"]) >= 19 and ds.attrs["created_at"][:2] == "20"
    cfg = json.loads(ds.attrs["config_json"])
    assert cfg["name"] == name
    return cfg


# --------------------------------------------------------------------------------------------
# bad input -> exit 2, one line naming the key
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["inspect", "spectrum", "contour"])
@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_with_key_path(tmp_path, capsys, command, case):
    text, key = BAD_CONFIGS[case]
    path = write(tmp_path, text)
    argv = [command, str(path)] + ([] if command == "inspect" else ["-o", str(tmp_path / "o.nc"), "--no-plot", "-q"])
    assert main(argv) == 2
    out, err = capsys.readouterr()
    line = assert_one_line_error(err, "nuinfer: error:", key)
    assert line.startswith("nuinfer: error: ")
    assert out == ""
    assert not (tmp_path / "o.nc").exists()


def test_missing_file_exits_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.toml")]) == 2
    _, err = capsys.readouterr()
    assert_one_line_error(err, "config", "not found", "nope.toml")


def test_malformed_toml_message_says_so(tmp_path, capsys):
    assert main(["inspect", str(write(tmp_path, 'a = [1, 2\n'))]) == 2
    _, err = capsys.readouterr()
    assert_one_line_error(err, "config", "malformed TOML")


def test_output_file_must_be_netcdf(tmp_path, capsys):
    path = write(tmp_path, SMALL_CONTOUR)
    assert main(["contour", str(path), "-o", str(tmp_path / "out.txt"), "--no-plot", "-q"]) == 2
    _, err = capsys.readouterr()
    assert_one_line_error(err, "--output-file", ".nc")


def test_bad_data_counts_exit_2(tmp_path, capsys):
    (tmp_path / "counts.txt").write_text("1\n2\n3\n")
    path = write(tmp_path, SMALL_CONTOUR + '\n[data]\nobserved = "counts.txt"\n')
    assert main(["contour", str(path), "-o", str(tmp_path / "o.nc"), "--no-plot", "-q"]) == 2
    _, err = capsys.readouterr()
    assert_one_line_error(err, "data.observed", "30")


@pytest.mark.parametrize("content", [None, "1\nx\n3\n"], ids=["missing", "non_numeric"])
def test_unreadable_data_file_exits_2(tmp_path, capsys, content):
    if content is not None:
        (tmp_path / "counts.txt").write_text(content)
    path = write(tmp_path, SMALL_CONTOUR + '\n[data]\nobserved = "counts.txt"\n')
    try:
        rc = main(["contour", str(path), "-o", str(tmp_path / "o.nc"), "--no-plot", "-q"])
    except (OSError, ValueError):
        rc = "uncaught exception"
    assert rc == 2
    _, err = capsys.readouterr()
    assert_one_line_error(err, "data.observed")


def test_runtime_failure_exits_1(tmp_path, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise NumericalError("the profiled chi2 is NaN at m_X = 1 MeV")

    monkeypatch.setattr(xenon_tasks, "run_contour", boom)
    assert main(["contour", str(write(tmp_path, SMALL_CONTOUR)), "--no-plot", "-q"]) == 1
    _, err = capsys.readouterr()
    assert_one_line_error(err, "nuinfer: failed:", "NaN at m_X = 1 MeV")


def _run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "nuinfer.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


def test_subprocess_exit_codes_and_stderr(tmp_path):
    bad = write(tmp_path, "[experiment.binning]\nnbins = 10\n", "bad.toml")
    r = _run("inspect", str(bad), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert_one_line_error(r.stderr, "nuinfer: error:", "experiment.binning.nbins")
    r = _run("inspect", str(tmp_path / "missing.toml"), cwd=tmp_path)
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "not found")
    # argparse usage errors also exit 2 (no traceback)
    r = _run("contour", str(bad), "--ndof", "3", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--ndof" in r.stderr


# --------------------------------------------------------------------------------------------
# working runs -> exit 0, clean NetCDF with provenance
# --------------------------------------------------------------------------------------------
def test_contour_small_grid(tmp_path, capsys):
    path = write(tmp_path, SMALL_CONTOUR)
    out = tmp_path / "scan.nc"
    assert main(["contour", str(path), "-o", str(out), "--no-plot", "-q"]) == 0
    stdout, err = capsys.readouterr()
    assert err == ""  # -q: no progress output
    summary = json.loads(stdout)
    assert summary["output"] == str(out) and summary["plot"] is None
    assert summary["threshold"] == pytest.approx(4.605170, abs=1e-6)
    assert set(summary["g90"]) == {"V", "S"}
    with xr.open_dataset(out) as ds:
        ds = ds.load()
    assert_finite_dataset(ds)
    cfg = assert_provenance(ds, "small_contour")
    assert cfg["binning"]["n"] == 30 and cfg["scan"]["g_X"]["n"] == 12
    assert list(ds["model"].values) == ["V", "S"]
    assert ds["delta_chi2"].dims == ("model", "m_X", "g_X") and ds["delta_chi2"].shape == (2, 12, 12)
    assert ds.sizes["bin"] == 30
    assert ds.attrs["statistic"] == "eq26" and ds.attrs["ndof"] == 2 and ds.attrs["scan_mode"] == "joint_2d"
    assert ds.attrs["cl"] == 0.9 and ds.attrs["threshold"] == pytest.approx(4.605170, abs=1e-6)
    assert np.all(ds["delta_chi2"].values >= 0)
    # something is excluded at large coupling and nothing at the smallest (a real, non-trivial scan)
    thr = ds.attrs["threshold"]
    assert np.all(ds["delta_chi2"].values[:, :, -1] >= thr)
    assert np.all(ds["delta_chi2"].values[:, :, 0] < thr)
    assert not list(tmp_path.glob(".scan.nc.*"))  # no temporary left behind by the atomic write


def test_contour_flags_override_statistics(tmp_path, capsys):
    path = write(tmp_path, SMALL_CONTOUR)
    out = tmp_path / "scan_poisson.nc"
    assert main(["contour", str(path), "-o", str(out), "--no-plot", "-q", "--statistic", "poisson",
                 "--ndof", "1", "--grid", "8"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["threshold"] == pytest.approx(2.705543, abs=1e-6)
    with xr.open_dataset(out) as ds:
        ds = ds.load()
    assert_finite_dataset(ds)
    assert ds["delta_twice_nll"].shape == (2, 8, 8)
    assert ds.attrs["statistic"] == "poisson" and ds.attrs["ndof"] == 1 and ds.attrs["scan_mode"] == "raster_1d"
    cfg = assert_provenance(ds, "small_contour")
    assert cfg["statistics"]["statistic"] == "poisson" and cfg["scan"]["m_X_MeV"]["n"] == 8


def test_contour_flags_apply_to_real_data_and_terrestrial_files(tmp_path, capsys):
    """--grid, --ndof and --statistic are honoured by the xenonnt and terrestrial families too (they
    were once silently ignored there)."""
    from pathlib import Path
    models = Path(__file__).resolve().parents[1] / "models"
    out = tmp_path / "er.nc"
    assert main(["contour", str(models / "xenonnt_sr0_er.toml"), "-o", str(out), "--no-plot", "-q", "--model", "V",
                 "--grid", "6", "--ndof", "1", "--statistic", "poisson"]) == 0
    capsys.readouterr()
    with xr.open_dataset(out) as ds:
        ds = ds.load()
    assert ds["twice_nll"].shape == (1, 6, 6) and ds.attrs["ndof"] == 1 and ds.attrs["scan_mode"] == "raster_1d"
    assert ds.attrs["likelihood"] == "binned (1 keV)"  # poisson: the binned ER likelihood
    out = tmp_path / "csi.nc"
    assert main(["contour", str(models / "coherent_csi2017.toml"), "-o", str(out), "--no-plot", "-q", "--model", "V",
                 "--grid", "7", "--ndof", "1"]) == 0
    capsys.readouterr()
    tree = xr.open_datatree(out)
    scan = tree["nominal/V"].to_dataset()
    assert scan.sizes["m_X"] == 7 and scan.sizes["g_X"] == 7 and scan.attrs["ndof"] == 1


def test_spectrum_small(tmp_path, capsys):
    path = write(tmp_path, SMALL_SPECTRUM)
    out = tmp_path / "spec.nc"
    assert main(["spectrum", str(path), "-o", str(out), "--no-plot", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sm_total"] > 0 and set(summary["model_totals"]) == {"S", "V"}
    with xr.open_dataset(out) as ds:
        ds = ds.load()
    assert_finite_dataset(ds)
    cfg = assert_provenance(ds, "small_spectrum")
    assert cfg["process"] == "cevns"
    assert ds.sizes["bin"] == 30 and list(ds["model"].values) == ["S", "V"]
    assert float(ds["total"].sum()) == pytest.approx(summary["sm_total"], rel=1e-12)
    assert np.all(ds["counts"].values >= 0) and np.all(ds["total_model"].values >= 0)
    assert ds.attrs["g_X"] == 1e-3 and ds.attrs["m_X_MeV"] == 10.0
    # the scalar only adds events; the spectrum file is self-describing
    assert np.all(ds["total_model"].sel(model="S").values >= ds["total"].values * (1 - 1e-12))
    assert ds["total"].attrs["units"] == "events" and ds["E_lo"].attrs["units"] == "keVee"


def test_inspect_small(tmp_path, capsys):
    path = write(tmp_path, SMALL_SPECTRUM)
    assert main(["inspect", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    info = json.loads(out)
    assert info["name"] == "small_spectrum" and info["process"] == "cevns"
    assert info["models"] == ["S", "V"]
    assert info["bins"] == [0.1, 100.0, 30]
    assert info["sm_total"] == pytest.approx(sum(info["sm_counts_per_source"].values()), rel=1e-12)
    assert info["sm_counts_per_source"]["8B"] > 0


def test_console_script_contour(tmp_path):
    """The installed entry point (python -m nuinfer.cli) end to end in a fresh process."""
    path = write(tmp_path, SMALL_CONTOUR)
    r = _run("contour", str(path), "-o", "sub.nc", "--no-plot", "-q", "--grid", "6", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert json.loads(r.stdout)["output"] == "sub.nc"
    with xr.open_dataset(tmp_path / "sub.nc") as ds:
        assert_finite_dataset(ds.load())


def test_console_entry_exits_fast_with_the_status_and_all_output(tmp_path):
    """`nuinfer` (nuinfer.cli:run) skips the interpreter teardown with os._exit: the exit status,
    the JSON on stdout and the error line on stderr must still arrive whole."""
    import json as _json
    import subprocess
    import sys as _sys
    from pathlib import Path as _Path
    code = "import sys; from nuinfer.cli import run; sys.argv[0] = 'nuinfer'; run()"
    root = _Path(__file__).resolve().parents[1]
    ok = subprocess.run([_sys.executable, "-c", code, "inspect", str(root / "models" / "fig3_cevns.toml")],
                        capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert _json.loads(ok.stdout)["name"] == "fig3_cevns"
    bad = tmp_path / "bad.toml"
    bad.write_text("[x\n")
    err = subprocess.run([_sys.executable, "-c", code, "inspect", str(bad)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert err.returncode == 2
    assert err.stderr.startswith("nuinfer: error:") and "malformed TOML" in err.stderr


def test_command_line_imports_emcee_without_scipy_stats():
    """The command's import hook keeps emcee's optional KDE move from loading scipy.stats (0.6 s);
    emcee's default sampler still runs, and scipy.stats itself still imports for anyone else."""
    import subprocess
    import sys as _sys
    from pathlib import Path as _Path
    root = _Path(__file__).resolve().parents[1]
    code = f"""
import sys, io, contextlib
from nuinfer.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["inspect", {str(root / "models" / "fig3_cevns.toml")!r}]) == 0
import numpy as np, emcee
assert "scipy.stats" not in sys.modules
s = emcee.EnsembleSampler(8, 2, lambda x: -0.5 * np.sum(x * x), vectorize=False)
s.run_mcmc(np.random.default_rng(1).normal(size=(8, 2)), 20)
assert s.get_chain().shape == (20, 8, 2)
import scipy.stats
assert scipy.stats.norm.cdf(0.0) == 0.5
print("ok")
"""
    r = subprocess.run([_sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok")


def test_every_option_has_a_help_text_every_command_takes_q_and_reproduce_lists_every_step():
    import argparse

    from nuinfer.cli import build_parser
    from nuinfer.tasks.paper import STEPS
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, sp in sub.choices.items():
        assert "-q" in {o for a in sp._actions for o in a.option_strings}, f"{name} does not take -q"
        for act in sp._actions:
            if not isinstance(act, argparse._HelpAction):
                assert act.help and act.help.strip(), f"{name} {act.option_strings or act.dest} has no help"
    only = next(a for a in sub.choices["reproduce"]._actions if "--only" in a.option_strings)
    listed = {w.strip("(),;") for w in only.help.split()}
    assert set(STEPS) <= listed, sorted(set(STEPS) - listed)
