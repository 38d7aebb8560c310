"""``python -m transferkit`` = the ``transferkit`` command (used where the script is not on PATH,
e.g. the dashboard's job queue starting runs with this interpreter)."""

import sys

from transferkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
