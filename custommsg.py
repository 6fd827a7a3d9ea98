#!/usr/bin/env python3
"""custommsg, as reckless (CLN's tools/reckless) finds it: a ``<name>.py`` beside the dependency file.

reckless looks in a folder named for the plugin for ``custommsg.py`` and ``requirements.txt``,
installs the requirements into its own virtual environment, and replaces this file with a
wrapper that runs ``runpy.run_module("custommsg")`` from this folder: the ``custommsg/``
package wins over this file in Python's import order, so the wrapper runs
``custommsg/__main__.py``. Run directly, this file does the same.
"""

from custommsg.__main__ import main

if __name__ == "__main__":
    main()
