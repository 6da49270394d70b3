"""Frequentist inference: costs (Eq. 26 chi2, Poisson), profiling, grid scans, contours.

``infer`` sees only expected counts and their polynomial structure in g^2 (the templates of the
forward model), so it serves any forward model that provides them.
"""

from nuinfer.infer.contours import (
    G90_STATUS,
    ContourResult,
    contour,
    excluded_intervals,
    exclusion,
)
from nuinfer.infer.costs import (
    CHISQUARE,
    STATISTICS,
    Eq26Chi2,
    PoissonTwiceNLL,
    background_counts,
    eq26_chi2,
    eq26_variance,
    poisson_twice_nll,
)
from nuinfer.infer.profile import (
    PROFILERS,
    ProfileResult,
    profile_grid,
    profile_eq26,
    profile_minuit,
    profile_poisson,
)
from nuinfer.infer.scan import DEFAULT_MIN_EXPECTED, delta_chi2_threshold, expected_counts, scan

__all__ = [
    "CHISQUARE",
    "DEFAULT_MIN_EXPECTED",
    "G90_STATUS",
    "PROFILERS",
    "STATISTICS",
    "ContourResult",
    "Eq26Chi2",
    "PoissonTwiceNLL",
    "ProfileResult",
    "background_counts",
    "contour",
    "delta_chi2_threshold",
    "eq26_chi2",
    "eq26_variance",
    "excluded_intervals",
    "exclusion",
    "expected_counts",
    "poisson_twice_nll",
    "profile_grid",
    "profile_eq26",
    "profile_minuit",
    "profile_poisson",
    "scan",
]
