"""The README's configuration section, tried on a real node: its example file, listconfigs, --help."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .conftest import PLUGIN, REPO

OPTIONS = ["custommsg-guard", "custommsg-type", "custommsg-db", "custommsg-inbox-max", "custommsg-peer-rate",
           "custommsg-peer-burst", "custommsg-peer-kbps", "custommsg-peer-burst-bytes", "custommsg-global-kbps",
           "custommsg-global-burst-bytes", "custommsg-peer-send-kbps", "custommsg-peer-send-burst-bytes",
           "custommsg-outbox-max", "custommsg-acked-delivery", "custommsg-protocol", "custommsg-stored-notification"]


def readme_example() -> list[tuple[str, str]]:
    """The (option, value) lines of the README's config example, plugin= aside."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1]
    block = re.search(r"```ini\n(.*?)```", section, re.S)
    assert block is not None, "no ```ini block in the README's Configuration section"
    lines = [line for line in block[1].splitlines() if line and not line.startswith("#")]
    assert lines[0].startswith("plugin=")
    return [tuple(line.split("=", 1)) for line in lines[1:]]  # type: ignore[misc]


def test_the_readme_example_sets_every_option() -> None:
    assert sorted({name for name, _ in readme_example()}) == sorted(OPTIONS)


def test_the_readme_example_in_a_config_file_is_what_listconfigs_shows(node_factory) -> None:
    node = node_factory.get_node(options={"plugin": str(PLUGIN)}, start=False)
    config = Path(node.daemon.lightning_dir) / node.daemon.opts.get("network", "regtest") / "config"
    config.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "doc" / "examples" / "swap.csv", config.parent / "swap.csv")  # custommsg-protocol=swap.csv
    with config.open("a") as out:
        out.writelines(f"{name}={value}\n" for name, value in readme_example())
    node.start()

    configs = node.rpc.listconfigs()["configs"]
    expected: dict[str, list[str]] = {}
    for name, value in readme_example():
        expected.setdefault(name, []).append(value)
    for name, values in expected.items():
        shown = configs[name]
        assert shown["plugin"].endswith("plugin.py"), name
        if "values_str" in shown:  # a multi option: custommsg-type, custommsg-protocol
            assert shown["values_str"] == values and all("config" in s for s in shown["sources"]), name
            continue
        (value,) = values
        assert "config" in shown["source"], (name, shown)
        if "value_int" in shown:
            assert shown["value_int"] == int(value), name
        elif "value_bool" in shown:
            assert shown["value_bool"] is (value == "true"), name
        elif name == "custommsg-db":  # a string-conceal option: it may be a URL with a password
            assert shown["value_str"] == "...", name
        else:
            assert shown["value_str"] == value, name
    # And the plugin runs with them: the database where custommsg-db put it, the types selected.
    assert (config.parent / "custommsg" / "inbox.sqlite3").exists()
    assert node.rpc.call("custommsg-stats")["inbox_count"] == 0
    assert [m["name"] for m in node.rpc.call("custommsg-protocols")["protocols"][0]["messages"]] == [
        "swap_request", "swap_response"]


def test_every_option_in_lightningd_help_has_a_description(tmp_path: Path) -> None:
    lightningd = shutil.which("lightningd")
    assert lightningd is not None
    shown = subprocess.run([lightningd, f"--lightning-dir={tmp_path}", "--network=regtest", f"--plugin={PLUGIN}",
                            "--help"], capture_output=True, text=True, timeout=60)
    text = shown.stdout + shown.stderr
    # "--name <arg>   Description... (default: x)", wrapped over indented lines.
    described = {}
    for match in re.finditer(r"^--(custommsg-[a-z-]+)(?: <arg>)?\s+(.*(?:\n {20,}.*)*)", text, re.M):
        described[match[1]] = " ".join(re.sub(r"\(default: [^)]*\)", "", match[2]).split())
    assert sorted(described) == sorted(OPTIONS), text[-2000:]
    for name, description in described.items():
        assert len(description.split()) >= 4, f"{name}: {description!r}"
