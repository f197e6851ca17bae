"""The ``softdb`` command: parsing, printing and exit codes; no maths."""

from softdb.cli._main import main

__all__ = ["main"]
