"""W_Q / W_K / W_V projections (kept at this path; the code lives in :mod:`softdb.learn`)."""

from softdb.learn._projection import FIT_BYTES, Projection, rows_loss, values_loss

__all__ = ["FIT_BYTES", "Projection", "rows_loss", "values_loss"]
