"""``python -m transferkit.cli``: the same as the ``transferkit`` command."""

import sys

from . import main

sys.exit(main())
