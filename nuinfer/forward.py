"""The forward model: binned Asimov spectra and g-polynomial templates as xarray.

How it works (the performance idea of DESIGN.md)
------------------------------------------------
Every cross section is ``sum_{p,j} g^(2p) (q^2 + m_X^2)^(-p) C[p,j](E_r) E_nu^(-j)`` (see
:mod:`nuinfer.physics.cevns`, :mod:`nuinfer.physics.eves`).  Hence the neutrino-energy integral of
Eq. 18/22/24 reduces, at each recoil energy, to three *flux moments*

    M_j(E_r) = int_{E_nu^min(E_r)} dPhi/dE_nu  E_nu^(-j) dE_nu ,   j = 0, 1, 2,

which do not depend on the model, the coupling or the mass.  Lines (pep, 7Be) contribute exactly
``Phi E_line^(-j) Theta(E_line - E_nu^min)``; continua use a cumulative integral on a fine grid with
cubic Hermite interpolation.  Recoil energies are integrated with Gauss-Legendre nodes (in log E) on
sub-intervals split at every bin edge, every kinematic endpoint of a line or spectrum end, and every
atomic binding edge, so each integrand is smooth on each sub-interval.  With the node weights, the
detector response matrix (nodes x bins) and the moments, the expected counts are

    R(g, m)[bin] = sum_p g^(2p) sum_node (q_node^2 + m^2)^(-p) W_p[node] Resp[node, bin],

so the templates T_p(m) of a whole mass grid are one matrix product each.

Other cross sections and sources
--------------------------------
:meth:`ForwardModel.kernel_counts` integrates any cross section written as
``sum_j C_j(E_r) E_nu^-j`` with its own neutrino-energy threshold (the sterile-neutrino dipole
portal of :mod:`nuinfer.physics.dipole`, whose threshold depends on m4); the model name
``"dipole"`` is dispatched to it by :meth:`spectrum` and :meth:`templates`.  Reactor and pi-DAR
sources (:mod:`nuinfer.physics.terrestrial`) enter through ``user_tables``; targets other than
xenon (Ge, Ar, CsI) through ``target``.

Flavour content
---------------
Solar nu_e are split with P_ee(E) into e, mu, tau (PHYSICS.md sec. 5); atmospheric nu_mu -> 2/3 mu +
1/3 tau (nu_e unoscillated); DSN as emitted.  CEvNS SM is flavour blind, so this only matters for EvES
and for L_mu - L_tau.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from nuinfer import __version__
from nuinfer.constants import HBARC2_MEV2_CM2, KEV, SECONDS_PER_YEAR, tonne_year_targets
from nuinfer.physics.detector import Binning, Detector, Quenching, lindhard_k
from nuinfer.physics.interp import hermite
from nuinfer.exceptions import EmptyWindow, InvalidConfig, UnphysicalInput
from nuinfer.physics import cevns, eves
from nuinfer.physics import oscillation as osc
from nuinfer.physics import sources as src
from nuinfer.physics.mediators import Interaction, get_interaction
from nuinfer.physics.targets import Target, get_target

PROCESSES = ("cevns", "eves")


@dataclass
class Channel:
    """A flux of one flavour reaching the detector: a line or a tabulated continuum.

    Continua carry the flux on a grid ``E`` (values ``dphi``) and the exact upper integrals
    ``upper[j, i] = int_{E_i}^{E_max} dphi E^-j dE`` computed with Gauss-Legendre panels between
    grid points; moments at any E_min are a cubic Hermite interpolation of ``upper`` whose
    derivative ``-dphi E^-j`` is known exactly at the grid points.
    """

    source: str
    flavour: str
    anti: bool
    line_energy: float | None = None
    line_flux: float = 0.0
    E: np.ndarray | None = None  # MeV
    dphi: np.ndarray | None = None  # cm^-2 s^-1 MeV^-1
    upper: np.ndarray | None = None  # (3, n)

    @property
    def E_max(self) -> float:
        return float(self.line_energy if self.line_energy is not None else self.E[-1])

    def moments(self, Emin: np.ndarray) -> np.ndarray:
        """Flux moments M_j(E_min), j = 0..2, shape (3, n)."""
        Emin = np.asarray(Emin, float)
        out = np.zeros((3,) + Emin.shape)
        if self.line_energy is not None:
            on = self.line_energy >= Emin
            for j in range(3):
                out[j] = np.where(on, self.line_flux * self.line_energy ** (-j), 0.0)
            return out
        E, f = self.E, self.dphi
        x = np.clip(Emin, E[0], E[-1])
        slopes = -np.stack([f * E ** (-j) for j in range(3)])  # d/dE_min of the upper integrals
        out[:] = np.where(Emin >= E[-1], 0.0, hermite(E, self.upper, slopes, x))
        return np.maximum(out, 0.0)


_GL_X, _GL_W = np.polynomial.legendre.leggauss(6)


def _upper_integrals(E: np.ndarray, fx: np.ndarray) -> np.ndarray:
    """Upper integrals of f E^-j (j = 0..2) from f at the 6-point GL nodes of every grid panel."""
    a, b = E[:-1, None], E[1:, None]
    x = 0.5 * (b - a) * _GL_X[None, :] + 0.5 * (b + a)
    w = 0.5 * (b - a) * _GL_W[None, :]
    fx = fx.reshape(x.shape)
    up = np.zeros((3, E.size))
    for j in range(3):
        panel = np.sum(w * fx * x ** (-j), axis=1)
        up[j, :-1] = np.cumsum(panel[::-1])[::-1]
    return up


def _continuum_grid(em, n: int) -> np.ndarray:
    if hasattr(em, "grid"):
        return np.asarray(em.grid(n), float)
    lo, hi = em.E_min, em.E_max
    u = np.linspace(0.0, 1.0, n)
    return lo + (hi - lo) * 0.5 * (1.0 - np.cos(np.pi * u))  # clustered at both ends


def build_channels(source_names, *, normalisation="paper", osc_params=None, n_grid: int = 400,
                   user_tables: dict | None = None) -> list[Channel]:
    """Oscillated flavour channels for the requested sources (see the module docstring).

    Built-in sources are cached per (source, normalisation, oscillation parameters, grid size):
    spectral shapes are pure functions, and the cache makes every forward model after the first
    one skip the shape evaluations.  Channels are shared read-only.
    """
    osc_params = osc_params or osc.OscillationParams()
    user_tables = user_tables or {}
    norm_key = normalisation if isinstance(normalisation, (str, int, float)) else json.dumps(
        normalisation, sort_keys=True)
    chans: list[Channel] = []
    for name in source_names:
        if name in user_tables:
            chans += _channels_for(name, user_tables[name], osc_params, n_grid)
        else:
            chans += _cached_channels(name, norm_key, osc_params, n_grid)
    return chans


@functools.lru_cache(maxsize=256)
def _cached_channels(name, norm_key, osc_params, n_grid) -> tuple:
    norm = json.loads(norm_key) if isinstance(norm_key, str) and norm_key.startswith("{") else norm_key
    return tuple(_channels_for(name, src.emissions(name, normalisation=norm), osc_params, n_grid))


def _channels_for(name, ems, osc_params, n_grid) -> list[Channel]:
    solar = name in src.SOLAR_SOURCES
    chans: list[Channel] = []
    for em in ems:
        if em.line_energy is not None:
            E = np.array([em.line_energy])
            weights = _flavour_split(name, em, E, solar, osc_params)
            for fl, w in weights.items():
                if w[0] > 0:
                    chans.append(Channel(name, fl, em.anti, line_energy=float(em.line_energy),
                                         line_flux=float(em.flux * w[0])))
            continue
        E = _continuum_grid(em, n_grid)
        E = E[E > 0]  # flux moments need E^-2; every recoil needs E_nu > 0 anyway
        a, b = E[:-1, None], E[1:, None]
        x = (0.5 * (b - a) * _GL_X[None, :] + 0.5 * (b + a)).ravel()
        pts = np.concatenate([E, x])  # grid values (Hermite slopes) and panel nodes together
        phi = em.flux * np.asarray(em.shape(pts), float)
        for fl, w in _flavour_split(name, em, pts, solar, osc_params).items():
            f = phi * w
            upper = _upper_integrals(E, f[E.size:])
            dphi = f[:E.size]
            if np.any(dphi > 0) or np.any(upper > 0):
                chans.append(Channel(name, fl, em.anti, E=E, dphi=dphi, upper=upper))
    return chans


def _flavour_split(name, em, E, solar, osc_params) -> dict[str, np.ndarray]:
    if solar and em.flavour == "e" and not em.anti:
        return {k: np.asarray(v, float) for k, v in osc.flavour_weights(E, name, osc_params).items()}
    if name == "atm" and em.flavour == "mu":
        return {fl: np.full(E.shape, w) for fl, w in osc.ATM_NUMU_TO.items()}
    return {em.flavour: np.ones(E.shape)}


@dataclass(frozen=True)
class Quadrature:
    """Recoil-energy quadrature: nodes (MeV), weights (MeV) and the species each belongs to."""

    E: np.ndarray
    w: np.ndarray
    species: np.ndarray


def _gauss_legendre_log(breaks: np.ndarray, n: int):
    x, w = np.polynomial.legendre.leggauss(n)
    lb = np.log(breaks)
    a, b = lb[:-1, None], lb[1:, None]
    t = 0.5 * (b - a) * x[None, :] + 0.5 * (b + a)
    E = np.exp(t)
    W = 0.5 * (b - a) * w[None, :] * E
    return E.ravel(), W.ravel()


@dataclass
class ForwardModel:
    """Binned expected counts for one process at one detector.

    Parameters
    ----------
    process : {"cevns", "eves"}
    target : str or Target
        ``"Xe"`` (natural xenon, abundance-weighted isotopes) or a single isotope, e.g. ``"Xe131"``.
    sources : sequence of str
        Names from :data:`nuinfer.physics.sources.SOURCE_NAMES`; default all for CEvNS and the solar
        ones for EvES (the paper's choice).
    normalisation : str or dict
        Flux preset (``"paper"`` = Table II, ``"b16-gs98"``) or per-source overrides.
    binning : Binning
        keVee bins; default 100 log bins on 0.1-100 keVee (CEvNS) or 0.1-1e4 keVee (EvES).
    detector : Detector
        Ideal by default (paper preset), Lindhard k = 0.166 for CEvNS.
    exposure_tonne_year : float
        Exposure in tonne-years (default 1).
    binding : bool
        EvES atomic binding step function (Eq. 25); default on.
    n_nodes : int
        Gauss-Legendre nodes per recoil sub-interval.
    user_tables : dict, optional
        Extra sources ``{name: [Emission, ...]}`` (user flux tables, or the terrestrial sources
        of :mod:`nuinfer.physics.terrestrial`); list their names in ``sources``.  Sources other
        than the solar and atmospheric ones are not oscillated.
    form_factor : {"helm", "klein-nystrand"}
        Nuclear form factor of CEvNS (:func:`nuinfer.physics.cevns.form_factor`).

    Notes
    -----
    Targets (``"Xe"``, ``"Ge"``, ``"Ar"``, ``"Ar40"``, ``"CsI"``, single isotopes) are counted per
    formula unit: ``exposure_tonne_year`` is the detector mass times live time, whatever the
    compound.  :meth:`kernel_counts` is the hook for cross sections outside the mediator models.
    """

    process: str = "cevns"
    target: object = "Xe"
    sources: tuple | None = None
    normalisation: object = "paper"
    binning: Binning | None = None
    detector: Detector | None = None
    exposure_tonne_year: float = 1.0
    binding: bool = True
    osc_params: object = None
    sin2w: float | None = None
    n_nodes: int = 6
    n_flux_grid: int = 400
    user_tables: dict | None = None
    form_factor: str = "helm"
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.process not in PROCESSES:
            raise InvalidConfig(f"unknown process {self.process!r}; use 'cevns' or 'eves'", key="process")
        self.target = self.target if isinstance(self.target, Target) else get_target(self.target)
        if self.sources is None:
            self.sources = src.SOURCE_NAMES if self.process == "cevns" else src.SOLAR_SOURCES
        self.sources = tuple(self.sources)
        if not self.sources:
            raise InvalidConfig("no neutrino source selected", key="sources")
        known = set(src.SOURCE_NAMES) | set(self.user_tables or {})
        bad = [s for s in self.sources if s not in known]
        if bad:
            raise InvalidConfig(f"unknown source(s) {bad}; choose from {', '.join(src.SOURCE_NAMES)}",
                                key="sources")
        if self.binning is None:
            self.binning = Binning(0.1, 100.0 if self.process == "cevns" else 1e4, 100)
        if self.detector is None:
            q = (Quenching("lindhard", k=round(lindhard_k(self.target.Z, self.target.mean_A), 3), Z=self.target.Z)
                 if self.process == "cevns" else Quenching("none"))
            self.detector = Detector(q)
        if self.process == "eves" and self.detector.quenching.model != "none":
            raise InvalidConfig("electron recoils are not quenched: use quenching model 'none' for EvES",
                                key="detector.quenching.model")
        if not (np.isfinite(self.exposure_tonne_year) and self.exposure_tonne_year > 0):
            raise UnphysicalInput(f"exposure must be > 0 tonne-years, got {self.exposure_tonne_year}",
                                  key="exposure_tonne_year")
        if not isinstance(self.n_nodes, int) or self.n_nodes < 2:
            raise InvalidConfig("n_nodes must be an integer >= 2", key="numerics.n_nodes")
        self.sin2w = cevns.SIN2_THETA_W if self.sin2w is None else float(self.sin2w)
        if self.form_factor not in cevns.FORM_FACTORS:
            raise InvalidConfig(f"unknown form factor {self.form_factor!r}; use one of "
                                f"{', '.join(cevns.FORM_FACTORS)}", key="form_factor")

    # ------------------------------------------------------------------ species and kinematics
    @property
    def _species(self):
        """(label, mass MeV, number of targets per tonne-year, isotope or None)."""
        n_atoms = tonne_year_targets(self.target.molar_mass)
        if self.process == "cevns":
            return [(i.name, i.m_N, n_atoms * i.abundance, i) for i in self.target.isotopes if i.abundance > 0]
        return [("e", None, n_atoms, None)]

    def _enu_min(self, E, sp) -> np.ndarray:
        return cevns.enu_min(E, sp[1]) if self.process == "cevns" else eves.enu_min(E)

    def _er_max(self, E_nu, sp) -> np.ndarray:
        return cevns.er_max(E_nu, sp[1]) if self.process == "cevns" else eves.t_max(E_nu)

    def _e_true_edges_MeV(self) -> tuple[float, float, np.ndarray]:
        lo, hi = self.detector.true_range_keVee(self.binning)
        edges = self.binning.edges
        # efficiency objects may declare their kinks (e.g. table abscissae) as ``knots_keVee``
        knots = getattr(self.detector.efficiency, "knots_keVee", None)
        if knots is not None:
            edges = np.union1d(edges, np.asarray(knots, float))
        edges = edges[(edges > lo) & (edges < hi)]
        pts = np.concatenate([[lo], edges, [hi]])
        q = self.detector.quenching
        return q.e_nr(np.array([lo]))[0] * KEV, q.e_nr(np.array([hi]))[0] * KEV, q.e_nr(pts) * KEV

    @property
    def channels(self) -> list[Channel]:
        if "channels" not in self._cache:
            self._cache["channels"] = build_channels(
                self.sources, normalisation=self.normalisation, osc_params=self.osc_params,
                n_grid=self.n_flux_grid, user_tables=self.user_tables)
        return self._cache["channels"]

    def quadrature(self) -> Quadrature:
        """Recoil nodes for every species, split at bin edges and every discontinuity."""
        if "quad" in self._cache:
            return self._cache["quad"]
        quad = self._build_quadrature()
        self._cache["quad"] = quad
        return quad

    def _build_quadrature(self, extra_breaks=None) -> Quadrature:
        """Quadrature nodes; ``extra_breaks(k, species) -> E_r [MeV]`` adds sub-interval ends."""
        lo, hi, edge_pts = self._e_true_edges_MeV()
        Es, Ws, Ss = [], [], []
        line_E = np.array([c.E_max for c in self.channels])
        for k, sp in enumerate(self._species):
            kinks = self._er_max(line_E, sp)
            extra = [kinks]
            if self.process == "eves" and self.binding:
                extra.append(self.target.binding_edges_MeV())
            if extra_breaks is not None:
                extra.append(np.atleast_1d(np.asarray(extra_breaks(k, sp), float)))
            br = np.concatenate([edge_pts] + extra)
            br = np.unique(br[(br >= lo) & (br <= hi)])
            # drop sub-intervals above every kinematic endpoint: nothing is produced there
            top = float(np.max(kinks))
            if top < hi:
                br = np.unique(np.concatenate([br[br <= top], [top]]))
            if br.size < 2:
                continue
            E, W = _gauss_legendre_log(br, self.n_nodes)
            Es.append(E)
            Ws.append(W)
            Ss.append(np.full(E.size, k))
        if not Es:
            raise EmptyWindow(
                f"no neutrino source can produce a recoil in {self.binning.edges[0]:g}-"
                f"{self.binning.edges[-1]:g} keVee for {self.process}; lower the threshold or add sources",
                key="binning")
        return Quadrature(np.concatenate(Es), np.concatenate(Ws), np.concatenate(Ss))

    def response(self) -> np.ndarray:
        """Detector response matrix (nodes, bins) including efficiency."""
        if "resp" not in self._cache:
            quad = self.quadrature()
            E_ee = self.detector.quenching.e_ee(quad.E / KEV)
            self._cache["resp"] = self.detector.response(E_ee, self.binning)
        return self._cache["resp"]

    def _node_moments(self) -> np.ndarray:
        """Flux moments per channel, (n_channels, 3, n_nodes)."""
        if "mom" not in self._cache:
            quad = self.quadrature()
            Emin = np.empty_like(quad.E)
            for k, sp in enumerate(self._species):
                sel = quad.species == k
                Emin[sel] = self._enu_min(quad.E[sel], sp)
            self._cache["mom"] = np.stack([c.moments(Emin) for c in self.channels])
        return self._cache["mom"]

    def _node_scale(self, quad: Quadrature | None = None) -> np.ndarray:
        """Quadrature weight x targets x exposure x unit conversion per node."""
        quad = self.quadrature() if quad is None else quad
        n_t = np.array([sp[2] for sp in self._species])[quad.species]
        if self.process == "eves":
            n_t = n_t * (self.target.electrons_accessible(quad.E) if self.binding
                         else np.full(quad.E.shape, float(self.target.Z)))
        return quad.w * n_t * self.exposure_tonne_year * SECONDS_PER_YEAR * HBARC2_MEV2_CM2

    def _channels_used(self, inter: Interaction) -> np.ndarray:
        return np.array([not (inter.drops_nue and c.flavour == "e") for c in self.channels])

    def _coefficients(self, inter: Interaction, ch: Channel) -> np.ndarray:
        quad = self.quadrature()
        C = np.zeros((3, 3, quad.E.size))
        for k, sp in enumerate(self._species):
            sel = quad.species == k
            if self.process == "cevns":
                C[:, :, sel] = cevns.coefficients(quad.E[sel], sp[3], inter, flavour=ch.flavour,
                                                  anti=ch.anti, sin2w=self.sin2w,
                                                  form_factor=self.form_factor)
            else:
                C[:, :, sel] = eves.coefficients(quad.E[sel], inter, flavour=ch.flavour, anti=ch.anti,
                                                 sin2w=self.sin2w)
        return C

    def node_weights(self, interaction="SM") -> dict[str, np.ndarray]:
        """W_p per source: {source: (3, n_nodes)} so that counts = sum_p g^2p prop^p W_p @ Resp."""
        inter = get_interaction(interaction)
        if inter.name == "dipole":
            raise InvalidConfig("the dipole portal has no node weights of the mediator form; use "
                                "spectrum()/templates() (they dispatch to nuinfer.physics.dipole)", key="model.name")
        key = ("W", inter)
        if key in self._cache:
            return self._cache[key]
        mom = self._node_moments()
        scale = self._node_scale()
        used = self._channels_used(inter)
        out = {s: np.zeros((3, scale.size)) for s in self.sources}
        coef_cache: dict = {}
        for i, ch in enumerate(self.channels):
            if not used[i]:
                continue
            ck = (ch.flavour, ch.anti)
            if ck not in coef_cache:
                coef_cache[ck] = self._coefficients(inter, ch)
            C = coef_cache[ck]
            out[ch.source] += np.einsum("pjn,jn->pn", C, mom[i]) * scale
        self._cache[key] = out
        return out

    def q2(self) -> np.ndarray:
        """Squared momentum transfer at each node [MeV^2] (2 m E_r)."""
        quad = self.quadrature()
        m = np.array([sp[1] if sp[1] is not None else eves.M_E for sp in self._species])[quad.species]
        return 2.0 * m * quad.E

    @property
    def species(self) -> list[tuple]:
        """Recoiling species: ``(label, mass MeV, targets per tonne-year, Isotope or None)``."""
        return list(self._species)

    def kernel_counts(self, coefficients, *, enu_min=None, extra_breaks=None,
                      per_source: bool = False) -> np.ndarray:
        """Binned counts for any cross section written in the E_nu expansion of this module.

        This is the generic hook for interactions outside :mod:`nuinfer.physics.mediators` (e.g.
        the sterile-neutrino dipole portal, :mod:`nuinfer.physics.dipole`): the cross section is
        ``dsigma/dE_r = sum_j C_j(E_r) E_nu^-j`` (j = 0, 1, 2) for ``E_nu >= enu_min(E_r)``.

        Parameters
        ----------
        coefficients : callable
            ``coefficients(E_r, isotope, flavour, anti) -> C`` of shape (3, n) [MeV^-3 MeV^j] for
            recoil energies ``E_r`` (n,) [MeV] of one species (``isotope`` is ``None`` for
            electrons).
        enu_min : callable, optional
            ``enu_min(E_r, isotope) -> E_nu^min`` [MeV]; default: the elastic kinematics of the
            process.  Recoils whose ``E_nu^min`` exceeds a source's endpoint get nothing from it.
        extra_breaks : callable, optional
            ``extra_breaks(k, species) -> E_r`` [MeV]: recoil energies where the integrand has
            kinks (e.g. where ``enu_min`` crosses a source endpoint); the quadrature is split there
            (a one-off quadrature, not cached).
        per_source : bool
            Return counts per source, shape (n_sources, n_bins), instead of the total (n_bins,).

        Returns
        -------
        numpy.ndarray
            Expected counts [events].
        """
        if extra_breaks is None:
            quad, resp, scale = self.quadrature(), self.response(), self._node_scale()
        else:
            quad = self._build_quadrature(extra_breaks)
            resp = self.detector.response(self.detector.quenching.e_ee(quad.E / KEV), self.binning)
            scale = self._node_scale(quad)
        Emin = np.empty_like(quad.E)
        for k, sp in enumerate(self._species):
            sel = quad.species == k
            Emin[sel] = enu_min(quad.E[sel], sp[3]) if enu_min is not None else self._enu_min(quad.E[sel], sp)
        names = list(self.sources)
        W = np.zeros((len(names), quad.E.size))
        coef_cache: dict = {}
        for ch in self.channels:
            ck = (ch.flavour, ch.anti)
            if ck not in coef_cache:
                C = np.zeros((3, quad.E.size))
                for k, sp in enumerate(self._species):
                    sel = quad.species == k
                    C[:, sel] = np.asarray(coefficients(quad.E[sel], sp[3], ch.flavour, ch.anti), float)
                coef_cache[ck] = C
            W[names.index(ch.source)] += np.einsum("jn,jn->n", coef_cache[ck], ch.moments(Emin)) * scale
        counts = W @ resp
        return counts if per_source else counts.sum(axis=0)

    # ------------------------------------------------------------------ public outputs
    def _bin_coords(self) -> dict:
        e = self.binning.edges
        attrs = {"units": "keVee", "quantity": "electron-equivalent recoil energy"}
        return {
            "E_lo": ("bin", e[:-1], {**attrs, "long_name": "lower bin edge"}),
            "E_hi": ("bin", e[1:], {**attrs, "long_name": "upper bin edge"}),
            "E_center": ("bin", self.binning.centers, {**attrs, "long_name": "bin centre"}),
        }

    def attrs(self, inter: Interaction | None = None) -> dict:
        q = self.detector.quenching
        a = {
            "process": self.process,
            "target": self.target.name,
            "exposure_tonne_year": float(self.exposure_tonne_year),
            "normalisation": self.normalisation if isinstance(self.normalisation, str)
            else json.dumps(self.normalisation, sort_keys=True),
            "sources": ",".join(self.sources),
            "binding": int(bool(self.binding)),
            "quenching": q.model if q.model != "lindhard" else f"lindhard(k={q.k:g})",
            "detector": "ideal" if self.detector.ideal else "realistic",
            "sin2_theta_W": self.sin2w,
            "form_factor": self.form_factor,
            "nuinfer_version": __version__,
        }
        if inter is not None:
            a.update(model=inter.name, axial_form=inter.axial_form,
                     eves_vector_norm=inter.eves_vector_norm, lmu_ltau_nue=inter.lmu_ltau_nue)
        return a

    def spectrum(self, interaction="SM", g_X: float = 0.0, m_X_MeV: float = 1.0) -> xr.Dataset:
        """Expected counts per (source, bin) at one (g_X, m_X) (SM for ``interaction="SM"`` or g=0).

        Returns a Dataset with ``counts(source, bin)`` and ``total(bin)`` [events], and the
        differential rate ``rate(bin)`` [events/keVee].
        """
        inter = get_interaction(interaction)
        _check_point(g_X, m_X_MeV)
        names = list(self.sources)
        if inter.name == "dipole":  # SM + mu^2 x dipole counts at m4 = m_X (physics.dipole)
            from nuinfer.physics.dipole import dipole_counts
            self._check_dipole()
            W = self.node_weights(Interaction("SM"))
            resp = self.response()
            counts = np.stack([W[s][0] @ resp for s in names]) + g_X**2 * dipole_counts(
                self, float(m_X_MeV), per_source=True)
        else:
            W = self.node_weights(inter)
            prop = 1.0 / (self.q2() + m_X_MeV**2)
            resp = self.response()
            counts = np.stack([
                (W[s][0] + g_X**2 * prop * W[s][1] + g_X**4 * prop**2 * W[s][2]) @ resp for s in names
            ])
        counts = np.maximum(counts, 0.0)  # guard against -1e-30 roundoff in interfering models
        total = counts.sum(axis=0)
        width = np.diff(self.binning.edges)
        ds = xr.Dataset(
            {
                "counts": (("source", "bin"), counts, {"units": "events", "long_name": "expected counts per source"}),
                "total": ("bin", total, {"units": "events", "long_name": "expected counts"}),
                "rate": ("bin", total / width, {"units": "events/keVee", "long_name": "differential rate"}),
            },
            coords={"source": ("source", names, {"long_name": "neutrino source"}), **self._bin_coords()},
            attrs={**self.attrs(inter), "g_X": float(g_X), "m_X_MeV": float(m_X_MeV)},
        )
        return ds

    def sm_spectrum(self) -> xr.Dataset:
        """Standard-Model expected counts per (source, bin)."""
        return self.spectrum("SM", 0.0, 1.0)

    def templates(self, interaction, m_X_MeV) -> xr.Dataset:
        """g-polynomial templates T_p(m_X, bin), p = 0, 1, 2: R = T0 + g^2 T1 + g^4 T2.

        ``R_SM`` is the SM expectation under this model's flavour treatment (it equals T0).
        """
        inter = get_interaction(interaction)
        m = np.atleast_1d(np.asarray(m_X_MeV, dtype=float))
        if m.ndim != 1 or m.size == 0 or np.any(~np.isfinite(m)) or np.any(m <= 0):
            raise UnphysicalInput("mediator masses must be finite and > 0 MeV", key="scan.m_X_MeV")
        if inter.name == "dipole":
            from nuinfer.physics.dipole import dipole_templates
            self._check_dipole()
            return dipole_templates(self, m)
        W = self.node_weights(inter)
        Wsum = sum(W[s] for s in self.sources)
        resp = self.response()
        q2 = self.q2()
        T = np.empty((3, m.size, self.binning.nbins))
        T[0] = (Wsum[0] @ resp)[None, :]
        chunk = max(1, int(2e7 // max(q2.size, 1)))
        for i in range(0, m.size, chunk):
            prop = 1.0 / (q2[None, :] + m[i:i + chunk, None] ** 2)
            T[1, i:i + chunk] = (prop * Wsum[1]) @ resp
            T[2, i:i + chunk] = (prop * prop * Wsum[2]) @ resp
        ds = xr.Dataset(
            {
                "T": (("power", "m_X", "bin"), T,
                      {"units": "events", "long_name": "template: counts = sum_p g_X^(2p) T_p"}),
                "R_SM": ("bin", T[0, 0].copy(), {"units": "events", "long_name": "SM expected counts"}),
            },
            coords={
                "power": ("power", [0, 1, 2], {"long_name": "power p of g_X^2", "units": "1"}),
                "m_X": ("m_X", m, {"units": "MeV", "long_name": "mediator mass"}),
                **self._bin_coords(),
            },
            attrs=self.attrs(inter),
        )
        return ds

    def _check_dipole(self) -> None:
        if self.process != "cevns":
            raise InvalidConfig("the dipole portal is implemented for CEvNS only", key="model.name")

    def expected(self, interaction, g_X, m_X_MeV) -> np.ndarray:
        """Total expected counts per bin at one point (direct sum over sources, no templates)."""
        return self.spectrum(interaction, g_X, m_X_MeV)["total"].values


def _check_point(g, m):
    if not np.isfinite(g) or g < 0:
        raise UnphysicalInput(f"coupling must be finite and >= 0, got {g}", key="g_X")
    if not np.isfinite(m) or m <= 0:
        raise UnphysicalInput(f"mediator mass must be finite and > 0 MeV, got {m}", key="m_X_MeV")
