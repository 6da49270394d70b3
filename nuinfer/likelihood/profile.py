"""Profiling a :class:`~nuinfer.likelihood.model.BinnedModel` over its parameters, whole batches at once.

One profiler family, one result type (:class:`FitResult`):

* :func:`profile` with ``method="newton"`` -- bounded Newton iteration with the expected-information
  (Gauss-Newton / Fisher scoring) Hessian, vectorised over the batch; the per-bin shape
  uncertainties form a diagonal block eliminated by a Schur complement, so a hundred bin-wise
  nuisances cost no more than a few global ones.  Steps are projected on the parameter bounds and
  accepted by an Armijo line search.  A point is ``converged`` when its Newton decrement (the
  predicted decrease of the statistic) falls below ``atol + rtol |statistic|``: a real optimality
  check, not "the value is finite".
* ``method="closed_form"`` -- the exact minimum for a Gaussian cost with one normalisation
  parameter (the paper's Eq. 26): formed as a sum of non-negative terms (no cancellation), see
  :mod:`nuinfer.likelihood.closed_form`.
* ``method="minuit"`` -- one iminuit MIGRAD fit per point: the reference the tests compare with.

Costs (chi2 scale, ``errordef = 1``):

* ``"poisson"``: ``2 sum_i [mu_i - n_i + n_i ln(n_i/mu_i)]`` (0 ln 0 = 0);
* ``"gauss"``: ``sum_i (n_i - mu_i)^2 / var_i`` with a fixed variance (Eq. 26: the SM expectation
  plus background);
* ``"gauss_hyp"``: ``sum_i (n_i - mu_i)^2 / mu_i`` (variance at the hypothesis);
* ``"unbinned"``: the extended unbinned likelihood ``2 nu - 2 sum_e ln rho(E_e)``: columns with
  ``n = 1`` hold the expected density ``rho`` (events per unit observable) at one event each, the
  column with ``n = 0`` the expected total ``nu`` in the window;

plus ``sum_p ((theta_p - c_p)/sigma_p)^2`` for every constrained parameter.
"""

from __future__ import annotations

import math
import numpy as np

from nuinfer.exceptions import InvalidConfig
from nuinfer.likelihood.costs import _x_minus_log1p
from nuinfer.likelihood.model import BinnedModel
from nuinfer.likelihood.result import FitResult

__all__ = ["COSTS", "FitResult", "bin_cost", "profile", "statistic_name"]

#: cost name -> name of the minimised quantity (the statistical scale is in the name)
COSTS = {"poisson": "twice_nll", "gauss": "chi2", "gauss_hyp": "chi2", "unbinned": "twice_nll"}


def statistic_name(cost: str) -> str:
    if cost not in COSTS:
        raise InvalidConfig(f"unknown cost {cost!r}; use one of {', '.join(COSTS)}", key="statistics.statistic")
    return COSTS[cost]


# --------------------------------------------------------------------------------------------
# per-bin costs: value, first and (expected-information) second derivative in mu
# --------------------------------------------------------------------------------------------
def bin_cost(cost: str, n, mu, var=None, *, derivatives: bool = False):
    """Per-bin cost terms (non-negative) and, optionally, d/dmu and the curvature used by Newton.

    ``mu <= 0`` where the cost needs ``mu > 0`` gives ``+inf`` (the hypothesis forbids the data).
    """
    n = np.asarray(n, float)
    mu = np.asarray(mu, float)
    pos_mu = mu > 0
    safe = np.where(pos_mu, mu, 1.0)
    if cost == "poisson":
        pos = n > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(pos, (mu - n) / np.where(pos, n, 1.0), 0.0)
            t = np.where(pos, 2.0 * n * _x_minus_log1p(x), 2.0 * mu)
        t = np.where(~pos_mu & pos, np.inf, t)
        if not derivatives:
            return t
        d1 = 2.0 * (1.0 - n / safe)
        d2 = 2.0 * np.maximum(n, 1e-3 * safe) / (safe * safe)
        return t, d1, d2
    if cost == "gauss":
        r = n - mu
        t = r * r / var
        if not derivatives:
            return t
        return t, -2.0 * r / var, np.broadcast_to(2.0 / var, t.shape)
    if cost == "unbinned":
        ev = n > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(ev, -2.0 * n * np.log(safe), 2.0 * mu)
        t = np.where(ev & ~pos_mu, np.inf, t)
        if not derivatives:
            return t
        d1 = np.where(ev, -2.0 * n / safe, 2.0)
        d2 = np.where(ev, 2.0 * n / (safe * safe), 0.0)
        return t, d1, d2
    if cost == "gauss_hyp":
        r = n - mu
        t = np.where(pos_mu, r * r / safe, np.inf)
        if not derivatives:
            return t
        d1 = 1.0 - (n * n) / (safe * safe)
        d2 = 2.0 * np.maximum(n * n, 1e-6 * safe * safe) / (safe ** 3)
        return t, d1, d2
    statistic_name(cost)
    raise AssertionError  # unreachable


# --------------------------------------------------------------------------------------------
# the problem over a batch
# --------------------------------------------------------------------------------------------
class _Problem:
    def __init__(self, model: BinnedModel, prepared, n, var, cost, centres, free_mask):
        self.m = model
        self.prep = prepared
        self.n = n
        self.var = var
        self.cost = cost
        self.c = centres  # (N, n_par)
        sig = model.sigmas()
        with np.errstate(divide="ignore"):
            self.w = np.where(np.isfinite(sig) & (sig > 0), 1.0 / np.where(sig > 0, sig, 1.0) ** 2, 0.0)
        self.free = free_mask  # (n_par,)
        self.gfree = np.flatnonzero(free_mask[:model.n_global])
        self.lo, self.hi = model.bounds()
        self.ng = model.n_global
        # one-hot bin -> shape-parameter matrices
        self.shape_blocks = []
        o = model.n_global
        for s in model.shapesys:
            G = np.zeros((s.group.size, s.n))
            ok = s.group >= 0
            G[np.flatnonzero(ok), s.group[ok]] = 1.0
            self.shape_blocks.append((s.name, o, G))
            o += s.n
        self.xfree = np.flatnonzero(free_mask[model.n_global:])

    def _rows(self, a, rows):
        return a[rows] if a.shape[0] > 1 else a[np.zeros_like(rows)]

    def value(self, theta, rows):
        mu = self.m.evaluate(self.prep, theta, rows)
        n = self._rows(self.n, rows)
        var = None if self.var is None else self._rows(self.var, rows)
        t = bin_cost(self.cost, n, mu, var).sum(axis=1)
        d = theta - self.c[rows]
        return t + np.einsum("rp,p->r", d * d, self.w)

    def grad_hess(self, theta, rows):
        mu, J, base = self.m.evaluate(self.prep, theta, rows, jacobian=True)
        n = self._rows(self.n, rows)
        var = None if self.var is None else self._rows(self.var, rows)
        t, d1, d2 = bin_cost(self.cost, n, mu, var, derivatives=True)
        d = theta - self.c[rows]
        f = t.sum(axis=1) + np.einsum("rp,p->r", d * d, self.w)
        Jg = J[:, :, self.gfree]
        g = np.einsum("ri,rip->rp", d1, Jg) + 2.0 * d[:, self.gfree] * self.w[self.gfree]
        H = np.matmul((Jg * d2[:, :, None]).transpose(0, 2, 1), Jg)  # sum_i d2 J_ip J_iq (3x the einsum's speed)
        H[:, np.arange(self.gfree.size), np.arange(self.gfree.size)] += 2.0 * self.w[self.gfree]
        if not self.shape_blocks:
            return f, (g, None), (H, None, None)
        gx, Dx, Cx = [], [], []
        for name, o, G in self.shape_blocks:
            b = base[name]
            gx.append((d1 * b) @ G + 2.0 * d[:, o:o + G.shape[1]] * self.w[o:o + G.shape[1]])
            Dx.append((d2 * b * b) @ G + 2.0 * self.w[o:o + G.shape[1]])
            Cx.append(np.einsum("ri,rip,ig->rpg", d2 * b, Jg, G))
        gx = np.concatenate(gx, axis=1)[:, self.xfree]
        Dx = np.concatenate(Dx, axis=1)[:, self.xfree]
        Cx = np.concatenate(Cx, axis=2)[:, :, self.xfree]
        return f, (g, gx), (H, Cx, Dx)


def _solve(H, g, Cx, Dx, gx):
    """Newton step for the block system [[H, C], [C^T, diag(D)]] (Schur complement on H)."""
    if gx is None:
        try:
            return -np.linalg.solve(H, g[..., None])[..., 0], None
        except np.linalg.LinAlgError:
            return -g / np.maximum(np.einsum("rpp->rp", H), 1e-300), None
    Dinv = 1.0 / Dx
    if g.shape[1]:
        S = H - np.einsum("rpk,rk,rqk->rpq", Cx, Dinv, Cx)
        rhs = g - np.einsum("rpk,rk->rp", Cx, Dinv * gx)
        try:
            sg = np.linalg.solve(S, rhs[..., None])[..., 0]
        except np.linalg.LinAlgError:
            sg = rhs / np.maximum(np.einsum("rpp->rp", S), 1e-300)
        sx = Dinv * (gx - np.einsum("rpk,rp->rk", Cx, sg))
    else:
        sg = np.zeros_like(g)
        sx = Dinv * gx
    return -sg, -sx


#: step lengths of the backtracking line search: 1, 1/2, ..., 2**-(_LS_TRIES - 1)
_LS_TRIES = 25
#: the step lengths after the full step, tried this many at once per point (one call of the model)
_LS_LADDER = 8


class _Derivatives:
    """:meth:`_Problem.grad_hess` results kept per point of the batch: the full Newton step is tried
    with the derivatives (:func:`_backtrack`), so that a point accepting it -- most of them -- starts
    its next iteration without evaluating the model again."""

    def __init__(self, N: int):
        self.N = N
        self.have = np.zeros(N, bool)
        self.buf = None  # f, g, gx, H, Cx, Dx: (N, ...) each, None where grad_hess gives None

    @staticmethod
    def _flat(res):
        f, (g, gx), (H, Cx, Dx) = res
        return f, g, gx, H, Cx, Dx

    @staticmethod
    def _nested(a):
        return a[0], (a[1], a[2]), (a[3], a[4], a[5])

    def put(self, rows, res, sel=None):
        """Keep the results ``res`` of points ``rows`` (or of its entries ``sel`` only)."""
        flat = self._flat(res)
        if self.buf is None:
            self.buf = [None if a is None else np.empty((self.N,) + a.shape[1:], a.dtype) for a in flat]
        for b, a in zip(self.buf, flat):
            if b is not None:
                b[rows] = a if sel is None else a[sel]
        self.have[rows] = True

    def take(self, prob: _Problem, x, rows):
        """grad_hess at ``x`` of ``rows``: kept results where there are any, evaluated for the rest."""
        hit = self.have[rows]
        self.have[rows] = False
        if not hit.any():
            return prob.grad_hess(x, rows)
        out = [None if b is None else b[rows] for b in self.buf]
        miss = np.flatnonzero(~hit)
        if miss.size:
            for o, a in zip(out, self._flat(prob.grad_hess(x[miss], rows[miss]))):
                if o is not None:
                    o[miss] = a
        return self._nested(out)


def _backtrack(prob: _Problem, xa, active, cur, step, f, dec, done, free_cols, lo, hi, known=None,
               search=None):
    """Armijo backtracking along ``step`` for the points not ``done``: the first of the step lengths
    1, 1/2, 1/4, ... (at most :data:`_LS_TRIES`) that lowers the statistic by at least
    ``1e-4 alpha dec``.  The full step is tried for all points at once; for the points it fails,
    the next :data:`_LS_LADDER` lengths are evaluated together in one call (a point takes the
    first that passes, as sequential halving would), and so on.  Most points accept the full step;
    the others would otherwise cost one call of the model per halving.  With ``known`` (a
    :class:`_Derivatives`) the full step is evaluated with the derivatives, kept for the points
    that accept it.

    ``search`` (mask of the points): where the full step fails, find the first passing length by
    bisection over the exponents 1 ... ``_LS_TRIES - 1`` (5 evaluations a point, one call each)
    instead of the ladders (up to 24).  The same length where the passing lengths are all those
    below some length, as Armijo's condition gives along a descent direction.  Scans set it for
    points whose statistic is above their cut-off: from a poor start their Newton step can be 2**20
    times too long.

    Returns ``(x_new, f_new, accepted)``; points not accepted keep ``xa`` and ``f``.
    """
    accepted = done.copy()
    f_new = f.copy()
    x_new = xa.copy()

    def attempt(todo, alpha, with_derivatives=False):
        """Candidates ``alpha`` (T, L) for the points ``todo`` -> their values and pass flags."""
        T, L = alpha.shape
        cand = np.repeat(xa[todo], L, axis=0)  # point-major: rows t*L .. t*L+L-1
        cand[:, free_cols] = np.clip(np.repeat(cur[todo], L, axis=0)
                                     + alpha.reshape(-1)[:, None] * np.repeat(step[todo], L, axis=0), lo, hi)
        if with_derivatives:
            res = prob.grad_hess(cand, active[todo])
            fc = res[0].reshape(T, L)
        else:
            res = None
            fc = prob.value(cand, np.repeat(active[todo], L)).reshape(T, L)
        ft = f[todo][:, None]
        ok = np.isfinite(fc) & (fc <= ft - 1e-4 * alpha * dec[todo][:, None] + 1e-13 * np.abs(ft))
        if res is not None and ok.any():
            known.put(active[todo[ok[:, 0]]], res, ok[:, 0])
        return cand, fc, ok

    def take(todo, cand, fc, ok):
        """Each point of ``todo`` takes its first passing candidate."""
        L = fc.shape[1]
        hit = ok.any(axis=1)
        first = np.argmax(ok, axis=1)
        sel = todo[hit]
        pick = np.flatnonzero(hit) * L + first[hit]
        x_new[sel] = cand[pick]
        f_new[sel] = fc.reshape(-1)[pick]
        accepted[sel] = True

    todo = np.flatnonzero(~accepted)
    if todo.size:
        take(todo, *attempt(todo, np.ones((todo.size, 1)), with_derivatives=known is not None))
    ladder = ~accepted
    if search is not None:
        todo = np.flatnonzero(~accepted & search)
        ladder &= ~search
        k_lo = np.ones(todo.size, int)  # smallest exponent not known to fail
        k_hi = np.full(todo.size, _LS_TRIES - 1)  # largest exponent still to consider
        while (open_ := k_lo <= k_hi).any():
            t, mid = todo[open_], (k_lo[open_] + k_hi[open_]) // 2
            cand, fc, ok = attempt(t, 0.5 ** mid[:, None].astype(float))
            take(t, cand, fc, ok)  # a later, smaller passing exponent overwrites this one
            ok = ok[:, 0]
            k_hi[np.flatnonzero(open_)[ok]] = mid[ok] - 1
            k_lo[np.flatnonzero(open_)[~ok]] = mid[~ok] + 1
    k0 = 1  # exponent of the first step length of the next round
    while k0 < _LS_TRIES:
        todo = np.flatnonzero(ladder & ~accepted)
        if todo.size == 0:
            break
        L = min(_LS_LADDER, _LS_TRIES - k0)
        take(todo, *attempt(todo, np.broadcast_to(0.5 ** np.arange(k0, k0 + L), (todo.size, L))))
        k0 += L
    return x_new, f_new, accepted


def _newton(prob: _Problem, theta, *, atol, rtol, max_iter, stop_above=np.inf):
    N = theta.shape[0]
    x = theta.copy()
    conv = np.zeros(N, bool)
    gi = prob.gfree
    xi = prob.ng + prob.xfree
    free_cols = np.concatenate([gi, xi])
    lo, hi = prob.lo[free_cols], prob.hi[free_cols]
    with np.errstate(invalid="ignore"):
        lo_tol = np.where(np.isfinite(lo), lo + 1e-12 * (1 + np.abs(lo)), -np.inf)
        hi_tol = np.where(np.isfinite(hi), hi - 1e-12 * (1 + np.abs(hi)), np.inf)
    active = np.arange(N)
    it = 0
    if free_cols.size == 0:
        val = prob.value(x, active)
        return x, val, np.isfinite(val), 0
    known = _Derivatives(N)
    at_start = prob.grad_hess(x, active)
    known.put(active, at_start)
    val = at_start[0].copy()
    for it in range(1, max_iter + 1):
        if active.size == 0:
            break
        xa = x[active]
        f, (g, gx), (H, Cx, Dx) = known.take(prob, xa, active)
        gfull = g if gx is None else np.concatenate([g, gx], axis=1)
        cur = xa[:, free_cols]
        # freeze parameters sitting on a bound with the gradient pushing outwards
        frozen = ((cur <= lo_tol) & (gfull > 0)) | ((cur >= hi_tol) & (gfull < 0))
        if np.any(frozen):
            ng = gi.size
            fz = frozen[:, :ng]
            g = np.where(fz, 0.0, g)
            keep = ~(fz[:, :, None] | fz[:, None, :])
            H = np.where(keep, H, np.eye(ng)[None] * np.maximum(np.einsum("rpp->rp", H), 1.0)[:, :, None])
            if gx is not None:
                fx = frozen[:, ng:]
                gx = np.where(fx, 0.0, gx)
                Cx = np.where(fz[:, :, None] | fx[:, None, :], 0.0, Cx)
            gfull = np.where(frozen, 0.0, gfull)
        sg, sx = _solve(H, g, Cx, Dx, gx)
        step = sg if sx is None else np.concatenate([sg, sx], axis=1)
        dec = -np.einsum("rp,rp->r", gfull, step)
        done = np.isfinite(f) & (dec <= atol + rtol * np.abs(f))
        x_new, f_new, accepted = _backtrack(prob, xa, active, cur, step, f, dec, done, free_cols, lo, hi,
                                            known=known, search=f > stop_above)
        stalled = ~accepted
        x[active] = np.where(done[:, None], xa, x_new)
        val[active] = np.where(done | stalled, f, f_new)
        near = stalled & np.isfinite(f) & (dec <= 1e3 * (atol + rtol * np.abs(f)))
        conv[active[done | near]] = True
        # points whose statistic, still decreasing, stays above ``stop_above`` (excluded beyond any
        # threshold) are left there, flagged not converged: a statistic that large decides nothing
        hopeless = ~(done | stalled) & (val[active] > stop_above) & (it >= 5)
        active = active[~(done | stalled | hopeless)]
    return x, val, conv, it


def _as_batch(a, n_bins, key):
    a = np.asarray(a, float)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[1] != n_bins:
        raise InvalidConfig(f"{key} needs {n_bins} bins along the last axis; got shape {a.shape}", key=key)
    return a


def profile(model: BinnedModel, templates: dict, data, *, cost: str = "poisson", variance=None,
            centres=None, start=None, fix=(), method: str = "newton", atol: float = 1e-10,
            rtol: float = 1e-12, max_iter: int = 200, stop_above: float = np.inf) -> FitResult:
    """Minimise the statistic over the model's parameters for every hypothesis of the batch.

    Parameters
    ----------
    model : BinnedModel
    templates : dict
        Component name -> templates (K, N, bin) or (K, bin) (see :meth:`BinnedModel.prepare`).
    data : array_like, shape (bin,) or (N, bin)
        Observed counts (Asimov data need not be integers).
    cost : {"poisson", "gauss", "gauss_hyp"}
    variance : array_like, shape (bin,) or (N, bin)
        Per-bin variance of the ``gauss`` cost.
    centres : array_like, shape (n_par,) or (N, n_par), optional
        Auxiliary values of the constraints (default nominal; toys draw them).
    start : array_like, shape (n_par,) or (N, n_par), optional
        Starting values (default: the centres, within the bounds). Fixed parameters keep them.
    fix : sequence of str
        Parameters held at their start value (e.g. a signal strength for a conditional fit).
    method : {"newton", "closed_form", "minuit"}
    atol, rtol, max_iter
        Convergence: Newton decrement below ``atol + rtol |statistic|``.
    stop_above : float
        Stop iterating (after 5 iterations) points whose statistic is still above this value; they
        are returned flagged ``converged = False``.  Scans set it far above every threshold.  While
        above it, a point whose full Newton step fails finds its step length by bisection
        (:func:`_backtrack`).

    Returns
    -------
    FitResult
    """
    stat = statistic_name(cost)
    prep = model.prepare(templates)
    nb = prep["_n_bins"]
    n = _as_batch(data, nb, "data")
    if np.any(~np.isfinite(n)):
        raise InvalidConfig("observed counts must be finite", key="data")
    if cost != "gauss" and np.any(n < 0):
        raise InvalidConfig(f"the {cost} cost needs counts >= 0 (background-subtracted residuals need the "
                            "gauss statistic)", key="data")
    var = None
    if cost == "gauss":
        if variance is None:
            raise InvalidConfig("the gauss cost needs a per-bin variance", key="statistics.variance")
        var = _as_batch(variance, nb, "variance")
        if np.any(~np.isfinite(var)) or np.any(var <= 0):
            raise InvalidConfig("the per-bin variance must be finite and > 0 (drop empty bins)", key="variance")
    rows = [n.shape[0]] + [prep[c.name]["N"] for c in model.components]
    rows += [np.atleast_2d(a).shape[0] for a in (centres, start) if a is not None]
    N = max(rows)
    P = model.n_par
    c = np.broadcast_to(model.nominal() if centres is None else np.asarray(centres, float), (N, P)).copy()
    lo, hi = model.bounds()
    x0 = np.clip(c, lo, hi) if start is None else np.broadcast_to(np.asarray(start, float), (N, P)).copy()
    free = model.sigmas() > 0
    for name in fix:
        free[model.parameter_names.index(name)] = False
    names = model.parameter_names
    if method == "minuit":
        return _minuit(model, prep, n, var, cost, c, x0, free, stat)
    if method == "closed_form":
        from nuinfer.likelihood.closed_form import profile_single_norm
        return profile_single_norm(model, prep, n, var, cost, c, free, stat)
    if method != "newton":
        raise InvalidConfig(f"unknown profiler {method!r}; use newton, closed_form or minuit", key="statistics.profiler")
    prob = _Problem(model, prep, n, var, cost, c, free)
    has_kinks = any(comp.morph is not None and comp.morph.kind == "grid2" for comp in model.components)
    # with bilinear morphs a minimum can sit on a node (a kink): give Newton a short budget first,
    # settle the points on kinks, then let the rest continue
    first = min(max_iter, 12) if has_kinks else max_iter
    x, val, conv, it = _newton(prob, x0, atol=atol, rtol=rtol, max_iter=first, stop_above=stop_above)
    if not np.all(conv) and has_kinks:
        x, val, conv = _settle_on_kinks(model, prep, n, var, cost, c, free, x, val, conv, atol=atol, rtol=rtol,
                                        max_iter=first)
        rest = np.flatnonzero(~conv)
        if rest.size and max_iter > first:
            sub = _Problem(model, _rows_of(prep, rest), n[rest] if n.shape[0] > 1 else n,
                           None if var is None else (var[rest] if var.shape[0] > 1 else var), cost, c[rest], free)
            xr_, vr, cr, it2 = _newton(sub, x[rest], atol=atol, rtol=rtol, max_iter=max_iter - first,
                                       stop_above=stop_above)
            x[rest], val[rest], conv[rest] = xr_, vr, cr
            it += it2
    return FitResult(stat, val, x, conv, "newton", names, it)


def _settle_on_kinks(model, prep, n, var, cost, c, free, x, val, conv, *, atol, rtol, max_iter):
    """Points whose minimum sits on a node of a bilinear (grid2) morph, where the statistic has a
    kink and Newton cannot converge: fix the parameter on the node, re-profile the others, and accept
    the point as converged when it is the minimum on both sides of the kink."""
    kinks = []
    for comp in model.components:
        if comp.morph is not None and comp.morph.kind == "grid2":  # bilinear only: the spline is smooth
            for p, nodes in zip(comp.morph.params, comp.morph.nodes):
                kinks.append((model.index(p), np.asarray(nodes)))
    if not kinks:
        return x, val, conv
    bad = np.flatnonzero(~conv)
    x = x.copy()
    fixed = np.zeros((bad.size, model.n_par), bool)
    for j, nodes in kinks:
        if not free[j]:
            continue
        step = np.min(np.diff(nodes))
        k = np.argmin(np.abs(x[bad, j][:, None] - nodes[None, :]), axis=1)
        near = np.abs(x[bad, j] - nodes[k]) < 1e-3 * step
        x[bad[near], j] = nodes[k[near]]
        fixed[near, j] = True
    for pattern in np.unique(fixed, axis=0):
        if not pattern.any():
            continue
        rows = bad[np.all(fixed == pattern, axis=1)]
        sub_free = free & ~pattern
        prob = _Problem(model, prep, n[rows] if n.shape[0] > 1 else n, None if var is None else
                        (var[rows] if var.shape[0] > 1 else var), cost, c[rows], sub_free)
        prob.prep = _rows_of(prep, rows)
        xs, vs, cs, _ = _newton(prob, x[rows], atol=atol, rtol=rtol, max_iter=max_iter)
        # minimum on both sides of each kink: moving off the node does not lower the statistic
        ok = cs.copy()
        for j, nodes in kinks:
            if not pattern[j]:
                continue
            h = 1e-4 * np.min(np.diff(nodes))
            for sgn in (-1.0, 1.0):
                xt = xs.copy()
                xt[:, j] = np.clip(xt[:, j] + sgn * h, nodes[0], nodes[-1])
                ok &= prob.value(xt, np.arange(rows.size)) >= vs - 1e-12 * np.abs(vs)
        better = vs <= val[rows] + 1e-12 * np.abs(val[rows])
        take = better & np.isfinite(vs)
        x[rows[take]] = xs[take]
        val[rows[take]] = vs[take]
        conv[rows] = np.where(take, ok, conv[rows])
    return x, val, conv


def _rows_of(prep, rows):
    """Prepared templates restricted to batch ``rows`` (templates shared by the batch stay)."""
    from nuinfer.likelihood.model import NodeSpline

    out = {}
    for k, v in prep.items():
        if not isinstance(v, dict):
            out[k] = v
            continue
        if "poly" in v:
            C = v["poly"]
            out[k] = {**v, "poly": C[rows] if C.shape[0] > 1 else C, "N": rows.size if C.shape[0] > 1 else 1}
            if "block" in v and C.shape[0] > 1:  # a blocked PolyTemplate: the node blocks stay
                out[k]["block"] = v["block"][rows]
            continue
        T = v["T"]
        e = {"T": T[:, rows] if T.shape[1] > 1 else T}
        e["N"] = e["T"].shape[1]
        if "spline" in v:
            e["spline"] = NodeSpline(v["spline"].nodes, e["T"])
        out[k] = e
    return out


def _minuit(model, prep, n, var, cost, c, x0, free, stat) -> FitResult:
    from iminuit import Minuit

    N, P = x0.shape
    prob = _Problem(model, prep, n, var, cost, c, free)
    lo, hi = model.bounds()
    names = model.parameter_names
    out_f, out_x, out_c = np.empty(N), x0.copy(), np.zeros(N, bool)
    for k in range(N):
        rows = np.array([k])

        def fcn(*p, rows=rows, k=k):
            th = x0[k].copy()
            th[:] = p
            v = float(prob.value(th[None], rows)[0])
            return v if math.isfinite(v) else 1e300

        m = Minuit(fcn, *x0[k], name=names)
        m.errordef = Minuit.LEAST_SQUARES
        m.strategy = 2
        m.tol = 1e-6
        for j, nm in enumerate(names):
            if not free[j]:
                m.fixed[nm] = True
            else:
                m.limits[nm] = (None if not math.isfinite(lo[j]) else lo[j], None if not math.isfinite(hi[j]) else hi[j])
        m.migrad(ncall=20000)
        out_x[k] = np.asarray(m.values)
        out_f[k] = float(prob.value(out_x[k][None], rows)[0])
        out_c[k] = bool(m.valid)
    return FitResult(stat, out_f, out_x, out_c, "minuit", names)
