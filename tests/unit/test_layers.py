"""The package's layers: imports point down only, and each I/O concern has one home.

The layer map is the package docstring (``custommsg/__init__.py``); this test reads
every module's source with ``ast`` and fails naming the import or name that breaks it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import custommsg

PACKAGE = Path(custommsg.__file__).resolve().parent

# Bottom first: a module may import from the modules before it in this list, and no other.
LAYERS = [  # __main__ (the entry point) stands above them all

    "errors", "strictjson", "wire", "schema", "policy", "validate", "options", "guard", "blip50", "lspscalls", "ack",
    "outboxstore", "ackstore", "store", "outbox", "waiters", "stats", "lsps", "delivery", "receive",
    "rpcclient", "pyln_seam", "eventloop", "service", "events", "rpcmethod", "ackmethods", "lspsmethods",
    "methods", "shell",
]
CORE = set(LAYERS[: LAYERS.index("receive") + 1])  # no pyln I/O, no sockets, no threads started

# Where each outside module, or each name, may be used.
ONLY_IN = {
    "pyln.client": {"pyln_seam", "service"},  # service: NodeVersion, for the version floor
    "pyln.client.plugin": {"pyln_seam"},
    "sqlite3": {"store"},
    "socket": {"rpcclient"},
    "selectors": {"eventloop"},
}
PYLN_PRIVATE = {
    "_exec_func", "_parse_request", "_dispatch_request", "_dispatch_notification", "_multi_dispatch",
    "_write_locked", "write_lock", "_write_result", "termination_tb", "RequestState",
}
REGISTRATION = {"add_option", "add_hook", "add_method", "add_subscription", "add_notification_topic"}


def _modules() -> dict[str, ast.Module]:
    return {
        path.stem: ast.parse(path.read_text(), str(path))
        for path in sorted(PACKAGE.glob("*.py"))
        if path.stem not in ("__init__", "__main__")
    }


def _imports(tree: ast.Module) -> set[str]:
    """Absolute names of what a module imports (``.store`` -> ``custommsg.store``)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = f"custommsg.{base}" if base else "custommsg"
            found.add(base)
            if base == "custommsg":  # from . import errors (a module), __version__ (a name)
                found.update(f"custommsg.{a.name}" for a in node.names if (PACKAGE / f"{a.name}.py").exists())
    return found


def _names(tree: ast.Module) -> set[str]:
    """Every attribute and bare name a module's code mentions."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add(node.name.rsplit(".", 1)[-1])
    return names


MODULES = _modules()


def test_every_module_has_a_layer() -> None:
    assert set(MODULES) == set(LAYERS)


@pytest.mark.parametrize("module", LAYERS)
def test_imports_point_down(module: str) -> None:
    below = {f"custommsg.{name}" for name in LAYERS[: LAYERS.index(module)]} | {"custommsg"}
    ours = {name for name in _imports(MODULES[module]) if name.split(".")[0] == "custommsg"}
    assert ours <= below, f"{module} imports from a layer above it or its own: {sorted(ours - below)}"


@pytest.mark.parametrize("module", LAYERS)
def test_outside_modules_stay_in_their_home(module: str) -> None:
    imports = _imports(MODULES[module])
    for outside, homes in ONLY_IN.items():
        used = {name for name in imports if name == outside}
        assert not used or module in homes, f"{module} imports {outside}, which belongs to {sorted(homes)} only"


@pytest.mark.parametrize("module", LAYERS)
def test_pyln_private_names_only_in_the_seam(module: str) -> None:
    used = _names(MODULES[module]) & PYLN_PRIVATE
    assert not used or module == "pyln_seam", f"{module} touches pyln-client's internals: {sorted(used)}"


@pytest.mark.parametrize("module", sorted(CORE))
def test_core_does_no_plugin_io(module: str) -> None:
    imports = _imports(MODULES[module])
    assert not {i for i in imports if i.startswith("pyln.client")}, f"{module} imports pyln-client"
    assert "Thread" not in _names(MODULES[module]), f"{module} starts a thread"


@pytest.mark.parametrize("module", LAYERS)
def test_threads_start_in_the_event_loop_only(module: str) -> None:
    assert "Thread" not in _names(MODULES[module]) or module == "eventloop"


@pytest.mark.parametrize("module", LAYERS)
def test_registration_only_in_the_shell(module: str) -> None:
    used = _names(MODULES[module]) & REGISTRATION
    assert not used or module == "shell", f"{module} registers with pyln: {sorted(used)}"


def test_the_package_docstring_draws_every_layer() -> None:
    doc = custommsg.__doc__ or ""
    positions = [doc.find(f"    {name} ") for name in LAYERS]
    assert all(p >= 0 for p in positions), [n for n, p in zip(LAYERS, positions, strict=True) if p < 0]
    assert positions == sorted(positions, reverse=True), "the docstring lists the layers top to bottom"
