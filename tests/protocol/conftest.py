"""Fixtures for the plugin-protocol tier: a fake lightningd per test, checked at teardown."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .. import pg
from .harness import FakeLightningd

# Valid secp256k1 node ids (private keys 0x02.., 0x03.., ...), none of them OWN_ID.
PEER_A = "024d4b6cd1361032ca9bd2aeb9d900aa4d45d9ead80ac9423374c451a7254d0766"
PEER_B = "02531fe6068134503d2723133227c867ac8fa6c83c537e9a44c3c5bdbdcb1fe337"
PEER_C = "03462779ad4aad39514614751a71085f2f10e1c7a593e4e030efb5b8721ce55b0b"
OFFLINE_PEER = "0362c0a046dacce86ddd0343c6d3c7c79c2208ba0d9c9cf24a6d046d21d21f90f7"  # known, not connected
UNKNOWN_PEER = "03f006a18d5653c4edf5391ff23a61f03ff83d237e880ee61187fa9f379a028e0a"  # lightningd never heard of it


def default_peers() -> dict[str, dict[str, Any]]:
    return {
        PEER_A: {"connected": True},
        PEER_B: {"connected": True},
        OFFLINE_PEER: {"connected": False},
    }


MakeLd = Callable[..., FakeLightningd]


# The modules whose tests run on both engines: each node's store on SQLite (its file), and on
# PostgreSQL, where the fake lightningd's wallet is a fresh database the plugin follows (schema custommsg).
BOTH_ENGINES = {"test_receive", "test_outbox", "test_ack"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" in metafunc.fixturenames:
        both = metafunc.module.__name__.rsplit(".", 1)[-1] in BOTH_ENGINES
        if both and metafunc.definition.get_closest_marker("sqlite_only") is None:
            metafunc.parametrize("engine", ("sqlite", "postgres"))


@pytest.fixture
def engine() -> str:
    """Where a node's store is when the test is not run on both: SQLite, the default."""
    return "sqlite"


@pytest.fixture
def wallets(engine: str, request: pytest.FixtureRequest) -> Iterator[Callable[[], str | None]]:
    """A fresh wallet database per node on PostgreSQL (dropped at the end); None (SQLite) otherwise."""
    if engine == "sqlite":
        yield lambda: None
        return
    url = request.getfixturevalue("pg_url")
    made: list[str] = []

    def make() -> str:
        made.append(pg.create_database(url))
        return made[-1]

    yield make
    for database in made:
        pg.drop_database(url, database)


@pytest.fixture
def make_ld(request: pytest.FixtureRequest, wallets: Callable[[], str | None]) -> Iterator[MakeLd]:
    """``make_ld(options=None, peers=None, start=True, **kwargs)`` -> a started FakeLightningd.

    On the PostgreSQL run of a test, each node's lightningd has its wallet on PostgreSQL
    (``wallet``), which the plugin follows. At teardown every node is shut down and
    checked: the plugin exited cleanly, every
    custommsg hook answer was {"result": "continue"}, nothing reached lightningd that
    would have crashed it, and the plugin logged no traceback (unless the test set
    ``allow_log_errors``).
    """
    nodes: list[FakeLightningd] = []

    def make(
        options: dict[str, Any] | None = None,
        peers: dict[str, dict[str, Any]] | None = None,
        start: bool = True,
        **kwargs: Any,
    ) -> FakeLightningd:
        kwargs.setdefault("wallet", wallets())
        ld = FakeLightningd(peers=default_peers() if peers is None else peers, **kwargs)
        nodes.append(ld)
        if start:
            ld.start(options)
        return ld

    yield make

    problems: list[str] = []
    for ld in nodes:
        try:
            problems += ld.close()
        except Exception as exc:  # keep closing the others
            problems.append(f"closing the fake lightningd failed: {exc!r}")
    if problems:
        text = "teardown found problems:\n  " + "\n  ".join(problems)
        if request.node.get_closest_marker("xfail"):
            warnings.warn(text, stacklevel=1)  # the known bug is the test's own failure
        else:
            pytest.fail(text)


@pytest.fixture(scope="module")
def shared_ld() -> Iterator[FakeLightningd]:
    """One default plugin for a whole module, for tests that change no state (validation, the guard).

    Such tests compare against what they saw before (``len(ld.sent)``), not against empty lists.
    """
    ld = FakeLightningd(peers=default_peers())
    try:
        ld.start()
        yield ld
    finally:
        problems = ld.close()
    if problems:
        pytest.fail("teardown found problems:\n  " + "\n  ".join(problems))


@pytest.fixture
def ld(make_ld: MakeLd) -> FakeLightningd:
    """The plugin with its default options; peers A and B connected, OFFLINE_PEER known but offline."""
    return make_ld()
