"""The package's folders: one per capability, imports pointing one way, each I/O concern in one home.

The folder map is the package docstring (``custommsg/__init__.py``); this test reads every
module's source with ``ast`` and fails naming the import or name that breaks a rule.
An import under ``if TYPE_CHECKING:`` is for annotations only, and never runs: a
feature's methods name the runtime they are given that way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import custommsg

PACKAGE = Path(custommsg.__file__).resolve().parent

# What each folder may import from (besides itself): core at the bottom, node at the top.
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "store": {"core"},
    "inbox": {"core", "store"},
    "outbox": {"core", "store"},
    "lsps": {"core", "store", "inbox"},
    "acked": {"core", "store", "inbox", "outbox"},
    "protocols": {"core"},
    "send": {"core", "store", "inbox", "outbox", "acked"},
    "node": {"core", "store", "inbox", "outbox", "lsps", "acked", "send", "protocols"},
}
# Where an outside module may be imported, or a name used.
ONLY_IN = {
    "pyln.client": "node/",  # and only node/ speaks to lightningd
    "pyln.client.plugin": "node/seam.py",
    "sqlite3": "store/sqlite.py",
    "psycopg": "store/postgres.py",  # and only when a PostgreSQL URL is opened
    # and the PostgreSQL engine, which shuts the socket under a call a silent server holds
    "socket": ("node/rpcclient.py", "store/postgres.py"),
    "selectors": "node/eventloop.py",
}
PYLN_PRIVATE = {
    "_exec_func", "_parse_request", "_dispatch_request", "_dispatch_notification", "_multi_dispatch",
    "_write_locked", "write_lock", "_write_result", "termination_tb", "RequestState",
}
REGISTRATION = {"add_option", "add_hook", "add_method", "add_subscription", "add_notification_topic"}
# The longest chain of imports from one module of the package to another: a newcomer follows
# a message from the hook to the disk in a few steps.
MAX_IMPORT_CHAIN = 8


def _modules() -> dict[str, ast.Module]:
    """Every module, by its path in the package ("store/inbox.py"), but the entry points."""
    return {
        path.relative_to(PACKAGE).as_posix(): ast.parse(path.read_text(), str(path))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name not in ("__init__.py", "__main__.py") or path.parent != PACKAGE
    }


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    return {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for child in ast.walk(node)
    }


def _imports(path: str, tree: ast.Module, at_run_time: bool = True) -> set[str]:
    """Dotted names a module imports (``..store.inbox`` from ``lsps/endpoint.py`` -> ``custommsg.store.inbox``)."""
    skip = _type_checking_only(tree) if at_run_time else set()
    package = ["custommsg", *path.split("/")[:-1]]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            for alias in node.names:  # from ..core import errors: a module
                if (PACKAGE.parent / (base.replace(".", "/") + f"/{alias.name}.py")).exists():
                    found.add(f"{base}.{alias.name}")
    return found


def _folder(path: str) -> str:
    return path.split("/")[0] if "/" in path else ""


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


def test_every_module_is_in_a_folder_the_rules_know() -> None:
    assert {_folder(path) for path in MODULES} == set(MAY_IMPORT)


@pytest.mark.parametrize("path", sorted(MODULES))
def test_imports_point_one_way(path: str) -> None:
    folder = _folder(path)
    allowed = MAY_IMPORT[folder] | {folder}
    ours = {name.split(".")[1] for name in _imports(path, MODULES[path]) if name.startswith("custommsg.")}
    wrong = ours - allowed - {"__init__"}
    assert not wrong, f"{path} imports from {sorted(wrong)}; {folder}/ may use {sorted(allowed)}"


@pytest.mark.parametrize("path", sorted(MODULES))
def test_outside_modules_stay_in_their_home(path: str) -> None:
    imports = _imports(path, MODULES[path], at_run_time=False)
    for outside, home in ONLY_IN.items():
        if outside in imports:
            homes = (home,) if isinstance(home, str) else home
            assert path.startswith(homes), f"{path} imports {outside}, which belongs to {' and '.join(homes)} only"


@pytest.mark.parametrize("path", sorted(MODULES))
def test_pyln_private_names_only_in_the_seam(path: str) -> None:
    used = _names(MODULES[path]) & PYLN_PRIVATE
    assert not used or path == "node/seam.py", f"{path} touches pyln-client's internals: {sorted(used)}"


@pytest.mark.parametrize("path", sorted(MODULES))
def test_threads_start_in_the_event_loop_only(path: str) -> None:
    assert "Thread" not in _names(MODULES[path]) or path == "node/eventloop.py", f"{path} starts a thread"


@pytest.mark.parametrize("path", sorted(MODULES))
def test_registration_only_in_the_wiring(path: str) -> None:
    used = _names(MODULES[path]) & REGISTRATION
    assert not used or path == "node/plugin.py", f"{path} registers with pyln: {sorted(used)}"


def test_the_import_chains_are_short() -> None:
    graph = {
        path: {
            name.removeprefix("custommsg.").replace(".", "/") + ".py"
            for name in _imports(path, tree)
            if name.removeprefix("custommsg.").replace(".", "/") + ".py" in MODULES
        }
        for path, tree in MODULES.items()
    }
    depth: dict[str, int] = {}

    def longest(path: str, seen: tuple[str, ...] = ()) -> int:
        assert path not in seen, f"an import cycle: {' -> '.join((*seen, path))}"
        if path not in depth:
            depth[path] = 1 + max((longest(n, (*seen, path)) for n in graph[path]), default=0)
        return depth[path]

    deepest = max(MODULES, key=longest)
    assert longest(deepest) <= MAX_IMPORT_CHAIN, f"{deepest} stands on a chain of {longest(deepest)} modules"


def test_the_package_docstring_draws_every_folder() -> None:
    doc = custommsg.__doc__ or ""
    for folder in MAY_IMPORT:
        assert f"    {folder}/" in doc, f"the package docstring does not name {folder}/"
