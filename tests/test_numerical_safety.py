"""Numerical safety at the extreme corners of the parameter space (issue 7).

Corners: g_X up to 1, m_X from 1e-3 MeV (1 keV) to 1e5 MeV (100 GeV), exposures of 1 and 1e-6
tonne-years, every new-physics model, both processes, both statistics, Asimov data and extreme
toy data (no counts at all; counts far above the SM).  ForwardModel.templates and
nuinfer.tasks.template_scan must either compute finite numbers or raise a nuinfer exception with a
message naming the input; nothing NaN or infinite may reach a result file, which is checked by
writing with nuinfer.io.write_netcdf and reopening with plain xarray.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from nuinfer.physics.detector import Binning
from nuinfer.exceptions import NuinferError, UnphysicalInput
from nuinfer.forward import ForwardModel
from nuinfer.tasks import background_counts, exclusion, scan
from nuinfer.io import write_netcdf
from nuinfer.physics.mediators import MODELS

NP_MODELS = [m for m in MODELS if m != "SM"]
MASSES = np.array([1e-3, 1e-1, 10.0, 1e3, 1e5])  # MeV
G_GRID = np.geomspace(1e-8, 1.0, 17)
EXPOSURES = (1.0, 1e-6)
BINNING = {"cevns": Binning(0.1, 100.0, 20), "eves": Binning(0.1, 1e4, 20)}


@pytest.fixture(scope="module")
def forward_models():
    return {(p, e): ForwardModel(p, binning=BINNING[p], exposure_tonne_year=e)
            for p in BINNING for e in EXPOSURES}


@pytest.fixture(scope="module")
def templates(forward_models):
    return {(p, e, mo): fm.templates(mo, MASSES) for (p, e), fm in forward_models.items() for mo in NP_MODELS}


def assert_file_is_finite(ds: xr.Dataset, path) -> xr.Dataset:
    """Write ``ds`` atomically, reopen it with plain xarray and check every number is finite."""
    write_netcdf(ds, path)
    with xr.open_dataset(path) as back:
        back = back.load()
    for name, var in back.variables.items():
        if var.dtype.kind in "fc":
            assert np.all(np.isfinite(var.values)), f"non-finite values in variable {name}"
    for owner in [back, *back.variables.values()]:
        for k, v in owner.attrs.items():
            arr = np.asarray(v)
            if arr.dtype.kind in "fc":
                assert np.all(np.isfinite(arr)), f"non-finite attribute {k} = {v!r}"
    return back


# --------------------------------------------------------------------------------------------
# templates
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exposure", EXPOSURES)
@pytest.mark.parametrize("process", sorted(BINNING))
@pytest.mark.parametrize("model", NP_MODELS)
def test_templates_finite_at_extreme_masses(templates, process, exposure, model):
    t = templates[(process, exposure, model)]
    T = t["T"].values
    assert np.all(np.isfinite(T))
    assert np.all(T[0] > 0) and np.all(T[2] >= 0)
    # expected counts at every coupling up to 1 are finite and non-negative (rounding aside)
    g2 = (G_GRID**2)[None, :, None]
    R = T[0][:, None] + g2 * T[1][:, None] + g2 * g2 * T[2][:, None]  # (m_X, g_X, bin)
    assert np.all(np.isfinite(R))
    assert np.all(R >= -1e-9 * T[0][:, None])
    # linear in exposure: the 1e-6 t yr templates are the 1 t yr ones scaled (no underflow games)
    if exposure != 1.0:
        np.testing.assert_allclose(T, templates[(process, 1.0, model)]["T"].values * exposure,
                                   rtol=1e-12, atol=0)


@pytest.mark.parametrize("process", sorted(BINNING))
def test_spectrum_at_extreme_point_is_finite(forward_models, process):
    fm = forward_models[(process, 1.0)]
    for model in NP_MODELS:
        for m in (MASSES[0], MASSES[-1]):
            ds = fm.spectrum(model, 1.0, m)
            assert np.all(np.isfinite(ds["total"].values)) and np.all(ds["total"].values >= 0)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf])
def test_bad_mass_or_coupling_raises_clear_error(forward_models, bad):
    fm = forward_models[("eves", 1.0)]
    with pytest.raises(UnphysicalInput, match="m_X"):
        fm.templates("V", [1.0, bad])
    with pytest.raises(UnphysicalInput, match="m_X"):
        fm.spectrum("V", 1e-3, bad)
    if bad != 0.0:
        with pytest.raises(UnphysicalInput, match="g_X"):
            fm.spectrum("V", bad, 1.0)


# --------------------------------------------------------------------------------------------
# scans and result files
# --------------------------------------------------------------------------------------------
def _toy_data(r_sm, kind):
    bg = background_counts(r_sm, 0.1)
    if kind == "asimov":
        return None
    if kind == "no_counts":  # n = 0 in every bin: D = n - R_bg
        return -bg
    if kind == "huge":  # 1e6 times the SM
        return 1e6 * r_sm
    raise ValueError(kind)


@pytest.mark.parametrize("statistic", ["eq26", "poisson"])
@pytest.mark.parametrize("exposure", EXPOSURES)
@pytest.mark.parametrize("process", sorted(BINNING))
def test_scan_is_finite_and_file_has_no_nan(templates, process, exposure, statistic, tmp_path):
    scans = {}
    for model in NP_MODELS:
        t = templates[(process, exposure, model)]
        for kind in ("asimov", "no_counts", "huge"):
            try:
                ds = scan(t, G_GRID, data=_toy_data(t["R_SM"].values, kind), statistic=statistic)
            except NuinferError as exc:  # a clear, named error is acceptable; NaN is not
                assert str(exc) and ":" in str(exc)
                continue
            delta = ds[ds.attrs["statistic_variable"]].values
            assert np.all(np.isfinite(delta)) and np.all(delta >= 0), (model, kind)
            assert ds.attrs["n_not_converged"] == 0, (model, kind)
            ex = exclusion(ds)
            assert set(np.unique(ex["g90_status"].values)) <= {0, 1, 2}
            scans[(model, kind)] = ds
    assert len(scans) == 3 * len(NP_MODELS)  # nothing needed to raise at these corners
    # one file per data kind with every model stacked, as the workflows write them
    for kind in ("asimov", "no_counts", "huge"):
        stacked = xr.concat([scans[(mo, kind)] for mo in NP_MODELS], dim="model",
                            combine_attrs="drop_conflicts").assign_coords(model=NP_MODELS)
        back = assert_file_is_finite(stacked, tmp_path / f"{kind}.nc")
        assert back.sizes["m_X"] == MASSES.size and back.sizes["g_X"] == G_GRID.size
    # a single scan keeps every attribute (including the best-fit point): also finite on disk
    assert_file_is_finite(scans[("S", "no_counts")], tmp_path / "single.nc")


def test_best_fit_attrs_are_finite_when_sm_is_best(templates, tmp_path):
    """Regression: the best-fit mass was NaN when the SM was the best fit, and the NaN reached the
    NetCDF attributes.  Asimov SM data: the SM is the exact minimum (chi2 = 0)."""
    t = templates[("eves", 1.0, "S")]
    ds = scan(t, G_GRID, data=t["R_SM"].values)
    assert ds.attrs["best_fit_is_sm"] == 1
    assert ds.attrs["best_fit_m_X_MeV"] == 0.0 and ds.attrs["best_fit_g_X"] == 0.0
    back = assert_file_is_finite(ds, tmp_path / "sm_best.nc")
    assert back.attrs["best_fit_is_sm"] == 1


def test_tiny_exposure_with_default_bin_cut_raises_empty_window(forward_models):
    """With 1e-6 t yr and min_expected = 1 event, every bin is dropped: a named error, not NaN."""
    from nuinfer.exceptions import EmptyWindow

    t = forward_models[("cevns", 1e-6)].templates("V", MASSES)
    with pytest.raises(EmptyWindow, match="min_expected"):
        scan(t, G_GRID, min_expected=1.0)
