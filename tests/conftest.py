"""Shared fixtures: real Redis servers for every test folder.

- ``redis_server`` (session): a standalone ``redis-server`` on a free loopback
  port; ``.url`` (``redis://127.0.0.1:<port>/0``), ``.port``, ``.cli(...)``.
- ``redis_url`` (function): the standalone server's URL, after ``FLUSHALL`` so
  each test starts from an empty server.
- ``redis_cluster`` (session): a 3-master Redis Cluster on loopback ports;
  ``.url`` (one node; cluster clients discover the rest), ``.ports``,
  ``.flushall()``. Started only by tests that ask for it.
- ``postgres_server`` (session): a PostgreSQL server (``initdb`` + ``pg_ctl``,
  run as a non-root user) on a free loopback port; ``postgres_url``
  (function): a fresh, empty database on it, as a SQLAlchemy URL.

The servers are real (``tests/servers.py``); if ``redis-server`` is missing the
session errors instead of skipping. No fakes of Redis.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test folders mirror the packages (tests/checkpoints, tests/legacy_bus, ...)
# and have no __init__.py; with tests/ on sys.path (pytest's rootdir conftest
# puts it there) a bare `pytest` would import them as namespace packages that
# shadow the real, editable-installed ones. The project root first avoids it.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from servers import PostgresServer, RedisCluster, RedisServer  # noqa: E402


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A standalone redis-server for the whole session (stopped at the end)."""
    server = RedisServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's standalone server, flushed before the test."""
    out = redis_server.cli("FLUSHALL")
    if out != "OK":
        raise RuntimeError(f"FLUSHALL on {redis_server.url} failed: {out!r}")
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster for the whole session (stopped at the end)."""
    cluster = RedisCluster.start(masters=3)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (stopped at the end)."""
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A SQLAlchemy URL of a new, empty database on the session's PostgreSQL server."""
    return postgres_server.create_database(f"t{next(_databases)}")


@pytest.fixture(autouse=True)
def _signal_handlers_are_left_as_found() -> Iterator[None]:
    """Code under test that takes SIGINT or SIGTERM (the CLI's worker, run_sync's Ctrl-C) puts the handler back:
    tests share a process (and, under xdist, a worker), so a leaked handler would change what runs next."""
    import signal

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    after = {sig: signal.getsignal(sig) for sig in before}
    assert after == before, f"signal handlers changed by the test: {before} -> {after}"
