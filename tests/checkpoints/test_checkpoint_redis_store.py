"""Redis specifics of the savers: round trips, TTL, key prefix, key layout, cluster slots, prune safety."""

from __future__ import annotations

import operator
import time
import uuid
from typing import Annotated, Any, TypedDict

import pytest
import redis
import redis.asyncio as aredis
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, StateGraph
from redis.cluster import RedisCluster

from checkpoints import AsyncRedisSaver, ConfigurationError, RedisSaver
from checkpoints.redis_saver import KeyScheme

# -- round-trip counting ---------------------------------------------------------

SENT = {"n": 0}


class CountingConnection(redis.Connection):
    """Counts requests written to the socket (a pipeline is one)."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        SENT["n"] += 1
        super().send_packed_command(command, check_health)


class CountingAsyncConnection(aredis.Connection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        SENT["n"] += 1
        await super().send_packed_command(command, check_health)


def _checkpoint(values: dict[str, Any], saver: Any) -> dict[str, Any]:
    cp = empty_checkpoint()
    cp["channel_values"] = dict(values)
    cp["channel_versions"] = {k: saver.get_next_version(None, None) for k in values}
    return cp


def _roundtrips(fn: Any) -> int:
    before = SENT["n"]
    fn()
    return SENT["n"] - before


def test_put_put_writes_and_get_tuple_take_one_round_trip_each(redis_url: str) -> None:
    """Counted at the socket and by the server: one request per put, put_writes and get_tuple."""
    client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection))
    admin = redis.Redis.from_url(redis_url)
    saver = RedisSaver(client)
    config = {"configurable": {"thread_id": "rt", "checkpoint_ns": ""}}
    cp = _checkpoint({"a": 1, "b": [1, 2], "c": {"x": "y"}}, saver)
    saver.get_tuple(config)  # load the scripts once; NOSCRIPT recovery is not what we count
    saver.delete_thread("warm")  # opens the write connection (its handshake is not what we count either)

    admin.config_resetstat()
    stored: dict[str, Any] = {}
    assert _roundtrips(lambda: stored.update(saver.put(config, cp, {"source": "loop", "step": 0}, cp["channel_versions"]))) == 1
    assert _roundtrips(lambda: saver.put_writes(stored, [("a", 2), ("b", [3]), ("c", None)], "task-1")) == 1
    got: list[Any] = []
    assert _roundtrips(lambda: got.append(saver.get_tuple(stored))) == 1  # by id
    assert _roundtrips(lambda: got.append(saver.get_tuple(config))) == 1  # latest
    assert got[0] == got[1]
    assert got[0].checkpoint["channel_values"] == {"a": 1, "b": [1, 2], "c": {"x": "y"}}
    assert [(w[1], w[2]) for w in got[0].pending_writes] == [("a", 2), ("b", [3]), ("c", None)]
    stats = admin.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 4
    assert "cmdstat_eval" not in stats  # scripts are cached by SHA, never resent


async def test_async_saver_takes_one_round_trip_per_operation(redis_url: str) -> None:
    """AsyncRedisSaver: one request per aput, aput_writes and aget_tuple."""
    pool = aredis.ConnectionPool.from_url(redis_url, connection_class=CountingAsyncConnection)
    client = aredis.Redis(connection_pool=pool)
    saver = AsyncRedisSaver(client)
    config = {"configurable": {"thread_id": "art", "checkpoint_ns": ""}}
    await saver.aget_tuple(config)
    cp = _checkpoint({"a": 1}, saver)
    n = SENT["n"]
    stored = await saver.aput(config, cp, {"source": "loop", "step": 0}, cp["channel_versions"])
    assert SENT["n"] - n == 1
    await saver.aput_writes(stored, [("a", 2)], "t")
    assert SENT["n"] - n == 2
    tup = await saver.aget_tuple(config)
    assert SENT["n"] - n == 3
    assert tup.pending_writes == [("t", "a", 2)]
    await client.aclose()


def test_a_run_runs_each_write_once_and_leaves_nothing_in_flight(redis_url: str) -> None:
    """Under LangGraph's async durability a 5-node run is 14 scripts in at most 14 requests, all acknowledged at return."""
    from test_checkpoint_graph import chain_graph

    client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection))
    admin = redis.Redis.from_url(redis_url)
    saver = RedisSaver(client)
    graph = chain_graph(5).compile(checkpointer=saver)
    graph.invoke({"value": 0, "trail": []}, {"configurable": {"thread_id": "warm"}})
    admin.config_resetstat()
    n = SENT["n"]
    graph.invoke({"value": 0, "trail": []}, {"configurable": {"thread_id": "wb"}})
    assert saver._pipe is not None and saver._pipe.pending == 0
    scripts_run = admin.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert scripts_run == 14  # get_tuple + 7 puts (steps -1..5) + 6 put_writes (input + 5 nodes)
    assert SENT["n"] - n <= scripts_run  # writes queued while a reply is awaited share one request


# -- TTL, prefix, layout ------------------------------------------------------------


def _thread_keys(admin: redis.Redis, prefix: str, thread_id: str) -> list[bytes]:
    return sorted(admin.scan_iter(match=f"{prefix}:{{{KeyScheme.tag(thread_id)}}}:*"))


def test_ttl_is_applied_to_every_key_of_the_thread_and_refreshed_on_write(redis_url: str) -> None:
    """With ttl, all of a thread's keys expire together; each write pushes the expiry back."""
    admin = redis.Redis.from_url(redis_url)
    saver = RedisSaver.from_url(redis_url, ttl=1.5)
    config = {"configurable": {"thread_id": "ttl", "checkpoint_ns": ""}}
    cp = _checkpoint({"a": 1}, saver)
    stored = saver.put(config, cp, {"source": "loop", "step": 0}, cp["channel_versions"])
    saver.put_writes(stored, [("a", 2)], "t")
    keys = _thread_keys(admin, "lgcp", "ttl")
    assert len(keys) == 6  # nss, idx, cp, blob, widx, w
    assert all(0 < admin.pttl(k) <= 1500 for k in keys)

    time.sleep(0.8)
    saver.put_writes(stored, [("b", 3)], "t2")  # any write refreshes the whole thread
    assert all(admin.pttl(k) > 1000 for k in keys)

    time.sleep(1.7)
    assert _thread_keys(admin, "lgcp", "ttl") == []
    assert saver.get_tuple(config) is None
    saver.close()

    untimed = RedisSaver.from_url(redis_url)
    untimed.put(config, cp, {"source": "loop", "step": 0}, cp["channel_versions"])
    assert all(admin.pttl(k) == -1 for k in _thread_keys(admin, "lgcp", "ttl"))
    untimed.close()


def test_key_prefix_is_honoured_and_isolates_savers(redis_url: str) -> None:
    """Every key starts with the prefix; savers with different prefixes never see each other's threads."""
    admin = redis.Redis.from_url(redis_url)
    config = {"configurable": {"thread_id": "shared", "checkpoint_ns": ""}}
    with RedisSaver.from_conn_string(redis_url, key_prefix="app-one") as one, RedisSaver.from_conn_string(
        redis_url, key_prefix="app-two"
    ) as two:
        cp = _checkpoint({"a": 1}, one)
        one.put(config, cp, {"source": "loop", "step": 0}, cp["channel_versions"])
        assert all(k.startswith(b"app-one:{shared}:") for k in admin.keys("*"))
        assert two.get_tuple(config) is None
        assert list(two.list(None)) == []
        assert len(list(one.list(None))) == 1
    with pytest.raises(ConfigurationError, match="braces"):
        RedisSaver(admin, key_prefix="bad{prefix}")


def test_key_layout_matches_the_documented_scheme(redis_url: str) -> None:
    """The keys and their types are the ones listed at the top of checkpoints/core.py."""
    admin = redis.Redis.from_url(redis_url)
    saver = RedisSaver.from_url(redis_url)
    config = {"configurable": {"thread_id": "layout", "checkpoint_ns": "child:1"}}
    cp = _checkpoint({"a": 1}, saver)
    stored = saver.put(config, cp, {"source": "loop", "step": 0, "run_id": "r1"}, cp["channel_versions"])
    saver.put_writes(stored, [("a", 2)], "task")
    types = {k.decode(): admin.type(k).decode() for k in admin.keys("*")}
    base = "lgcp:{layout}:"
    assert types == {
        base + "nss": "set",
        base + "idx:child:1": "zset",
        base + "cp:child:1": "hash",
        base + "blob:child:1": "hash",
        base + "widx:child:1": "zset",
        base + "w:child:1": "hash",
    }
    cid = cp["id"]
    assert set(admin.hkeys(base + "cp:child:1")) == {f"{cid}{s}".encode() for s in ("", ":m", ":p", ":b", ":r")}
    assert admin.hget(base + "cp:child:1", f"{cid}:r") == b"r1"
    saver.close()


@pytest.mark.parametrize("thread_id", ["plain", "", "=x", "a{b}c", "}{", "ünïcode thread"])
def test_awkward_thread_ids_round_trip_and_keep_one_hash_tag(redis_url: str, thread_id: str) -> None:
    """Empty ids, braces and non-ASCII ids work; every key of the thread shares one hash tag."""
    admin = redis.Redis.from_url(redis_url)
    saver = RedisSaver.from_url(redis_url)
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    cp = _checkpoint({"a": 1}, saver)
    stored = saver.put(config, cp, {"source": "loop", "step": 0}, cp["channel_versions"])
    saver.put_writes(stored, [("a", 2)], "t")
    tup = saver.get_tuple(config)
    assert tup.config["configurable"]["thread_id"] == thread_id
    assert [t.config["configurable"]["thread_id"] for t in saver.list(None)] == [thread_id]
    assert len({_slot(k) for k in admin.keys("*")}) == 1
    saver.delete_thread(thread_id)
    assert admin.keys("*") == []
    saver.close()


def _slot(key: bytes) -> bytes:
    """The hash-tag part Redis Cluster hashes (the whole key when there is no usable tag)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def test_cluster_keeps_each_thread_on_one_slot_and_spreads_threads(redis_cluster) -> None:
    """On a 3-master cluster: one slot per thread, threads spread over masters, cross-thread list sees all."""
    redis_cluster.flushall()
    with RedisSaver.from_conn_string(redis_cluster.url) as saver:
        assert isinstance(saver.client, RedisCluster)
        from test_checkpoint_graph import chain_graph

        graph = chain_graph(2).compile(checkpointer=saver)
        threads = [f"t-{i}" for i in range(12)] + ["a{b}c"]
        for t in threads:
            graph.invoke({"value": 0, "trail": []}, {"configurable": {"thread_id": t, "run_id": f"run-{t}"}})
        saver.flush()
        client = saver.client
        nodes = set()
        for t in threads:
            keys = list(client.scan_iter(match=f"lgcp:{{{KeyScheme.tag(t)}}}:*"))
            assert len(keys) == 6
            assert len({client.keyslot(k) for k in keys}) == 1
            nodes.add(client.get_node_from_key(keys[0]).name)
        assert len(nodes) >= 2
        assert {tup.config["configurable"]["thread_id"] for tup in saver.list(None)} == set(threads)
        assert graph.get_state({"configurable": {"thread_id": "a{b}c"}}).values["value"] == 2
        # delete_for_runs reaches threads on every master.
        saver.delete_for_runs(["run-t-3", "run-t-7", "run-a{b}c"])
        for gone in ("t-3", "t-7", "a{b}c"):
            assert list(saver.list({"configurable": {"thread_id": gone}})) == []
        assert saver.get_tuple({"configurable": {"thread_id": "t-4"}}) is not None


def test_cluster_mode_is_detected_or_forced_by_the_url(redis_url: str, redis_cluster) -> None:
    """from_conn_string detects a cluster; ?cluster=true forces it; standalone stays standalone."""
    with RedisSaver.from_conn_string(redis_cluster.url) as detected:
        assert isinstance(detected.client, RedisCluster)
    with RedisSaver.from_conn_string(redis_cluster.url + "?cluster=true") as forced:
        assert isinstance(forced.client, RedisCluster)
    with RedisSaver.from_conn_string(redis_url) as standalone:
        assert isinstance(standalone.client, redis.Redis)


# -- prune and DeltaChannel -----------------------------------------------------------


def _extend(state: list[str], writes: list[list[str]]) -> list[str]:
    return state + [x for w in writes for x in w]


class DeltaState(TypedDict):
    log: Annotated[list[str], DeltaChannel(_extend, snapshot_frequency=4)]
    plain: Annotated[list[str], operator.add]
    step: int


def test_prune_keep_latest_keeps_delta_channel_history_reconstructable(redis_url: str) -> None:
    """keep_latest keeps the ancestors a DeltaChannel needs; its value reads the same after pruning."""

    def step(state: DeltaState) -> dict[str, Any]:
        n = state["step"] + 1
        return {"log": [f"e{n}"], "plain": [f"p{n}"], "step": n}

    builder = StateGraph(DeltaState)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", lambda s: END if s["step"] >= 6 else "step")
    with RedisSaver.from_conn_string(redis_url) as saver:
        graph = builder.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": f"delta-{uuid.uuid4()}"}}
        graph.invoke({"log": [], "plain": [], "step": 0}, config)
        before = graph.get_state(config).values
        assert before["log"] == [f"e{i}" for i in range(1, 7)]
        n_before = len(list(saver.list(config)))

        saver.prune([config["configurable"]["thread_id"]], strategy="keep_latest")
        kept = list(saver.list(config))
        assert 1 < len(kept) < n_before  # the snapshot ancestor and the path to it survive, nothing else
        assert graph.get_state(config).values == before

        saver.prune([config["configurable"]["thread_id"]], strategy="delete")
        assert list(saver.list(config)) == []
