"""``python -m custommsg``, and the ``custommsg`` executable pip installs: run the plugin.

lightningd starts it like any plugin (``plugin=/path/to/venv/bin/custommsg``); run by
hand, it prints its usage, as pyln's plugins do.
"""

from __future__ import annotations

import sys


def main() -> None:
    # lightning-cli sends digits-only hex as a JSON number; a 65536-byte one has
    # 131072 digits, past Python's default limit for int parsing, which would make
    # the request unreadable instead of refused.
    if hasattr(sys, "set_int_max_str_digits"):  # Python 3.10.7 and later
        sys.set_int_max_str_digits(0)
    from .node.plugin import build_plugin

    build_plugin().run()


if __name__ == "__main__":
    main()
