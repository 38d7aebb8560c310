"""``python -m transferkit`` = the ``transferkit`` command (used where the script is not on PATH,
e.g. the dashboard's job queue starting runs with this interpreter)."""

import os
import signal
import sys

from transferkit.cli import main

# The dashboard's job queue cancels a run with SIGINT so that it stops like Ctrl-C (resumable).
# A process whose parent ignores SIGINT (a dashboard started in the background of a script)
# inherits that, and Python then never raises KeyboardInterrupt: the queue asks for it back.
_SIGINT_ENV = "TRANSFERKIT_SIGINT"

if __name__ == "__main__":
    if os.environ.pop(_SIGINT_ENV, "") == "interrupt":
        signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
