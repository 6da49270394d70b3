"""Tasks over the one analysis model, as plain functions (the CLI is a thin layer over them).

Modules: :mod:`.template_scan` (the paper's (m_X, g_X) scans with the closed-form / Newton profile
of one normalisation), :mod:`.model_scan` (scans and one-parameter profiles of any
:class:`~nuinfer.likelihood.BinnedModel`), :mod:`.contours` (90 % CL regions, g90 and excluded
intervals), :mod:`.calibration` (toy-calibrated critical values and coverage), :mod:`.posterior`
and :mod:`.bayes` (emcee), :mod:`.discovery` and :mod:`.floor` (discovery limits, neutrino floor),
:mod:`.datafit` and :mod:`.terrestrial` (reactor and pi-DAR data fits), :mod:`.xenonnt` (real
XENONnT data), :mod:`.paper` (the paper's figures, systematics comparisons and ``reproduce``).

The names below are imported lazily, so ``import nuinfer.tasks.x`` stays cheap.
"""

_LAZY = {
    "CHISQUARE": "nuinfer.likelihood.costs",
    "ContourResult": "nuinfer.tasks.contours",
    "DEFAULT_MIN_EXPECTED": "nuinfer.tasks.template_scan",
    "Eq26Chi2": "nuinfer.likelihood.costs",
    "G90_STATUS": "nuinfer.tasks.contours",
    "PROFILERS": "nuinfer.likelihood.single",
    "PoissonTwiceNLL": "nuinfer.likelihood.costs",
    "STATISTICS": "nuinfer.likelihood.costs",
    "background_counts": "nuinfer.likelihood.costs",
    "contour": "nuinfer.tasks.contours",
    "delta_chi2_threshold": "nuinfer.tasks.template_scan",
    "eq26_chi2": "nuinfer.likelihood.costs",
    "eq26_variance": "nuinfer.likelihood.costs",
    "excluded_intervals": "nuinfer.tasks.contours",
    "exclusion": "nuinfer.tasks.contours",
    "expected_counts": "nuinfer.tasks.template_scan",
    "poisson_twice_nll": "nuinfer.likelihood.costs",
    "profile_eq26": "nuinfer.likelihood.single",
    "profile_grid": "nuinfer.likelihood.single",
    "profile_minuit": "nuinfer.likelihood.single",
    "profile_poisson": "nuinfer.likelihood.single",
    "scan": "nuinfer.tasks.template_scan",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nuinfer.tasks' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
