"""``python -m softdb …``: the same as the ``softdb`` command."""

import sys

from softdb.cli import main

sys.exit(main())
