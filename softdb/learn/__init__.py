"""Learning: W_Q / W_K / W_V projections, losses with their gradients, and fitting."""

from softdb.learn._fit import FitReport
from softdb.learn._projection import Projection

__all__ = ["FitReport", "Projection"]
