"""nuinfer: CEvNS and EvES spectra, frequentist limits and posteriors for light mediators at xenon detectors."""

__version__ = "0.1.0"
