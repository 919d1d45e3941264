"""RedisStateStore: saga state in a real Redis, shared between buses in different processes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis
from redis.backoff import NoBackoff
from redis.retry import Retry
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import RedisServer, free_port

from legacy_bus import (
    ConfigurationError,
    Event,
    EventBus,
    InMemoryStateStore,
    OverlayStateStore,
    RedisStateStore,
    Sandbox,
    StateSerializationError,
    StateStore,
)
from migration_errors import StoreUnavailable


@pytest.fixture
def store(redis_url: str):
    with RedisStateStore(redis_url) as s:
        yield s


# -- the StateStore protocol ---------------------------------------------------------


def test_it_is_a_state_store_and_round_trips_a_saga(store: RedisStateStore, redis_server: RedisServer) -> None:
    assert isinstance(store, StateStore)
    state = {"n": 1, "items": [{"sku": "a", "qty": 2}], "paid": False, "note": None, "total": 9.5, "name": "Zoë"}
    store.save("order-1", state)
    loaded = store.load("order-1")
    assert loaded == state and loaded is not state
    assert store.peek("order-1") == state
    # One JSON string at {prefix}:state:{namespace}:{saga_key}; never a pickle.
    raw = redis_server.cli("GET", "mk:state:legacy:order-1")
    assert json.loads(raw) == state
    # load hands out a fresh dict: mutating it changes nothing until save.
    loaded["n"] = 99
    assert store.load("order-1")["n"] == 1


def test_a_new_saga_loads_empty_and_peek_never_creates(store: RedisStateStore, redis_server: RedisServer) -> None:
    assert store.load("new") == {}
    assert store.peek("new") is None
    assert redis_server.cli("EXISTS", "mk:state:legacy:new") == "0"
    assert list(store.keys()) == []


def test_saving_an_empty_state_deletes_the_key(store: RedisStateStore, redis_server: RedisServer) -> None:
    store.save("s", {"n": 1})
    assert redis_server.cli("EXISTS", "mk:state:legacy:s") == "1"
    store.save("s", {})
    assert redis_server.cli("EXISTS", "mk:state:legacy:s") == "0"
    assert store.peek("s") is None and store.load("s") == {}


def test_delete_and_keys_with_namespaces_kept_apart(redis_url: str) -> None:
    with RedisStateStore(redis_url, namespace="a*", prefix="app") as a, RedisStateStore(
        redis_url, namespace="ab", prefix="app"
    ) as ab:
        for i in range(25):
            a.save(f"s{i}", {"i": i})
        ab.save("other", {"x": 1})
        # The namespace is matched literally: "a*" does not glob over "ab".
        assert sorted(a.keys()) == sorted(f"s{i}" for i in range(25))
        assert list(ab.keys()) == ["other"]
        assert a.redis_key("s1") == "app:state:a*:s1"
        for key in a.keys():  # deleting while sweeping is fine
            if key != "s3":
                a.delete(key)
        assert list(a.keys()) == ["s3"]
        a.delete("never-there")
        assert ab.peek("other") == {"x": 1}


def test_in_memory_store_has_delete_and_keys_too() -> None:
    mem = InMemoryStateStore()
    mem.save("a", {"n": 1})
    mem.save("b", {"n": 2})
    for key in mem.keys():
        mem.delete(key) if key == "a" else None
    assert list(mem.keys()) == ["b"] and mem.peek("a") is None
    mem.delete("missing")
    assert len(mem) == 1


# -- on a bus --------------------------------------------------------------------------


def test_a_bus_keeps_saga_state_in_redis(redis_url: str) -> None:
    with RedisStateStore(redis_url, namespace="orders") as states:
        bus = EventBus("orders", state_store=states)

        @bus.on("Step")
        def count(e, ctx):
            ctx.state["n"] = ctx.state.get("n", 0) + 1

        for _ in range(3):
            d = bus.publish("Step", correlation_id="saga-1")
        assert d.state == {"n": 3}
        assert bus.state_for("saga-1") == {"n": 3}
        assert states.peek("saga-1") == {"n": 3}


def test_a_sandboxed_overlay_over_redis_never_writes_to_it(store: RedisStateStore) -> None:
    bus = EventBus(state_store=store)

    @bus.on("Step")
    def count(e, ctx):
        ctx.state["n"] = ctx.state.get("n", 0) + 1

    bus.publish("Step", correlation_id="s")
    d = bus.dispatch(Event(type="Step", correlation_id="s"), sandbox=Sandbox(), states=OverlayStateStore(store))
    assert d.state == {"n": 2}
    assert store.peek("s") == {"n": 1}


CHILD = """
import json, sys
from legacy_bus import EventBus, RedisStateStore

url, namespace, saga = sys.argv[1:4]
with RedisStateStore(url, namespace=namespace) as states:
    bus = EventBus("other-process", state_store=states)

    @bus.on("Step")
    def count(e, ctx):
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        ctx.state.setdefault("seen_by", []).append("child")

    before = bus.state_for(saga)
    bus.publish("Step", correlation_id=saga)
    print(json.dumps({"before": before, "after": bus.state_for(saga)}))
"""


def test_two_buses_in_two_processes_share_one_sagas_state(redis_url: str, tmp_path: Path) -> None:
    namespace, saga = f"ns-{uuid.uuid4().hex[:8]}", "order-42"
    with RedisStateStore(redis_url, namespace=namespace) as states:
        bus = EventBus("this-process", state_store=states)

        @bus.on("Step")
        def count(e, ctx):
            ctx.state["n"] = ctx.state.get("n", 0) + 1
            ctx.state.setdefault("seen_by", []).append("parent")

        bus.publish("Step", correlation_id=saga)
        bus.publish("Step", correlation_id=saga)

        script = tmp_path / "child.py"
        script.write_text(CHILD)
        # cwd is the temp dir, so nothing in the repository can shadow the installed packages.
        out = subprocess.run(
            [sys.executable, str(script), redis_url, namespace, saga],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        seen = json.loads(out.stdout)
        assert seen["before"] == {"n": 2, "seen_by": ["parent", "parent"]}
        assert seen["after"] == {"n": 3, "seen_by": ["parent", "parent", "child"]}
        # ...and this process sees what the other one did.
        assert bus.state_for(saga) == {"n": 3, "seen_by": ["parent", "parent", "child"]}
        bus.publish("Step", correlation_id=saga)
        assert bus.state_for(saga)["n"] == 4


# -- JSON only ---------------------------------------------------------------------------


def test_a_non_json_value_names_the_saga_and_where_it_is(redis_url: str) -> None:
    with RedisStateStore(redis_url) as states:
        bus = EventBus(state_store=states)

        @bus.on("Placed")
        def remember(e, ctx):
            ctx.state["order"] = {"at": datetime.now(UTC)}

        with pytest.raises(StateSerializationError) as info:
            bus.publish("Placed", correlation_id="order-7")
        msg = str(info.value)
        assert "'order-7'" in msg and "state['order']['at']" in msg and "datetime.datetime" in msg
        assert "JSON" in msg and "isoformat" in msg
        assert isinstance(info.value, TypeError)
        assert states.peek("order-7") is None  # nothing half-written


@pytest.mark.parametrize(
    ("state", "where", "what"),
    [
        ({"ids": {1, 2}}, "state['ids']", "a set"),
        ({"m": {1: "a"}}, "state['m']", "int key"),
        ({"x": [0, math.nan]}, "state['x'][1]", "NaN"),
        ({"x": math.inf}, "state['x']", "Infinity"),
        ({"e": Event(type="A")}, "state['e']", "legacy_bus.event.Event"),
    ],
)
def test_values_json_cannot_carry_are_refused(store: RedisStateStore, state, where: str, what: str) -> None:
    with pytest.raises(StateSerializationError) as info:
        store.save("saga-x", state)
    assert "'saga-x'" in str(info.value) and where in str(info.value) and what in str(info.value)
    assert store.peek("saga-x") is None


def test_a_state_that_contains_itself_is_refused(store: RedisStateStore) -> None:
    state: dict = {"a": []}
    state["a"].append(state)
    with pytest.raises(StateSerializationError, match=r"state\['a'\]\[0\] is a dict that contains itself"):
        store.save("loop", state)


def test_tuples_are_kept_as_lists(store: RedisStateStore) -> None:
    store.save("t", {"pair": (1, "a")})
    assert store.load("t") == {"pair": [1, "a"]}


def test_a_stored_value_that_is_not_a_json_object_is_a_clear_error(store: RedisStateStore, redis_server) -> None:
    redis_server.cli("SET", "mk:state:legacy:bad", "not json")
    redis_server.cli("SET", "mk:state:legacy:list", "[1,2]")
    with pytest.raises(StateSerializationError, match=r"saga 'bad' \(Redis key 'mk:state:legacy:bad'\) is not JSON"):
        store.load("bad")
    with pytest.raises(StateSerializationError, match=r"saga 'list' .* is a JSON list, not an object"):
        store.peek("list")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(key=st.text(min_size=1, max_size=40), state=st.dictionaries(st.text(), JSON_VALUES, max_size=8))
def test_property_save_then_load_returns_an_equal_dict(redis_server: RedisServer, key: str, state: dict) -> None:
    with RedisStateStore(redis_server.url, namespace=f"prop-{uuid.uuid4().hex}") as store:
        store.save(key, state)
        assert store.load(key) == state
        assert store.peek(key) == (state or None)
        assert list(store.keys()) == ([key] if state else [])
        store.delete(key)
        assert store.peek(key) is None


# -- clients, cluster, failures ----------------------------------------------------------------


def test_an_existing_client_is_used_and_left_open(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with RedisStateStore(client, namespace="given") as store:
            store.save("s", {"n": 1})
            assert store.load("s") == {"n": 1} and list(store.keys()) == ["s"]
            assert store.client is client
        assert client.ping()  # the caller's client is still open
        assert json.loads(client.get("mk:state:given:s")) == {"n": 1}
    finally:
        client.close()


async def test_an_asyncio_client_or_a_wrong_argument_is_refused(redis_url: str) -> None:
    client = aredis.Redis.from_url(redis_url)
    try:
        with pytest.raises(ConfigurationError, match="asyncio"):
            RedisStateStore(client)
    finally:
        await client.aclose()
    with pytest.raises(ConfigurationError, match="redis://"):
        RedisStateStore("http://user:hunter2@localhost/")
    with pytest.raises(ConfigurationError, match="hash tag"):
        RedisStateStore(redis_url, namespace="{x}")
    with pytest.raises(ConfigurationError):
        RedisStateStore(object())


def test_it_works_on_redis_cluster(redis_cluster) -> None:
    redis_cluster.flushall()
    with RedisStateStore(redis_cluster.url, namespace="c") as store:
        assert type(store.client).__name__ == "RedisCluster"
        sagas = {f"order-{i}": {"n": i, "items": [i, str(i)]} for i in range(60)}
        for key, state in sagas.items():
            store.save(key, state)
        # Keys spread over several masters, and keys() walks them all.
        slots = {store.client.keyslot(store.redis_key(k)) for k in sagas}
        assert len(slots) > 30
        assert sorted(store.keys()) == sorted(sagas)
        assert all(store.load(k) == v for k, v in sagas.items())
        bus = EventBus(state_store=store)

        @bus.on("Step")
        def count(e, ctx):
            ctx.state["n"] = ctx.state.get("n", 0) + 100

        bus.publish("Step", correlation_id="order-5")
        assert bus.state_for("order-5") == {"n": 105, "items": [5, "5"]}
        for key in store.keys():
            store.save(key, {})
        assert list(store.keys()) == []


def test_unreachable_redis_is_store_unavailable_without_the_password() -> None:
    port = free_port()
    url = f"redis://alice:s3cret-Pw@127.0.0.1:{port}/0"
    with pytest.raises(StoreUnavailable) as info:
        RedisStateStore(url)
    msg = str(info.value)
    assert "s3cret-Pw" not in msg
    assert f"redis://alice:***@127.0.0.1:{port}/0" in msg
    assert "saga-state store" in msg and f"is redis-server running on 127.0.0.1:{port}" in msg


def test_a_wrong_password_is_store_unavailable_without_either_password() -> None:
    server = RedisServer.start("--requirepass", "right-pw-123")
    try:
        with pytest.raises(StoreUnavailable) as info:
            RedisStateStore(f"redis://:wrong-pw-456@127.0.0.1:{server.port}/0")
        msg = str(info.value)
        assert "wrong-pw-456" not in msg and "right-pw-123" not in msg
        assert "***" in msg and "password" in msg
        with RedisStateStore(f"redis://:right-pw-123@127.0.0.1:{server.port}/0") as store:
            store.save("s", {"ok": True})
            assert store.load("s") == {"ok": True}
            assert "right-pw-123" not in repr(store)
    finally:
        server.stop()


def test_redis_going_away_later_is_store_unavailable() -> None:
    server = RedisServer.start("--requirepass", "pw-789")
    url = f"redis://:pw-789@127.0.0.1:{server.port}/0"
    # No retries: redis-py's default (10, with backoff) would only make the test slow.
    client = redis.Redis(host="127.0.0.1", port=server.port, password="pw-789", retry=Retry(NoBackoff(), 0))
    store_url, store_client = RedisStateStore(url), RedisStateStore(client)
    try:
        store_url.save("s", {"n": 1})
        server.stop()
        for store, where in ((store_url, f"redis://:***@127.0.0.1:{server.port}/0"), (store_client, f"127.0.0.1:{server.port}")):
            for call in (lambda: store.load("s"), lambda: store.save("s", {"n": 2}), lambda: list(store.keys())):
                with pytest.raises(StoreUnavailable) as info:
                    call()
                msg = str(info.value)
                assert where in msg and "pw-789" not in msg and "is redis-server running" in msg
    finally:
        store_url.close()
        client.close()
        server.stop()


def test_legacy_bus_with_redis_state_never_loads_langgraph_or_the_checkpoints_package(redis_url):
    """The package boundary: legacy_bus knows neither LangGraph nor checkpoints (DESIGN's one-way rule)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from legacy_bus import EventBus, RedisStateStore\n"
        f"bus = EventBus('b', state_store=RedisStateStore({redis_url!r}, namespace='boundary'))\n"
        "bus.subscribe('Go', lambda e, ctx: ctx.state.update(n=1))\n"
        "bus.publish('Go', {}, correlation_id='s1')\n"
        "assert bus.state_for('s1') == {'n': 1}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('langgraph', 'checkpoints', 'migration_kit', 'graph_flows')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
