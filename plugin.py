#!/usr/bin/env python3
"""custommsg: the executable lightningd starts (``--plugin=/path/to/plugin.py``).

Importing this file does nothing. Run, it prefers the virtual environment that
``make install`` creates beside it, so lightningd can start it from any shell.
"""

import os
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
# CUSTOMMSG_VENV names another environment to run in (the tests' oldest supported pyln-client).
VENV = os.path.join(HERE, os.environ.get("CUSTOMMSG_VENV") or ".venv")
VENV_PYTHON = os.path.join(VENV, "bin", "python3")


def main() -> None:
    # lightningd runs this file with whatever python3 is first on its PATH; our
    # dependencies live in the project's venv, so move there before importing them.
    if os.path.exists(VENV_PYTHON) and os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        os.execv(VENV_PYTHON, [VENV_PYTHON, os.path.realpath(__file__), *sys.argv[1:]])
    sys.path.insert(0, HERE)
    from custommsg.__main__ import main as run_plugin

    run_plugin()


if __name__ == "__main__":
    main()
