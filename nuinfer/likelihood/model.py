"""One binned likelihood: expected counts = sum of components, each a template times modifiers.

A :class:`BinnedModel` is the structure of an analysis' likelihood (which components, which
nuisance parameters act on which, how they are constrained); the *templates* are given per call,
so the same model serves every hypothesis of a scan (the signal template changes with the
parameters of interest, the structure does not).  For a batch of ``N`` hypotheses and ``n`` bins::

    mu_i = sum_c  F_c(theta) * V_ci(theta) * (1 + sum_{s in c} x_{s, g_s(i)})

* ``F_c = prod_{p in norms(c)} theta_p`` -- normalisation modifiers: every normalisation parameter is
  a multiplier with nominal value 1 (a flux, an efficiency, a background rate, a signal strength).
* ``V_c(theta)`` -- the template of component ``c``, morphed by one or two *shape* parameters
  between precomputed node templates (:class:`Morph`: a cubic spline in one parameter, a polynomial
  in one parameter, or bilinear interpolation on a 2-D grid of nodes); without a morph, the template.
* ``x_{s, g}`` -- per-bin shape uncertainties (:class:`ShapeSys`): relative deviations of the
  component in groups of bins, nominal 0 (the review's bin-dependent cross-section nuisances).

Every parameter has a constraint: Gaussian of width ``sigma`` around its auxiliary value (nominal,
or a value drawn for a toy experiment), ``sigma = inf`` free, ``sigma = 0`` fixed.  Costs (chi2
scale, see :mod:`nuinfer.likelihood.costs`): ``poisson`` (Baker-Cousins), ``gauss`` (fixed per-bin
variance: the paper's Eq. 26 when the variance is the SM expectation) and ``gauss_hyp`` (variance
at the hypothesis, ``(n - mu)^2 / mu``).

:func:`nuinfer.likelihood.profile.profile` minimises over all parameters at once for the whole
batch with a bounded Newton iteration using the expected-information Hessian, exploiting that the
shape-uncertainty block is diagonal (Schur complement).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from nuinfer.exceptions import InvalidConfig, NumericalError

def _spline_at(x, c, p, derivative: bool = False, rows=None):
    """Piecewise cubic with coefficients ``c`` (4, K-1, ...) on knots ``x`` (as
    :func:`nuinfer.physics.interp.not_a_knot` gives them) at ``p`` (R,) inside ``[x[0], x[-1]]``:
    values (R, ...) and, with ``derivative``, first derivatives.  ``rows`` (R,): point ``r`` takes
    the cubic of column ``rows[r]`` of ``c``'s third axis (c of shape (4, K-1, P, ...))."""
    k = np.clip(np.searchsorted(x, p, side="right") - 1, 0, x.size - 2)
    cc = c[:, k] if rows is None else c[:, k, rows]  # (4, R, ...)
    t = (p - x[k]).reshape((-1,) + (1,) * (cc.ndim - 2))
    val = ((cc[0] * t + cc[1]) * t + cc[2]) * t + cc[3]
    if not derivative:
        return val
    return val, (3.0 * cc[0] * t + 2.0 * cc[1]) * t + cc[2]


__all__ = ["BinnedModel", "Component", "Morph", "NodeSpline", "Parameter", "PolyTemplate", "ShapeSys"]


@dataclass(frozen=True, eq=False)
class PolyTemplate:
    """Templates that are a polynomial in one variable per hypothesis, ``sum_p coeffs[r, p] T[p]``.

    The factorised form of a signal over a coupling grid (``coeffs = (1, g^2, g^4)`` per hypothesis,
    ``T`` the mass's templates at every morph node): the morph is applied to the few ``T[p]`` and
    not to one template per hypothesis, so a whole coupling grid costs three matrix products.

    With ``block`` the hypotheses draw on several node sets (e.g. several masses of a
    (m_X, g_X) scan in one batch): ``T`` has a leading axis of ``B`` blocks and hypothesis ``r``
    is ``sum_p coeffs[r, p] T[block[r], p]``.  Each block is stored once, not once per
    hypothesis, and the hypotheses of one block share one matrix product.

    Parameters
    ----------
    coeffs : array_like, shape (N, P)
    T : array_like, shape (P, K, bin) or (P, bin); with ``block``: (B, P, K, bin) or (B, P, bin)
    block : array_like of int, shape (N,), optional
        Node block (index into the first axis of ``T``) of every hypothesis.
    """

    coeffs: np.ndarray
    T: np.ndarray
    block: np.ndarray | None = None


@dataclass(frozen=True)
class Parameter:
    """A nuisance parameter (or a profiled parameter of interest such as a signal strength).

    Parameters
    ----------
    name : str
    sigma : float
        Gaussian constraint width: ``0`` fixes the parameter at ``nominal``, ``inf`` leaves it free.
    nominal : float
        Centre of the constraint (the auxiliary measurement) and the starting value.
    lo, hi : float
        Bounds (a normalisation stays > 0 by default; a morphing parameter within its nodes).
    long_name, units : str
    """

    name: str
    sigma: float = math.inf
    nominal: float = 1.0
    lo: float = 1e-6
    hi: float = math.inf
    long_name: str = ""
    units: str = "1"

    def __post_init__(self):
        s = float(self.sigma)
        if math.isnan(s) or s < 0:
            raise InvalidConfig(f"constraint width must be >= 0 (0 fixes, inf frees), got {self.sigma}",
                                key=f"nuisances.{self.name}")
        if not (self.lo <= self.nominal <= self.hi):
            raise InvalidConfig(f"nominal {self.nominal} outside the bounds [{self.lo}, {self.hi}]",
                                key=f"nuisances.{self.name}")
        object.__setattr__(self, "sigma", s)

    @property
    def fixed(self) -> bool:
        return self.sigma == 0.0


@dataclass(frozen=True)
class Morph:
    """Interpolation of a component between node templates in one or two parameters.

    ``kind``:

    * ``"spline"`` -- not-a-knot cubic spline along ``nodes[0]`` (>= 4 increasing values), the
      parameter clamped to the node range (template morphing of the quenching scale);
    * ``"poly"`` -- node ``k`` is the coefficient of ``p^k`` (templates exactly polynomial in ``p``,
      e.g. CEvNS rates in sin^2 theta_W); ``nodes`` unused;
    * ``"grid2"`` -- bilinear interpolation on the grid ``nodes[0] x nodes[1]`` (node ``k`` =
      ``i * len(nodes[1]) + j``), both parameters clamped to the grid (light/charge yields); the
      statistic then has kinks on the node lines;
    * ``"grid2_spline"`` -- the same grid with a tensor-product cubic spline (not-a-knot, >= 4
      nodes per axis): linear in the node templates, twice differentiable in the parameters, so
      Newton converges without special handling at the nodes (the smooth-interpolation choice of
      pyhf's interpolation codes).
    """

    kind: str
    params: tuple
    nodes: tuple = ()

    def __post_init__(self):
        if self.kind not in ("spline", "poly", "grid2", "grid2_spline"):
            raise InvalidConfig(f"unknown morph {self.kind!r}; use spline, poly, grid2 or grid2_spline", key="morph")
        want = 2 if self.kind.startswith("grid2") else 1
        if len(self.params) != want:
            raise InvalidConfig(f"a {self.kind} morph takes {want} parameter(s)", key="morph")
        nodes = tuple(np.asarray(x, float) for x in self.nodes)
        if self.kind == "spline" and (len(nodes) != 1 or nodes[0].size < 4 or np.any(np.diff(nodes[0]) <= 0)):
            raise InvalidConfig("a spline morph needs >= 4 increasing nodes", key="morph")
        need = 4 if self.kind == "grid2_spline" else 2
        if self.kind.startswith("grid2") and (len(nodes) != 2 or any(x.size < need or np.any(np.diff(x) <= 0)
                                                                     for x in nodes)):
            raise InvalidConfig(f"a {self.kind} morph needs two increasing node axes of >= {need} values", key="morph")
        object.__setattr__(self, "nodes", nodes)
        if self.kind == "grid2_spline":
            # cardinal cubic splines (not-a-knot): basis[i] interpolates the unit vector e_i on each
            # axis; numpy only (scipy.interpolate costs ~0.4 s to import)
            from nuinfer.physics.interp import not_a_knot
            object.__setattr__(self, "_basis", tuple(not_a_knot(x, np.eye(x.size)) for x in nodes))

    def cardinal(self, axis: int, p):
        """Values and derivatives (R, n_nodes) of the cardinal splines of one axis at ``p``."""
        x = self.nodes[axis]
        p = np.clip(np.asarray(p, float), x[0], x[-1])
        return _spline_at(x, self._basis[axis], p, derivative=True)

    def n_nodes(self, K: int) -> int:
        if self.kind == "spline":
            return self.nodes[0].size
        if self.kind.startswith("grid2"):
            return self.nodes[0].size * self.nodes[1].size
        return K

    def bounds(self) -> list[tuple[float, float]]:
        if self.kind == "poly":
            return [(-math.inf, math.inf)]
        return [(float(x[0]), float(x[-1])) for x in self.nodes]


@dataclass(frozen=True)
class ShapeSys:
    """Per-bin relative uncertainties of some components, one parameter per group of bins.

    Parameters
    ----------
    name : str
        Parameters are called ``name[g]``.
    group : array_like of int, shape (bin,)
        Group of each bin (``-1``: none).
    sigma : array_like, shape (n_groups,)
        Constraint width of each group's deviation (relative, 0.1 = 10 %; > 0).
    """

    name: str
    group: np.ndarray
    sigma: np.ndarray

    def __post_init__(self):
        g = np.asarray(self.group, int)
        s = np.atleast_1d(np.asarray(self.sigma, float))
        if g.ndim != 1 or (g.size and (g.max() >= s.size or g.min() < -1)):
            raise InvalidConfig("group indices must be -1 or index the sigma array", key=f"nuisances.{self.name}")
        if np.any(~np.isfinite(s)) or np.any(s <= 0):
            raise InvalidConfig("per-bin uncertainties must be finite and > 0", key=f"nuisances.{self.name}")
        object.__setattr__(self, "group", g)
        object.__setattr__(self, "sigma", s)

    @property
    def n(self) -> int:
        return int(self.sigma.size)


@dataclass(frozen=True)
class Component:
    """One contribution to the expected counts.

    Parameters
    ----------
    name : str
    norms : tuple of str
        Names of the normalisation parameters multiplying it.
    morph : Morph, optional
        Shape interpolation (the template then has one node per morph node).
    shapesys : str, optional
        Name of the :class:`ShapeSys` acting on it.
    """

    name: str
    norms: tuple = ()
    morph: Morph | None = None
    shapesys: str | None = None


class NodeSpline:
    """Cubic spline (not-a-knot) along one parameter of templates given at its nodes (the ``spline``
    morph; e.g. the quenching scale ``a_qf`` of the data fits).

    Parameters
    ----------
    nodes : array_like, shape (K,)
        Parameter values of the nodes (K = 1: no morph; else K >= 4, increasing).
    values : array_like, shape (K, P, bin)
        Templates of P hypotheses at the nodes (P = 1: shared by every row).
    """

    def __init__(self, nodes, values):
        self.nodes = np.asarray(nodes, float)
        v = np.asarray(values, float)
        if v.ndim != 3 or v.shape[0] != self.nodes.size:
            raise InvalidConfig(f"values need shape (K={self.nodes.size}, P, bin); got {v.shape}",
                                key="templates")
        self.K = self.nodes.size
        self.P = v.shape[1]
        if self.K == 1:
            self._v = v[0]
            return
        if self.K < 4 or np.any(np.diff(self.nodes) <= 0):
            raise InvalidConfig("morphing nodes must be >= 4 increasing values", key="nuisances.qf_nodes")
        # coefficients (4, K-1, P, bin): one cubic per interval (not-a-knot, as scipy's CubicSpline)
        from nuinfer.physics.interp import not_a_knot
        self._c = not_a_knot(self.nodes, v)

    @property
    def lo(self) -> float:
        return float(self.nodes[0])

    @property
    def hi(self) -> float:
        return float(self.nodes[-1])

    def at(self, rows, eta, *, derivative: bool = False):
        """Templates (and d/dparameter) of hypotheses ``rows`` at their ``eta`` values, shape (R, bin);
        ``eta`` is clamped to the node range."""
        rows = np.asarray(rows)
        if self.P == 1:
            rows = np.zeros_like(rows)
        if self.K == 1:
            v = self._v[rows]
            return (v, np.zeros_like(v)) if derivative else v
        eta = np.clip(np.asarray(eta, float), self.lo, self.hi)
        return _spline_at(self.nodes, self._c, eta, derivative, rows=rows)

    def __call__(self, eta, *, derivative: bool = False):
        """Signal of all P hypotheses at per-hypothesis ``eta`` (P,)."""
        return self.at(np.arange(self.P), np.broadcast_to(np.asarray(eta, float), (self.P,)),
                       derivative=derivative)


def _hat_weights(x, p):
    """Piecewise-linear (hat) basis weights (R, len(x)) at ``p`` (clamped) and their derivatives."""
    p = np.clip(np.asarray(p, float), x[0], x[-1])
    i = np.clip(np.searchsorted(x, p, side="right") - 1, 0, x.size - 2)
    h = x[i + 1] - x[i]
    u = (p - x[i]) / h
    R = p.size
    w = np.zeros((R, x.size))
    d = np.zeros((R, x.size))
    ar = np.arange(R)
    w[ar, i], w[ar, i + 1] = 1.0 - u, u
    d[ar, i], d[ar, i + 1] = -1.0 / h, 1.0 / h
    return w, d


@dataclass(frozen=True, eq=False)
class BinnedModel:
    """The structure of a binned likelihood: components, their modifiers, and the parameters.

    Parameters
    ----------
    components : tuple of Component
    parameters : tuple of Parameter
        Every parameter named by a component's ``norms`` or ``morph`` (order = column order of
        ``theta``).
    shapesys : tuple of ShapeSys
        Per-bin uncertainties (their parameters follow the global ones in ``theta``).
    """

    components: tuple
    parameters: tuple
    shapesys: tuple = ()
    _index: dict = field(init=False, repr=False)

    def __post_init__(self):
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise InvalidConfig(f"duplicated parameter names {dup}", key="nuisances")
        idx = {n: i for i, n in enumerate(names)}
        ss = {s.name: s for s in self.shapesys}
        cnames = [c.name for c in self.components]
        if len(set(cnames)) != len(cnames):
            raise InvalidConfig(f"duplicated component names in {cnames}", key="components")
        for c in self.components:
            used = list(c.norms) + (list(c.morph.params) if c.morph else [])
            for p in used:
                if p not in idx:
                    raise InvalidConfig(f"component {c.name!r} uses the unknown parameter {p!r}", key="nuisances")
            if c.shapesys is not None and c.shapesys not in ss:
                raise InvalidConfig(f"component {c.name!r} uses the unknown shape uncertainty {c.shapesys!r}",
                                    key="nuisances")
        object.__setattr__(self, "_index", idx)
        object.__setattr__(self, "components", tuple(self.components))
        object.__setattr__(self, "parameters", tuple(self.parameters))
        object.__setattr__(self, "shapesys", tuple(self.shapesys))

    # ---------------------------------------------------------------- bookkeeping
    @property
    def n_global(self) -> int:
        return len(self.parameters)

    @property
    def n_shape(self) -> int:
        return int(sum(s.n for s in self.shapesys))

    @property
    def n_par(self) -> int:
        return self.n_global + self.n_shape

    @property
    def parameter_names(self) -> list[str]:
        out = [p.name for p in self.parameters]
        for s in self.shapesys:
            out += [f"{s.name}[{g}]" for g in range(s.n)]
        return out

    def index(self, name: str) -> int:
        return self._index[name]

    def nominal(self) -> np.ndarray:
        return np.concatenate([[p.nominal for p in self.parameters], np.zeros(self.n_shape)])

    def sigmas(self) -> np.ndarray:
        out = [p.sigma for p in self.parameters]
        for s in self.shapesys:
            out += list(s.sigma)
        return np.asarray(out, float)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.array([p.lo for p in self.parameters] + [-1.0] * self.n_shape, float)
        hi = np.array([p.hi for p in self.parameters] + [math.inf] * self.n_shape, float)
        for c in self.components:
            if c.morph is not None:
                for p, (a, b) in zip(c.morph.params, c.morph.bounds()):
                    i = self._index[p]
                    lo[i], hi[i] = max(lo[i], a), min(hi[i], b)
        return lo, hi

    # ---------------------------------------------------------------- templates
    def prepare(self, templates: dict) -> dict:
        """Validate per-component templates and precompute morph coefficients.

        ``templates[name]`` has shape (K, N, n) or (K, n) with a morph (K nodes, N hypotheses), and
        (n,), (N, n) or (1, N, n) without.  Returns an opaque mapping for :meth:`evaluate`.
        """
        out = {}
        n_bins = None
        for c in self.components:
            if c.name not in templates:
                raise InvalidConfig(f"no template for component {c.name!r}", key="templates")
            if isinstance(templates[c.name], PolyTemplate):
                out[c.name] = self._prepare_poly(c, templates[c.name])
                nb = out[c.name]["PT"].shape[-1]
                n_bins = nb if n_bins is None else n_bins
                if nb != n_bins:
                    raise InvalidConfig(f"template of {c.name!r} has {nb} bins, others {n_bins}", key="templates")
                continue
            T = np.asarray(templates[c.name], float)
            if c.morph is None and T.ndim in (1, 2):
                T = T.reshape((1, -1, T.shape[-1]))
            elif T.ndim == 2:
                T = T[:, None, :]
            if T.ndim != 3:
                raise InvalidConfig(f"template of {c.name!r} must have shape (K, N, bin); got {T.shape}",
                                    key="templates")
            K = T.shape[0]
            want = 1 if c.morph is None else c.morph.n_nodes(K)
            if K != want:
                raise InvalidConfig(f"template of {c.name!r} has {K} nodes, its morph needs {want}",
                                    key="templates")
            if not np.all(np.isfinite(T)):
                raise NumericalError(f"template of {c.name!r} contains NaN or inf; check the forward model")
            n_bins = T.shape[2] if n_bins is None else n_bins
            if T.shape[2] != n_bins:
                raise InvalidConfig(f"template of {c.name!r} has {T.shape[2]} bins, others {n_bins}",
                                    key="templates")
            entry = {"T": T, "N": T.shape[1]}
            if c.morph is not None and c.morph.kind == "spline":
                entry["spline"] = NodeSpline(c.morph.nodes[0], T)
            out[c.name] = entry
        for s in self.shapesys:
            if s.group.size != n_bins:
                raise InvalidConfig(f"shape uncertainty {s.name!r} has {s.group.size} bins, templates {n_bins}",
                                    key=f"nuisances.{s.name}")
        out["_n_bins"] = n_bins
        return out

    def _prepare_poly(self, c: Component, pt: PolyTemplate) -> dict:
        if pt.block is not None:
            return self._prepare_poly_blocks(c, pt)
        C = np.asarray(pt.coeffs, float)
        T = np.asarray(pt.T, float)
        if T.ndim == 2:
            T = T[:, None, :]
        if C.ndim != 2 or T.ndim != 3 or C.shape[1] != T.shape[0]:
            raise InvalidConfig(f"polynomial template of {c.name!r}: coeffs (N, P) and T (P, K, bin) needed; got "
                                f"{C.shape} and {T.shape}", key="templates")
        self._check_poly_nodes(c, T.shape[1])
        if not (np.all(np.isfinite(C)) and np.all(np.isfinite(T))):
            raise NumericalError(f"template of {c.name!r} contains NaN or inf; check the forward model")
        return {"poly": C, "PT": T, "N": C.shape[0]}

    def _check_poly_nodes(self, c: Component, K: int) -> None:
        want = 1 if c.morph is None else c.morph.n_nodes(K)
        if K != want or (c.morph is not None and not c.morph.kind.startswith("grid2")):
            raise InvalidConfig(f"polynomial template of {c.name!r}: {K} nodes; supported with no morph or a "
                                f"grid2 morph of {want} nodes", key="templates")

    def _prepare_poly_blocks(self, c: Component, pt: PolyTemplate) -> dict:
        """A blocked :class:`PolyTemplate`: node blocks stored (B, K, P, bin), C-contiguous, so that a
        block's nodes are one (K P, bin) matrix; ``coeffs`` and ``block`` broadcast to (N, P), (N,)."""
        C = np.asarray(pt.coeffs, float)
        T = np.asarray(pt.T, float)
        b = np.asarray(pt.block)
        if T.ndim == 3:
            T = T[:, :, None, :]
        if (C.ndim != 2 or T.ndim != 4 or C.shape[1] != T.shape[1] or b.ndim != 1
                or (C.shape[0] != b.size and 1 not in (C.shape[0], b.size))):
            raise InvalidConfig(f"blocked polynomial template of {c.name!r}: coeffs (N, P), T (B, P, K, bin) and "
                                f"block (N,) needed; got {C.shape}, {T.shape} and {b.shape}", key="templates")
        if b.size and (not np.issubdtype(b.dtype, np.integer) or b.min() < 0 or b.max() >= T.shape[0]):
            raise InvalidConfig(f"blocked polynomial template of {c.name!r}: block indices must be integers in "
                                f"[0, {T.shape[0]})", key="templates")
        self._check_poly_nodes(c, T.shape[2])
        if not (np.all(np.isfinite(C)) and np.all(np.isfinite(T))):
            raise NumericalError(f"template of {c.name!r} contains NaN or inf; check the forward model")
        N = max(C.shape[0], b.size)
        return {"poly": np.broadcast_to(C, (N, C.shape[1])), "block": np.broadcast_to(b.astype(np.intp), (N,)),
                "PT": np.ascontiguousarray(T.transpose(0, 2, 1, 3)), "N": N}

    def _grid_weights(self, m: Morph, theta, derivs: bool, cache: dict | None = None):
        """Node weights (R, K) of a grid2 morph and their derivatives in both parameters (kept in
        ``cache``, one evaluation's, for the other components morphed alike)."""
        if cache is not None:
            key = (id(m), derivs)
            if key not in cache:
                cache[key] = self._grid_weights(m, theta, derivs)
            return cache[key]
        a, b = m.nodes
        pa = theta[:, self._index[m.params[0]]]
        pb = theta[:, self._index[m.params[1]]]
        if m.kind == "grid2_spline":
            wa, da = m.cardinal(0, pa)
            wb, db = m.cardinal(1, pb)
        else:
            wa, da = _hat_weights(a, pa)
            wb, db = _hat_weights(b, pb)
        R = pa.size
        W = (wa[:, :, None] * wb[:, None, :]).reshape(R, -1)
        if not derivs:
            return W, None, None
        return W, (da[:, :, None] * wb[:, None, :]).reshape(R, -1), (wa[:, :, None] * db[:, None, :]).reshape(R, -1)

    def _morphed_poly(self, c: Component, entry, rows, theta, derivs: bool, cache=None):
        if "block" in entry:
            return self._morphed_poly_blocks(c, entry, rows, theta, derivs, cache)
        C = entry["poly"]
        C = C[rows] if C.shape[0] > 1 else np.broadcast_to(C, (rows.size, C.shape[1]))
        T = entry["PT"]  # (P, K, n)
        if c.morph is None:
            return C @ T[:, 0, :], []
        W, Wa, Wb = self._grid_weights(c.morph, theta, derivs, cache)
        A = np.stack([W @ T[p] for p in range(T.shape[0])])  # (P, R, n)
        val = np.einsum("rp,prn->rn", C, A)
        if not derivs:
            return val, []
        dA = np.einsum("rp,prn->rn", C, np.stack([Wa @ T[p] for p in range(T.shape[0])]))
        dB = np.einsum("rp,prn->rn", C, np.stack([Wb @ T[p] for p in range(T.shape[0])]))
        return val, [dA, dB]

    def _morphed_poly_blocks(self, c: Component, entry, rows, theta, derivs: bool, cache=None):
        """:meth:`_morphed_poly` of a blocked PolyTemplate.

        With node weights ``W`` (R, K) (1 without a morph), hypothesis ``r`` is
        ``sum_{k,p} W[r,k] C[r,p] T[b_r,k,p]``: the products ``W C`` (R, K P) of a run of rows of
        one block times that block's (K P, bin) nodes, one matrix product per run (the value and
        both morph derivatives stacked in it).  Rows ordered by block (a scan's, mass by mass)
        make one run per block.
        """
        C, b = entry["poly"], entry["block"]
        if C.shape[0] > 1:
            C, b = C[rows], b[rows]
        else:
            C, b = np.broadcast_to(C, (rows.size, C.shape[1])), np.broadcast_to(b, (rows.size,))
        T = entry["PT"]  # (B, K, P, n)
        _, K, P, n = T.shape
        R = C.shape[0]
        if c.morph is None:
            Z = C[:, None, :]  # (R, 1, K P) with K = 1
        else:
            W, Wa, Wb = self._grid_weights(c.morph, theta, derivs, cache)
            Ws = np.stack([W, Wa, Wb], axis=1) if derivs else W[:, None, :]  # (R, w, K)
            Z = (Ws[:, :, :, None] * C[:, None, None, :]).reshape(R, Ws.shape[1], K * P)
        w = Z.shape[1]
        cuts = (np.flatnonzero(b[1:] != b[:-1]) + 1).tolist()
        out = np.empty((R, w, n))
        Zf, of = Z.reshape(R * w, K * P), out.reshape(R * w, n)
        for s, e in zip([0, *cuts] if R else [], [*cuts, R]):
            np.matmul(Zf[s * w:e * w], T[b[s]].reshape(K * P, n), out=of[s * w:e * w])
        if c.morph is None or not derivs:
            return out[:, 0], []
        return out[:, 0], [out[:, 1], out[:, 2]]

    def _morphed(self, c: Component, entry, rows, theta, derivs: bool = True, cache=None):
        """Template of ``c`` at the morph parameters of ``theta`` (R, n) and its derivatives."""
        if "poly" in entry:
            return self._morphed_poly(c, entry, rows, theta, derivs, cache)
        T = entry["T"]
        m = c.morph
        if m is None:  # a template shared by the batch is broadcast, not copied per row
            return (T[0, rows] if T.shape[1] > 1 else np.broadcast_to(T[0, 0], (rows.size, T.shape[2]))), []
        r = rows if T.shape[1] > 1 else np.zeros_like(rows)
        if m.kind == "spline":
            val, der = entry["spline"].at(rows, theta[:, self._index[m.params[0]]], derivative=True)
            return val, [der]
        if m.kind == "poly":
            p = theta[:, self._index[m.params[0]]][:, None]
            K = T.shape[0]
            val = T[K - 1, r]
            der = np.zeros_like(val)
            for k in range(K - 2, -1, -1):
                der = der * p + val
                val = val * p + T[k, r]
            return val, [der]
        if m.kind == "grid2_spline":
            W, Wa, Wb = self._grid_weights(m, theta, derivs, cache)
            if T.shape[1] > 1:
                Tr = T[:, r, :]  # (K, R, n)
                val = np.einsum("rk,krn->rn", W, Tr)
                if not derivs:
                    return val, []
                return val, [np.einsum("rk,krn->rn", Wa, Tr), np.einsum("rk,krn->rn", Wb, Tr)]
            T0 = T[:, 0, :]
            return W @ T0, ([] if not derivs else [Wa @ T0, Wb @ T0])
        # grid2: bilinear on nodes[0] x nodes[1]
        a, b = m.nodes
        pa = np.clip(theta[:, self._index[m.params[0]]], a[0], a[-1])
        pb = np.clip(theta[:, self._index[m.params[1]]], b[0], b[-1])
        i = np.clip(np.searchsorted(a, pa, side="right") - 1, 0, a.size - 2)
        j = np.clip(np.searchsorted(b, pb, side="right") - 1, 0, b.size - 2)
        da, db = a[i + 1] - a[i], b[j + 1] - b[j]
        u = ((pa - a[i]) / da)[:, None]
        v = ((pb - b[j]) / db)[:, None]
        nb = b.size
        t00, t01 = T[i * nb + j, r], T[i * nb + j + 1, r]
        t10, t11 = T[(i + 1) * nb + j, r], T[(i + 1) * nb + j + 1, r]
        val = (1 - u) * (1 - v) * t00 + (1 - u) * v * t01 + u * (1 - v) * t10 + u * v * t11
        dva = ((1 - v) * (t10 - t00) + v * (t11 - t01)) / da[:, None]
        dvb = ((1 - u) * (t01 - t00) + u * (t11 - t10)) / db[:, None]
        return val, [dva, dvb]

    def evaluate(self, prepared: dict, theta, rows=None, *, jacobian: bool = False):
        """Expected counts (R, n) at parameters ``theta`` (R, n_par) for batch ``rows``.

        With ``jacobian=True`` returns ``(mu, J, shape_terms)``: ``J`` (R, n, n_global) the
        derivatives w.r.t. the global parameters (a view of a parameter-major array: each
        parameter's derivatives are accumulated contiguously), ``shape_terms`` maps each ShapeSys
        name to the summed template its deviations multiply (R, n).
        """
        theta = np.asarray(theta, float)
        R = theta.shape[0]
        rows = np.arange(R) if rows is None else np.asarray(rows)
        n = prepared["_n_bins"]
        mu = np.zeros((R, n))
        Jt = np.zeros((self.n_global, R, n)) if jacobian else None
        base = {s.name: np.zeros((R, n)) for s in self.shapesys}
        offsets = {}
        o = self.n_global
        for s in self.shapesys:
            offsets[s.name] = o
            o += s.n
        ss = {s.name: s for s in self.shapesys}
        cache = {}
        for c in self.components:
            V, dV = self._morphed(c, prepared[c.name], rows, theta, jacobian, cache)
            ni = [self._index[p] for p in c.norms]
            tn = theta[:, ni]
            F = np.prod(tn, axis=1) if ni else np.ones(R)
            fac = None
            if c.shapesys is not None:
                s = ss[c.shapesys]
                x = theta[:, offsets[s.name]:offsets[s.name] + s.n]
                xb = np.where(s.group >= 0, np.take(x, np.maximum(s.group, 0), axis=1), 0.0)
                fac = 1.0 + xb
                base[s.name] += F[:, None] * V
            contrib = F[:, None] * V
            if fac is not None:
                contrib *= fac
            mu += contrib
            if not jacobian:
                continue
            for k, p in enumerate(ni):
                if len(ni) == 1:
                    t = V if fac is None else V * fac
                else:
                    others = tn[:, 1 - k] if len(ni) == 2 else np.prod(np.delete(tn, k, axis=1), axis=1)
                    t = others[:, None] * V
                    if fac is not None:
                        t *= fac
                Jt[p] += t
            if c.morph is not None:
                for p, d in zip(c.morph.params, dV):
                    t = F[:, None] * d
                    if fac is not None:
                        t *= fac
                    Jt[self._index[p]] += t
        if not jacobian:
            return mu
        return mu, Jt.transpose(1, 2, 0), base

    def expected(self, templates: dict, theta=None) -> np.ndarray:
        """Expected counts for all hypotheses at ``theta`` (default: nominal), shape (N, n)."""
        prep = self.prepare(templates)
        N = max(prep[c.name]["N"] for c in self.components)
        th = np.broadcast_to(self.nominal() if theta is None else np.asarray(theta, float), (N, self.n_par))
        return self.evaluate(prep, np.array(th))
