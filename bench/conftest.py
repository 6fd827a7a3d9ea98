"""Benchmarks run on real lightningd nodes, found as the integration tier finds them.

Without lightningd they are skipped with the reason, and `make bench` exits 0.
BENCH_PLUGIN=/path/to/plugin.py measures another build of the plugin (a profiling
wrapper, an older checkout) in place of this one; BENCH_ROUNDS, BENCH_PER_ROUND and
BENCH_INBOX_SIZES size the runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import PLUGIN, SKIP_REASON  # noqa: F401  (sets PATH up)

BENCH_PLUGINS = Path(__file__).resolve().parent / "plugins"

if SKIP_REASON is None:
    from pyln.testing.fixtures import *  # noqa: E402,F401,F403


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SKIP_REASON is not None:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=f"benchmark needs lightningd: {SKIP_REASON}"))


def bench_node(node_factory, **options):
    """A node as pyln-testing makes it, less --dev-save-plugin-io.

    pyln-testing turns that developer option on for every node; it writes two new
    files for every hook call, which on a disk costs about 2 ms a call and would be
    measured as the cost of any hook. Production nodes never have it.
    """
    node = node_factory.get_node(start=False, options=options)
    node.daemon.opts.pop("dev-save-plugin-io", None)
    node.start()
    return node
