"""Detector response: quenching, binning, efficiency and energy resolution.

Quenching (Eq. 20, Lindhard theory, J. Lindhard et al., Mat. Fys. Medd. 33 (1963) 10)
    Q_f = k g / (1 + k g),  g = 3 eps^0.15 + 0.7 eps^0.6 + eps,  eps = 11.5 Z^(-7/3) E_nr/keV,
    k = 0.133 Z^(2/3) A^(-1/2)  (= 0.166 for natural xenon).
The reference paper prints Z^(-2/3) in k, a transcription error (it would give k ~ 8e-4);
PHYSICS.md section 6.

Binning (Eq. 21): bins are defined in electron-equivalent energy.  For nuclear recoils each keVee
bin edge is mapped to keVnr by inverting E_ee = Q_f(E_nr) E_nr (monotonic), and dR/dE_nr is
integrated between the mapped edges: this is Eq. 21 done exactly (no Jacobian approximations).

Realistic response (hooks; the paper preset is an ideal detector)
    * efficiency: a callable eps(E_ee [keVee]) in [0, 1], or a table (E_keVee, eps), applied at the
      electron-equivalent energy of each recoil;
    * resolution: Gaussian, sigma(E_ee) = a sqrt(E/keV) + b E (keV), or any callable
      sigma(E_ee [keVee]) -> keVee (e.g. :func:`germanium_resolution`, electronic noise plus Fano
      statistics).  The XENON ER resolution sigma/E = 0.310/sqrt(E/keV) + 0.0037 (XENON1T, Aprile et
      al., PRD 102 (2020) 072004) is the preset ``"xenon"``.

Quenching-factor nuisance: ``Quenching(..., scale=s)`` multiplies Q_f by ``s`` (default 1), which
is how the data-driven fits (:mod:`nuinfer.tasks.datafit`) vary the quenching normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.special import ndtr

from nuinfer.exceptions import DataFileError, InvalidConfig, UnphysicalInput


QUENCHING_MODELS = ("lindhard", "lindhard_adiabatic", "constant", "table", "none")


def lindhard_k(Z: int, A: float) -> float:
    """Lindhard k = 0.133 Z^(2/3) A^(-1/2) (correct exponent, see module docstring)."""
    return 0.133 * Z ** (2.0 / 3.0) / np.sqrt(A)


@dataclass(frozen=True)
class Quenching:
    """Nuclear-recoil quenching factor.

    Parameters
    ----------
    model : {"lindhard", "lindhard_adiabatic", "constant", "table", "none"}
        ``"lindhard"`` (Eq. 20, parameter ``k``); ``"lindhard_adiabatic"`` (Eq. 20 times the adiabatic
        low-energy factor 1 - exp(-E_nr / xi), xi = ``xi_keV``; the correction the paper's footnote 7
        tests with the germanium value of Collar et al., PRD 103 (2021) 122003); ``"constant"`` (Q_f = ``value``);
        ``"table"`` (user curve (E_nr keV, Q_f) interpolated in log E, constant beyond the ends);
        ``"none"`` means electron recoils (Q_f = 1).
    scale : float
        Multiplies Q_f (quenching normalisation; default 1).  Must be in (0, 10].
    """

    model: str = "lindhard"
    k: float = 0.166
    Z: int = 54
    value: float = 0.15
    table: tuple | None = None
    xi_keV: float = 0.16
    scale: float = 1.0

    def __post_init__(self):
        if self.model not in QUENCHING_MODELS:
            raise InvalidConfig(
                f"unknown quenching model {self.model!r}; use one of {', '.join(QUENCHING_MODELS)}",
                key="detector.quenching.model",
            )
        if not (np.isfinite(self.scale) and 0 < self.scale <= 10):
            raise UnphysicalInput(f"quenching scale must be in (0, 10], got {self.scale}",
                                  key="detector.quenching.scale")
        if self.model == "lindhard_adiabatic" and not (self.xi_keV > 0):
            raise UnphysicalInput(f"xi must be > 0 keV, got {self.xi_keV}", key="detector.xi_keV")
        if self.model.startswith("lindhard") and not (self.k > 0):
            raise UnphysicalInput(f"k must be > 0, got {self.k}", key="detector.quenching.k")
        if self.model == "constant" and not (0 < self.value <= 1):
            raise UnphysicalInput(f"value must be in (0, 1], got {self.value}", key="detector.quenching.value")
        if self.model == "table":
            if self.table is None:
                raise InvalidConfig("model 'table' needs table=(E_nr_keV, Q_f)", key="detector.quenching.table")
            E, Q = (np.asarray(x, float) for x in self.table)
            if E.ndim != 1 or E.shape != Q.shape or E.size < 2 or np.any(np.diff(E) <= 0) or np.any(E <= 0):
                raise DataFileError("quenching table needs >= 2 rows of strictly increasing positive E_nr",
                                    key="detector.quenching.table")
            if np.any(~np.isfinite(Q)) or np.any(Q <= 0) or np.any(Q > 1):
                raise DataFileError("quenching factors must be finite and in (0, 1]", key="detector.quenching.table")

    def qf(self, E_nr_keV) -> np.ndarray:
        """Quenching factor Q_f(E_nr) (E_nr in keVnr)."""
        E = np.asarray(E_nr_keV, dtype=float)
        if self.model == "none":
            return np.ones_like(E)
        q = self._qf_unscaled(E)
        return q * self.scale if self.scale != 1.0 else q

    def _qf_unscaled(self, E) -> np.ndarray:
        if self.model == "constant":
            return np.full_like(E, self.value)
        if self.model == "table":
            Et, Qt = (np.asarray(x, float) for x in self.table)
            return np.interp(np.log(np.maximum(E, 1e-300)), np.log(Et), Qt)
        eps = 11.5 * self.Z ** (-7.0 / 3.0) * np.maximum(E, 0.0)
        g = 3.0 * eps**0.15 + 0.7 * eps**0.6 + eps
        q = self.k * g / (1.0 + self.k * g)
        if self.model == "lindhard_adiabatic":
            q = q * -np.expm1(-np.maximum(E, 0.0) / self.xi_keV)
        return q

    def e_ee(self, E_nr_keV) -> np.ndarray:
        """Electron-equivalent energy E_ee = Q_f(E_nr) E_nr [keVee]."""
        E = np.asarray(E_nr_keV, dtype=float)
        return self.qf(E) * E

    def e_nr(self, E_ee_keV) -> np.ndarray:
        """Inverse of :meth:`e_ee` (vectorised bisection in log E, then Newton polish)."""
        y = np.asarray(E_ee_keV, dtype=float)
        if self.model == "none":
            return y.copy()
        if np.any(y <= 0):
            raise UnphysicalInput("electron-equivalent energies must be > 0", key="binning")
        lo = np.log(y) - np.log(max(self.scale, 1.0))  # Q_f <= scale -> E_nr >= E_ee / scale
        hi = np.log(y) + np.log(1e6)
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            below = self.e_ee(np.exp(mid)) < y
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return np.exp(0.5 * (lo + hi))


@dataclass(frozen=True)
class Binning:
    """Analysis bins in electron-equivalent energy [keVee]."""

    lo: float = 0.1
    hi: float = 100.0
    n: int = 100
    scale: str = "log"
    edges_keVee: tuple | None = None

    def __post_init__(self):
        if self.edges_keVee is not None:
            e = np.asarray(self.edges_keVee, float)
            if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0) or e[0] <= 0 or not np.all(np.isfinite(e)):
                raise UnphysicalInput("edges must be >= 2 strictly increasing positive numbers",
                                      key="binning.edges_keVee")
            return
        if not isinstance(self.n, (int, np.integer)) or isinstance(self.n, bool) or self.n < 1:
            raise UnphysicalInput(f"number of bins must be a positive integer, got {self.n!r}", key="binning.n")
        if not (np.isfinite(self.lo) and np.isfinite(self.hi)) or self.lo <= 0:
            raise UnphysicalInput(f"lo must be a finite positive energy in keVee, got {self.lo}", key="binning.lo")
        if self.lo >= self.hi:
            raise UnphysicalInput(f"lo ({self.lo}) must be below hi ({self.hi})", key="binning.lo")
        if self.scale not in ("log", "linear"):
            raise InvalidConfig(f"scale must be 'log' or 'linear', got {self.scale!r}", key="binning.scale")

    @property
    def edges(self) -> np.ndarray:
        if self.edges_keVee is not None:
            return np.asarray(self.edges_keVee, float)
        if self.scale == "log":
            return np.geomspace(self.lo, self.hi, self.n + 1)
        return np.linspace(self.lo, self.hi, self.n + 1)

    @property
    def nbins(self) -> int:
        return self.edges.size - 1

    @property
    def centers(self) -> np.ndarray:
        e = self.edges
        return np.sqrt(e[:-1] * e[1:]) if self.scale == "log" else 0.5 * (e[:-1] + e[1:])


def _as_efficiency(eff) -> Callable | None:
    if eff is None or eff == "ideal":
        return None
    if callable(eff):
        return eff
    E, v = (np.asarray(x, float) for x in eff)
    if E.ndim != 1 or E.shape != v.shape or E.size < 2 or np.any(np.diff(E) <= 0):
        raise DataFileError("efficiency table needs >= 2 rows with strictly increasing energy",
                            key="detector.efficiency")
    if np.any(~np.isfinite(v)) or np.any(v < 0) or np.any(v > 1):
        raise DataFileError("efficiency values must be finite and within [0, 1]", key="detector.efficiency")
    return lambda x: np.interp(x, E, v, left=0.0, right=v[-1])


@dataclass(frozen=True)
class Detector:
    """Detector response for one process.

    Parameters
    ----------
    quenching : Quenching
        Use ``Quenching("none")`` for electron recoils.
    efficiency : None | callable | (E_keVee, eps) table
        None = ideal (paper preset).
    resolution : None | (a, b) | callable
        Gaussian sigma(E) = a sqrt(E/keV) + b E [keV], or a callable ``sigma(E_keVee) -> keVee``;
        ``None`` = perfect resolution (paper preset).
    """

    quenching: Quenching = field(default_factory=Quenching)
    efficiency: object = None
    resolution: tuple | None = None

    @property
    def ideal(self) -> bool:
        return self.efficiency is None and self.resolution is None

    def efficiency_at(self, E_ee_keV) -> np.ndarray:
        f = _as_efficiency(self.efficiency)
        E = np.asarray(E_ee_keV, float)
        return np.ones_like(E) if f is None else np.clip(np.asarray(f(E), float), 0.0, 1.0)

    def true_range_keVee(self, binning: Binning) -> tuple[float, float]:
        """Range of true electron-equivalent energies that can populate the bins."""
        e = binning.edges
        if self.resolution is None:
            return float(e[0]), float(e[-1])
        lo = e[0]
        # push the lower end down until a 6-sigma upward fluctuation cannot reach the first edge
        for _ in range(60):
            if lo + 6.0 * float(self.sigma_keV(lo)) < e[0] or lo < 1e-3 * e[0]:
                break
            lo *= 0.8
        hi = e[-1] + 6.0 * float(self.sigma_keV(e[-1]))
        return float(lo), float(hi)

    def sigma_keV(self, E_keVee) -> np.ndarray:
        """Gaussian resolution sigma(E) [keVee] (0 for a perfect detector)."""
        E = np.asarray(E_keVee, float)
        if self.resolution is None:
            return np.zeros_like(E)
        if callable(self.resolution):
            return np.asarray(self.resolution(E), float)
        a, b = self.resolution
        return a * np.sqrt(E) + b * E

    def response(self, E_true_ee_keV, binning: Binning) -> np.ndarray:
        """Probability (nodes, bins) that a recoil of true E_ee lands in each bin, times efficiency."""
        E = np.asarray(E_true_ee_keV, float)
        e = binning.edges
        eff = self.efficiency_at(E)
        if self.resolution is None:
            idx = np.searchsorted(e, E, side="right") - 1
            R = np.zeros((E.size, e.size - 1))
            ok = (idx >= 0) & (idx < e.size - 1)
            R[np.nonzero(ok)[0], idx[ok]] = 1.0
        else:
            R = np.diff(smeared_cdf(E, np.maximum(self.sigma_keV(E), 1e-12), e), axis=1)
        return R * eff[:, None]


#: half-width of the Gaussian band evaluated by :func:`smeared_cdf`, in sigma
CDF_BAND_SIGMAS = 10.0


def smeared_cdf(E, sig, edges, *, rows: int = 256) -> np.ndarray:
    """``ndtr((edges - E) / sig)`` as an (E.size, edges.size) array, evaluated only where it is
    not 0 or 1 to double precision: within :data:`CDF_BAND_SIGMAS` sigma of each E.  Outside
    that band the true value is below ndtr(-10) = 7.6e-24 (set to 0) or rounds to 1 exactly, so
    the result differs from the dense evaluation by at most 7.6e-24.  Rows are taken in order of
    E in blocks of ``rows``, each evaluated on the columns its band spans (the response matrix of
    the ER likelihood, 5008 nodes x 611 edges, needs about a third of the dense evaluations)."""
    E, sig, e = np.asarray(E, float), np.asarray(sig, float), np.asarray(edges, float)
    m = e.size
    lo = np.searchsorted(e, E - CDF_BAND_SIGMAS * sig, side="left")
    hi = np.searchsorted(e, E + CDF_BAND_SIGMAS * sig, side="right")
    cdf = (np.arange(m)[None, :] >= hi[:, None]).astype(float)
    order = np.argsort(E, kind="stable")
    for start in range(0, E.size, rows):
        r = order[start:start + rows]
        a, b = int(lo[r].min()), int(hi[r].max())
        if b > a:
            cdf[r, a:b] = ndtr((e[None, a:b] - E[r, None]) / sig[r, None])
    return cdf


XENON_ER_RESOLUTION = (0.310, 0.0037)


@dataclass(frozen=True)
class GermaniumResolution:
    """Resolution of a germanium ionisation detector, sigma = sqrt(sigma_noise^2 + eps F E).

    Parameters
    ----------
    noise_keV : float
        Electronic-noise sigma [keVee].
    fano : float
        Fano factor of germanium (0.11, a typical measured value).
    pair_energy_keV : float
        Mean energy per electron-hole pair in germanium at 77 K (2.96 eV).
    """

    noise_keV: float = 0.07
    fano: float = 0.11
    pair_energy_keV: float = 2.96e-3

    def __post_init__(self):
        for k in ("noise_keV", "fano", "pair_energy_keV"):
            v = getattr(self, k)
            if not (np.isfinite(v) and v >= 0):
                raise UnphysicalInput(f"must be finite and >= 0, got {v}", key=f"detector.resolution.{k}")

    def __call__(self, E_keVee) -> np.ndarray:
        E = np.maximum(np.asarray(E_keVee, float), 0.0)
        return np.sqrt(self.noise_keV**2 + self.pair_energy_keV * self.fano * E)


#: Parameters of :func:`xenonnt_er_efficiency`, least-squares fit (4 parameters, max |residual| 0.010)
#: to the digitised XENONnT SR0 electron-recoil efficiency (Aprile et al., arXiv:2207.11330, Fig. 2;
#: the public digitisation listed in shared/data/xenon_detector_response).  Fit made once with
#: scipy.optimize.curve_fit; the package does not read the table.
XENONNT_ER_EFF_PARAMS = (0.798404, 1.478466, 0.155552, 2.16210e-4)


def xenonnt_er_efficiency(E_keVee) -> np.ndarray:
    """XENONnT-like ER efficiency: A / (1 + exp(-ln(E/E0)/w)) exp(-b E), E in keVee."""
    A, E0, w, b = XENONNT_ER_EFF_PARAMS
    E = np.maximum(np.asarray(E_keVee, float), 1e-12)
    z = np.clip(-np.log(E / E0) / w, -700.0, 700.0)
    return A / (1.0 + np.exp(z)) * np.exp(-b * E)
