"""nuinfer: CEvNS and EvES spectra, frequentist limits and posteriors for light mediators at xenon detectors.

Notebook-friendly entry points (imported lazily, so ``import nuinfer`` stays fast)::

    import nuinfer
    fm = nuinfer.ForwardModel("eves")                       # paper preset, natural xenon, 1 t yr
    T = fm.templates("V", np.geomspace(0.01, 1e4, 200))     # R = T0 + g^2 T1(m) + g^4 T2(m)
    ds = nuinfer.scan(T, np.geomspace(1e-8, 1, 200))        # profiled Eq. 26 over (m_X, g_X)
    g90 = nuinfer.exclusion(ds)["g90"]                      # island-aware 90% CL limit per mass
    ana = nuinfer.load("models/fig2_eves.toml")             # a validated analysis file
"""

__version__ = "0.1.0"

_LAZY = {
    "ForwardModel": ("nuinfer.forward", "ForwardModel"),
    "Binning": ("nuinfer.physics.detector", "Binning"),
    "Detector": ("nuinfer.physics.detector", "Detector"),
    "Quenching": ("nuinfer.physics.detector", "Quenching"),
    "Interaction": ("nuinfer.physics.mediators", "Interaction"),
    "load": ("nuinfer.spec", "load"),
    "scan": ("nuinfer.tasks", "scan"),
    "exclusion": ("nuinfer.tasks", "exclusion"),
    "read_netcdf": ("nuinfer.io", "read_netcdf"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'nuinfer' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
