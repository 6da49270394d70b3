"""Targets: isotopes, natural xenon, germanium, argon, CsI, nuclear spins and atomic binding energies.

Numbers and their sources
-------------------------
* Isotopic abundances of natural xenon: ``PHYSICS.md`` section 2 (IUPAC 2013 representative values).
* Atomic masses: AME2020 (W.J. Huang et al., Chin. Phys. C 45 (2021) 030002), in u.
  Nuclear mass = atomic mass - Z m_e (electron binding neglected, < 0.3 MeV).
* Spin expectation values for the axial channel: 131Xe S_p = -0.009, S_n = -0.272 (the reference
  paper, from shell model); 129Xe S_p = 0.010, S_n = 0.329 (Klos et al., PRD 88 (2013) 083516).
  Even-even isotopes carry no spin.
* Natural germanium abundances: IUPAC 2013 representative isotopic composition
  (J. Meija et al., Pure Appl. Chem. 88 (2016) 293): 70Ge 20.52 %, 72Ge 27.45 %, 73Ge 7.76 %,
  74Ge 36.52 %, 76Ge 7.75 %.  Natural argon: 36Ar 0.3336 %, 38Ar 0.0629 %, 40Ar 99.6035 % (same
  source); ``"Ar40"`` is the pure isotope used by the review.  133Cs and 127I are mononuclidic.
* Spins of the odd nuclei of the new targets (axial channel only): 73Ge S_p = 0.030, S_n = 0.378
  (Dimitrov, Engel, Pittel, PRD 51 (1995) R291); 127I S_p = 0.309, S_n = 0.075 (Ressell, Dean,
  PRC 56 (1997) 535); 133Cs S_p = -0.370, S_n = 0.003 (Toivanen et al., PRC 79 (2009) 044302).
* Compounds (CsI): ``Isotope.abundance`` is the number of such nuclei per *formula unit* (1 Cs
  and 1 I per CsI), ``Target.molar_mass`` the molar mass of the formula unit, so a tonne-year
  of CsI holds ``tonne_year_targets(molar_mass)`` formula units and as many Cs and I nuclei.
  For an element the abundances sum to 1 and nothing changes.
* Electron binding energies of xenon: Hartree-Fock single-particle energies of J.-W. Chen et al.,
  PLB 774 (2017) 656 (arXiv:1610.04177).  The reference paper's Table III mis-transcribes them
  (swapped j labels, 4p1/2 missing, 3d5/2 printed as 694.9 eV); the corrected list of ``PHYSICS.md``
  section 4 is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nuinfer.constants import AMU, M_E
from nuinfer.exceptions import InvalidConfig


@dataclass(frozen=True)
class Isotope:
    """One nuclide of a target.

    Attributes
    ----------
    Z, A : int
        Proton and mass numbers.
    abundance : float
        Fraction of atoms (sums to 1 over a target).
    atomic_mass_u : float
        Atomic mass in u.
    S_p, S_n : float
        Proton and neutron spin expectation values (0 for even-even nuclei).
    """

    Z: int
    A: int
    abundance: float
    atomic_mass_u: float
    S_p: float = 0.0
    S_n: float = 0.0

    @property
    def N(self) -> int:
        return self.A - self.Z

    @property
    def m_N(self) -> float:
        """Nuclear mass [MeV]."""
        return self.atomic_mass_u * AMU - self.Z * M_E

    @property
    def symbol(self) -> str:
        """Chemical symbol (``"Z<n>"`` for elements nuinfer has no name for)."""
        return ELEMENT_SYMBOLS.get(self.Z, f"Z{self.Z}")

    @property
    def name(self) -> str:
        sym = ELEMENT_SYMBOLS.get(self.Z)
        return f"{sym}{self.A}" if sym else f"Z{self.Z}A{self.A}"


#: chemical symbols of the elements nuinfer ships targets for
ELEMENT_SYMBOLS = {18: "Ar", 32: "Ge", 53: "I", 54: "Xe", 55: "Cs"}

# (A, abundance %, atomic mass u (AME2020), S_p, S_n) per element
_GERMANIUM = (
    (70, 20.52, 69.92424875, 0.0, 0.0),
    (72, 27.45, 71.922075826, 0.0, 0.0),
    (73, 7.76, 72.923458956, 0.030, 0.378),
    (74, 36.52, 73.921177761, 0.0, 0.0),
    (76, 7.75, 75.921402726, 0.0, 0.0),
)
_ARGON = (
    (36, 0.3336, 35.967545105, 0.0, 0.0),
    (38, 0.0629, 37.96273211, 0.0, 0.0),
    (40, 99.6035, 39.9623831237, 0.0, 0.0),
)
_CESIUM = ((133, 100.0, 132.905451961, -0.370, 0.003),)
_IODINE = ((127, 100.0, 126.904471, 0.309, 0.075),)


# (A, abundance %, atomic mass u, S_p, S_n)
_XENON = (
    (124, 0.095, 123.9058920, 0.0, 0.0),
    (126, 0.089, 125.9042983, 0.0, 0.0),
    (128, 1.910, 127.9035310, 0.0, 0.0),
    (129, 26.401, 128.9047808611, 0.010, 0.329),
    (130, 4.071, 129.903509349, 0.0, 0.0),
    (131, 21.232, 130.90508406, -0.009, -0.272),
    (132, 26.909, 131.9041550856, 0.0, 0.0),
    (134, 10.436, 133.90539466, 0.0, 0.0),
    (136, 8.857, 135.907214484, 0.0, 0.0),
)

#: Xenon electron binding energies [eV] and occupancies (Chen et al. 2017, corrected list).
XENON_BINDING_EV = (
    ("1s", 34759.3, 2), ("2s", 5509.8, 2), ("2p1/2", 5161.5, 2), ("2p3/2", 4835.6, 4),
    ("3s", 1170.5, 2), ("3p1/2", 1024.8, 2), ("3p3/2", 961.2, 4), ("3d3/2", 708.1, 4),
    ("3d5/2", 649.9, 6), ("4s", 229.4, 2), ("4p1/2", 175.6, 2), ("4p3/2", 162.8, 4),
    ("4d3/2", 73.8, 4), ("4d5/2", 71.7, 6), ("5s", 27.5, 2), ("5p1/2", 13.4, 2),
    ("5p3/2", 12.0, 4),
)


@dataclass(frozen=True)
class Target:
    """A detector medium: a set of isotopes of one element plus its atomic shell structure."""

    name: str
    Z: int
    isotopes: tuple[Isotope, ...]
    binding_eV: tuple[tuple[str, float, int], ...] = ()

    @property
    def molar_mass(self) -> float:
        """Mean molar mass [g/mol] (abundance-weighted atomic masses)."""
        return float(sum(i.abundance * i.atomic_mass_u for i in self.isotopes))

    @property
    def mean_A(self) -> float:
        """Mean mass number per nucleus (abundance-weighted; for a compound, over all its nuclei)."""
        total = sum(i.abundance for i in self.isotopes)
        return float(sum(i.abundance * i.A for i in self.isotopes) / total)

    @property
    def nuclei_per_unit(self) -> float:
        """Nuclei per formula unit (1 for an element, 2 for CsI)."""
        return float(sum(i.abundance for i in self.isotopes))

    @property
    def elements(self) -> tuple[int, ...]:
        """Atomic numbers present, in order of first appearance."""
        out: list[int] = []
        for i in self.isotopes:
            if i.Z not in out:
                out.append(i.Z)
        return tuple(out)

    def electrons_accessible(self, T_MeV) -> np.ndarray:
        """Number of electrons with binding energy below the recoil energy ``T`` (Eq. 25 numerator).

        Without a shell table every one of the Z electrons counts (free-electron approximation).
        """
        T = np.asarray(T_MeV, dtype=float)
        if not self.binding_eV:
            return np.full(T.shape, float(self.Z))
        out = np.zeros(T.shape)
        for _, b_eV, n in self.binding_eV:
            out += n * (T >= b_eV * 1e-6)
        return out

    def binding_edges_MeV(self) -> np.ndarray:
        return np.array(sorted(b * 1e-6 for _, b, _ in self.binding_eV))


def natural_xenon() -> Target:
    iso = tuple(Isotope(54, A, ab / 100.0, m, sp, sn) for A, ab, m, sp, sn in _XENON)
    total = sum(i.abundance for i in iso)
    iso = tuple(Isotope(i.Z, i.A, i.abundance / total, i.atomic_mass_u, i.S_p, i.S_n) for i in iso)
    return Target("Xe", 54, iso, XENON_BINDING_EV)


def xenon_isotope(A: int) -> Target:
    for a, _, m, sp, sn in _XENON:
        if a == A:
            return Target(f"Xe{A}", 54, (Isotope(54, A, 1.0, m, sp, sn),), XENON_BINDING_EV)
    raise InvalidConfig(
        f"unknown xenon isotope A={A}; choose one of {[a for a, *_ in _XENON]}", key="target"
    )


_ELEMENTS = {"Xe": (54, _XENON), "Ge": (32, _GERMANIUM), "Ar": (18, _ARGON), "Cs": (55, _CESIUM),
             "I": (53, _IODINE)}


def _element_isotopes(symbol: str, per_unit: float = 1.0) -> tuple[Isotope, ...]:
    Z, table = _ELEMENTS[symbol]
    total = sum(ab for _, ab, *_ in table)
    return tuple(Isotope(Z, A, per_unit * ab / total, m, sp, sn) for A, ab, m, sp, sn in table)


def natural_germanium() -> Target:
    """Natural germanium (five isotopes, IUPAC abundances)."""
    return Target("Ge", 32, _element_isotopes("Ge"))


def natural_argon() -> Target:
    """Natural (atmospheric) argon; 99.6 % 40Ar."""
    return Target("Ar", 18, _element_isotopes("Ar"))


def argon40() -> Target:
    """Pure 40Ar (the review's argon target)."""
    return single_isotope("Ar", 40)


def cesium_iodide() -> Target:
    """CsI: one 133Cs and one 127I nucleus per formula unit (the Na dopant is neglected).

    ``Z`` is the mean atomic number (54), used only for Lindhard-type defaults; CEvNS rates use each
    nucleus' own Z, N, mass and form factor.
    """
    return Target("CsI", 54, _element_isotopes("Cs") + _element_isotopes("I"))


def single_isotope(symbol: str, A: int) -> Target:
    """A target made of one isotope of a known element, e.g. ``single_isotope("Ge", 72)``."""
    if symbol not in _ELEMENTS:
        raise InvalidConfig(f"unknown element {symbol!r}; choose one of {sorted(_ELEMENTS)}", key="target")
    Z, table = _ELEMENTS[symbol]
    for a, _, m, sp, sn in table:
        if a == A:
            binding = XENON_BINDING_EV if Z == 54 else ()
            return Target(f"{symbol}{A}", Z, (Isotope(Z, A, 1.0, m, sp, sn),), binding)
    raise InvalidConfig(f"unknown {symbol} isotope A={A}; choose one of {[a for a, *_ in table]}", key="target")


#: target names accepted by :func:`get_target` (besides single isotopes such as ``"Ge72"``)
TARGET_NAMES = ("Xe", "Ge", "Ar", "Ar40", "CsI")


def get_target(name: str) -> Target:
    """Target by name.

    ``"Xe"`` (natural xenon), ``"Ge"`` (natural germanium), ``"Ar"`` (natural argon), ``"CsI"``
    (cesium iodide, both nuclei), or a single isotope such as ``"Xe131"``, ``"Ge72"``, ``"Ar40"``,
    ``"Cs133"``, ``"I127"``.
    """
    if not isinstance(name, str):
        raise InvalidConfig(f"target must be a name, got {name!r}", key="target")
    if name in ("Xe", "natXe", "xenon"):
        return natural_xenon()
    if name in ("Ge", "natGe", "germanium"):
        return natural_germanium()
    if name in ("Ar", "natAr", "argon"):
        return natural_argon()
    if name in ("CsI", "csi", "CsI[Na]"):
        return cesium_iodide()
    if name.startswith("Xe") and name[2:].isdigit():
        return xenon_isotope(int(name[2:]))
    sym = name.rstrip("0123456789")
    if sym in _ELEMENTS and name[len(sym):].isdigit():
        return single_isotope(sym, int(name[len(sym):]))
    raise InvalidConfig(
        f"unknown target {name!r}; use one of {', '.join(TARGET_NAMES)} or a single isotope like "
        "'Xe131', 'Ge72', 'Ar40', 'Cs133', 'I127'",
        key="target",
    )
