"""Interaction models: Lorentz structure, coupling pattern and the paper-vs-standard options.

Coupling convention (used everywhere in nuinfer)
-------------------------------------------------
``g_X = sqrt(g_nuX * g_fX)`` with f = u, d quarks (CEvNS) or the electron (EvES), as in the
reference paper (Majumdar, Papoulias, Srivastava 2022, Sec. 2.2).  The *paper preset* is
universal: ``g_nuX = g_qX = g_eX = g_X`` for every quark, so every rate depends on g_X only
through g_X^2 (amplitude) and the expected counts are a polynomial
``R = T0 + g_X^2 T1(m_X) + g_X^4 T2(m_X)``.
Peer codes use other conventions (``g_nu * g_q`` directly, or ``eps = g^2 / (2 sqrt2 G_F (m^2 + q^2))``):
convert before comparing limits.

Models
------
``SM``; ``S``, ``P``, ``V``, ``A``, ``T`` (universal couplings; S, P, A, T add incoherently to the SM,
V interferes); ``B-L`` (vector, g_q = -g_nu/3 so Q_V = -A g^2 in CEvNS, g_e = g_nu in EvES);
``Lmu-Ltau`` (vector coupled to mu and tau only, loop-induced kinetic mixing with the photon,
Eqs. 9 and 14: sign + for nu_tau, - for nu_mu, nu_e unaffected; both equations print the same signs
for protons and electrons although kinetic mixing couples them with opposite charges: the printed signs
are kept, PHYSICS.md sec. 4); ``dipole`` (CEvNS only: the
sterile-neutrino dipole portal of the review's Eq. 4, :mod:`nuinfer.physics.dipole`, with
m_X -> m4 and g_X -> mu_nu in Bohr magnetons; counts = SM + mu^2 T1(m4)).  Simultaneous S, V, T
couplings (the review's NGI, Eq. 3) are in :mod:`nuinfer.physics.ngi`.

Options (paper preset first)
----------------------------
``axial_form``: ``"paper"`` multiplies S_p by Z and S_n by N as printed in Eq. 8; ``"standard"``
    uses the usual spin-dependent charge S_p sum_q Delta_q^p + S_n sum_q Delta_q^n.
``eves_vector_norm``: ``"paper"`` uses Eq. 13 as printed, 1/(4 sqrt2 G_F); ``"standard"`` uses
    1/(sqrt2 G_F), which matches the Table I couplings to the SM normalisation of Eq. 10 and makes
    EvES V, A, B-L limits on g_X a factor 2 stronger (PHYSICS.md section 4).
``lmu_ltau_nue``: ``"paper"`` drops nu_e from the L_mu - L_tau analysis entirely (from R_SM as well),
    as in Sec. 4.2 of the paper; ``"background"`` keeps nu_e as an SM-only background.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from nuinfer.exceptions import InvalidConfig

MODELS = ("SM", "S", "P", "V", "A", "T", "B-L", "Lmu-Ltau")
#: interactions outside the Table I family, with their own modules and kinematics: the
#: sterile-neutrino dipole portal (:mod:`nuinfer.physics.dipole`; m_X = m4, g_X = mu_nu in Bohr
#: magnetons).  The forward model dispatches them; :func:`nuinfer.physics.cevns.coefficients` refuses them.
SPECIAL_MODELS = ("dipole",)
#: models whose new-physics amplitude interferes with the SM (T1 != 0)
INTERFERING = ("V", "B-L", "Lmu-Ltau")

_ALIASES = {
    "scalar": "S", "pseudoscalar": "P", "vector": "V", "axial": "A", "axialvector": "A",
    "tensor": "T", "b-l": "B-L", "bl": "B-L", "b_l": "B-L", "lmu-ltau": "Lmu-Ltau",
    "lmultau": "Lmu-Ltau", "lmu_ltau": "Lmu-Ltau", "sm": "SM", "universal_vector": "V",
    "dipole_portal": "dipole", "sterile_dipole": "dipole",
}

_OPTIONS = {
    "axial_form": ("paper", "standard"),
    "eves_vector_norm": ("paper", "standard"),
    "lmu_ltau_nue": ("paper", "background"),
}


@dataclass(frozen=True)
class Interaction:
    """A new-physics interaction hypothesis.

    Parameters
    ----------
    name : str
        One of :data:`MODELS` (case-insensitive aliases such as ``"scalar"`` accepted).
    axial_form, eves_vector_norm, lmu_ltau_nue : str
        Paper-preset vs physical alternatives; see the module docstring.
    """

    name: str
    axial_form: str = "paper"
    eves_vector_norm: str = "paper"
    lmu_ltau_nue: str = "paper"
    options: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        canon = canonical_model(self.name)
        object.__setattr__(self, "name", canon)
        for key, allowed in _OPTIONS.items():
            val = getattr(self, key)
            if val not in allowed:
                raise InvalidConfig(f"{val!r} is not one of {allowed}", key=f"model.{key}")

    @property
    def interferes(self) -> bool:
        return self.name in INTERFERING

    @property
    def drops_nue(self) -> bool:
        """True when nu_e is removed from the whole analysis (L_mu - L_tau, paper preset)."""
        return self.name == "Lmu-Ltau" and self.lmu_ltau_nue == "paper"

    def with_options(self, **kw) -> "Interaction":
        return replace(self, **kw)

    @property
    def label(self) -> str:
        return {"Lmu-Ltau": r"$L_\mu-L_\tau$", "B-L": r"$B-L$"}.get(self.name, self.name)


def canonical_model(name: str) -> str:
    if not isinstance(name, str):
        raise InvalidConfig(f"model name must be a string, got {type(name).__name__}", key="model.name")
    if name in MODELS or name in SPECIAL_MODELS:
        return name
    key = name.strip().lower().replace(" ", "")
    if key in _ALIASES:
        return _ALIASES[key]
    for m in MODELS + SPECIAL_MODELS:
        if m.lower() == key:
            return m
    raise InvalidConfig(f"unknown interaction {name!r}; choose one of {', '.join(MODELS + SPECIAL_MODELS)}",
                        key="model.name")


def get_interaction(spec) -> Interaction:
    """Interaction from a name, a mapping ``{"name": ..., options}`` or an Interaction."""
    if isinstance(spec, Interaction):
        return spec
    if isinstance(spec, str):
        return Interaction(spec)
    if isinstance(spec, dict):
        unknown = set(spec) - {"name", *_OPTIONS}
        if unknown:
            raise InvalidConfig(
                f"unknown key(s) {sorted(unknown)}; allowed: name, {', '.join(_OPTIONS)}", key="model"
            )
        if "name" not in spec:
            raise InvalidConfig("missing 'name' (e.g. name = \"V\")", key="model")
        return Interaction(**spec)
    raise InvalidConfig(f"cannot interpret {spec!r} as an interaction", key="model")
