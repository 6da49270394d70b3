"""Physical constants and unit conversions used throughout nuinfer.

Natural units inside :mod:`nuinfer.physics`: energies and masses in MeV, cross sections in MeV^-3
(d sigma / dE), couplings dimensionless.  Conversions to laboratory units live here only.

Sources
-------
* PDG 2022 (R.L. Workman et al., PTEP 2022 083C01) for G_F, alpha_em, lepton and nucleon masses,
  light-quark MS-bar masses, hbar*c, N_A and the atomic mass unit.
* sin^2 theta_W = 0.2387: low-energy MS-bar value used by the reference paper
  (Majumdar, Papoulias, Srivastava, PRD 106 (2022) 013001, Sec. 2.1).
* Oscillation parameters: 2020 Valencia global fit, normal ordering
  (P.F. de Salas et al., JHEP 02 (2021) 071), as prescribed by ``PHYSICS.md`` section 1.
"""

from __future__ import annotations

import math

# --- couplings -------------------------------------------------------------------------------
G_F_GEV = 1.1663787e-5  #: Fermi constant [GeV^-2] (PDG)
G_F = G_F_GEV * 1e-6  #: Fermi constant [MeV^-2]
SIN2_THETA_W = 0.2387  #: weak mixing angle, paper preset (low-energy MS-bar)
ALPHA_EM = 1.0 / 137.035999  #: fine-structure constant (Thomson limit, PDG)

# --- masses [MeV] ----------------------------------------------------------------------------
M_E = 0.51099895  #: electron mass (PDG)
M_P = 938.27209  #: proton mass (PDG)
M_N = 939.56542  #: neutron mass (PDG)
M_U = 2.16  #: up-quark MS-bar mass at 2 GeV (PDG); needed by Q_S, Q_P (not stated by the paper)
M_D = 4.67  #: down-quark MS-bar mass at 2 GeV (PDG)
M_MU = 105.6584  #: muon mass (PDG)
M_TAU = 1776.86  #: tau mass (PDG)
AMU = 931.49410242  #: atomic mass unit [MeV] (CODATA 2018)
M_PI_CHARGED = 139.57039  #: charged-pion mass (PDG); sets the 29.79 MeV pi -> mu nu decay-at-rest line
M_ALPHA = 3727.3794066  #: alpha-particle (4He nucleus) mass (CODATA 2018); 8Be -> 2 alpha channel

# --- conversions -----------------------------------------------------------------------------
HBARC_MEV_FM = 197.3269804  #: hbar c [MeV fm]
HBARC_MEV_CM = HBARC_MEV_FM * 1e-13  #: hbar c [MeV cm]
HBARC2_MEV2_CM2 = HBARC_MEV_CM**2  #: (hbar c)^2 [MeV^2 cm^2]: converts MeV^-2 to cm^2
N_A = 6.02214076e23  #: Avogadro constant [mol^-1] (exact, SI 2019)
KEV = 1e-3  #: 1 keV in MeV
SECONDS_PER_YEAR = 365.25 * 86400.0  #: Julian year [s] (PHYSICS.md: 1 year = 365.25 days)
GRAMS_PER_TONNE = 1e6

# --- oscillation parameters (2020 Valencia fit, normal ordering) -----------------------------
SIN2_THETA12 = 0.318
SIN2_THETA13 = 0.02220
SIN2_THETA23 = 0.574
DM21_EV2 = 7.50e-5  #: [eV^2]

#: log(m_tau^2 / m_mu^2): loop factor of the L_mu - L_tau kinetic mixing (Eqs. 9, 14)
LOG_MTAU2_MMU2 = math.log(M_TAU**2 / M_MU**2)


def tonne_year_targets(molar_mass_g_per_mol: float) -> float:
    """Number of atoms in one tonne of material of the given molar mass."""
    return GRAMS_PER_TONNE / molar_mass_g_per_mol * N_A
