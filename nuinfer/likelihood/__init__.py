"""The one binned likelihood: components x modifiers (:mod:`.model`), costs and profilers (:mod:`.profile`)."""

from nuinfer.likelihood.model import BinnedModel, Component, Morph, Parameter, PolyTemplate, ShapeSys
from nuinfer.likelihood.profile import COSTS, bin_cost, profile, statistic_name
from nuinfer.likelihood.result import FitResult

__all__ = ["COSTS", "BinnedModel", "Component", "FitResult", "Morph", "Parameter", "PolyTemplate", "ShapeSys", "bin_cost",
           "profile", "statistic_name"]
