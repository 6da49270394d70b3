"""COHERENT CsI 2017 worked analysis on the user data files (read from ../shared/data in tests).

Published numbers: COHERENT, Science 357 (2017) 1123 [arXiv:1708.01294]: SM prediction 173 +- 48
CEvNS events (the provenance file of the data folder); the digitised SM histogram of the same
paper (COHERENT_spectrum.txt) sums to 181.7.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from nuinfer.cli import main as nuinfer_main
from nuinfer.spec import terrestrial as tcfg
from nuinfer.tasks import terrestrial as tw
from nuinfer.exceptions import DataFileError, InvalidConfig, UnknownKey
from nuinfer.tasks import contour

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "coherent_csi_2017_bradkav"
PRESET = ROOT / "models" / "coherent_csi2017.toml"

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="COHERENT user data not available")


@pytest.fixture(scope="module")
def ana():
    return tcfg.load(PRESET, data_dir=str(DATA))


@pytest.fixture(scope="module")
def results(ana):
    return tw.analyse(ana, quiet=True)


def test_sm_prediction_within_10_percent_of_published(ana):
    fr = tw.full_range_prediction(ana)
    assert abs(fr["sm_total_full_range"] / 173.0 - 1.0) < 0.10  # published SM prediction
    assert abs(fr["ratio_to_reference_spectrum"] - 1.0) < 0.10  # digitised SM histogram (181.7)
    assert fr["reference_spectrum_total"] == pytest.approx(181.7, abs=0.1)
    # three pi-DAR components, the delayed ones dominate (2 of 3 flavours, higher energies)
    per = fr["sm_per_source_full_range"]
    assert per["pidar_numu"] < per["pidar_nue"] < per["pidar_numubar"]


def test_data_files_are_read_per_bin(ana, results):
    pred = results["prediction"]
    assert pred.sizes["bin"] == 12
    assert pred["E_lo"].values[0] == 6.0 and pred["E_hi"].values[-1] == 30.0
    # residual counts of the 2-PE bins 6-8 ... 28-30 PE (COHERENT_data.txt rows 4-15)
    raw = np.loadtxt(DATA / "COHERENT_data.txt")
    assert pred["observed_counts"].values == pytest.approx(raw[3:15, 1])
    lo, hi = np.loadtxt(DATA / "COHERENT_lower.txt"), np.loadtxt(DATA / "COHERENT_upper.txt")
    assert pred["sigma_obs"].values == pytest.approx(0.5 * (hi[3:15, 1] - lo[3:15, 1]))


def test_sin2w_minimum_between_0p1_and_0p4(results):
    ds = results["sin2w"]
    best = ds.attrs["best_fit"]
    assert 0.1 < best < 0.4  # issue 8 bar
    delta = ds["delta_chi2"]
    assert float(delta.min()) == pytest.approx(0.0, abs=1e-3)
    assert ds.attrs["interval_1sigma_lo"] < best < ds.attrs["interval_1sigma_hi"]
    assert not ds.attrs["interval_1sigma_lo_open"] and not ds.attrs["interval_1sigma_hi_open"]
    assert ds.attrs["delta_at_reference"] < 4.0  # the SM value is within 2 sigma
    assert int(ds["converged"].sum()) == ds["converged"].size


def test_light_vector_and_scalar_limits(results):
    for model in ("V", "S"):
        ds = results[model]
        assert ds.attrs["threshold"] == pytest.approx(4.605170, abs=1e-6)
        g90 = tw.g90_table(ds, masses=(1.0, 100.0, 1000.0))
        assert 1e-6 < g90["1"] < 1e-3
        assert g90["1"] < g90["100"] < g90["1000"]
        res = contour(ds)
        assert res.lines  # a drawable 90% CL contour
    # the vector shows the interference islands: at light masses a second allowed band above g90
    ex = contour(results["V"]).intervals[0]
    assert len(ex) >= 1


def test_cli_coherent_end_to_end(tmp_path, capsys):
    # the user files live in any folder: copy them and pass --data-dir
    user = tmp_path / "mydata"
    shutil.copytree(DATA, user)
    out = tmp_path / "coh.nc"
    rc = nuinfer_main(["coherent", "-o", str(out), "--data-dir", str(user), "-q", "--task", "sin2w"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert 0.1 < summary["variants"]["nominal"]["sin2w"]["best_fit"] < 0.4
    assert abs(summary["full_range"]["ratio_to_published"] - 1.0) < 0.1
    tree = xr.open_datatree(out)
    assert set(tree["nominal"].children) == {"prediction", "sin2w"}
    assert tree["nominal/sin2w"].attrs["statistic_variable"] == "delta_chi2"
    assert json.loads(tree.attrs["summary_json"])["name"] == "coherent_csi2017"
    tree.close()
    assert (tmp_path / "coh_sin2w.png").is_file()
    # a missing data file is bad input: exit code 2 with the key named
    rc = nuinfer_main(["coherent", "-o", str(tmp_path / "x.nc"), "--data-dir", str(tmp_path), "-q"])
    assert rc == 2
    assert "detector.efficiency" in capsys.readouterr().err


def test_config_validation_names_the_key():
    base = tcfg.load(PRESET, data_dir=str(DATA)).raw
    bad = json.loads(json.dumps(base))
    bad["detector"]["quenchng"] = "lindhard"
    with pytest.raises(UnknownKey, match="detector.quenchng"):
        tcfg.load(bad)
    bad = json.loads(json.dumps(base))
    bad["source"]["type"] = "beam"
    with pytest.raises(InvalidConfig, match="source.type"):
        tcfg.load(bad)
    bad = json.loads(json.dumps(base))
    bad["tasks"] = ["sin2w", "Z'"]
    with pytest.raises(InvalidConfig, match=r"tasks\[1\]"):
        tcfg.load(bad)
    bad = json.loads(json.dumps(base))
    bad["variants"] = {"x": {"detector.quenching": "magic"}}
    with pytest.raises(InvalidConfig, match="variants.x"):
        tcfg.load(bad)
    ana = tcfg.load(base, {"binning.lo": 5.0, "binning.hi": 31.0, "binning.n": 13}, data_dir=str(DATA))
    with pytest.raises(DataFileError, match="exactly one"):
        ana.binned_data(np.zeros(13))


def test_posterior_runs_on_the_data(ana, tmp_path):
    res = tw.run_posterior(ana, tmp_path / "post.nc", walkers=8, steps=60, quiet=True)
    assert res["task"] == "sin2w"
    assert 0.05 < res["summary"]["sin2_theta_W"]["median"] < 0.45
    tree = xr.open_datatree(tmp_path / "post.nc")
    assert {"posterior", "sample_stats", "observed_data"} <= set(tree.children)
    assert set(json.loads(tree.attrs["sampled_variables"])) == {"sin2_theta_W", "a_flux", "a_eff", "a_qf"}
    tree.close()
