"""XENONnT solar-8B CEvNS data release: reader, converted NetCDF and the template fold.

The release (XENON collaboration, CC-BY-4.0; GitHub XENONnT/cevns_data_release, zenodo DOI
10.5281/zenodo.20576156) holds, per science run (SR0, SR1, SR2), the post-selection events in four
observables, the 3x3x3x3 binning, background templates (accidental coincidences ``ac``, electronic
recoils ``er`` in events / (t yr) per bin; radiogenic neutrons ``neutron`` on a 7x7 grid of the
light- and charge-yield nuisances ``t_ly``, ``t_qy`` in -3..3) and mono-energetic nuclear-recoil
templates (detection efficiency per bin of an NR of energy E, E = 0.5..5.0 keVnr in 0.1 keV steps,
on the same 7x7 grid).  Papers: PRL 133 (2024) 191002 (arXiv:2408.02877, SR0+SR1) and
arXiv:2604.06002 (SR0-SR2).

Layout used here: the 81 bins of a science run are flattened in C order of the template axes
``(cs2, s2_shadow_s2_time_shadow_quantile, s1_bdt_score, s2_bdt_score)``; ``bin = 27 i0 + 9 i1 +
3 i2 + i3``.  The bin edges differ between science runs.

Entry points: :func:`load` (raw release folder or converted NetCDF; default the converted file
shipped in ``nuinfer/data``), :func:`read_raw` (raw folder -> :class:`xarray.Dataset`, needs
h5py) and :class:`Release8B` (``fold``, ``fold_matrix``, ``background``, ``observed``).
"""

from __future__ import annotations

import csv
import importlib.resources
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from nuinfer.exceptions import DataFileError

#: Version of the raw -> NetCDF conversion (stored in the converted file as ``converter_version``).
CONVERTER_VERSION = "1.0"

SCIENCE_RUNS = ("sr0", "sr1", "sr2")
#: Observables in template-axis order (names of the release's csv columns and yaml keys).
OBSERVABLES = ("cs2", "s2_shadow_s2_time_shadow_quantile", "s1_bdt_score", "s2_bdt_score")
N_AXIS_BINS = 3
N_BINS = N_AXIS_BINS**4
#: Nuisance grid of the yield morphers (sigma units), same for t_ly and t_qy.
T_GRID = np.arange(-3.0, 3.5, 1.0)
#: Energies of the mono-energetic NR templates [keVnr].
E_NR_KEV = np.round(np.arange(0.5, 5.0 + 1e-9, 0.1), 1)
DE_KEV = 0.1
#: Exposures [t yr] of the release's example notebook (plot.ipynb, ``livetimes``); identical to
#: ``livetime_sr0/1`` of XENONnT/light_wimp_data_release test_statistical_model.yaml.
EXPOSURE_T_YR = {"sr0": 1.174398, "sr1": 2.342593, "sr2": 3.249665}
#: Relative Gaussian uncertainties of the rate multipliers: XENONnT light-WIMP statistical model for the
#: same SR0+SR1 8B analysis (XENONnT/light_wimp_data_release, data/statistical_model_base.yaml, commit
#: a09cd8fd77570dc2095f65f094fbcc114b634dfc).  ER, neutron and signal efficiency are shared by the SRs
#: there; AC has one multiplier per SR.  The SR2 AC value is NOT published: assumed (see attrs).
REL_UNCERTAINTY = {
    "b8_flux": 0.0381,          # SNO, PRC 88 (2013) 025501
    "ac_sr0": 0.0904,
    "ac_sr1": 0.0576,
    "ac_sr2": 0.0904,           # ASSUMED: the larger of the SR0/SR1 values (conservative)
    "er": 1.0,
    "neutron": 0.58,
    "signal_efficiency": 0.25,  # fit range 0.5-1.5 in the collaboration's model
}
SR2_AC_NOTE = ("the SR2 AC uncertainty is not published with the release or the light-WIMP model; "
               "assumed 9.04%, the larger of the SR0 (9.04%) and SR1 (5.76%) values")
DOI = "10.5281/zenodo.20576156"
REPO = "XENONnT/cevns_data_release"
REPO_COMMIT = "60d230dd7a5646fd4aa2368c5fdfba575ee0cb88"
CITATION = (
    "XENON Collaboration, First Indication of Solar 8B Neutrinos via Coherent Elastic Neutrino-Nucleus "
    "Scattering, PRL 133 (2024) 191002 [arXiv:2408.02877]; XENON Collaboration, PRL 134 (2025) 111802; "
    "XENON Collaboration, arXiv:2604.06002 (SR0-SR2); data release: github.com/" + REPO + " commit "
    + REPO_COMMIT + ", zenodo DOI " + DOI
)
ATTRIBUTION = (
    "Contains data of the XENONnT solar 8B CEvNS and light dark matter data release by the XENON "
    "Collaboration (https://github.com/" + REPO + ", doi:" + DOI + "), licensed CC-BY-4.0 "
    "(https://creativecommons.org/licenses/by/4.0/). Converted by nuinfer (binned events, templates "
    "reshaped to flat bins, mono-energetic templates stored as float32); no values were changed otherwise."
)
SHIPPED_NAME = "xenonnt_8b_cevns.nc"
_WHERE = (f"get the release from zenodo DOI {DOI} or github.com/{REPO} and pass its folder (or a file "
          f"converted with scripts/convert_xenonnt_8b.py) as path=")


# =============================================================================================
# Raw release
# =============================================================================================


def _fmt_t(t: float) -> str:
    return f"{t:.1f}"


def raw_paths(raw_dir, sr: str) -> dict:
    """Expected file paths of one science run in the raw release folder."""
    d = Path(raw_dir)
    tpl = d / "templates" / sr
    grid = [(a, b) for a in T_GRID for b in T_GRID]
    return {
        "binning": d / "binning" / f"{sr}.yaml",
        "data": d / "data" / f"{sr}.csv",
        "ac": tpl / "ac" / f"template_XENONnT_{sr}_ac_cevns.h5",
        "er": tpl / "er" / f"template_XENONnT_{sr}_er_cevns.h5",
        "neutron": {(a, b): tpl / "rg" / f"template_XENONnT_{sr}_rg_cevns_tly_{_fmt_t(a)}_tqy_{_fmt_t(b)}.h5"
                    for a, b in grid},
        "mono": {(E, a, b):
                 tpl / "mono" / f"template_XENONnT_{sr}_mono_{E:.3f}_cevns_tly_{_fmt_t(a)}_tqy_{_fmt_t(b)}.h5"
                 for E in E_NR_KEV for a, b in grid},
    }


def parse_binning_yaml(path) -> dict[str, np.ndarray]:
    """Parse a release binning file (``key:`` lines followed by ``- number`` lines; no PyYAML needed)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"binning file {str(path)!r} is missing; {_WHERE}", key="path")
    out: dict[str, list[float]] = {}
    current = None
    for n, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_]+)\s*:", s)
        if m:
            current = m.group(1)
            out[current] = []
            continue
        m = re.fullmatch(r"-\s*([-+0-9.eE]+)", s)
        if m and current is not None:
            out[current].append(float(m.group(1)))
            continue
        raise DataFileError(f"{str(path)!r} line {n}: cannot parse {line!r} (expected 'name:' or '- number')",
                            key="path")
    if tuple(out) != OBSERVABLES or any(len(v) != N_AXIS_BINS + 1 for v in out.values()):
        raise DataFileError(f"{str(path)!r} must list {N_AXIS_BINS + 1} edges for each of {OBSERVABLES}, got "
                            f"{ {k: len(v) for k, v in out.items()} }; re-download the release", key="path")
    edges = {k: np.asarray(v) for k, v in out.items()}
    for k, e in edges.items():
        if np.any(np.diff(e) <= 0):
            raise DataFileError(f"{str(path)!r}: edges of {k} are not increasing: {e}", key="path")
    return edges


def read_events(path) -> np.ndarray:
    """Events of one science run, array (n_event, 4) in :data:`OBSERVABLES` order."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"event file {str(path)!r} is missing; {_WHERE}", key="path")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise DataFileError(f"event file {str(path)!r} is empty", key="path")
    head = [h.strip() for h in rows[0]]
    missing = [o for o in OBSERVABLES if o not in head]
    if missing:
        raise DataFileError(f"event file {str(path)!r} lacks columns {missing} (has {head})", key="path")
    cols = [head.index(o) for o in OBSERVABLES]
    try:
        ev = np.array([[float(r[c]) for c in cols] for r in rows[1:] if r], dtype=float).reshape(-1, 4)
    except (ValueError, IndexError) as err:
        raise DataFileError(f"event file {str(path)!r}: non-numeric or short row ({err})", key="path") from None
    return ev


def bin_events(events: np.ndarray, edges: dict[str, np.ndarray], *, source: str = "events") -> np.ndarray:
    """Counts per flat bin (81,) with the release binning (``numpy.histogramdd`` convention: the
    last bin of each axis includes its upper edge).  Any event outside the binning is an error."""
    events = np.asarray(events, dtype=float).reshape(-1, 4)
    idx = np.zeros(events.shape, dtype=int)
    for a, name in enumerate(OBSERVABLES):
        e = edges[name]
        x = events[:, a]
        bad = ~((x >= e[0]) & (x <= e[-1]))
        if np.any(bad):
            rows = np.flatnonzero(bad)
            raise DataFileError(
                f"{source}: {rows.size} event(s) (rows {rows[:5].tolist()}) have {name} outside the binning "
                f"[{e[0]}, {e[-1]}] (values {x[bad][:5].tolist()}); events and binning must come from the same SR "
                "of the release", key="path")
        idx[:, a] = np.clip(np.searchsorted(e, x, side="right") - 1, 0, N_AXIS_BINS - 1)
    flat = np.ravel_multi_index(idx.T, (N_AXIS_BINS,) * 4)
    return np.bincount(flat, minlength=N_BINS)


def _h5():
    try:
        import h5py
    except ImportError:
        raise DataFileError(
            "reading the raw XENONnT release needs h5py: pip install nuinfer[hdf5], or pass the converted "
            f"file nuinfer/data/{SHIPPED_NAME} (scripts/convert_xenonnt_8b.py) instead", key="path") from None
    return h5py


def _read_template(h5py, path: Path, edges: dict[str, np.ndarray]) -> np.ndarray:
    if not path.is_file():
        raise DataFileError(f"template file {str(path)!r} is missing: the release folder is incomplete; {_WHERE}",
                            key="path")
    try:
        with h5py.File(path, "r") as f:
            t = np.asarray(f["templates/template"][()], dtype=float)
            for a, name in enumerate(OBSERVABLES):
                b = f[f"bins/{a}"]
                hname = b.attrs.get("name", "")
                hname = hname.decode() if isinstance(hname, bytes) else str(hname)
                if not name.startswith(hname) or not np.allclose(b[()], edges[name], rtol=1e-9, atol=0):
                    raise DataFileError(
                        f"template {str(path)!r}: axis {a} ({hname!r}, edges {b[()]}) does not match the binning "
                        f"file ({name}, {edges[name]}); re-download the release", key="path")
    except DataFileError:
        raise
    except (OSError, KeyError) as err:
        raise DataFileError(f"cannot read template {str(path)!r} (need datasets templates/template and bins/0..3): "
                            f"{err}", key="path") from None
    if t.shape != (N_AXIS_BINS,) * 4:
        raise DataFileError(f"template {str(path)!r} has shape {t.shape}, expected {(N_AXIS_BINS,) * 4}", key="path")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise DataFileError(f"template {str(path)!r} has negative or non-finite entries", key="path")
    return t.reshape(N_BINS)


def _check_exposures(exposure_t_yr, where: str) -> dict[str, float]:
    exp = dict(EXPOSURE_T_YR if exposure_t_yr is None else exposure_t_yr)
    if set(exp) != set(SCIENCE_RUNS):
        raise DataFileError(f"{where}: exposures given for {sorted(exp)}, need exactly {list(SCIENCE_RUNS)} [t yr]",
                            key="exposure_t_yr")
    for sr, v in exp.items():
        if not (np.isfinite(v) and v > 0):
            raise DataFileError(f"{where}: exposure of {sr} must be a finite number > 0 t yr, got {v!r}",
                                key="exposure_t_yr")
    return {sr: float(exp[sr]) for sr in SCIENCE_RUNS}


def read_raw(raw_dir, *, exposure_t_yr: dict | None = None) -> xr.Dataset:
    """Read the raw release folder into the dataset layout of the converted file.

    Parameters
    ----------
    raw_dir : path
        Folder with ``binning/``, ``data/`` and ``templates/`` as published.
    exposure_t_yr : dict, optional
        ``{sr: exposure}``; default :data:`EXPOSURE_T_YR` (the release's example notebook).

    Raises
    ------
    DataFileError
        h5py missing, a file missing or malformed (named in the message), template binning differing
        from the yaml binning, events outside the binning, bad exposures.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataFileError(f"release folder {str(raw_dir)!r} does not exist; {_WHERE}", key="path")
    h5py = _h5()
    exp = _check_exposures(exposure_t_yr, str(raw_dir))
    nT, nE = T_GRID.size, E_NR_KEV.size
    obs = np.zeros((3, N_BINS), dtype=np.int32)
    ac = np.zeros((3, N_BINS))
    er = np.zeros((3, N_BINS))
    rg = np.zeros((3, nT, nT, N_BINS))
    mono = np.zeros((3, nT, nT, nE, N_BINS))
    edges = {o: np.zeros((3, N_AXIS_BINS + 1)) for o in OBSERVABLES}
    for s, sr in enumerate(SCIENCE_RUNS):
        p = raw_paths(raw_dir, sr)
        e = parse_binning_yaml(p["binning"])
        for o in OBSERVABLES:
            edges[o][s] = e[o]
        obs[s] = bin_events(read_events(p["data"]), e, source=str(p["data"]))
        ac[s] = _read_template(h5py, p["ac"], e)
        er[s] = _read_template(h5py, p["er"], e)
        for i, a in enumerate(T_GRID):
            for j, b in enumerate(T_GRID):
                rg[s, i, j] = _read_template(h5py, p["neutron"][(a, b)], e)
                for k, E in enumerate(E_NR_KEV):
                    mono[s, i, j, k] = _read_template(h5py, p["mono"][(E, a, b)], e)
    ds = _assemble(obs, ac, er, rg, mono, edges, exp)
    ds.attrs["source"] = f"raw release folder {raw_dir}"
    return ds


def _assemble(obs, ac, er, rg, mono, edges, exp) -> xr.Dataset:
    idx = np.array(np.unravel_index(np.arange(N_BINS), (N_AXIS_BINS,) * 4))
    coords = {
        "sr": ("sr", list(SCIENCE_RUNS), {"long_name": "science run"}),
        "bin": ("bin", np.arange(N_BINS), {"units": "1", "long_name": "flat bin index, C order of (" +
                                           ", ".join(OBSERVABLES) + ")"}),
        "t_ly": ("t_ly", T_GRID, {"units": "1", "long_name": "light-yield nuisance (sigma units)"}),
        "t_qy": ("t_qy", T_GRID, {"units": "1", "long_name": "charge-yield nuisance (sigma units)"}),
        "E_nr_keV": ("E_nr_keV", E_NR_KEV, {"units": "keVnr", "long_name": "mono-energetic NR energy"}),
        "edge": ("edge", np.arange(N_AXIS_BINS + 1), {"units": "1", "long_name": "bin-edge index"}),
    }
    for a, o in enumerate(OBSERVABLES):
        coords[f"i_{o}"] = ("bin", idx[a].astype(np.int8),
                            {"units": "1", "long_name": f"{o} bin index of the flat bin"})
    per_t = "events / (t yr)"
    data = {
        "observed": (("sr", "bin"), np.asarray(obs, dtype=np.int32),
                     {"units": "events", "long_name": "observed events per bin (data/sr*.csv, release binning)"}),
        "ac": (("sr", "bin"), ac, {"units": per_t, "long_name": "accidental-coincidence background template"}),
        "er": (("sr", "bin"), er, {"units": per_t, "long_name": "electronic-recoil background template"}),
        "neutron": (("sr", "t_ly", "t_qy", "bin"), rg,
                    {"units": per_t, "long_name": "radiogenic-neutron background template on the yield grid"}),
        "mono": (("sr", "t_ly", "t_qy", "E_nr_keV", "bin"), np.asarray(mono, dtype=np.float32),
                 {"units": "1", "long_name": "detection efficiency per bin of a mono-energetic NR at E_nr_keV",
                  "fold": "counts = exposure * sum_E dR/dE(E) * 0.1 keV * mono(E)"}),
        "exposure": (("sr",), np.array([exp[s] for s in SCIENCE_RUNS]),
                     {"units": "t yr", "long_name": "exposure (release example notebook livetimes)"}),
        "rel_unc_ac": (("sr",), np.array([REL_UNCERTAINTY[f"ac_{s}"] for s in SCIENCE_RUNS]),
                       {"units": "1", "long_name": "relative Gaussian uncertainty of the AC rate per SR",
                        "assumption": SR2_AC_NOTE}),
    }
    for o in OBSERVABLES:
        data[f"edges_{o}"] = (("sr", "edge"), edges[o], {"units": "PE" if o == "cs2" else "1",
                                                         "long_name": f"bin edges of {o}"})
    for k in ("b8_flux", "er", "neutron", "signal_efficiency"):
        data[f"rel_unc_{k}"] = ((), REL_UNCERTAINTY[k], {"units": "1",
                                                         "long_name": f"relative Gaussian uncertainty: {k}"})
    attrs = {
        "title": "XENONnT solar 8B CEvNS data release (SR0, SR1, SR2), converted by nuinfer",
        "citation": CITATION,
        "license": "CC-BY-4.0",
        "attribution": ATTRIBUTION,
        "doi": DOI,
        "repository": f"https://github.com/{REPO}",
        "repository_commit": REPO_COMMIT,
        "converter_version": CONVERTER_VERSION,
        "uncertainty_source": ("XENONnT/light_wimp_data_release data/statistical_model_base.yaml commit "
                               "a09cd8fd77570dc2095f65f094fbcc114b634dfc; " + SR2_AC_NOTE),
        "fold_convention": ("expected counts per bin = exposure * sum_k dR/dE_nr(E_k) * dE * mono(E_k), "
                            "E_k = 0.5..5.0 keVnr, dE = 0.1 keVnr (release README / PROVENANCE)"),
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


# =============================================================================================
# Release object
# =============================================================================================


def _bilinear_weights(t_ly, t_qy):
    """Cell indices and fractions on :data:`T_GRID` (values clipped to [-3, 3])."""
    out = []
    for t in (t_ly, t_qy):
        t = np.clip(np.asarray(t, dtype=float), T_GRID[0], T_GRID[-1])
        i = np.clip(np.floor(t - T_GRID[0]).astype(int), 0, T_GRID.size - 2)
        out.append((i, t - T_GRID[i]))
    (i, fx), (j, fy) = out
    return i, fx, j, fy


def _interp(nodes, t_ly, t_qy, return_grad):
    """Bilinear interpolation of ``nodes`` (*B, 7, 7, n_bin) at (t_ly, t_qy) broadcast with B.

    Returns values of shape broadcast(B, T) + (n_bin,), and optionally the derivatives.  Outside
    [-3, 3] the nuisance is clipped (the derivative there is 0).
    """
    t_ly = np.asarray(t_ly, dtype=float)
    t_qy = np.asarray(t_qy, dtype=float)
    i, fx, j, fy = _bilinear_weights(t_ly, t_qy)
    T = np.broadcast_shapes(t_ly.shape, t_qy.shape)
    i, fx, j, fy = (np.broadcast_to(x, T) for x in (i, fx, j, fy))
    B = nodes.shape[:-3]
    nb = nodes.shape[-1]
    S = np.broadcast_shapes(B, T)
    flat = nodes.reshape(B + (T_GRID.size**2, nb))
    flat = flat.reshape((1,) * (len(S) - len(B)) + flat.shape)
    nT = T_GRID.size

    def corner(a, b):
        k = ((i + a) * nT + (j + b)).reshape((1,) * (len(S) - len(T)) + T + (1, 1))
        return np.take_along_axis(flat, k, axis=-2)[..., 0, :]

    c00, c10, c01, c11 = corner(0, 0), corner(1, 0), corner(0, 1), corner(1, 1)
    wx = fx.reshape((1,) * (len(S) - len(T)) + T + (1,))
    wy = fy.reshape((1,) * (len(S) - len(T)) + T + (1,))
    val = (1 - wx) * (1 - wy) * c00 + wx * (1 - wy) * c10 + (1 - wx) * wy * c01 + wx * wy * c11
    val = np.broadcast_to(val, S + (nb,))
    if not return_grad:
        return val
    inside_x = ((t_ly >= T_GRID[0]) & (t_ly <= T_GRID[-1])).astype(float)
    inside_y = ((t_qy >= T_GRID[0]) & (t_qy <= T_GRID[-1])).astype(float)
    gx = ((1 - wy) * (c10 - c00) + wy * (c11 - c01)) * np.broadcast_to(inside_x, T).reshape(wx.shape)
    gy = ((1 - wx) * (c01 - c00) + wx * (c11 - c10)) * np.broadcast_to(inside_y, T).reshape(wy.shape)
    return val, np.broadcast_to(gx, S + (nb,)), np.broadcast_to(gy, S + (nb,))


@dataclass(frozen=True, eq=False)
class Release8B:
    """The XENONnT 8B CEvNS release in memory (build it with :func:`load`).

    Attributes
    ----------
    science_runs : tuple of str
        ``("sr0", "sr1", "sr2")``.
    E_nr_keV : numpy.ndarray
        Energies of the mono-energetic templates, 0.5..5.0 keVnr step 0.1 (46 values).
    dE_keV : float
        0.1 keVnr: the weight of every energy node in :meth:`fold`.
    exposure_t_yr : dict
        ``{sr: exposure [t yr]}``.
    rel_uncertainty : dict
        Relative Gaussian uncertainties of the rate multipliers: ``b8_flux``, ``ac_sr0``, ``ac_sr1``,
        ``ac_sr2`` (assumed, see ``dataset.rel_unc_ac.attrs``), ``er``, ``neutron``,
        ``signal_efficiency``.
    dataset : xarray.Dataset
        Everything, in the converted-file layout (also has the bin edges ``edges_<observable>``).
    """

    dataset: xr.Dataset = field(repr=False)
    science_runs: tuple = SCIENCE_RUNS
    E_nr_keV: np.ndarray = field(default_factory=lambda: E_NR_KEV.copy(), repr=False)
    dE_keV: float = DE_KEV
    exposure_t_yr: dict = field(default_factory=dict)
    rel_uncertainty: dict = field(default_factory=dict)
    t_grid: np.ndarray = field(default_factory=lambda: T_GRID.copy(), repr=False)
    _mono: dict = field(default_factory=dict, repr=False)
    _neutron: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, where: str = "dataset") -> Release8B:
        """Validate a dataset in the converted layout and build the release (mono -> float64)."""
        _validate_dataset(ds, where)
        exp = _check_exposures({sr: float(ds["exposure"].sel(sr=sr)) for sr in SCIENCE_RUNS}, where)
        rel = {k: float(ds[f"rel_unc_{k}"]) for k in ("b8_flux", "er", "neutron", "signal_efficiency")}
        for sr in SCIENCE_RUNS:
            rel[f"ac_{sr}"] = float(ds["rel_unc_ac"].sel(sr=sr))
        mono = {sr: np.ascontiguousarray(ds["mono"].sel(sr=sr).values, dtype=float) for sr in SCIENCE_RUNS}
        neutron = {sr: np.ascontiguousarray(ds["neutron"].sel(sr=sr).values, dtype=float) for sr in SCIENCE_RUNS}
        return cls(dataset=ds, exposure_t_yr=exp, rel_uncertainty=rel, _mono=mono, _neutron=neutron)

    # -----------------------------------------------------------------------------------------
    def _sr(self, sr: str) -> str:
        if sr not in self.science_runs:
            raise DataFileError(f"unknown science run {sr!r}; use one of {list(self.science_runs)}", key="sr")
        return sr

    def observed(self, sr: str) -> np.ndarray:
        """Observed events per flat bin (81,) of science run ``sr``."""
        return self.dataset["observed"].sel(sr=self._sr(sr)).values.astype(np.int64)

    def bin_edges(self, sr: str) -> dict[str, np.ndarray]:
        """``{observable: edges (4,)}`` of science run ``sr`` (template-axis order)."""
        return {o: self.dataset[f"edges_{o}"].sel(sr=self._sr(sr)).values for o in OBSERVABLES}

    def background(self, sr: str, name: str, t_ly=0.0, t_qy=0.0, *, return_grad: bool = False,
                   per_exposure: bool = False):
        """Expected background counts per bin (..., 81) at unit rate multiplier.

        Parameters
        ----------
        sr : str
            Science run.
        name : {"ac", "er", "neutron"}
            Component; only ``neutron`` depends on the yield nuisances (bilinear on the 7x7 grid).
        t_ly, t_qy : float or array_like
            Yield nuisances (broadcast; clipped to [-3, 3]).
        return_grad : bool
            Also return d/dt_ly and d/dt_qy (zero for ``ac`` and ``er``).
        per_exposure : bool
            Return events / (t yr) (the release's unit) instead of expected counts.
        """
        sr = self._sr(sr)
        scale = 1.0 if per_exposure else self.exposure_t_yr[sr]
        if name in ("ac", "er"):
            T = np.broadcast_shapes(np.shape(t_ly), np.shape(t_qy))
            v = np.broadcast_to(scale * self.dataset[name].sel(sr=sr).values, T + (N_BINS,))
            return (v, np.zeros(v.shape), np.zeros(v.shape)) if return_grad else v
        if name != "neutron":
            raise DataFileError(f"unknown background {name!r}; use 'ac', 'er' or 'neutron'", key="background")
        out = _interp(scale * self._neutron[sr], t_ly, t_qy, return_grad)
        return out

    def fold_matrix(self, sr: str, t_ly=0.0, t_qy=0.0) -> np.ndarray:
        """Response matrix (..., n_E, n_bin): ``fold(dR, sr, t) == dR @ fold_matrix(sr, t)``.

        Includes the exposure and the node weight dE = 0.1 keV, so the counts of a rate that is
        polynomial in a coupling, ``dR = sum_p g^(2p) dR_p``, are ``sum_p g^(2p) (dR_p @ M)``.
        ``t_ly``, ``t_qy`` may be arrays (leading dims of the result).
        """
        sr = self._sr(sr)
        nodes = np.moveaxis(self._mono[sr], 2, 0)  # (n_E, 7, 7, n_bin)
        M = _interp(nodes, np.asarray(t_ly, dtype=float)[..., None], np.asarray(t_qy, dtype=float)[..., None],
                    False)
        return self.exposure_t_yr[sr] * self.dE_keV * M

    def fold(self, dR_dEnr, sr: str, t_ly=0.0, t_qy=0.0, *, return_grad: bool = False):
        """Expected counts per bin of an NR spectrum.

        ``counts[b] = exposure * sum_k dR/dE_nr(E_k) * dE * mono_k[b](t_ly, t_qy)``: the release's
        convention (README / PROVENANCE: "sum_E dR/dE(E) dE * template_E"), a midpoint sum with the
        templates evaluated at the node energies E_k = 0.5, 0.6, ..., 5.0 keVnr and dE = 0.1 keVnr,
        i.e. it integrates the spectrum over 0.45-5.05 keVnr.  A mono-energetic rate R at E_k is
        ``dR_dEnr = R / dE`` at node k (0 elsewhere).

        Parameters
        ----------
        dR_dEnr : array_like, shape (..., 46)
            Differential rate [events / (t yr keVnr)] at :attr:`E_nr_keV`; any leading batch dims.
        sr : str
            Science run.
        t_ly, t_qy : float or array_like
            Light- and charge-yield nuisances (sigma units): bilinear interpolation between the
            7x7 grid nodes; values outside [-3, 3] are clipped (derivative 0 there).  They broadcast
            with the batch dims of ``dR_dEnr``.
        return_grad : bool
            Also return d counts / d t_ly and d counts / d t_qy (piecewise constant in each cell;
            at a node, the derivative of the cell above it, except at +3).

        Returns
        -------
        numpy.ndarray (..., 81), or a tuple (counts, d_t_ly, d_t_qy) of such arrays.
        """
        return self.interpolate(self.fold_nodes(dR_dEnr, sr), t_ly, t_qy, return_grad=return_grad)

    def fold_nodes(self, dR_dEnr, sr: str) -> np.ndarray:
        """Expected counts (..., 7, 7, 81) of ``dR_dEnr`` (..., 46) at every (t_ly, t_qy) grid node.

        For a hot loop (a profiler over many nuisance values, or templates polynomial in a coupling
        that are fixed per mediator mass) compute this once and call :meth:`interpolate`:
        ``fold(dR, sr, a, b) == interpolate(fold_nodes(dR, sr), a, b)``.
        """
        sr = self._sr(sr)
        dR = np.asarray(dR_dEnr, dtype=float)
        if dR.shape[-1:] != (self.E_nr_keV.size,):
            raise DataFileError(f"dR_dEnr must have last axis {self.E_nr_keV.size} (values at E_nr_keV = "
                                f"0.5..5.0 keVnr), got shape {dR.shape}", key="dR_dEnr")
        return (self.exposure_t_yr[sr] * self.dE_keV) * np.tensordot(dR, self._mono[sr], axes=([-1], [2]))

    @staticmethod
    def interpolate(nodes, t_ly=0.0, t_qy=0.0, *, return_grad: bool = False):
        """Bilinear interpolation of node values (..., 7, 7, n) at (t_ly, t_qy).

        The leading dims of ``nodes`` broadcast with those of ``t_ly``, ``t_qy``; values outside
        [-3, 3] are clipped (derivative 0).  Returns (..., n), or (value, d/dt_ly, d/dt_qy).
        """
        nodes = np.asarray(nodes, dtype=float)
        if nodes.shape[-3:-1] != (T_GRID.size, T_GRID.size):
            raise DataFileError(f"nodes must have shape (..., 7, 7, n), got {nodes.shape}", key="nodes")
        return _interp(nodes, t_ly, t_qy, return_grad)


def _validate_dataset(ds: xr.Dataset, where: str) -> None:
    need = {
        "observed": ("sr", "bin"), "ac": ("sr", "bin"), "er": ("sr", "bin"),
        "neutron": ("sr", "t_ly", "t_qy", "bin"), "mono": ("sr", "t_ly", "t_qy", "E_nr_keV", "bin"),
        "exposure": ("sr",), "rel_unc_ac": ("sr",),
        **{f"edges_{o}": ("sr", "edge") for o in OBSERVABLES},
        **{f"rel_unc_{k}": () for k in ("b8_flux", "er", "neutron", "signal_efficiency")},
    }
    sizes = {"sr": 3, "bin": N_BINS, "t_ly": T_GRID.size, "t_qy": T_GRID.size, "E_nr_keV": E_NR_KEV.size,
             "edge": N_AXIS_BINS + 1}
    fix = f"re-convert the release with scripts/convert_xenonnt_8b.py ({_WHERE})"
    for name, dims in need.items():
        if name not in ds:
            raise DataFileError(f"{where}: variable {name!r} is missing; {fix}", key="path")
        v = ds[name]
        if v.dims != dims or v.shape != tuple(sizes[d] for d in dims):
            raise DataFileError(f"{where}: variable {name!r} has dims {dict(zip(v.dims, v.shape))}, expected "
                                f"{ {d: sizes[d] for d in dims} }; {fix}", key="path")
        if not np.all(np.isfinite(v.values)) or np.any(v.values < 0):
            raise DataFileError(f"{where}: variable {name!r} has negative or non-finite values; {fix}", key="path")
    if [str(s) for s in ds["sr"].values] != list(SCIENCE_RUNS):
        raise DataFileError(f"{where}: science runs {list(ds['sr'].values)}, expected {list(SCIENCE_RUNS)}; {fix}",
                            key="path")
    for c, ref in (("t_ly", T_GRID), ("t_qy", T_GRID), ("E_nr_keV", E_NR_KEV)):
        if not np.allclose(ds[c].values, ref, atol=1e-6):
            raise DataFileError(f"{where}: coordinate {c} = {ds[c].values}, expected {ref}; {fix}", key="path")


def shipped_path() -> Path:
    """Path of the converted file shipped with the package (may not exist)."""
    return Path(str(importlib.resources.files("nuinfer") / "data" / SHIPPED_NAME))


def load(path=None, *, exposure_t_yr: dict | None = None, key: str = "data.xenonnt_8b") -> Release8B:
    """Load the XENONnT 8B CEvNS release.

    Parameters
    ----------
    path : path, optional
        The raw release folder (read with h5py) or a converted NetCDF file; default the converted
        file shipped in ``nuinfer/data/xenonnt_8b_cevns.nc``.
    exposure_t_yr : dict, optional
        Exposures [t yr] per SR for a raw folder (default: the release's example notebook values).
    key : str
        Configuration key named in error messages (the option that sets ``path``).

    Raises
    ------
    DataFileError
        Nothing found at ``path`` (or no shipped file), h5py missing for a raw folder, missing or
        malformed files, wrong shapes, events outside the binning, bad exposures.  The message names
        the file and the fix.
    """
    try:
        if path is None:
            p = shipped_path()
            if not p.is_file():
                raise DataFileError(f"the converted XENONnT 8B release {str(p)!r} is not installed; {_WHERE}...")
        else:
            p = Path(path)
        if p.is_dir():
            ds = read_raw(p, exposure_t_yr=exposure_t_yr)
            return Release8B.from_dataset(ds, str(p))
        if not p.is_file():
            raise DataFileError(f"{str(p)!r} does not exist; {_WHERE}...")
        if exposure_t_yr is not None:
            raise DataFileError(f"{str(p)!r} is a converted file with its own exposures; exposure_t_yr applies "
                                "to a raw release folder only")
        try:
            with xr.open_dataset(p, engine="netcdf4") as f:
                ds = f.load()
        except (OSError, ValueError) as err:
            raise DataFileError(f"cannot read {str(p)!r} as NetCDF ({err}); {_WHERE}...") from None
        return Release8B.from_dataset(ds, str(p))
    except DataFileError as err:
        if err.key not in (None, "path"):
            raise
        msg = str(err)
        if err.key and msg.startswith(f"{err.key}: "):
            msg = msg[len(err.key) + 2:]
        raise DataFileError(msg, key=key) from None
