"""XENONnT SR0 low-energy electronic-recoil data (PRL 129, 161805 (2022)) as a nuinfer data set.

The data release of E. Aprile et al. (XENON), "Search for New Physics in Electronic Recoil Data
from XENONnT", Phys. Rev. Lett. 129, 161805 (2022), arXiv:2207.11330, made available by the XENON
collaboration: the reconstructed energies of the 433 ER events in (1, 30) keV, the best-fit
background model B0 (events / (t yr keV), smeared and with the efficiency applied; it *includes*
the Standard-Model solar-neutrino ER component) and the total efficiency (Fig. 1), for an exposure
of 1.16 t yr.  Data and B0 are in *reconstructed* energy.

What this module gives
----------------------
* :func:`load` -> :class:`ERData` (raw release folder, a converted ``.nc`` or the shipped copy).
* Signal side on a fine reconstructed-energy grid (default 0.05 keV bins on 0.5-31 keV, the grid
  *nodes* are the bin centres), all in events / (t yr keV):
  :func:`sm_solar_rate`, :func:`er_templates` (``R = T0 + g^2 T1(m) + g^4 T2(m)`` per source group),
  :func:`mu_nu_template` (effective neutrino magnetic moment, per (1e-11 mu_B)^2) and
  :func:`remaining_background` (B0 minus the package's own SM solar component).
* Likelihood pieces: :func:`density_at_events`, :func:`window_integral`, :func:`expected_total`,
  :func:`bin_events`, :func:`binned_expectation`.  Everything between grid nodes is the *linear
  interpolant* of the node values: densities at events, window integrals and bin integrals all use
  the same function, so the extended unbinned likelihood is self-consistent.

Detector response (a stated stand-in)
-------------------------------------
The package's forward model (:class:`nuinfer.forward.ForwardModel`, ``process="eves"``, natural
xenon with the atomic binding steps of Eq. 25) computes counts per fine bin with the Gaussian
resolution ``sigma(E)/E = 0.310/sqrt(E/keV) + 0.0037`` of XENON1T (E. Aprile et al., PRD 102 (2020)
072004), the usual stand-in for XENONnT SR0 (the release does not contain the SR0 resolution).
The released efficiency is a function of *reconstructed* energy, so it multiplies the smeared
density at each fine-grid node (it is not applied at the true energy).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import xarray as xr

from nuinfer.physics.detector import XENON_ER_RESOLUTION, Binning, Detector, Quenching
from nuinfer.exceptions import DataFileError, InvalidConfig, UnphysicalInput

__all__ = [
    "CITATION",
    "EXPOSURE_T_YR",
    "WINDOW_KEV",
    "N_EVENTS",
    "RESOLUTION",
    "SOURCE_GROUPS",
    "FINE_EDGES_KEV",
    "MU_NU_UNIT",
    "ENV_VAR",
    "ERData",
    "read_raw",
    "load",
    "fine_grid",
    "forward_model",
    "sm_solar_rate",
    "er_templates",
    "mu_nu_template",
    "remaining_background",
    "density_at_events",
    "window_integral",
    "expected_total",
    "bin_events",
    "binned_expectation",
]

CITATION = ('E. Aprile et al. (XENON Collaboration), "Search for New Physics in Electronic Recoil Data '
            'from XENONnT", Phys. Rev. Lett. 129, 161805 (2022), arXiv:2207.11330, '
            'doi:10.1103/PhysRevLett.129.161805; data release made available by the XENON Collaboration')
#: exposure of SR0 [t yr] (paper abstract: 1.16 t yr, 97.1 live days x 4.37 t fiducial mass)
EXPOSURE_T_YR = 1.16
#: analysis window of the released events [keV, reconstructed]
WINDOW_KEV = (1.0, 30.0)
#: number of released events in the window (release readme.txt)
N_EVENTS = 433
#: Gaussian resolution sigma(E) = a sqrt(E/keV) + b E [keV]: XENON1T ER, PRD 102 (2020) 072004
RESOLUTION = XENON_ER_RESOLUTION
RESOLUTION_NOTE = ("Gaussian sigma(E)/E = 0.310/sqrt(E/keV) + 0.0037 (XENON1T ER resolution, E. Aprile et al., "
                   "PRD 102 (2020) 072004), a stand-in for XENONnT SR0; efficiency applied in reconstructed energy")
#: solar source groups whose flux normalisations are separate nuisances
SOURCE_GROUPS: dict[str, tuple[str, ...]] = {
    "pp": ("pp",),
    "7Be": ("7Be_384", "7Be_861"),
    "other": ("pep", "8B", "hep", "13N", "15O", "17F"),
}
#: default fine reconstructed-energy bins [keV]: 0.05 keV on 0.5-31 keV (nodes = bin centres)
FINE_EDGES_KEV = np.round(np.linspace(0.5, 31.0, 611), 10)
#: magnetic-moment template unit: rates are per (mu_nu / (1e-11 mu_B))^2
MU_NU_UNIT = 1e-11
#: environment variable naming a release folder or converted file (used when ``path`` is None)
ENV_VAR = "NUINFER_XENONNT_SR0_ER"

RAW_FILES = {
    "events": "data_unbinned_1to30kev.txt",
    "b0": "bkg_model.txt",
    "efficiency": "efficiency.txt",
}
SHIPPED_NAME = "xenonnt_sr0_er.nc"
FORMAT = "nuinfer-xenonnt-sr0-er/1"
_KEY = "xenonnt_er.path"
_WHERE = ("get the data release of PRL 129, 161805 (2022) (XENONnT, arXiv:2207.11330: "
          "data_unbinned_1to30kev.txt, bkg_model.txt, efficiency.txt)")


# =============================================================================================
# The data set
# =============================================================================================


@dataclass(frozen=True, eq=False)
class ERData:
    """The XENONnT SR0 ER release.

    Attributes
    ----------
    events_keV : numpy.ndarray
        Reconstructed energies of the events in the window [keV], sorted.
    exposure_t_yr : float
        Exposure [t yr].
    window_keV : tuple of float
        Analysis window (lo, hi) [keV].
    b0_table : tuple of numpy.ndarray
        Released B0 ``(E [keV], rate [events/(t yr keV)])`` as given (0.1 keV bin centres).
    efficiency_table : tuple of numpy.ndarray
        Released total efficiency ``(E [keV], eff)``.
    source : str
        Where the data were read from.
    """

    events_keV: np.ndarray
    exposure_t_yr: float
    window_keV: tuple
    b0_table: tuple
    efficiency_table: tuple
    source: str = ""
    citation: str = CITATION
    _b0_nodes: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        E, r = (np.asarray(x, float) for x in self.b0_table)
        lo, hi = self.window_keV
        inside = (E >= lo) & (E <= hi)
        x, y = E[inside], r[inside]
        if x.size >= 2:  # linear extrapolation from the two nearest in-window points to the window ends
            ends_x = [lo] if x[0] > lo else []
            ends_y = [y[0] + (lo - x[0]) * (y[1] - y[0]) / (x[1] - x[0])] if ends_x else []
            tail_x = [hi] if x[-1] < hi else []
            tail_y = [y[-1] + (hi - x[-1]) * (y[-1] - y[-2]) / (x[-1] - x[-2])] if tail_x else []
            x = np.concatenate([ends_x, x, tail_x])
            y = np.maximum(np.concatenate([ends_y, y, tail_y]), 0.0)
        object.__setattr__(self, "_b0_nodes", (x, y))

    @property
    def n_events(self) -> int:
        return int(self.events_keV.size)

    def efficiency(self, E_keV) -> np.ndarray:
        """Total efficiency at reconstructed energy ``E_keV`` (linear interpolation; 0 below the
        table, its last value above it)."""
        E, v = self.efficiency_table
        return np.interp(np.asarray(E_keV, float), E, v, left=0.0, right=float(v[-1]))

    def b0(self, E_keV) -> np.ndarray:
        """Released background model B0 [events/(t yr keV)] at reconstructed energy ``E_keV``.

        Inside the window: linear interpolation of the table's 0.1 keV bin centres, extrapolated
        linearly over the last 0.05 keV to the window ends (the table is zero below 1 keV, so a
        plain interpolation would halve B0 at 1.0 keV).  Outside the window: the raw table.
        """
        E = np.asarray(E_keV, float)
        lo, hi = self.window_keV
        x, y = self._b0_nodes
        raw = np.interp(E, *self.b0_table, left=0.0, right=0.0)
        return np.where((E >= lo) & (E <= hi), np.interp(E, x, y), raw)

    def to_dataset(self) -> xr.Dataset:
        """The compact NetCDF layout written by ``scripts/convert_xenonnt_sr0_er.py``."""
        Eb, rb = self.b0_table
        Ee, ve = self.efficiency_table
        kev = {"units": "keV", "quantity": "reconstructed electronic-recoil energy"}
        return xr.Dataset(
            {
                "event_energy": ("event", np.asarray(self.events_keV, float),
                                 {**kev, "long_name": "reconstructed energy of each event in the window"}),
                "b0_rate": ("b0_E", np.asarray(rb, float),
                            {"units": "events/(t yr keV)",
                             "long_name": "best-fit background model B0 (smeared, efficiency applied, "
                                          "includes the SM solar-neutrino ER component)"}),
                "efficiency": ("eff_E", np.asarray(ve, float),
                               {"units": "1", "long_name": "total detection and selection efficiency"}),
            },
            coords={
                "b0_E": ("b0_E", np.asarray(Eb, float), {**kev, "long_name": "B0 energy (0.1 keV bin centres)"}),
                "eff_E": ("eff_E", np.asarray(Ee, float), {**kev, "long_name": "efficiency energy"}),
            },
            attrs={
                "title": "XENONnT SR0 electronic-recoil data below 30 keV",
                "format": FORMAT,
                "citation": self.citation,
                "exposure_t_yr": float(self.exposure_t_yr),
                "window_lo_keV": float(self.window_keV[0]),
                "window_hi_keV": float(self.window_keV[1]),
                "n_events": int(self.n_events),
                "resolution_note": RESOLUTION_NOTE,
                "provenance": ("XENON collaboration data release of PRL 129, 161805 (2022) (files "
                               + ", ".join(RAW_FILES.values()) + "), values unchanged; exposure and "
                               "window from the paper and the release readme"),
                "licence_note": ("no explicit licence in the release; the collaboration's readme states the "
                                 "files are made available by the XENON Collaboration with the PRL; cite it"),
            },
        )


# =============================================================================================
# Reading and validation
# =============================================================================================


def _fail(msg: str):
    raise DataFileError(msg, key=_KEY)


def _read_columns(path: Path, ncol: int, what: str) -> np.ndarray:
    try:
        a = np.loadtxt(path, dtype=float, ndmin=2)
    except (OSError, ValueError) as err:
        _fail(f"cannot read {str(path)!r} ({what}) as a numeric table: {err}; use the unchanged release file")
    if a.shape[1] != ncol or a.shape[0] < (1 if ncol == 1 else 2):
        _fail(f"{str(path)!r} ({what}) has {a.shape[1]} column(s) and {a.shape[0]} row(s), expected {ncol} "
              f"column(s); use the unchanged release file")
    return a


def _validate(events, b0, eff, window, exposure, where: str) -> None:
    lo, hi = window
    for name, arr in (("events", events), ("B0", b0[0]), ("B0", b0[1]), ("efficiency", eff[0]),
                      ("efficiency", eff[1])):
        if not np.all(np.isfinite(arr)):
            _fail(f"{where}: {name} contains NaN or inf values; restore the unchanged release file")
    if not (np.isfinite(exposure) and exposure > 0):
        _fail(f"{where}: exposure must be > 0 t yr, got {exposure}; use the unchanged release")
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        _fail(f"{where}: window must satisfy 0 < lo < hi keV, got ({lo}, {hi})")
    if events.size == 0:
        _fail(f"{where}: no events; restore the unchanged release file {RAW_FILES['events']}")
    bad = (events < lo) | (events > hi)
    if np.any(bad):
        _fail(f"{where}: {int(bad.sum())} event(s) outside the window ({lo:g}, {hi:g}) keV (e.g. "
              f"{events[bad][0]:g} keV); use the unchanged release file {RAW_FILES['events']}")
    for name, (E, v) in (("B0", b0), ("efficiency", eff)):
        if E.size < 2 or np.any(np.diff(E) <= 0):
            _fail(f"{where}: {name} energies must be strictly increasing; use the unchanged release file")
    if np.any(b0[1] < 0):
        _fail(f"{where}: B0 has negative rates; use the unchanged release file {RAW_FILES['b0']}")
    if np.any(eff[1] < 0) or np.any(eff[1] > 1):
        _fail(f"{where}: efficiency values must lie in [0, 1]; use the unchanged release file "
              f"{RAW_FILES['efficiency']}")
    if b0[0][0] > lo + 0.1 or b0[0][-1] < hi - 0.1 or eff[0][0] > lo or eff[0][-1] < hi - 0.5:
        _fail(f"{where}: B0 or efficiency table does not cover the window ({lo:g}, {hi:g}) keV; "
              "use the unchanged release files")


def read_raw(folder, *, exposure_t_yr: float = EXPOSURE_T_YR, window_keV=WINDOW_KEV) -> ERData:
    """Read the release folder (the three text files of :data:`RAW_FILES`)."""
    folder = Path(folder)
    if not folder.is_dir():
        _fail(f"{str(folder)!r} is not a directory; {_WHERE} and pass the folder as path")
    missing = [f for f in RAW_FILES.values() if not (folder / f).is_file()]
    if missing:
        _fail(f"{str(folder)!r} is incomplete: missing {', '.join(missing)}; {_WHERE}")
    ev = _read_columns(folder / RAW_FILES["events"], 1, "event energies")[:, 0]
    b0 = _read_columns(folder / RAW_FILES["b0"], 2, "background model B0")
    eff = _read_columns(folder / RAW_FILES["efficiency"], 2, "efficiency")
    b0t, efft = (b0[:, 0], b0[:, 1]), (eff[:, 0], eff[:, 1])
    window = (float(window_keV[0]), float(window_keV[1]))
    _validate(ev, b0t, efft, window, float(exposure_t_yr), str(folder))
    return ERData(np.sort(ev), float(exposure_t_yr), window, b0t, efft, source=str(folder.resolve()))


_NC_VARS = {"event_energy": "event", "b0_rate": "b0_E", "efficiency": "eff_E"}
_NC_ATTRS = ("exposure_t_yr", "window_lo_keV", "window_hi_keV")


def _read_nc(path: Path) -> ERData:
    from nuinfer.io import read_netcdf
    ds = read_netcdf(path)
    missing = [v for v in _NC_VARS if v not in ds.variables] + [a for a in _NC_ATTRS if a not in ds.attrs]
    if missing:
        _fail(f"{str(path)!r} is not a converted XENONnT SR0 ER file (missing {', '.join(missing)}); "
              "create it with scripts/convert_xenonnt_sr0_er.py RAW_DIR -o FILE")
    for v, dim in _NC_VARS.items():
        if ds[v].dims != (dim,):
            _fail(f"{str(path)!r}: variable {v} has dims {ds[v].dims}, expected ({dim},); reconvert the release")
    ev = np.asarray(ds["event_energy"].values, float)
    b0t = (np.asarray(ds["b0_E"].values, float), np.asarray(ds["b0_rate"].values, float))
    efft = (np.asarray(ds["eff_E"].values, float), np.asarray(ds["efficiency"].values, float))
    window = (float(ds.attrs["window_lo_keV"]), float(ds.attrs["window_hi_keV"]))
    exposure = float(ds.attrs["exposure_t_yr"])
    _validate(ev, b0t, efft, window, exposure, str(path))
    return ERData(np.sort(ev), exposure, window, b0t, efft, source=str(Path(path).resolve()),
                  citation=str(ds.attrs.get("citation", CITATION)))


def _shipped():
    try:
        ref = resources.files("nuinfer") / "data" / SHIPPED_NAME
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - broken installation
        return None
    return ref if ref.is_file() else None


def load(path=None) -> ERData:
    """Load the XENONnT SR0 ER data.

    Parameters
    ----------
    path : str or os.PathLike, optional
        The release folder (``data_unbinned_1to30kev.txt``, ``bkg_model.txt``, ``efficiency.txt``)
        or a converted ``.nc`` file.  ``None``: the folder/file named by the environment variable
        :data:`ENV_VAR` if set, otherwise the copy shipped in ``nuinfer/data``.

    Raises
    ------
    DataFileError
        Neither is available, or the input is missing, incomplete or malformed (the message
        names the file and the fix).
    """
    if path is None:
        env = os.environ.get(ENV_VAR)
        if env:
            path = env
        else:
            ref = _shipped()
            if ref is None:
                _fail(f"no XENONnT SR0 ER data: nuinfer/data/{SHIPPED_NAME} is not installed; {_WHERE} "
                      f"and pass its folder as load(path=...) or set {ENV_VAR}")
            with resources.as_file(ref) as p:
                return _read_nc(Path(p))
    p = Path(path)
    if p.is_dir():
        return read_raw(p)
    if not p.exists():
        _fail(f"{str(p)!r} does not exist; {_WHERE} and pass its folder (or a converted .nc) as path")
    if p.suffix.lower() not in (".nc", ".nc4", ".netcdf"):
        _fail(f"{str(p)!r} is neither the release folder nor a converted .nc file; pass the folder "
              "containing " + ", ".join(RAW_FILES.values()))
    return _read_nc(p)


# =============================================================================================
# Fine reconstructed-energy grid and the forward model
# =============================================================================================


def _edges(edges_keV) -> np.ndarray:
    e = FINE_EDGES_KEV if edges_keV is None else np.asarray(edges_keV, float)
    if e.ndim != 1 or e.size < 3 or np.any(np.diff(e) <= 0) or e[0] <= 0 or not np.all(np.isfinite(e)):
        raise UnphysicalInput("fine edges must be >= 3 strictly increasing positive energies [keV]",
                              key="edges_keV")
    return e


def fine_grid(edges_keV=None) -> np.ndarray:
    """Nodes of the fine reconstructed-energy grid [keV]: the centres of the fine bins."""
    e = _edges(edges_keV)
    return 0.5 * (e[:-1] + e[1:])


def _check_covers(data: ERData, grid: np.ndarray) -> None:
    lo, hi = data.window_keV
    if grid[0] > lo or grid[-1] < hi:
        raise UnphysicalInput(f"the fine grid ({grid[0]:g}-{grid[-1]:g} keV) must cover the window "
                              f"({lo:g}, {hi:g}) keV", key="edges_keV")


@functools.lru_cache(maxsize=32)
def _cached_fm(sources: tuple, flux_preset, edges: tuple, n_nodes: int, resolution: tuple):
    from nuinfer.forward import ForwardModel
    det = Detector(Quenching("none"), None, resolution)
    norm = json.loads(flux_preset) if flux_preset.startswith("{") else flux_preset
    return ForwardModel(process="eves", target="Xe", sources=sources, normalisation=norm,
                        binning=Binning(edges_keVee=edges), detector=det, exposure_tonne_year=1.0,
                        binding=True, n_nodes=n_nodes)


def forward_model(sources=None, *, flux_preset="b16-gs98", edges_keV=None, n_nodes: int = 8,
                  resolution=RESOLUTION):
    """The EvES :class:`~nuinfer.forward.ForwardModel` behind every rate of this module.

    Natural xenon with atomic binding, 1 t yr (so counts are per t yr), Gaussian ``resolution``
    (default :data:`RESOLUTION`), no efficiency (applied afterwards in reconstructed energy), the
    fine bins ``edges_keV``.  Cached (shared read-only) per argument set.
    """
    from nuinfer.physics.sources import SOLAR_SOURCES
    srcs = tuple(SOLAR_SOURCES if sources is None else sources)
    key = flux_preset if isinstance(flux_preset, str) else json.dumps(dict(flux_preset), sort_keys=True)
    res = tuple(float(x) for x in resolution)
    return _cached_fm(srcs, key, tuple(_edges(edges_keV).tolist()), int(n_nodes), res)


def _groups(sources) -> dict[str, tuple[str, ...]]:
    from nuinfer.physics.sources import SOLAR_SOURCES
    if sources is None:
        return dict(SOURCE_GROUPS)
    if isinstance(sources, Mapping):
        groups = {str(k): tuple(v) for k, v in sources.items() if len(tuple(v))}
    elif isinstance(sources, Sequence) and not isinstance(sources, str):
        groups = {str(s): (str(s),) for s in sources}
    else:
        raise InvalidConfig("sources must be a mapping {group: [source, ...]} or a list of solar sources",
                            key="sources")
    bad = [s for v in groups.values() for s in v if s not in SOLAR_SOURCES]
    if bad or not groups:
        raise InvalidConfig(f"unknown or no solar source(s) {bad}; choose from {', '.join(SOLAR_SOURCES)}",
                            key="sources")
    return groups


def _coords(data: ERData, grid: np.ndarray, groups) -> dict:
    return {
        "group": ("group", list(groups), {"long_name": "solar source group",
                                          "members": json.dumps(dict(groups))}),
        "E": ("E", grid, {"units": "keV", "long_name": "reconstructed energy (fine-grid node)"}),
    }


def _attrs(data: ERData, flux_preset, extra=None) -> dict:
    a = {
        "units_note": "differential rates in events/(t yr keV), reconstructed energy, efficiency applied",
        "flux_preset": flux_preset if isinstance(flux_preset, str) else json.dumps(dict(flux_preset)),
        "resolution": RESOLUTION_NOTE,
        "target": "natural xenon, atomic binding steps (Eq. 25, Chen et al. HF energies)",
        "data_citation": data.citation,
    }
    a.update(extra or {})
    return a


def _density(counts: np.ndarray, edges: np.ndarray, eff: np.ndarray) -> np.ndarray:
    return counts / np.diff(edges) * eff


def _per_group(data: ERData, sources, edges_keV, flux_preset, n_nodes: int, counts):
    """``(groups, fine grid, per-group densities stacked on axis 0)``: ``counts(fm)`` of each source
    group's forward model as a density in reconstructed energy, efficiency applied."""
    groups = _groups(sources)
    edges = _edges(edges_keV)
    grid = fine_grid(edges)
    _check_covers(data, grid)
    eff = data.efficiency(grid)
    out = []
    for members in groups.values():
        fm = forward_model(members, flux_preset=flux_preset, edges_keV=edges, n_nodes=n_nodes)
        out.append(_density(counts(fm), edges, eff))
    return groups, grid, np.stack(out)


def sm_solar_rate(data: ERData, *, flux_preset="b16-gs98", sources=None, edges_keV=None,
                  n_nodes: int = 8) -> xr.Dataset:
    """SM solar-neutrino EvES rate in reconstructed energy [events/(t yr keV)].

    Returns ``rate(group, E)`` and ``total(E)`` on the fine-grid nodes (smeared, efficiency applied).
    """
    groups, grid, rate = _per_group(data, sources, edges_keV, flux_preset, n_nodes,
                                    lambda fm: fm.sm_spectrum()["total"].values)
    u = {"units": "events/(t yr keV)"}
    return xr.Dataset(
        {"rate": (("group", "E"), rate, {**u, "long_name": "SM solar-neutrino ER rate per group"}),
         "total": ("E", rate.sum(0), {**u, "long_name": "SM solar-neutrino ER rate"})},
        coords=_coords(data, grid, groups), attrs=_attrs(data, flux_preset, {"model": "SM"}))


def er_templates(data: ERData, interaction, m_X_MeV, *, flux_preset="b16-gs98", sources=None,
                 edges_keV=None, n_nodes: int = 8) -> xr.Dataset:
    """Light-mediator EvES templates per source group on the fine grid [events/(t yr keV)].

    ``R(E; g, m) = T[0] + g^2 T[1](m) + g^4 T[2](m)`` (coupling convention of
    :mod:`nuinfer.physics.eves`), smeared and with the efficiency applied, per source group (default
    :data:`SOURCE_GROUPS`: pp, 7Be, other solar) so a flux nuisance per group multiplies its row.

    Returns ``T(group, power, m_X, E)`` and the group sum ``T_total(power, m_X, E)``.
    """
    from nuinfer.physics.mediators import get_interaction
    inter = get_interaction(interaction)
    groups, grid, T = _per_group(data, sources, edges_keV, flux_preset, n_nodes,
                                 lambda fm: fm.templates(inter, m_X_MeV)["T"].values)
    m = np.atleast_1d(np.asarray(m_X_MeV, float))
    u = {"units": "events/(t yr keV)"}
    coords = _coords(data, grid, groups)
    coords.update(power=("power", [0, 1, 2], {"units": "1", "long_name": "power p of g_X^2"}),
                  m_X=("m_X", m, {"units": "MeV", "long_name": "mediator mass"}))
    return xr.Dataset(
        {"T": (("group", "power", "m_X", "E"), T,
               {**u, "long_name": "template per group: rate = sum_p g_X^(2p) T_p"}),
         "T_total": (("power", "m_X", "E"), T.sum(0), {**u, "long_name": "template summed over groups"})},
        coords=coords,
        attrs=_attrs(data, flux_preset, {"model": inter.name, "axial_form": inter.axial_form,
                                         "eves_vector_norm": inter.eves_vector_norm,
                                         "lmu_ltau_nue": inter.lmu_ltau_nue}))


def _mu_coefficients(T, iso, flavour, anti):
    """dsigma/dT per electron per (mu_nu / MU_NU_UNIT mu_B)^2: pi alpha^2/m_e^2 (1/T - 1/E_nu)."""
    from nuinfer.physics.dipole import MU_B_PREFACTOR
    pre = MU_B_PREFACTOR * MU_NU_UNIT**2
    T = np.asarray(T, float)
    return np.stack([pre / T, np.full(T.shape, -pre), np.zeros(T.shape)])


def mu_nu_template(data: ERData, *, flux_preset="b16-gs98", sources=None, edges_keV=None,
                   n_nodes: int = 8) -> xr.Dataset:
    """Effective neutrino magnetic-moment rate per (mu_nu / 1e-11 mu_B)^2 [events/(t yr keV)].

    ``dsigma/dT = (pi alpha^2 / m_e^2) (mu_nu/mu_B)^2 (1/T - 1/E_nu)`` per electron (the m4 -> 0,
    free-electron form of :mod:`nuinfer.physics.dipole`, prefactor ``MU_B_PREFACTOR``), the same
    for every flavour (an effective moment), incoherent with the SM: ``R = R_SM + mu^2 T_mu``.
    Integrated by :meth:`~nuinfer.forward.ForwardModel.kernel_counts` (elastic kinematics,
    atomic binding steps), smeared, efficiency applied.  Returns ``rate(group, E)``, ``total(E)``.
    """
    groups, grid, rate = _per_group(data, sources, edges_keV, flux_preset, n_nodes,
                                    lambda fm: fm.kernel_counts(_mu_coefficients))
    u = {"units": "events/(t yr keV)", "per": "(mu_nu / (1e-11 mu_B))^2"}
    return xr.Dataset(
        {"rate": (("group", "E"), rate, {**u, "long_name": "magnetic-moment rate per group"}),
         "total": ("E", rate.sum(0), {**u, "long_name": "magnetic-moment rate"})},
        coords=_coords(data, grid, groups),
        attrs=_attrs(data, flux_preset, {"model": "effective neutrino magnetic moment",
                                         "mu_nu_unit_mu_B": MU_NU_UNIT}))


def remaining_background(data: ERData, solar: xr.Dataset | None = None, *, tolerance: float = 0.0,
                         **kwargs) -> xr.Dataset:
    """B0 minus the package's SM solar-neutrino ER component, on the fine grid [events/(t yr keV)].

    Parameters
    ----------
    solar : xarray.Dataset, optional
        Output of :func:`sm_solar_rate` (computed with ``kwargs`` if not given).
    tolerance : float
        Negative differences down to ``-tolerance`` [events/(t yr keV)] are not reported.

    Returns
    -------
    xarray.Dataset
        ``rate(E)`` = max(B0 - solar, 0) inside the window, 0 outside it; ``b0(E)``, ``solar(E)``;
        attributes ``n_clipped`` (nodes in the window with B0 - solar < -tolerance), ``min_difference``
        and ``clipped_ranges_keV`` (JSON list of [lo, hi]).  Clipping at 0 is the documented choice:
        a negative background density is not a density.
    """
    solar = sm_solar_rate(data, **kwargs) if solar is None else solar
    grid = np.asarray(solar["E"].values, float)
    lo, hi = data.window_keV
    inside = (grid >= lo) & (grid <= hi)
    b0 = np.where(inside, data.b0(grid), 0.0)
    s = np.asarray(solar["total"].values, float)
    diff = np.where(inside, b0 - s, 0.0)
    neg = inside & (diff < -tolerance)
    ranges, start = [], None
    for i, flag in enumerate(neg):
        if flag and start is None:
            start = i
        if start is not None and (not flag or i == neg.size - 1):
            end = i if flag else i - 1
            ranges.append([float(grid[start]), float(grid[end])])
            start = None
    u = {"units": "events/(t yr keV)"}
    return xr.Dataset(
        {"rate": ("E", np.maximum(diff, 0.0), {**u, "long_name": "remaining background B0 - SM solar (clipped >= 0)"}),
         "b0": ("E", b0, {**u, "long_name": "released B0"}),
         "solar": ("E", s, {**u, "long_name": "package SM solar-neutrino ER rate"})},
        coords={"E": solar["E"]},
        attrs={**solar.attrs, "n_clipped": int(neg.sum()),
               "min_difference": float(diff[inside].min()) if inside.any() else 0.0,
               "clipped_ranges_keV": json.dumps(ranges), "tolerance": float(tolerance)})


# =============================================================================================
# Likelihood pieces (linear interpolant of node values)
# =============================================================================================


def _values_grid(rates, grid_keV):
    if isinstance(rates, xr.DataArray):
        if grid_keV is None:
            if "E" not in rates.dims:
                raise InvalidConfig("rates need an 'E' dimension or an explicit grid_keV", key="grid_keV")
            grid_keV = rates["E"].values
            rates = rates.transpose(..., "E")
        rates = rates.values
    v = np.asarray(rates, float)
    g = fine_grid() if grid_keV is None else np.asarray(grid_keV, float)
    if g.ndim != 1 or v.shape[-1] != g.size or np.any(np.diff(g) <= 0):
        raise InvalidConfig(f"rates (last axis {v.shape[-1]}) do not match an increasing grid of {g.size} "
                            "nodes", key="grid_keV")
    return v, g


def _check_inside(x, g, what):
    if np.any(x < g[0] - 1e-12) or np.any(x > g[-1] + 1e-12):
        raise UnphysicalInput(f"{what} outside the grid ({g[0]:g}-{g[-1]:g} keV)", key="grid_keV")


def density_at_events(rates, data: ERData, grid_keV=None) -> np.ndarray:
    """Rates at the event energies by linear interpolation on the grid.

    ``rates`` has the grid as its last axis (any leading batch shape, e.g. (group, power, m_X)),
    or is a DataArray with an ``E`` dimension.  Returns shape ``(..., n_events)``.
    """
    v, g = _values_grid(rates, grid_keV)
    x = np.asarray(data.events_keV, float)
    _check_inside(x, g, "event energies")
    i = np.clip(np.searchsorted(g, x, side="right") - 1, 0, g.size - 2)
    w = (x - g[i]) / (g[i + 1] - g[i])
    return v[..., i] * (1.0 - w) + v[..., i + 1] * w


def _cumulative_at(v, g, x):
    """Integral of the linear interpolant from g[0] to each x (shape (..., len(x)))."""
    C = np.concatenate([np.zeros(v.shape[:-1] + (1,)),
                        np.cumsum(0.5 * (v[..., 1:] + v[..., :-1]) * np.diff(g), axis=-1)], axis=-1)
    i = np.clip(np.searchsorted(g, x, side="right") - 1, 0, g.size - 2)
    w = (x - g[i]) / (g[i + 1] - g[i])
    fx = v[..., i] * (1.0 - w) + v[..., i + 1] * w
    return C[..., i] + 0.5 * (x - g[i]) * (v[..., i] + fx)


def window_integral(rates, data: ERData | None = None, grid_keV=None, window_keV=None) -> np.ndarray:
    """Integral of the rates over the window [per t yr]: exact for the linear interpolant."""
    v, g = _values_grid(rates, grid_keV)
    lo, hi = window_keV if window_keV is not None else (data.window_keV if data else WINDOW_KEV)
    x = np.array([lo, hi], float)
    _check_inside(x, g, "window")
    F = _cumulative_at(v, g, x)
    return F[..., 1] - F[..., 0]


def expected_total(rates, data: ERData, grid_keV=None) -> np.ndarray:
    """Expected number of events in the window: exposure x :func:`window_integral`."""
    return data.exposure_t_yr * window_integral(rates, data, grid_keV)


def bin_events(data: ERData, edges_keV=None) -> np.ndarray:
    """Event counts per bin (default 29 bins of 1 keV on the window)."""
    e = np.arange(1.0, 31.0) if edges_keV is None else np.asarray(edges_keV, float)
    return np.histogram(data.events_keV, bins=e)[0]


def binned_expectation(rates, data: ERData, edges_keV=None, grid_keV=None) -> np.ndarray:
    """Expected counts per bin: exposure x integral of the interpolated rates over each bin."""
    v, g = _values_grid(rates, grid_keV)
    e = np.arange(1.0, 31.0) if edges_keV is None else np.asarray(edges_keV, float)
    _check_inside(e, g, "bin edges")
    return data.exposure_t_yr * np.diff(_cumulative_at(v, g, e), axis=-1)
