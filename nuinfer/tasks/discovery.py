"""Discovery significance and discovery limits with several background nuisances.

The model (the review's Eq. 5: binned Poisson likelihood times Gaussian constraints on the neutrino
flux normalisations, optionally on one shape parameter such as sin^2 theta_W, and optionally on
bin-dependent CEvNS cross-section factors n_sigma)::

    lambda_i(mu, phi, t, x) = mu s_i + sum_a phi_a b_ai(t) (1 + m_a x_g(i)),   b_ai(t) = sum_p t^p B_api

    twice_nll = 2 sum_i [lambda_i - n_i + n_i ln(n_i / lambda_i)]          (Baker-Cousins, chi2 scale)
              + sum_a ((phi_a - c_a) / sigma_a)^2 + ((t - c_t) / sigma_t)^2 + sum_g ((x_g - c_g) / s_g)^2

``x_g`` is the relative deviation of the CEvNS cross section from its SM value (the review's
``n_sigma - 1``) in nuisance group ``g``; by default every recoil bin ``i`` with ``s_i > 0`` is its own
group (bin-dependent nuisances), bins may share one (``xsec_group``), ``m_a`` selects the components
it multiplies (default all: every neutrino background here is CEvNS).

``s`` is the signal (WIMP) expectation at a reference cross section, ``mu`` its strength, ``phi_a``
the normalisation of background component ``a`` (one per neutrino flux, nominal 1, relative
uncertainty ``sigma_a``; ``sigma_a = 0`` fixes it) and ``t`` an optional shape nuisance whose
templates are a polynomial in ``t`` (exact for sin^2 theta_W, on which CEvNS rates are quadratic).
``c_a``, ``c_t`` are the auxiliary measurements (1 and 0 for the nominal experiment; drawn at random
for toy experiments).  The per-bin terms are evaluated as non-negative sums with
:func:`nuinfer.likelihood.bin_cost` (no cancellation at the Asimov point).

Statistics (G. Cowan, K. Cranmer, E. Gross, O. Vitells, EPJC 71 (2011) 1554, arXiv:1007.1727)
--------------------------------------------------------------------------------------------------
* Discovery test statistic, Eq. (12): ``q0 = -2 ln lambda(0) = twice_nll(mu=0, best nuisances) -
  twice_nll(best mu, best nuisances)`` if ``mu_hat >= 0``, else 0; significance ``Z0 = sqrt(q0)``,
  Eq. (53).
* Asimov data set ``n_A = s + b`` (the expectation under the signal hypothesis): the unconditional
  fit returns the truth with ``twice_nll = 0`` exactly, so ``q0_A`` is a single conditional fit.
  ``sqrt(q0_A)`` is the median significance; for one bin without nuisances it reduces to
  ``Z_A = sqrt(2 ((s + b) ln(1 + s/b) - s))``, Eq. (97).
* Discovery limit (review, Sec. 3.1): the smallest cross section for which at least a fraction
  ``f = 0.9`` of experiments reach ``Z0 >= 3``.  In the asymptotic (Wald) regime ``mu_hat`` is Gaussian
  around the true ``mu'`` with width ``sigma``, so for ``mu_hat > 0``, ``sqrt(q0) = mu_hat / sigma ~
  N(sqrt(q0_A), 1)``: ``P(sqrt(q0) >= Z) = Phi(sqrt(q0_A) - Z)``.  Hence a fraction ``f`` reaches
  ``Z`` when ``sqrt(q0_A) >= Z + Phi^-1(f)`` = 3 + 1.2816 = 4.2816 (``q0_A >= 18.33``).
  :func:`toy_q0` checks this with pseudo-experiments (randomised counts *and* auxiliary
  measurements).

Numerics
--------
Every fit is the one profiler of :func:`nuinfer.likelihood.profile` on the model built by
:func:`_binned_model` (signal strength, flux normalisations, a polynomial morph in ``t``, the
cross-section nuisances as a per-bin shape block): a vectorised bounded Newton iteration with the
expected-information Hessian and convergence on the Newton decrement.  :func:`discovery_limit` solves ``q0_A(x) = (Z + Phi^-1(f))^2`` for the
cross-section multiplier ``x`` with safeguarded Newton steps in ``(ln x, ln q0_A)``, using the exact
derivative ``d q0_A / dx = sum_i 2 e s_i ln(n_i / lambda_hat_i)`` (envelope theorem), warm-starting
the nuisances.  Bins with no background at all are left out (a background-free discovery is a
few-event counting problem outside the asymptotic regime); their number is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from nuinfer.likelihood.result import FitResult

import numpy as np
from scipy.special import ndtri

from nuinfer.exceptions import InvalidConfig, UnphysicalInput

__all__ = [
    "BackgroundModel",
    "DiscoveryLimit",
    "fit_result",
    "asimov_q0",
    "discovery_fraction",
    "discovery_limit",
    "fit",
    "floor_from_fog",
    "fog_index",
    "q0",
    "required_q0",
    "toy_q0",
]


# --------------------------------------------------------------------------------------------
# the background model
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class BackgroundModel:
    """Background components with normalisation nuisances and an optional shape nuisance.

    Parameters
    ----------
    counts : array_like, shape (comp, bin) or (comp, poly, bin)
        Expected counts per unit exposure of each component; with a ``poly`` axis the counts at
        shape parameter ``t`` are ``sum_p t^p counts[:, p]`` (``p = 0`` is the nominal).
    sigma : array_like, shape (comp,)
        Relative (1 sigma) uncertainty of each normalisation; 0 fixes it to nominal.
    names : sequence of str, optional
        Component labels (default ``b0, b1, ...``).
    sigma_t : float, optional
        Width of the Gaussian constraint on ``t`` (needs a ``poly`` axis of length >= 2). Default 0:
        no shape nuisance (``t = 0``).
    t_name : str, optional
        Label of the shape parameter (for outputs). Default ``"t"``.
    xsec_sigma : float or array_like, shape (bin,), optional
        Width ``s_i`` of the Gaussian constraint on the CEvNS cross-section factor ``1 + x`` of each
        recoil bin (relative, 0.1 = 10 %); 0 (default) fixes it to the SM.  Bins without background
        get none.
    xsec_group : array_like of int, shape (bin,), optional
        Nuisance index per bin: bins with the same index share one ``x`` (their ``s_i`` must be equal).
        Default: one per bin.
    xsec_components : array_like of bool, shape (comp,), optional
        Components multiplied by ``1 + x`` (default all).
    """

    counts: np.ndarray
    sigma: np.ndarray
    names: tuple = ()
    sigma_t: float = 0.0
    t_name: str = "t"
    xsec_sigma: object = 0.0
    xsec_group: object = None
    xsec_components: object = None
    _keep: np.ndarray = field(init=False, repr=False)
    _xg: np.ndarray = field(init=False, repr=False)
    _xs: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        B = np.asarray(self.counts, dtype=float)
        if B.ndim == 2:
            B = B[:, None, :]
        if B.ndim != 3 or B.shape[0] < 1 or B.shape[2] < 1:
            raise InvalidConfig(f"counts must have shape (comp, bin) or (comp, poly, bin); got {B.shape}",
                                key="background.counts")
        if not np.all(np.isfinite(B)):
            raise UnphysicalInput("background counts contain NaN or inf", key="background.counts")
        if np.any(B[:, 0] < 0):
            raise UnphysicalInput("nominal background counts must be >= 0", key="background.counts")
        s = np.broadcast_to(np.asarray(self.sigma, dtype=float), (B.shape[0],)).copy()
        if np.any(~np.isfinite(s)) or np.any(s < 0):
            raise UnphysicalInput(f"normalisation uncertainties must be finite and >= 0, got {s.tolist()}",
                                  key="background.sigma")
        names = tuple(self.names) or tuple(f"b{i}" for i in range(B.shape[0]))
        if len(names) != B.shape[0]:
            raise InvalidConfig(f"{len(names)} names for {B.shape[0]} components", key="background.names")
        st = float(self.sigma_t)
        if not (np.isfinite(st) and st >= 0):
            raise UnphysicalInput(f"sigma_t must be finite and >= 0, got {self.sigma_t}", key="background.sigma_t")
        if st > 0 and B.shape[1] < 2:
            raise InvalidConfig("a shape nuisance (sigma_t > 0) needs templates with a poly axis of length >= 2",
                                key="background.sigma_t")
        keep = B[:, 0].sum(axis=0) > 0
        nb = B.shape[2]
        xs = np.broadcast_to(np.asarray(self.xsec_sigma, dtype=float), (nb,)).copy() \
            if np.ndim(self.xsec_sigma) == 0 or np.shape(self.xsec_sigma) == (nb,) else None
        if xs is None:
            raise InvalidConfig(f"xsec_sigma needs one value per bin ({nb}); got shape {np.shape(self.xsec_sigma)}",
                                key="background.xsec_sigma")
        if np.any(~np.isfinite(xs)) or np.any(xs < 0):
            raise UnphysicalInput("cross-section uncertainties must be finite and >= 0", key="background.xsec_sigma")
        mc = np.ones(B.shape[0], bool) if self.xsec_components is None else \
            np.asarray(self.xsec_components, dtype=bool)
        if mc.shape != (B.shape[0],):
            raise InvalidConfig(f"xsec_components needs one flag per component ({B.shape[0]})",
                                key="background.xsec_components")
        grp = np.arange(nb) if self.xsec_group is None else np.asarray(self.xsec_group)
        if grp.shape != (nb,) or not np.issubdtype(grp.dtype, np.integer):
            raise InvalidConfig(f"xsec_group needs one integer per bin ({nb})", key="background.xsec_group")
        active = keep & (xs > 0) & (B[mc, 0].sum(axis=0) > 0)
        labels, inv = np.unique(grp[active], return_inverse=True)
        xg = np.full(nb, -1)
        xg[active] = inv
        xsg = np.zeros(labels.size)
        for k in range(labels.size):
            v = xs[xg == k]
            if np.ptp(v) > 1e-12 * v.max():
                raise InvalidConfig(f"bins sharing cross-section nuisance {labels[k]} have different widths "
                                    f"{v.tolist()}", key="background.xsec_group")
            xsg[k] = v[0]
        object.__setattr__(self, "xsec_sigma", xs)
        object.__setattr__(self, "xsec_group", grp)
        object.__setattr__(self, "xsec_components", mc)
        object.__setattr__(self, "_xg", xg)
        object.__setattr__(self, "_xs", xsg)
        object.__setattr__(self, "counts", B)
        object.__setattr__(self, "sigma", s)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "sigma_t", st)
        object.__setattr__(self, "_keep", keep)

    @property
    def n_comp(self) -> int:
        return self.counts.shape[0]

    @property
    def n_bins(self) -> int:
        return self.counts.shape[2]

    @property
    def has_t(self) -> bool:
        return self.sigma_t > 0

    @property
    def n_xsec(self) -> int:
        """Number of free cross-section nuisances."""
        return int(self._xs.size)

    @property
    def xsec_widths(self) -> np.ndarray:
        """Constraint width of each free cross-section nuisance, shape (n_xsec,)."""
        return self._xs.copy()

    @property
    def nominal(self) -> np.ndarray:
        """Nominal total background per unit exposure, shape (bin,)."""
        return self.counts[:, 0].sum(axis=0)

    @property
    def used_bins(self) -> np.ndarray:
        """Bins entering the likelihood (nominal background > 0)."""
        return self._keep.copy()

    def expected(self, phi=None, t=0.0, xsec=None) -> np.ndarray:
        """Background counts per unit exposure at normalisations ``phi``, shape parameter ``t`` and
        cross-section nuisances ``xsec`` (shape (..., n_xsec); default 0)."""
        phi = np.ones(self.n_comp) if phi is None else np.asarray(phi, float)
        tp = np.asarray(t, float)[..., None] ** np.arange(self.counts.shape[1])
        if xsec is None or self.n_xsec == 0:
            return np.einsum("...k,kpi,...p->...i", phi, self.counts, tp)
        m = self.xsec_components.astype(float)
        xb = np.where(self._xg >= 0, np.take(np.asarray(xsec, float), np.maximum(self._xg, 0), axis=-1), 0.0)
        fac = 1.0 + m[:, None] * xb[..., None, :]  # (..., comp, bin)
        return np.einsum("...k,kpi,...p,...ki->...i", phi, self.counts, tp, fac)


def _names(n_comp: int, n_xsec: int) -> list[str]:
    """Columns of a discovery fit result: signal strength, shape nuisance, normalisations, xsec."""
    return ["mu", "t", *[f"phi[{k}]" for k in range(n_comp)], *[f"xsec[{g}]" for g in range(n_xsec)]]


def fit_result(twice_nll, mu, phi, t, converged, n_iter=0, xsec=None) -> FitResult:
    """A :class:`~nuinfer.likelihood.FitResult` of the discovery model from its parts (e.g. a warm start).

    Columns: ``mu``, ``t``, ``phi[k]`` per background component, ``xsec[g]`` per cross-section group.
    """
    phi = np.asarray(phi, float)
    lead = phi.shape[:-1]
    xs = np.zeros(lead + (0,)) if xsec is None else np.asarray(xsec, float)
    theta = np.concatenate([np.broadcast_to(np.asarray(mu, float), lead)[..., None],
                            np.broadcast_to(np.asarray(t, float), lead)[..., None], phi, xs], axis=-1)
    return FitResult("twice_nll", np.asarray(twice_nll, float), theta, np.asarray(converged, bool), "newton",
                     _names(phi.shape[-1], xs.shape[-1]), int(n_iter))


# --------------------------------------------------------------------------------------------
# the background model as a BinnedModel
# --------------------------------------------------------------------------------------------
def _binned_model(bg: BackgroundModel, with_signal: bool):
    """The review's Eq. 5 as a :class:`~nuinfer.likelihood.BinnedModel` on the used bins."""
    from nuinfer.likelihood import BinnedModel, Component, Morph, Parameter, ShapeSys

    pars = []
    comps = []
    if with_signal:
        pars.append(Parameter("mu", math.inf, 0.0, -math.inf, math.inf, long_name="signal strength"))
        comps.append(Component("signal", norms=("mu",)))
    if bg.has_t:
        pars.append(Parameter("t", bg.sigma_t, 0.0, -math.inf, math.inf, long_name=bg.t_name))
    shapes = ()
    if bg.n_xsec:
        shapes = (ShapeSys("xsec", bg._xg[bg._keep], bg._xs),)
    for k in range(bg.n_comp):
        pars.append(Parameter(f"phi{k}", float(bg.sigma[k]), 1.0, 1e-300, math.inf))
        comps.append(Component(f"b{k}", norms=(f"phi{k}",), morph=Morph("poly", ("t",)) if bg.has_t else None,
                               shapesys="xsec" if bg.n_xsec and bg.xsec_components[k] else None))
    return BinnedModel(components=tuple(comps), parameters=tuple(pars), shapesys=shapes)


def _prepare_batch(data, signal, exposure, bg: BackgroundModel, centre_phi, centre_t, centre_xsec=None):
    n = np.asarray(data, dtype=float)
    if n.shape[-1] != bg.n_bins:
        raise InvalidConfig(f"data need {bg.n_bins} bins along the last axis; got shape {n.shape}", key="data")
    if np.any(~np.isfinite(n)) or np.any(n < 0):
        raise UnphysicalInput("data must be finite and >= 0", key="data")
    shapes = [n.shape[:-1]]
    S = None
    if signal is not None:
        S = np.asarray(signal, dtype=float)
        if S.shape[-1] != bg.n_bins:
            raise InvalidConfig(f"signal needs {bg.n_bins} bins along the last axis; got {S.shape}", key="signal")
        shapes.append(S.shape[:-1])
    E = np.asarray(exposure, dtype=float)
    shapes.append(E.shape)
    if centre_phi is not None:
        shapes.append(np.shape(centre_phi)[:-1])
    if centre_t is not None:
        shapes.append(np.shape(centre_t))
    if centre_xsec is not None:
        shapes.append(np.shape(centre_xsec)[:-1])
    lead = np.broadcast_shapes(*shapes)
    N = int(np.prod(lead)) if lead else 1
    keep = bg._keep
    nb = int(keep.sum())
    n2 = np.broadcast_to(n[..., keep], lead + (nb,)).reshape(N, nb)
    S2 = None if S is None else np.broadcast_to(S[..., keep], lead + (nb,)).reshape(N, nb)
    E2 = np.broadcast_to(E, lead).reshape(N)
    if np.any(~np.isfinite(E2)) or np.any(E2 <= 0):
        raise UnphysicalInput("exposure multipliers must be finite and > 0", key="exposure")
    cphi = np.ones((N, bg.n_comp)) if centre_phi is None else \
        np.broadcast_to(np.asarray(centre_phi, float), lead + (bg.n_comp,)).reshape(N, bg.n_comp)
    ct = np.zeros(N) if centre_t is None else np.broadcast_to(np.asarray(centre_t, float), lead).reshape(N)
    cx = np.zeros((N, bg.n_xsec)) if centre_xsec is None else \
        np.broadcast_to(np.asarray(centre_xsec, float), lead + (bg.n_xsec,)).reshape(N, bg.n_xsec)
    return lead, N, n2, S2, E2, cphi, ct, cx


def fit(data, background: BackgroundModel, *, signal=None, mu=None, exposure=1.0, centre_phi=None,
        centre_t=None, centre_xsec=None, start=None, atol: float = 1e-10, rtol: float = 1e-13,
        max_iter: int = 200) -> FitResult:
    """Minimise ``twice_nll`` over the nuisances (and ``mu`` unless fixed), for a batch at once.

    Parameters
    ----------
    data : array_like, shape (..., bin)
        Observed counts (need not be integers: Asimov data are allowed).
    background : BackgroundModel
    signal : array_like, shape (..., bin), optional
        Signal counts at ``mu = 1`` (already multiplied by the exposure). ``None``: no signal term.
    mu : float or array_like, optional
        Fixed signal strength. ``None`` with a signal: ``mu`` is fitted (unbounded, as needed by
        ``q0``; the expectation is kept positive).
    exposure : float or array_like, optional
        Multiplier of the background counts (the background is given per unit exposure). Default 1.
    centre_phi : array_like, shape (..., comp), optional
        Auxiliary measurements of the normalisations (default 1).
    centre_t : float or array_like, optional
        Auxiliary measurement of ``t`` (default 0).
    centre_xsec : array_like, shape (..., n_xsec), optional
        Auxiliary measurements of the cross-section nuisances (default 0).
    start : FitResult, optional
        Warm start (same batch shape).
    atol, rtol : float, optional
        Convergence when the Newton decrement is below ``atol + rtol |twice_nll|``.
    max_iter : int, optional

    Returns
    -------
    FitResult

    Examples
    --------
    >>> import numpy as np
    >>> bg = BackgroundModel(np.array([[100.0, 50.0]]), [0.1])
    >>> res = fit(np.array([110.0, 55.0]), bg)
    >>> round(float(res["phi[0]"]), 4)  # pulled between the data (1.1) and the constraint (1.0)
    1.0586
    """
    lead, N, n2, S2, E2, cphi, ct, cx = _prepare_batch(data, signal, exposure, background, centre_phi, centre_t,
                                                       centre_xsec)
    mu_free = S2 is not None and mu is None
    if S2 is None and mu is not None and np.any(np.asarray(mu) != 0):
        raise InvalidConfig("a non-zero mu needs a signal", key="mu")
    mu_fixed = np.zeros(N) if mu is None else np.broadcast_to(np.asarray(mu, float), lead).reshape(N).copy()
    from nuinfer.likelihood import profile

    bg = background
    nx = bg.n_xsec
    with_signal = S2 is not None
    model = _binned_model(bg, with_signal)
    Bk = bg.counts[:, :, bg._keep]  # (comp, poly, nb)
    T = {f"b{k}": Bk[k][:, None, :] * E2[None, :, None] if bg.has_t else Bk[k, 0][None, :] * E2[:, None]
         for k in range(bg.n_comp)}
    if with_signal:
        T["signal"] = S2
    jt = model.index("t") if bg.has_t else None
    jphi = np.array([model.index(f"phi{k}") for k in range(bg.n_comp)])
    cent = np.broadcast_to(model.nominal(), (N, model.n_par)).copy()
    cent[:, jphi] = cphi
    if bg.has_t:
        cent[:, jt] = ct
    if nx:
        cent[:, model.n_global:] = cx
    if start is not None:
        x0 = cent.copy()
        x0[:, jphi] = np.broadcast_to(start.block("phi["), lead + (bg.n_comp,)).reshape(N, -1)
        if bg.has_t:
            x0[:, jt] = np.broadcast_to(start["t"], lead).reshape(N)
        sx = start.block("xsec[")
        if nx and sx.shape[-1] == nx:
            x0[:, model.n_global:] = np.broadcast_to(sx, lead + (nx,)).reshape(N, nx)
        mu0 = np.broadcast_to(start["mu"], lead).reshape(N).astype(float)
    else:
        x0 = cent.copy()
        x0[:, jphi] = np.where(bg.sigma == 0, 1.0, np.maximum(cphi, 1e-3))
        if mu_free:
            b_tot = E2 * np.einsum("nk,ki->n", x0[:, jphi], Bk[:, 0])
            s_tot = S2.sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                mu0 = np.where(s_tot > 0, (n2.sum(axis=1) - b_tot) / np.where(s_tot > 0, s_tot, 1.0), 0.0)
            mu0 = np.maximum(mu0, 0.0)
        else:
            mu0 = mu_fixed
    if with_signal:
        x0[:, model.index("mu")] = mu0 if mu_free else mu_fixed
    x0[:, jphi] = np.where(bg.sigma == 0, 1.0, x0[:, jphi])
    r = profile(model, T, n2, cost="poisson", centres=cent, start=x0, fix=() if mu_free else
                (("mu",) if with_signal else ()), atol=atol, rtol=rtol, max_iter=max_iter)
    mu_hat = r.theta[:, model.index("mu")] if with_signal else mu_fixed
    phi = r.theta[:, jphi]
    t = r.theta[:, jt] if bg.has_t else np.zeros(N)
    xs = r.theta[:, model.n_global:]
    return fit_result(r.minimum.reshape(lead), np.asarray(mu_hat).reshape(lead), phi.reshape(lead + (bg.n_comp,)),
                      t.reshape(lead), r.converged.reshape(lead), r.n_iter, xs.reshape(lead + (nx,)))


# --------------------------------------------------------------------------------------------
# test statistics
# --------------------------------------------------------------------------------------------
def required_q0(z: float = 3.0, fraction: float = 0.9) -> float:
    """Median ``q0_A`` needed so that a fraction ``fraction`` of experiments reach ``Z0 >= z``.

    ``(z + Phi^-1(fraction))^2`` (module docstring); 18.33 for 3 sigma in 90 % of experiments.

    Examples
    --------
    >>> round(required_q0(3.0, 0.9), 4)
    18.3317
    >>> required_q0(3.0, 0.5)  # the median experiment
    9.0
    """
    if not (np.isfinite(z) and z > 0):
        raise UnphysicalInput(f"significance must be finite and > 0, got {z}", key="discovery.z")
    if not 0 < fraction < 1:
        raise UnphysicalInput(f"fraction of experiments must be in (0, 1), got {fraction}", key="discovery.fraction")
    return float((z + ndtri(fraction)) ** 2)


def q0(data, signal, background: BackgroundModel, *, exposure=1.0, centre_phi=None, centre_t=None,
       centre_xsec=None, return_fits: bool = False):
    """Discovery test statistic ``q0`` (Cowan et al. Eq. 12) for a batch of data sets.

    Two fits per data set: ``mu`` free and ``mu = 0``; ``q0 = max(0, twice_nll(0) - twice_nll(mu_hat))``
    for ``mu_hat >= 0`` and 0 otherwise.  Returns ``q0`` (and the two :class:`FitResult` with
    ``return_fits``).
    """
    f1 = fit(data, background, signal=signal, exposure=exposure, centre_phi=centre_phi, centre_t=centre_t,
             centre_xsec=centre_xsec)
    f0 = fit(data, background, signal=signal, mu=0.0, exposure=exposure, centre_phi=centre_phi,
             centre_t=centre_t, centre_xsec=centre_xsec, start=f1)
    q = np.where(f1["mu"] > 0, np.maximum(f0.minimum - f1.minimum, 0.0), 0.0)
    return (q, f1, f0) if return_fits else q


def asimov_q0(signal, background: BackgroundModel, *, exposure=1.0, start=None, return_fit: bool = False):
    """Median discovery statistic ``q0_A`` on the Asimov data set ``n_A = exposure (s + b_nominal)``.

    ``signal`` is per unit exposure (shape (..., bin)).  One conditional fit (``mu = 0``): the
    unconditional fit of Asimov data is the truth with ``twice_nll = 0``.

    Examples
    --------
    >>> import numpy as np
    >>> bg = BackgroundModel(np.array([[10.0]]), [0.0])
    >>> s, b = 5.0, 10.0  # Cowan et al. Eq. (97): Z_A^2 = 2((s+b) ln(1+s/b) - s)
    >>> bool(np.isclose(asimov_q0(np.array([s]), bg), 2 * ((s + b) * np.log(1 + s / b) - s)))
    True
    """
    S = np.asarray(signal, float)
    E = np.asarray(exposure, float)
    nA = (E[..., None] * (S + background.nominal))
    res = fit(nA, background, signal=None, mu=None, exposure=E, start=start)
    q = np.maximum(res.minimum, 0.0)
    return (q, res) if return_fit else q


# --------------------------------------------------------------------------------------------
# discovery limits and the fog
# --------------------------------------------------------------------------------------------
class DiscoveryLimit(NamedTuple):
    """Discovery-limit multipliers over (signal, exposure).

    Attributes
    ----------
    scale : numpy.ndarray
        Multiplier ``x`` of the reference signal (cross section = ``x`` times the reference) at
        which ``q0_A = q_required``; ``inf`` where the signal vanishes in every used bin.
    converged : numpy.ndarray of bool
    q_required : float
    n_iter : int
    n_bins_used : int
    """

    scale: np.ndarray
    converged: np.ndarray
    q_required: float
    n_iter: int
    n_bins_used: int


def discovery_limit(signal, background: BackgroundModel, exposures, *, z: float = 3.0,
                    fraction: float = 0.9, tol: float = 1e-9, max_iter: int = 80,
                    progress=None) -> DiscoveryLimit:
    """Smallest signal scale reaching ``Z0 >= z`` in a fraction ``fraction`` of experiments.

    Parameters
    ----------
    signal : array_like, shape (M, bin) or (bin,)
        Signal counts per unit exposure at the reference cross section (one row per WIMP mass).
    background : BackgroundModel
        Background per unit exposure.
    exposures : array_like, shape (E,)
        Exposures (same unit as the templates).
    z, fraction : float, optional
        Significance and fraction of experiments; the condition is ``sqrt(q0_A) >= z +
        Phi^-1(fraction)`` (module docstring).
    tol : float, optional
        Convergence on ``|ln q0_A - ln q_required|``.
    max_iter : int, optional
    progress : callable, optional
        Called with ``(iteration, n_active)`` after every iteration.

    Returns
    -------
    DiscoveryLimit
        ``scale`` has shape (M, E) (or (E,) for a 1-D signal).
    """
    S = np.asarray(signal, float)
    one = S.ndim == 1
    S = np.atleast_2d(S)
    if S.shape[-1] != background.n_bins:
        raise InvalidConfig(f"signal needs {background.n_bins} bins; got shape {S.shape}", key="signal")
    if np.any(~np.isfinite(S)) or np.any(S < 0):
        raise UnphysicalInput("signal counts must be finite and >= 0", key="signal")
    ex = np.atleast_1d(np.asarray(exposures, float))
    if ex.ndim != 1 or np.any(~np.isfinite(ex)) or np.any(ex <= 0):
        raise UnphysicalInput("exposures must be a 1-D array of finite values > 0", key="exposure")
    qreq = required_q0(z, fraction)
    M, E = S.shape[0], ex.size
    keep = background._keep
    Sk = S[:, keep]
    bk = background.nominal[keep]
    Sb = np.broadcast_to(S[:, None, :], (M, E, S.shape[1])).reshape(M * E, -1)
    Eb = np.broadcast_to(ex[None, :], (M, E)).reshape(-1)
    s_sum = np.broadcast_to(Sk.sum(axis=1)[:, None], (M, E)).reshape(-1)
    N = M * E
    lx = np.full(N, np.nan)
    # start: Gaussian, systematics-free estimate q ~ x^2 e sum s^2/b
    with np.errstate(divide="ignore", invalid="ignore"):
        fisher = np.broadcast_to(((Sk * Sk) / bk).sum(axis=1)[:, None], (M, E)).reshape(-1) * Eb
        lx0 = 0.5 * (np.log(qreq) - np.log(fisher))
    dead = ~(s_sum > 0)
    lx[:] = np.where(dead, 0.0, lx0)
    lo = np.full(N, -np.inf)
    hi = np.full(N, np.inf)
    conv = dead.copy()
    active = np.flatnonzero(~dead)
    phi_w = np.ones((N, background.n_comp))
    t_w = np.zeros(N)
    x_w = np.zeros((N, background.n_xsec))
    it = 0
    for it in range(1, max_iter + 1):
        if active.size == 0:
            break
        x = np.exp(lx[active])
        e = Eb[active]
        s = Sb[active]
        start = fit_result(np.zeros(active.size), np.zeros(active.size), phi_w[active], t_w[active],
                           np.zeros(active.size, bool), 0, x_w[active])
        q, res = asimov_q0(x[:, None] * s, background, exposure=e, start=start, return_fit=True)
        phi_w[active] = res.block("phi[")
        t_w[active] = res["t"]
        x_w[active] = res.block("xsec[")
        # d q0_A / dx = sum_i 2 e s_i ln(n_i / lambda_i)  (envelope theorem)
        lam = e[:, None] * background.expected(phi_w[active], t_w[active], x_w[active])[:, keep]
        nA = e[:, None] * (x[:, None] * s[:, keep] + bk)
        with np.errstate(divide="ignore", invalid="ignore"):
            dq = 2.0 * np.einsum("ni,ni->n", e[:, None] * s[:, keep], np.log(nA / lam))
        f = np.log(np.maximum(q, 1e-300)) - np.log(qreq)
        lo[active] = np.where(f < 0, lx[active], lo[active])
        hi[active] = np.where(f >= 0, lx[active], hi[active])
        slope = x * dq / np.maximum(q, 1e-300)
        done = np.abs(f) <= tol
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where((slope > 0) & np.isfinite(slope), -f / slope, np.where(f < 0, 3.0, -3.0))
        step = np.clip(step, -3.0, 3.0)
        new = lx[active] + step
        la, ha = lo[active], hi[active]
        inside = (new > la) & (new < ha)
        mid = np.where(np.isfinite(la) & np.isfinite(ha), 0.5 * (la + ha), new)
        new = np.where(inside, new, mid)
        lx[active] = np.where(done, lx[active], new)
        conv[active[done]] = True
        active = active[~done]
        if progress is not None:
            progress(it, active.size)
    scale = np.where(dead, np.inf, np.exp(lx)).reshape(M, E)
    conv = conv.reshape(M, E)
    if one:
        scale, conv = scale[0], conv[0]
    return DiscoveryLimit(scale, conv, qreq, it, int(keep.sum()))


def fog_index(exposures, limits) -> np.ndarray:
    """Opacity of the neutrino fog, ``n = -(d ln sigma / d ln exposure)^-1`` (O'Hare, PRL 127 (2021) 251802).

    Second-order finite differences in ``ln exposure`` (non-uniform grids allowed) along the last
    axis of ``limits``.  ``n = 1`` background free, ``n = 2`` Poisson background, ``n > 2``
    systematics-limited (the fog); NaN where the limit is not finite.
    """
    ex = np.asarray(exposures, float)
    L = np.asarray(limits, float)
    if ex.ndim != 1 or ex.size < 3 or L.shape[-1] != ex.size:
        raise InvalidConfig("need >= 3 exposures and limits with the exposure as last axis", key="exposure")
    with np.errstate(divide="ignore", invalid="ignore"):
        lnL = np.log(L)
        slope = np.gradient(lnL, np.log(ex), axis=-1)
        n = -1.0 / slope
    return np.where(np.isfinite(n), n, np.nan)


def floor_from_fog(exposures, limits, n_index, *, level: float = 2.0):
    """The neutrino floor: the limit where the fog index first rises through ``level`` (O'Hare 2021).

    Parameters
    ----------
    exposures : array_like, shape (E,)
    limits, n_index : array_like, shape (..., E)
    level : float, optional
        Default 2 (the boundary between Poisson-limited and systematics-limited discovery).

    Returns
    -------
    floor, exposure_at_floor : numpy.ndarray, shape (...)
        Interpolated linearly in ``ln exposure``; NaN where ``n`` never reaches ``level`` inside the
        exposure range, or already exceeds it at the smallest exposure.
    """
    ex = np.log(np.asarray(exposures, float))
    L = np.asarray(limits, float)
    n = np.asarray(n_index, float)
    lead = L.shape[:-1]
    fl = np.full(lead, np.nan)
    fe = np.full(lead, np.nan)
    for idx in np.ndindex(*lead):
        nn, ll = n[idx], L[idx]
        above = np.isfinite(nn) & (nn >= level)
        if not above.any():
            continue
        k = int(np.argmax(above))
        if k == 0 or not np.isfinite(nn[k - 1]):
            continue
        w = (level - nn[k - 1]) / (nn[k] - nn[k - 1])
        le = ex[k - 1] + w * (ex[k] - ex[k - 1])
        fe[idx] = np.exp(le)
        fl[idx] = np.exp(np.log(ll[k - 1]) + w * (np.log(ll[k]) - np.log(ll[k - 1])))
    return fl, fe


# --------------------------------------------------------------------------------------------
# toys
# --------------------------------------------------------------------------------------------
def toy_q0(signal, background: BackgroundModel, *, exposure: float = 1.0, n_toys: int = 1000,
           seed: int = 1, mu_true: float = 1.0) -> np.ndarray:
    """``q0`` of pseudo-experiments generated under signal + nominal background.

    Each toy draws the counts ``n_i ~ Poisson(exposure (mu_true s_i + b_i))`` *and* the auxiliary
    measurements ``c_a ~ N(1, sigma_a)``, ``c_t ~ N(0, sigma_t)``, ``c_g ~ N(0, s_g)`` (the frequentist ensemble of the
    constrained likelihood), then fits with ``mu`` free and with ``mu = 0``.

    Parameters
    ----------
    signal : array_like, shape (bin,)
        Signal per unit exposure at ``mu = 1``.
    background : BackgroundModel
    exposure : float, optional
    n_toys : int, optional
    seed : int, optional
        Seed of :func:`numpy.random.default_rng`.
    mu_true : float, optional

    Returns
    -------
    numpy.ndarray
        ``q0`` per toy, shape (n_toys,).
    """
    if not isinstance(n_toys, (int, np.integer)) or n_toys < 1:
        raise InvalidConfig(f"n_toys must be a positive integer, got {n_toys!r}", key="n_toys")
    rng = np.random.default_rng(seed)
    S = np.asarray(signal, float)
    lam = exposure * (mu_true * S + background.nominal)
    n = rng.poisson(np.broadcast_to(lam, (n_toys, lam.size))).astype(float)
    c_phi = 1.0 + background.sigma * rng.standard_normal((n_toys, background.n_comp))
    c_t = background.sigma_t * rng.standard_normal(n_toys)
    c_x = background.xsec_widths * rng.standard_normal((n_toys, background.n_xsec)) if background.n_xsec else None
    return q0(n, exposure * S, background, exposure=exposure, centre_phi=c_phi, centre_t=c_t, centre_xsec=c_x)


def discovery_fraction(q0_values, z: float = 3.0) -> tuple[float, float]:
    """Fraction of toys with ``Z0 = sqrt(q0) >= z`` and its binomial standard error."""
    q = np.asarray(q0_values, float)
    p = float(np.mean(np.sqrt(np.maximum(q, 0.0)) >= z))
    return p, float(np.sqrt(max(p * (1 - p), 1.0 / q.size) / q.size))
