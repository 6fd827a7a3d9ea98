"""The other ways lightningd starts the plugin: reckless's entry and wrapper, ``python -m custommsg``.

Each is driven through getmanifest, init and a call, exactly as ``plugin.py`` is everywhere else in
this tier; teardown checks the shutdown as for every node.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .conftest import MakeLd
from .harness import REPO_ROOT, FakeLightningd


def _serves(ld: FakeLightningd) -> None:
    assert ld.manifest is not None
    assert "custommsg-send" in {m["name"] for m in ld.manifest["rpcmethods"]}
    assert ld.call("custommsg-list") == {"messages": []}


def test_reckless_entry_file(make_ld: MakeLd) -> None:
    """custommsg.py, the file reckless looks for, runs the plugin when run itself."""
    _serves(make_ld(plugin_path=REPO_ROOT / "custommsg.py"))


def test_reckless_wrapper(make_ld: MakeLd, tmp_path: Path) -> None:
    """The wrapper reckless writes in place of custommsg.py (tools/reckless: create_wrapper), verbatim
    but for its paths: the package in the source folder wins over custommsg.py in the import order."""
    source_loc, subdir = tmp_path, REPO_ROOT
    wrapper = source_loc / "custommsg.py"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "import runpy\n\n"
        f"if '{subdir}' not in sys.path:\n"
        f"    sys.path.append('{subdir}')\n"
        f"if '{source_loc}' in sys.path:\n"
        f"    sys.path.remove('{source_loc}')\n"
        'runpy.run_module("custommsg", {}, "__main__")'
    )
    _serves(make_ld(plugin_path=wrapper))


def test_python_dash_m(make_ld: MakeLd) -> None:
    """``python -m custommsg`` is the plugin too (the pip executable calls the same main)."""
    ld = make_ld(start=False)
    ld.launch([sys.executable, "-m", "custommsg"])
    ld.getmanifest()
    ld.init()
    _serves(ld)
