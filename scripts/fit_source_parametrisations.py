"""Fit the few free parameters of nuinfer's neutrino-source shapes to the reference tables.

Run from the repository root (reads ../shared/data, which the package itself never does):

    python scripts/fit_source_parametrisations.py

It prints the constants that are pasted into ``nuinfer/physics/sources.py`` and
``nuinfer/physics/oscillation.py``:

1. ``B8_LEVEL_PARAMS``: (E_1, gamma_1^2, b_2) of the 8Be R-matrix final-state density, least
   squares (relative residuals, 0.5-15.2 MeV) of the unit-normalised 8B spectrum against
   J.N. Bahcall's table (best-estimate column), for a few channel radii (the package uses
   ``BE8_CHANNEL_RADIUS_FM``).
2. ``ATM_PARAMS``: per flavour, log-log cubic + smeared Michel (+ pion line for muon flavours),
   least squares in log flux (weight E^-1/2, i.e. roughly uniform per log E) against the O'Hare
   copy of the FLUKA tables on 13.18-944 MeV (above 944 MeV that copy is a linear extrapolation
   falling to ~0.4x at 981.75 MeV, which is not physics and is excluded).
3. ``DSN_SFR["b"]``: the 1 < z < 4 slope of the supernova-rate history, least squares in log of the
   total DSN shape ("reference" flavour split) against O'Hare's normalised DSNB table, E > 0.5 MeV.
4. ``ELECTRON_DENSITY_RULES``: 4-point Gauss-Christoffel rules of n_e over each solar production
   region, from the BS05(GS98, OP) zone table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from nuinfer.physics import oscillation as osc
from nuinfer.physics import sources as src

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def b8_acceptance(m, E, best):
    """(max |m/table - 1| on 1-15 MeV, fraction above 14 MeV / table's, integral |diff|, mean-energy dev.)."""
    sel = (E >= 1.0) & (E <= 15.0)
    tail = E >= 14.0
    frac_m = np.trapezoid(m[tail], E[tail]) / np.trapezoid(m, E)
    frac = frac_m / (np.trapezoid(best[tail], E[tail]) / np.trapezoid(best, E))
    return (
        float(np.abs(m[sel] / best[sel] - 1).max()),
        float(frac),
        float(np.trapezoid(np.abs(m - best), E)),
        float(np.trapezoid(E * m, E) / np.trapezoid(E * best, E) - 1),
    )


def fit_b8(radii=(3.5, 4.0, 4.5, 5.0)):
    """Fit (E_1, gamma_1^2, b_2) of the 8Be R-matrix density for each channel radius; print all.

    Residuals are relative, (model - table) / table on 0.5-15.2 MeV: the bar is a relative one on
    1-15 MeV, and the table is rough at the 1-2 % level near 15 MeV (piecewise-linear segments).
    """
    E, best = np.loadtxt(DATA / "bahcall_solar_spectra/from_SNuDD/B8_neutrino_flux.txt", usecols=(0, 1)).T
    nodes, weights = src._gauss_legendre_panels(np.array(src._B8_KNOTS), 48)
    fit_sel = (E >= 0.5) & (E <= 15.2)

    def model(p, a, x=E):
        norm = np.sum(weights * src.b8_spectrum(nodes, tuple(p), a))
        return src.b8_spectrum(x, tuple(p), a) / norm

    results = {}
    for a in radii:
        res = least_squares(lambda p: model(p, a)[fit_sel] / best[fit_sel] - 1.0, [3.0, 1.5, -10.0],
                            bounds=([1.0, 0.01, -100.0], [6.0, 20.0, 100.0]))
        dev, tail, diff, mean_dev = b8_acceptance(model(res.x, a), E, best)
        results[a] = res.x
        print(f"a = {a} fm: B8_LEVEL_PARAMS = ({res.x[0]:.4f}, {res.x[1]:.4f}, {res.x[2]:.4f})")
        print(f"    max |shape/table - 1| 1-15 MeV = {100 * dev:.2f} %, fraction > 14 MeV / table = {tail:.4f}, "
              f"integral|diff| = {diff:.5f}, mean-energy deviation = {100 * mean_dev:.4f} %")
    return results


def fit_atm():
    files = {("e", False): "AtmNu_e", ("e", True): "AtmNu_ebar", ("mu", False): "AtmNu_mu", ("mu", True): "AtmNu_mubar"}
    out = {}
    for key, fname in files.items():
        E_all, y_all = np.loadtxt(DATA / f"ohare_neutrinofog_fluxes/atmospheric_FLUKA/{fname}.txt", delimiter=",").T
        sel = E_all <= 944.0
        E, y = E_all[sel], y_all[sel]
        w = 1.0 / np.sqrt(E)
        kind = "e" if key[0] == "e" else "mu"
        use_line = kind == "mu"
        poly0 = np.polyfit(np.log(E / 100.0), np.log(y), 3)
        poly0[-1] -= 0.1

        def unpack(p):
            return dict(poly=tuple(p[:4]), A_mu=p[4], sigma=p[5], A_pi=p[6] if use_line else 0.0, michel=kind)

        p0 = np.r_[poly0, 0.1, 3.0] if not use_line else np.r_[poly0, 0.1, 3.0, 0.005]
        lo = np.r_[[-np.inf] * 4, 0.0, 0.3] if not use_line else np.r_[[-np.inf] * 4, 0.0, 0.3, 0.0]
        hi = np.r_[[np.inf] * 4, np.inf, 20.0] if not use_line else np.r_[[np.inf] * 4, np.inf, 20.0, np.inf]
        res = least_squares(
            lambda p: w * np.log(src.atmospheric_flux(E, key[0], key[1], unpack(p)) / y), p0, bounds=(lo, hi)
        )
        p = unpack(res.x)
        rel = src.atmospheric_flux(E_all, key[0], key[1], p) / y_all - 1
        r500 = np.abs(rel[E_all <= 500]).max()
        r944 = np.abs(rel[E_all <= 944]).max()
        out[key] = p
        poly = ", ".join(f"{c:.6g}" for c in p["poly"])
        print(
            f'    {key!r}: {{"poly": ({poly}), "A_mu": {p["A_mu"]:.6g}, "sigma": {p["sigma"]:.5g}, '
            f'"A_pi": {p["A_pi"]:.6g}, "michel": "{kind}"}},'
        )
        print(f"        max |rel. dev.| 13-500 MeV: {r500:.4f}, 13-944 MeV: {r944:.4f}")
    return out


def fit_dsn():
    E, y = np.loadtxt(DATA / "ohare_neutrinofog_fluxes/normalised/DSNB.txt", delimiter=",").T
    nodes, weights = src._gauss_legendre_panels(np.array(src._DSN_KNOTS), 48)
    split = src.DSN_SPLITS["reference"]

    def total(b, x):
        return sum(
            frac * src.dsn_flavour_spectrum(x, src.DSN_TEMPERATURES[k], {"b": b})
            / np.sum(weights * src.dsn_flavour_spectrum(nodes, src.DSN_TEMPERATURES[k], {"b": b}))
            for k, frac in split.items()
        )

    sel = E > 0.5
    res = least_squares(lambda p: np.log(total(p[0], E[sel]) / y[sel]), [0.0])
    b = res.x[0]
    rel = total(b, E) / y - 1
    print(f'DSN_SFR["b"] = {b:.3f}')
    for lo in (0.5, 6.0, 10.0):
        print(f"    max |rel. dev.| E > {lo} MeV: {np.abs(rel[E > lo]).max():.4f}")
    return b


def gauss_christoffel(x, w, k):
    """k-point Gauss rule of the discrete measure sum_i w_i delta(x - x_i) (Stieltjes procedure)."""
    w = w / w.sum()
    mu = np.sum(w * x)
    sc = np.sqrt(np.sum(w * (x - mu) ** 2))
    t = (x - mu) / sc
    p_prev, p = np.zeros_like(t), np.ones_like(t)
    alpha, beta = [], []
    norm_prev = 1.0
    for j in range(k):
        norm = np.sum(w * p * p)
        a = np.sum(w * t * p * p) / norm
        alpha.append(a)
        if j > 0:
            beta.append(norm / norm_prev)
        p_next = (t - a) * p - (beta[-1] if j > 0 else 0.0) * p_prev
        p_prev, p, norm_prev = p, p_next, norm
    jac = np.diag(alpha) + np.diag(np.sqrt(beta), 1) + np.diag(np.sqrt(beta), -1)
    ev, vec = np.linalg.eigh(jac)
    return mu + sc * ev, vec[0, :] ** 2


def fit_ne_rules(k=4):
    d = np.loadtxt(DATA / "solar_model_profiles/BS05_GS98_OP.dat")
    n_e = 10.0 ** d[:, 2]
    columns = {"pp": 5, "8B": 6, "13N": 7, "15O": 8, "17F": 9, "7Be": 10, "pep": 11, "hep": 12}
    E = np.geomspace(0.05, 20.0, 300)
    print("ELECTRON_DENSITY_RULES = {")
    for region, col in columns.items():
        frac = d[:, col]
        nodes, weights = gauss_christoffel(n_e, frac, k)
        full = (osc.pee_at_density(E[:, None], n_e[None, :]) * frac).sum(1) / frac.sum()
        rule = (osc.pee_at_density(E[:, None], nodes[None, :]) * weights).sum(1)
        ns = ", ".join(f"{v:.5g}" for v in nodes)
        ws = ", ".join(f"{v:.6g}" for v in weights)
        print(f'    "{region}": (({ns}), ({ws})),  # max |dPee| {np.abs(rule - full).max():.1e}')
    print("}")


if __name__ == "__main__":
    fit_b8()
    print("ATM_PARAMS = {")
    fit_atm()
    print("}")
    fit_dsn()
    fit_ne_rules()
