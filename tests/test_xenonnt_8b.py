"""XENONnT 8B CEvNS data release: converted file, fold, interpolation, SM 8B counts, reference fit.

The raw release is read from ``../shared/data/xenonnt_cevns_data_release`` (CC-BY-4.0, GitHub
XENONnT/cevns_data_release commit 60d230dd, zenodo DOI 10.5281/zenodo.20576156).  If it is missing
the tests FAIL (they are not skipped): put the release there or fix the path.

Published numbers compared with (PROVENANCE.md of the release folder, PRL 133 (2024) 191002,
arXiv:2408.02877, SR0+SR1): 8B flux (4.7 +3.6 -2.3) x 1e6 cm^-2 s^-1, background-only rejected at
2.73 sigma, background 26.4 (+1.4 -1.3) events, 37 events observed; expected SM 8B CEvNS events
11.9 (number given with the task brief for PRL 133 (2024) 191002; not re-read from the paper here).
The release's mono-energetic templates encode the later SR0-SR2 response (PROVENANCE.md), so the
expectation from them is lower than in 2024 and the fitted flux correspondingly higher; the tests
check that the two differences cancel in the fitted signal counts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from nuinfer.exceptions import DataFileError
from nuinfer.releases import xenonnt_8b as x8
from _xenonnt_reference import B16_GS98_8B, b8_cevns_dR_dEnr, reference_fit

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT.parent / "shared" / "data" / "xenonnt_cevns_data_release"
SHIPPED = ROOT / "nuinfer" / "data" / "xenonnt_8b_cevns.nc"


@pytest.fixture(scope="module")
def raw_dir() -> Path:
    if not (RAW / "templates").is_dir():
        pytest.fail(f"XENONnT 8B release not found at {RAW}: copy the release (zenodo DOI 10.5281/zenodo.20576156, "
                    "github XENONnT/cevns_data_release) there; these tests are never skipped")
    return RAW


@pytest.fixture(scope="module")
def raw(raw_dir):
    return x8.load(raw_dir)


@pytest.fixture(scope="module")
def rel():
    assert SHIPPED.is_file(), f"{SHIPPED} missing: run scripts/convert_xenonnt_8b.py"
    return x8.load()


def _h5(path):
    with h5py.File(path, "r") as f:
        return f["templates/template"][()], [f[f"bins/{i}"][()] for i in range(4)]


# ---------------------------------------------------------------------------------------------
# converted file == raw release
# ---------------------------------------------------------------------------------------------


def test_shipped_file_small_and_licensed(rel):
    assert SHIPPED.stat().st_size < 5e6
    a = rel.dataset.attrs
    assert a["license"] == "CC-BY-4.0" and "10.5281/zenodo.20576156" in a["citation"]
    assert x8.REPO_COMMIT in a["citation"] and a["converter_version"] == x8.CONVERTER_VERSION
    assert "CC-BY-4.0" in a["attribution"] and "XENON" in a["attribution"]
    lic = (ROOT / "nuinfer" / "data" / "xenonnt_8b_cevns_LICENSE.txt").read_text()
    assert "Attribution 4.0 International" in lic and "10.5281/zenodo.20576156" in lic
    assert "assumed" in rel.dataset["rel_unc_ac"].attrs["assumption"]


def test_converted_equals_raw_reader(rel, raw):
    a, b = rel.dataset, raw.dataset
    for v in ("observed", "ac", "er", "neutron", "exposure", "rel_unc_ac",
              *[f"edges_{o}" for o in x8.OBSERVABLES]):
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
    np.testing.assert_array_equal(a["mono"].values, b["mono"].values)  # both float32 in the dataset
    assert rel.exposure_t_yr == raw.exposure_t_yr == x8.EXPOSURE_T_YR
    assert rel.rel_uncertainty == raw.rel_uncertainty


def test_converted_reproduces_release_files(rel, raw_dir):
    """Independent of the package reader: h5py on a random sample of release files."""
    rng = np.random.default_rng(13)
    ds = rel.dataset
    for sr in x8.SCIENCE_RUNS:
        t = raw_dir / "templates" / sr
        for comp in ("ac", "er"):
            tpl, _ = _h5(t / comp / f"template_XENONnT_{sr}_{comp}_cevns.h5")
            np.testing.assert_array_equal(ds[comp].sel(sr=sr).values, tpl.ravel())  # C order
            np.testing.assert_array_equal(ds[comp].sel(sr=sr).values.reshape(3, 3, 3, 3), tpl)
        for _ in range(4):
            a, b = rng.choice(x8.T_GRID, 2)
            tpl, _ = _h5(t / "rg" / f"template_XENONnT_{sr}_rg_cevns_tly_{a:.1f}_tqy_{b:.1f}.h5")
            np.testing.assert_array_equal(ds["neutron"].sel(sr=sr, t_ly=a, t_qy=b).values, tpl.ravel())
        for _ in range(12):
            a, b = rng.choice(x8.T_GRID, 2)
            E = rng.choice(x8.E_NR_KEV)
            tpl, _ = _h5(t / "mono" / f"template_XENONnT_{sr}_mono_{E:.3f}_cevns_tly_{a:.1f}_tqy_{b:.1f}.h5")
            got = ds["mono"].sel(sr=sr, t_ly=a, t_qy=b, E_nr_keV=E).values
            np.testing.assert_allclose(got, tpl.ravel(), rtol=6e-8, atol=0)  # float32 storage
            np.testing.assert_allclose(rel.fold_matrix(sr, a, b)[list(x8.E_NR_KEV).index(E)],
                                       rel.exposure_t_yr[sr] * 0.1 * tpl.ravel(), rtol=6e-8)


def test_observed_counts_match_histogramdd(rel, raw_dir):
    total = 0
    for sr in x8.SCIENCE_RUNS:
        ev = pd.read_csv(raw_dir / "data" / f"{sr}.csv", index_col=0)  # as the release's plot.ipynb
        sample = ev[list(x8.OBSERVABLES)].to_numpy()
        _, bins = _h5(raw_dir / "templates" / sr / "ac" / f"template_XENONnT_{sr}_ac_cevns.h5")
        h, _ = np.histogramdd(sample, bins=bins)
        assert h.sum() == len(sample)  # nothing outside the binning
        np.testing.assert_array_equal(rel.observed(sr), h.ravel().astype(int))
        total += len(sample)
    assert rel.observed("sr0").sum() + rel.observed("sr1").sum() == 37  # PRL 133 (2024) 191002
    assert total == 62


def test_backgrounds_match_publication(rel):
    # SR0+SR1 background expectation, PRL 133 (2024) 191002: 26.4 (+1.4 -1.3) events
    b = sum(rel.background(sr, n).sum() for sr in ("sr0", "sr1") for n in ("ac", "er", "neutron"))
    assert b == pytest.approx(26.4, abs=1.4)
    # per exposure = the release template
    np.testing.assert_array_equal(rel.background("sr1", "ac", per_exposure=True), rel.dataset["ac"].sel(sr="sr1"))


@pytest.mark.slow
def test_converter_script_roundtrip(raw_dir, tmp_path):
    out = tmp_path / "x.nc"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_xenonnt_8b.py"), str(raw_dir), "-o", str(out)],
                       capture_output=True, text=True, check=True)
    assert "MB" in r.stdout
    with xr.open_dataset(out) as a, xr.open_dataset(SHIPPED) as b:
        for v in b.data_vars:
            np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
        assert a["mono"].dtype == np.float32 and a["mono"].encoding.get("zlib")


# ---------------------------------------------------------------------------------------------
# fold, interpolation, gradient
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sr", x8.SCIENCE_RUNS)
def test_fold_of_a_line_is_exposure_times_template(rel, sr):
    mono = rel.dataset["mono"].sel(sr=sr)
    for k in (0, 7, 23, 45):
        dR = np.zeros(rel.E_nr_keV.size)
        dR[k] = 1.0 / rel.dE_keV  # unit rate [1/(t yr)] at E_k
        for a, b in ((0.0, 0.0), (1.0, -2.0), (-3.0, 3.0)):
            got = rel.fold(dR, sr, a, b)
            want = rel.exposure_t_yr[sr] * mono.sel(t_ly=a, t_qy=b).isel(E_nr_keV=k).values.astype(float)
            np.testing.assert_allclose(got, want, rtol=1e-12)


def test_bilinear_nodes_midpoints_and_clipping(rel):
    dR = b8_cevns_dR_dEnr(rel.E_nr_keV)
    nodes = {(a, b): rel.fold(dR, "sr1", a, b) for a in (0.0, 1.0) for b in (-2.0, -1.0)}
    np.testing.assert_allclose(rel.fold(dR, "sr1", 0.5, -1.5), np.mean(list(nodes.values()), axis=0), rtol=1e-12)
    np.testing.assert_allclose(rel.fold(dR, "sr1", 0.25, -2.0),
                               0.75 * nodes[(0.0, -2.0)] + 0.25 * nodes[(1.0, -2.0)], rtol=1e-12)
    np.testing.assert_allclose(rel.fold(dR, "sr1", 4.0, -7.0), rel.fold(dR, "sr1", 3.0, -3.0), rtol=1e-12)
    n = rel.background("sr2", "neutron", 2.0, -1.0)
    np.testing.assert_allclose(n, rel.exposure_t_yr["sr2"] * rel.dataset["neutron"].sel(sr="sr2", t_ly=2, t_qy=-1),
                               rtol=1e-12)


def test_gradient_matches_finite_differences(rel):
    dR = b8_cevns_dR_dEnr(rel.E_nr_keV)
    rng = np.random.default_rng(1)
    t = rng.uniform(-2.9, 2.9, size=(20, 2))
    t = t[np.all(np.abs(t - np.round(t)) > 0.01, axis=1)]  # away from the kinks at the nodes
    v, gx, gy = rel.fold(dR, "sr0", t[:, 0], t[:, 1], return_grad=True)
    h = 1e-6
    fx = (rel.fold(dR, "sr0", t[:, 0] + h, t[:, 1]) - rel.fold(dR, "sr0", t[:, 0] - h, t[:, 1])) / (2 * h)
    fy = (rel.fold(dR, "sr0", t[:, 0], t[:, 1] + h) - rel.fold(dR, "sr0", t[:, 0], t[:, 1] - h)) / (2 * h)
    scale = np.abs(v).max()
    np.testing.assert_allclose(gx, fx, atol=1e-7 * scale)
    np.testing.assert_allclose(gy, fy, atol=1e-7 * scale)
    assert np.abs(gx).max() > 1e-3 * scale  # the derivative is not trivially 0
    n, nx, ny = rel.background("sr0", "neutron", t[:, 0], t[:, 1], return_grad=True)
    fnx = (rel.background("sr0", "neutron", t[:, 0] + h, t[:, 1])
           - rel.background("sr0", "neutron", t[:, 0] - h, t[:, 1])) / (2 * h)
    np.testing.assert_allclose(nx, fnx, atol=1e-7 * np.abs(n).max())


def test_fold_batches_and_fold_matrix(rel):
    dR0 = b8_cevns_dR_dEnr(rel.E_nr_keV)
    dR = dR0 * np.arange(1, 6)[:, None]  # (5, 46)
    t = np.linspace(-1.3, 2.2, 5)
    got = rel.fold(dR, "sr2", t, -t)
    assert got.shape == (5, x8.N_BINS)
    for i in range(5):
        np.testing.assert_allclose(got[i], rel.fold(dR[i], "sr2", t[i], -t[i]), rtol=1e-12)
        np.testing.assert_allclose(got[i], dR[i] @ rel.fold_matrix("sr2", t[i], -t[i]), rtol=1e-10)
    grid = rel.fold(dR0, "sr2", t[:, None], t[None, :4])
    assert grid.shape == (5, 4, x8.N_BINS)
    np.testing.assert_allclose(grid[2, 3], rel.fold(dR0, "sr2", t[2], t[3]), rtol=1e-12)
    M = rel.fold_matrix("sr2", t, 0.3)
    assert M.shape == (5, rel.E_nr_keV.size, x8.N_BINS)
    np.testing.assert_allclose(np.einsum("e,teb->tb", dR0, M), rel.fold(dR0, "sr2", t, 0.3), rtol=1e-10)
    nodes = rel.fold_nodes(dR, "sr2")
    assert nodes.shape == (5, 7, 7, x8.N_BINS)
    np.testing.assert_allclose(rel.interpolate(nodes, t, -t), got, rtol=1e-12)
    with pytest.raises(DataFileError, match="last axis 46"):
        rel.fold(dR0[:-1], "sr0")


# ---------------------------------------------------------------------------------------------
# physics: SM 8B counts and the reference fit
# ---------------------------------------------------------------------------------------------


def test_sm_8b_expected_counts(rel):
    """SM 8B CEvNS (B16-GS98 flux 5.46e6, package cross section) folded with the release.

    Measured: SR0 3.40, SR1 6.27 (sum 9.67), SR2 7.54 events.  Published SR0+SR1 expectation 11.9:
    -19%.  Tolerance 25% = the signal-efficiency uncertainty of the collaboration's model; the
    difference is the response model (the release templates are the SR0-SR2 ones, PROVENANCE.md).
    """
    dR = b8_cevns_dR_dEnr(rel.E_nr_keV)
    # the grid 0.45-5.05 keVnr holds the whole 8B spectrum seen by the detector (E_max ~ 4.4 keVnr)
    assert b8_cevns_dR_dEnr([5.1])[0] < 1e-6 * dR[0]
    n = {sr: rel.fold(dR, sr).sum() for sr in x8.SCIENCE_RUNS}
    s01 = n["sr0"] + n["sr1"]
    assert s01 == pytest.approx(11.9, rel=0.25)
    assert s01 == pytest.approx(9.67, rel=0.03)  # regression guard (3%: the package 8B shape may be refitted)
    # per exposure the SRs agree to ~20% (different selections)
    per = np.array([n[sr] / rel.exposure_t_yr[sr] for sr in x8.SCIENCE_RUNS])
    assert per.max() / per.min() < 1.25


@pytest.mark.slow
def test_reference_fit_sr0_sr1_reproduces_prl(rel):
    """Measured: flux 6.12 (+4.81 -2.90) x 1e6 cm^-2 s^-1, sqrt(q0) = 2.75.

    PRL 133 (2024) 191002: (4.7 +3.6 -2.3), 2.73 sigma.  The significance depends on the data and
    the background model only and agrees to 0.02; the flux is higher by the factor by which the
    release's SR0-SR2 response predicts fewer 8B events per flux (11.9 / 9.67): corrected for it the
    flux is 4.97, 6% from 4.7; the relative interval widths agree to 0.03.
    """
    res = reference_fit(rel, ("sr0", "sr1"))
    assert res["minuit"].valid
    assert res["sqrt_q0"] == pytest.approx(2.73, abs=0.15)
    ratio = (res["expected_sm"]["sr0"] + res["expected_sm"]["sr1"]) / 11.9
    assert res["flux"] * ratio == pytest.approx(4.7, rel=0.15)
    assert (res["hi"] - res["flux"]) / res["flux"] == pytest.approx(3.6 / 4.7, abs=0.1)
    assert (res["flux"] - res["lo"]) / res["flux"] == pytest.approx(2.3 / 4.7, abs=0.1)
    assert res["flux"] == pytest.approx(6.12, rel=0.03)  # regression guard of the quoted number


@pytest.mark.slow
def test_reference_fit_sr0_to_sr2(rel):
    """Measured: flux 5.06 (+3.67 -2.13) x 1e6 cm^-2 s^-1, sqrt(q0) = 3.27 (SR2 alone: 4.1, 1.9 sigma).

    Adding SR2 (25 events on ~15.5 background) strengthens the evidence and pulls the flux towards
    the SNO / B16 value (5.25-5.46).  No published SR0-SR2 numbers are compared here.
    """
    res = reference_fit(rel, ("sr0", "sr1", "sr2"))
    assert res["minuit"].valid
    assert res["sqrt_q0"] == pytest.approx(3.27, abs=0.05)
    assert res["flux"] == pytest.approx(5.06, rel=0.03)
    assert res["lo"] < B16_GS98_8B / 1e6 < res["hi"]


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def _mirror(raw_dir: Path, dest: Path, skip=()) -> Path:
    """Symlink tree of the release without the files in ``skip`` (relative paths)."""
    skip = {Path(s) for s in skip}
    for p in raw_dir.rglob("*"):
        rel = p.relative_to(raw_dir)
        if p.is_dir():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel not in skip:
            (dest / rel).symlink_to(p)
    return dest


def test_wrong_path_names_it_and_the_release(tmp_path):
    with pytest.raises(DataFileError, match=r"data\.xenonnt_8b: .*nowhere.* does not exist.*zenodo DOI "
                                            r"10\.5281/zenodo\.20576156.*XENONnT/cevns_data_release"):
        x8.load(tmp_path / "nowhere")


def test_missing_shipped_file_says_where_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(x8, "shipped_path", lambda: tmp_path / "none.nc")
    with pytest.raises(DataFileError, match=r"^mykey: .*not installed.*10\.5281/zenodo\.20576156.*path="):
        x8.load(key="mykey")


def test_missing_h5py_is_one_line(monkeypatch, raw_dir):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(DataFileError, match=r"pip install nuinfer\[hdf5\]") as e:
        x8.load(raw_dir)
    assert "\n" not in str(e.value)


def test_incomplete_folder_names_the_missing_file(raw_dir, tmp_path):
    gone = "templates/sr0/mono/template_XENONnT_sr0_mono_0.700_cevns_tly_-3.0_tqy_-2.0.h5"
    d = _mirror(raw_dir, tmp_path / "r", skip=[gone])
    with pytest.raises(DataFileError, match=r"template_XENONnT_sr0_mono_0\.700_cevns_tly_-3\.0_tqy_-2\.0\.h5.*missing"):
        x8.load(d)
    d2 = _mirror(raw_dir, tmp_path / "r2", skip=["binning/sr0.yaml"])
    with pytest.raises(DataFileError, match=r"sr0\.yaml.*missing"):
        x8.load(d2)


def test_events_outside_binning_name_the_csv(raw_dir, tmp_path):
    d = _mirror(raw_dir, tmp_path / "r", skip=["data/sr0.csv"])
    lines = (raw_dir / "data" / "sr0.csv").read_text().splitlines()
    cells = lines[3].split(",")
    cells[1] = "600.0"  # cs2 above the last edge (500 PE)
    lines[3] = ",".join(cells)
    (d / "data" / "sr0.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match=r"sr0\.csv.*1 event.*cs2 outside the binning"):
        x8.load(d)


def test_wrong_shape_template_and_bad_yaml(raw_dir, tmp_path):
    d = _mirror(raw_dir, tmp_path / "r", skip=["templates/sr0/ac/template_XENONnT_sr0_ac_cevns.h5",
                                               "binning/sr1.yaml"])
    bad = d / "templates/sr0/ac/template_XENONnT_sr0_ac_cevns.h5"
    shutil.copy(raw_dir / "templates/sr0/ac/template_XENONnT_sr0_ac_cevns.h5", bad)
    with h5py.File(bad, "r+") as f:
        del f["templates/template"]
        f["templates/template"] = np.ones((3, 3, 3, 2))
    with pytest.raises(DataFileError, match=r"template_XENONnT_sr0_ac_cevns\.h5.*shape \(3, 3, 3, 2\)"):
        x8.load(d)
    (d / "binning/sr1.yaml").write_text("cs2: [1, 2]\n")
    with pytest.raises(DataFileError, match=r"sr1\.yaml' line 1"):
        x8.parse_binning_yaml(d / "binning/sr1.yaml")


def test_wrong_shape_converted_file_and_exposures(rel, raw_dir, tmp_path):
    p = tmp_path / "short.nc"
    rel.dataset.isel(E_nr_keV=slice(0, 40)).to_netcdf(p)
    with pytest.raises(DataFileError, match=r"short\.nc: variable 'mono' has dims .*E_nr_keV': 40.*re-convert"):
        x8.load(p)
    q = tmp_path / "neg.nc"
    ds = rel.dataset.copy(deep=True)
    ds["exposure"][1] = -1.0
    ds.to_netcdf(q)
    with pytest.raises(DataFileError, match=r"neg\.nc.*exposure"):
        x8.load(q)
    with pytest.raises(DataFileError, match=r"exposure_t_yr: .*need exactly \['sr0', 'sr1', 'sr2'\]"):
        x8.load(raw_dir, exposure_t_yr={"sr0": 1.0, "sr1": 2.0})
    (tmp_path / "junk.nc").write_text("not netcdf")
    with pytest.raises(DataFileError, match=r"cannot read .*junk\.nc"):
        x8.load(tmp_path / "junk.nc")
