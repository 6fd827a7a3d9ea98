"""The ways in, tried as an operator would: reckless, and pip into a fresh virtual environment.

Both install from a copy of this working tree (the files git knows, changed or not), so what is
tested is what a clone would hold. Packages come from the registry pip is configured with; nothing
else on the network is used: reckless's default source (github.com/lightningd/plugins) is removed
before it installs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from pyln.testing.utils import wait_for

from .conftest import PLUGIN, REPO

RECKLESS_DEFAULT_SOURCE = "https://github.com/lightningd/plugins"


def _copy_of_the_repository(dest: Path) -> Path:
    """The files a clone has (tracked or new, not ignored), copied to ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _reckless_path() -> Path | None:
    lightningd = shutil.which("lightningd")
    if lightningd is None:
        return None
    found = Path(lightningd).resolve().parent.parent / "tools" / "reckless"
    return found if found.exists() else None


def _plugins(node) -> set[str]:
    return {Path(p["name"]).name for p in node.rpc.plugin("list")["plugins"]}


def _exchange(sender, receiver) -> None:
    """A custommsg-send from ``sender`` lands in ``receiver``'s inbox."""
    sender.connect(receiver)
    sent = sender.rpc.call("custommsg-send", {"node_id": receiver.info["id"], "msg": "8001" + b"hello".hex()})
    assert sent["status"] == "sent"
    wait_for(lambda: receiver.rpc.call("custommsg-list")["messages"])
    (stored,) = receiver.rpc.call("custommsg-list")["messages"]
    assert (stored["peer_id"], stored["text"]) == (sender.info["id"], "hello")


def test_reckless_install_uninstall_disable_enable(node_factory, tmp_path: Path) -> None:
    reckless = _reckless_path()
    if reckless is None:
        pytest.skip("CLN's tools/reckless is not beside this lightningd (a CLN tree that built it has it)")
    # reckless looks for the plugin in a folder named for it.
    source = _copy_of_the_repository(tmp_path / "src" / "custommsg")
    node = node_factory.get_node()
    receiver = node_factory.get_node(options={"plugin": str(PLUGIN)})
    network = node.info["network"]

    def run(*args: str) -> str:
        # cwd: not a folder holding custommsg/, which reckless would take for the plugin itself.
        done = subprocess.run([sys.executable, str(reckless), "-l", str(node.daemon.lightning_dir),
                               f"--network={network}", "-v", *args], cwd=tmp_path, input="Y\n",
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, "LIGHTNING_CLI": shutil.which("lightning-cli") or "lightning-cli"})
        assert done.returncode == 0, f"reckless {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    run("source", "add", str(source))
    run("source", "remove", RECKLESS_DEFAULT_SOURCE)
    out = run("install", "custommsg")
    assert "dependencies installed successfully" in out and "custommsg enabled" in out
    installed = Path(node.daemon.lightning_dir) / "reckless" / "custommsg"
    # reckless keeps the package and plugin.py beside the entry it wraps.
    assert (installed / "source" / "custommsg" / "custommsg" / "__init__.py").exists()
    assert (installed / "source" / "custommsg" / "plugin.py").exists()
    assert "custommsg.py" in _plugins(node)
    _exchange(node, receiver)

    run("disable", "custommsg")
    assert "custommsg.py" not in _plugins(node)
    run("enable", "custommsg")
    assert "custommsg.py" in _plugins(node)
    assert node.rpc.call("custommsg-list", {"peer_id": receiver.info["id"]}) == {"messages": []}

    # The node restarts with it: reckless enabled it in the node's config.
    node.restart()
    assert "custommsg.py" in _plugins(node)

    run("uninstall", "custommsg")
    assert "custommsg.py" not in _plugins(node)
    assert not installed.exists()


def test_pip_install_of_the_wheel_runs_as_the_plugin(node_factory, tmp_path: Path) -> None:
    source = _copy_of_the_repository(tmp_path / "src")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path / "dist"),
                            str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    installed = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr
    executable = env_dir / "bin" / "custommsg"
    assert executable.exists()

    node = node_factory.get_node(options={"plugin": str(executable)})
    receiver = node_factory.get_node(options={"plugin": str(executable)})
    assert "custommsg" in _plugins(node)
    _exchange(node, receiver)

    # The manual pages land where man finds them for a PATH holding the venv's bin/ (man-db derives
    # its search path from PATH), which is what lightning-cli help custommsg-send runs.
    page = env_dir / "share" / "man" / "man7" / "lightning-custommsg-send.7"
    assert page.exists()
    if shutil.which("man") is None:
        return
    cli = shutil.which("lightning-cli")
    assert cli is not None
    shown = subprocess.run([cli, f"--lightning-dir={node.daemon.lightning_dir}", f"--network={node.info['network']}",
                            "help", "custommsg-send"], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PATH": f"{env_dir / 'bin'}:{os.environ['PATH']}", "MANPATH": "",
                                "MANPAGER": "cat", "PAGER": "cat"})
    assert shown.returncode == 0, shown.stderr
    assert "LIGHTNING-CUSTOMMSG-SEND" in shown.stdout and "node_id" in shown.stdout
