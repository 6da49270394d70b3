"""Detector response: Lindhard quenching (Eq. 20), exact keVee binning (Eq. 21), efficiency, resolution."""

from pathlib import Path

import numpy as np
import pytest

from nuinfer.physics.detector import (
    XENON_ER_RESOLUTION, Binning, Detector, Quenching, lindhard_k, xenonnt_er_efficiency,
)
from nuinfer.exceptions import DataFileError, InvalidConfig, UnphysicalInput
from nuinfer.physics.targets import natural_xenon

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def test_lindhard_k_and_qf():
    # PHYSICS.md sec 6: k = 0.133 Z^(2/3) A^(-1/2) = 0.166 for xenon; Q_f(1 keVnr) = 0.152 (3 digits)
    assert round(lindhard_k(54, natural_xenon().mean_A), 3) == 0.166
    assert round(float(Quenching(k=0.166).qf(1.0)), 3) == 0.152


def test_inverse_quenching_roundtrip_and_monotone():
    q = Quenching(k=0.166)
    ee = np.geomspace(0.01, 1e3, 200)
    nr = q.e_nr(ee)
    np.testing.assert_allclose(q.e_ee(nr), ee, rtol=1e-12)
    assert np.all(np.diff(nr) > 0) and np.all(nr > ee)
    # the CEvNS form-factor dip at ~100 keVnr appears near 25 keVee (paper Sec. 4.1)
    assert 20 < q.e_ee(100.0) < 30


def test_quenching_validation():
    with pytest.raises(InvalidConfig, match="detector.quenching.model"):
        Quenching("linhard")
    with pytest.raises(UnphysicalInput, match="k must be > 0"):
        Quenching(k=-0.1)
    with pytest.raises(DataFileError):
        Quenching("table", table=((1.0, 0.5), (0.2, 0.3)))


def test_binning_edges_and_validation():
    b = Binning(0.1, 100, 100)
    assert b.edges.size == 101 and b.edges[0] == pytest.approx(0.1) and b.edges[-1] == pytest.approx(100)
    np.testing.assert_allclose(np.diff(np.log(b.edges)), np.log(1000) / 100)
    with pytest.raises(UnphysicalInput, match="binning.lo"):
        Binning(10, 1, 10)
    with pytest.raises(UnphysicalInput, match="binning.n"):
        Binning(1, 10, 0)
    with pytest.raises(UnphysicalInput, match="binning.lo"):
        Binning(-1, 10, 5)


def test_ideal_response_is_a_bin_lookup():
    b = Binning(1, 10, 9, "linear")
    R = Detector(Quenching("none")).response(np.array([0.5, 1.5, 9.99, 12.0]), b)
    assert R.sum(axis=1).tolist() == [0, 1, 1, 0]
    assert R[1, 0] == 1 and R[2, 8] == 1


def test_resolution_response_conserves_probability():
    b = Binning(0.01, 1e4, 300)
    d = Detector(Quenching("none"), resolution=XENON_ER_RESOLUTION)
    R = d.response(np.array([3.0, 10.0, 100.0]), b)
    np.testing.assert_allclose(R.sum(axis=1), 1.0, atol=1e-6)
    mean = (R * b.centers).sum(axis=1)
    np.testing.assert_allclose(mean, [3.0, 10.0, 100.0], rtol=0.03)


def test_xenonnt_efficiency_parametrisation_matches_public_curve():
    # digitised XENONnT SR0 ER efficiency (arXiv:2207.11330): parametrisation within 0.02 absolute
    d = np.loadtxt(DATA / "xenon_detector_response" / "XNT_ER_22.csv", delimiter=",")
    assert np.max(np.abs(xenonnt_er_efficiency(d[:, 0]) - d[:, 1])) < 0.02
    assert xenonnt_er_efficiency(0.1) < 1e-3


def test_efficiency_table_validation():
    with pytest.raises(DataFileError):
        Detector(efficiency=((1.0, 2.0), (0.5, 1.5))).efficiency_at(1.0)


def test_banded_smeared_cdf_equals_the_dense_evaluation():
    """The response's Gaussian CDF is evaluated only within 10 sigma of each energy; everywhere
    else the exact value is 0 or 1 to 7.6e-24 (scipy.special.ndtr(-10)).  Unsorted energies,
    energies outside the edges and tiny and large widths, as in the ER and 8B likelihoods."""
    from scipy.special import ndtr

    from nuinfer.physics.detector import smeared_cdf
    rng = np.random.default_rng(7)
    e = np.concatenate([np.linspace(0.5, 31.0, 611), [45.0, 140.0]])
    E = rng.uniform(0.01, 160.0, 3001)  # unsorted, some far outside the edges
    sig = np.where(rng.random(E.size) < 0.05, 1e-12, 0.31 * np.sqrt(E) + 0.0037 * E)
    dense = ndtr((e[None, :] - E[:, None]) / sig[:, None])
    band = smeared_cdf(E, sig, e, rows=97)  # blocks that do not divide the rows
    assert float(ndtr(-10.0)) < 7.7e-24
    np.testing.assert_allclose(band, dense, rtol=0, atol=7.7e-24)
    # in the band the values are the same ndtr evaluations, not approximations
    inside = (dense > 1e-20) & (dense < 1 - 1e-15)
    assert inside.sum() > 10_000 and np.array_equal(band[inside], dense[inside])
