"""Targets: isotopes, natural xenon, nuclear spins and atomic binding energies.

Numbers and their sources
-------------------------
* Isotopic abundances of natural xenon: ``PHYSICS.md`` section 2 (IUPAC 2013 representative values).
* Atomic masses: AME2020 (W.J. Huang et al., Chin. Phys. C 45 (2021) 030002), in u.
  Nuclear mass = atomic mass - Z m_e (electron binding neglected, < 0.3 MeV).
* Spin expectation values for the axial channel: 131Xe S_p = -0.009, S_n = -0.272 (the reference
  paper, from shell model); 129Xe S_p = 0.010, S_n = 0.329 (Klos et al., PRD 88 (2013) 083516).
  Even-even isotopes carry no spin.
* Electron binding energies of xenon: Hartree-Fock single-particle energies of J.-W. Chen et al.,
  PLB 774 (2017) 656 (arXiv:1610.04177).  The reference paper's Table III mis-transcribes them
  (swapped j labels, 4p1/2 missing, 3d5/2 printed as 694.9 eV); the corrected list of ``PHYSICS.md``
  section 4 is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import AMU, M_E
from ..exceptions import InvalidConfig


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
    def name(self) -> str:
        return f"Xe{self.A}" if self.Z == 54 else f"Z{self.Z}A{self.A}"


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
        return float(sum(i.abundance * i.A for i in self.isotopes))

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


def get_target(name: str) -> Target:
    """Target by name: ``"Xe"`` (natural xenon) or a single isotope such as ``"Xe131"``."""
    if name in ("Xe", "natXe", "xenon"):
        return natural_xenon()
    if name.startswith("Xe") and name[2:].isdigit():
        return xenon_isotope(int(name[2:]))
    raise InvalidConfig(
        f"unknown target {name!r}; use 'Xe' (natural xenon) or a single isotope like 'Xe131'",
        key="target",
    )
