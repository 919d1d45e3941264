"""open_checkpointer and from_conn_string: memory, SQLite (relative and absolute), Redis, bad URLs, unreachable Redis."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

import checkpoints
from checkpoints import AsyncRedisSaver, ConfigurationError, RedisSaver, StoreUnavailable, open_checkpointer
from migration_errors import MigrationKitError
from servers import free_port
from test_checkpoint_graph import chain_graph


def _run(saver: BaseCheckpointSaver) -> dict:
    graph = chain_graph(3).compile(checkpointer=saver)
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    graph.invoke({"value": 0, "trail": []}, config)
    return graph.get_state(config).values


def test_public_surface_is_sorted_and_reexports_the_shared_errors() -> None:
    """checkpoints exports its savers, open_checkpointer and the project's own error classes."""
    assert checkpoints.__all__ == sorted(checkpoints.__all__)
    assert {"AsyncRedisSaver", "RedisSaver", "open_checkpointer", "StoreUnavailable"} <= set(checkpoints.__all__)
    assert issubclass(StoreUnavailable, MigrationKitError)
    import migration_errors

    assert checkpoints.StoreUnavailable is migration_errors.StoreUnavailable


def test_memory_url_opens_an_in_memory_saver_with_close() -> None:
    """memory:// is LangGraph's InMemorySaver, closable like every other result."""
    saver = open_checkpointer("memory://")
    assert isinstance(saver, InMemorySaver)
    assert _run(saver)["value"] == 3
    saver.close()


def test_sqlite_relative_path_is_created_under_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    """sqlite:///rel/path.db is relative to the working directory; missing folders are created."""
    monkeypatch.chdir(tmp_path)
    with open_checkpointer("sqlite:///state/checkpoints.db") as saver:
        assert isinstance(saver, SqliteSaver)
        assert _run(saver)["trail"] == ["n1", "n2", "n3"]
    assert (tmp_path / "state" / "checkpoints.db").exists()


def test_sqlite_absolute_path_persists_across_opens(tmp_path: Path) -> None:
    """sqlite:////abs/path.db is absolute; a second open reads what the first wrote."""
    path = tmp_path / "abs.db"
    url = f"sqlite:///{path}"
    assert url.startswith("sqlite:////")
    saver = open_checkpointer(url)
    graph = chain_graph(2).compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "persist"}}
    graph.invoke({"value": 0, "trail": []}, config)
    saver.close()
    again = open_checkpointer(url)
    assert chain_graph(2).compile(checkpointer=again).get_state(config).values["value"] == 2
    again.close()


async def test_sqlite_saver_from_open_checkpointer_also_runs_async_graphs(tmp_path: Path) -> None:
    """The SQLite saver open_checkpointer returns supports ainvoke (async methods run in a thread)."""
    with open_checkpointer(f"sqlite:///{tmp_path / 'a.db'}") as saver:
        graph = chain_graph(2).compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "async"}}
        assert (await graph.ainvoke({"value": 0, "trail": []}, config))["value"] == 2
        assert (await graph.aget_state(config)).values["trail"] == ["n1", "n2"]


def test_redis_url_opens_a_redis_saver(redis_url: str) -> None:
    """redis://host:port/db opens RedisSaver; ttl and key_prefix are passed through."""
    saver = open_checkpointer(redis_url, key_prefix="opened", ttl=60)
    assert isinstance(saver, RedisSaver)
    assert saver.keys.prefix == "opened" and saver.ttl == 60
    assert _run(saver)["value"] == 3
    saver.close()


@pytest.mark.parametrize(
    "url",
    ["postgres://localhost/db", "mysql://x", "not a url", "redis+sentinel://h:1", "http://example.com"],
)
def test_unsupported_urls_raise_configuration_error(url: str) -> None:
    """Unknown schemes and scheme-less strings raise ConfigurationError naming the accepted forms."""
    with pytest.raises(ConfigurationError, match="memory://"):
        open_checkpointer(url)


def test_configuration_errors_never_show_the_password() -> None:
    """A bad URL with credentials is reported with the password masked."""
    with pytest.raises(ConfigurationError) as info:
        open_checkpointer("postgres://admin:hunter2@db:5432/x")
    assert "hunter2" not in str(info.value) and "***" in str(info.value)
    with pytest.raises(ConfigurationError, match="database number"):
        open_checkpointer("redis://:pw@localhost:6379/notanumber")


def test_unreachable_redis_raises_store_unavailable_with_masked_url_and_advice() -> None:
    """No server on the port: StoreUnavailable names host:port and what to check, never the password."""
    port = free_port()
    url = f"redis://app:s3cret@127.0.0.1:{port}/2"
    with pytest.raises(StoreUnavailable) as info:
        open_checkpointer(url)
    message = str(info.value)
    assert f"redis://app:***@127.0.0.1:{port}/2" in message
    assert f"is redis-server running on 127.0.0.1:{port}?" in message
    assert "check the URL, firewall, TLS and password" in message
    assert "s3cret" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__

    with pytest.raises(StoreUnavailable) as sync_cm:
        with RedisSaver.from_conn_string(url):
            pass
    assert "s3cret" not in str(sync_cm.value)


async def test_unreachable_redis_raises_store_unavailable_for_the_async_saver() -> None:
    """AsyncRedisSaver.from_conn_string fails the same way, for standalone and forced-cluster URLs."""
    port = free_port()
    for url in (f"redis://:pw@127.0.0.1:{port}/0", f"redis://:pw@127.0.0.1:{port}?cluster=true"):
        with pytest.raises(StoreUnavailable) as info:
            async with AsyncRedisSaver.from_conn_string(url):
                pass
        assert "pw@" not in str(info.value) and f"127.0.0.1:{port}" in str(info.value)


def test_a_saver_whose_server_goes_away_raises_store_unavailable(redis_server) -> None:
    """Once open, losing the server surfaces as StoreUnavailable on the next call, not a raw traceback."""
    from servers import RedisServer

    server = RedisServer.start()
    saver = RedisSaver.from_url(server.url)
    config = {"configurable": {"thread_id": "gone"}}
    assert saver.get_tuple(config) is None
    server.stop()
    with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{server.port}"):
        saver.get_tuple(config)
    saver.close()


def test_wrong_password_is_reported_as_store_unavailable() -> None:
    """A server that requires a password refuses ours: StoreUnavailable says to check the password."""
    from servers import RedisServer

    server = RedisServer.start("--requirepass", "right-one")
    try:
        bad = f"redis://:wrong-one@127.0.0.1:{server.port}/0"
        with pytest.raises(StoreUnavailable) as info:
            open_checkpointer(bad)
        assert "wrong-one" not in str(info.value) and "password" in str(info.value)
        good = open_checkpointer(f"redis://:right-one@127.0.0.1:{server.port}/0")
        assert _run(good)["value"] == 3
        good.close()
    finally:
        server.stop()
