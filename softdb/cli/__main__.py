"""``python -m softdb.cli``: the same as the ``softdb`` command."""

import sys

from softdb.cli._main import main

if __name__ == "__main__":  # not when pytest's --doctest-modules imports this module
    sys.exit(main())
