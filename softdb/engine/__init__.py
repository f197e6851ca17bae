"""The engine: a query plan, the one streaming kernel, its scorers and mergeable states."""

__all__ = []
