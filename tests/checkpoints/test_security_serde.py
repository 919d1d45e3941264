"""Nothing read back from a checkpoint store is unpickled or turned into code.

Each test writes a real checkpoint through a real graph, then overwrites a
stored value in the store (Redis or SQLite) with a crafted one, the way an
attacker with write access to the store would, and reads it back through the
saver. Every payload would create a marker file if it ran; the marker must
never appear.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import os
import pickle
import sqlite3
from pathlib import Path
from typing import Annotated, Any, TypedDict

import ormsgpack
import pytest
import redis
from langgraph.graph import END, START, StateGraph

from checkpoints import AsyncRedisSaver, ConfigurationError, RedisSaver, open_checkpointer
from checkpoints.serde import StrictSerializer

# LangGraph's msgpack extension codes (langgraph.checkpoint.serde.jsonplus).
EXT_CONSTRUCTOR_SINGLE_ARG = 0
EXT_CONSTRUCTOR_POS_ARGS = 1
EXT_CONSTRUCTOR_KW_ARGS = 2
EXT_METHOD_SINGLE_ARG = 3
EXT_PYDANTIC_V2 = 5


class State(TypedDict):
    value: Any
    trail: Annotated[list[str], operator.add]


def graph_builder() -> StateGraph:
    def step(state: State) -> dict[str, Any]:
        return {"trail": ["step"]}

    builder = StateGraph(State)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_edge("step", END)
    return builder


CONFIG = {"configurable": {"thread_id": "victim"}}


class _Exploit:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def hostile_values(marker: Path) -> dict[str, tuple[str, bytes]]:
    """Stored ``(type, bytes)`` values that would each run ``touch marker`` if they were trusted."""
    cmd = f"touch {marker}"

    def ext(code: int, body: tuple[Any, ...]) -> bytes:
        return ormsgpack.packb(ormsgpack.Ext(code, ormsgpack.packb(body)))

    return {
        "msgpack ext: os.system(cmd)": ("msgpack", ext(EXT_CONSTRUCTOR_SINGLE_ARG, ("os", "system", cmd))),
        "msgpack ext: os.system(*args)": ("msgpack", ext(EXT_CONSTRUCTOR_POS_ARGS, ("os", "system", [cmd]))),
        "msgpack ext: subprocess.Popen(**kw)": (
            "msgpack",
            ext(EXT_CONSTRUCTOR_KW_ARGS, ("subprocess", "Popen", {"args": cmd, "shell": True})),
        ),
        "msgpack ext: method call": ("msgpack", ext(EXT_METHOD_SINGLE_ARG, ("os", "system", cmd, "__call__"))),
        "msgpack ext: pydantic-style": ("msgpack", ext(EXT_PYDANTIC_V2, ("os", "system", {"command": cmd}, "x"))),
        "pickle type tag": ("pickle", pickle.dumps(_Exploit(cmd))),
        "lc:2 constructor JSON": (
            "json",
            json.dumps({"lc": 2, "type": "constructor", "id": ["os", "system"], "args": [cmd]}).encode(),
        ),
        "lc:1 constructor JSON": (
            "json",
            json.dumps({"lc": 1, "type": "constructor", "id": ["subprocess", "getoutput"], "kwargs": {"cmd": cmd}}).encode(),
        ),
    }


def read_back(saver: Any) -> tuple[str, Any]:
    """Read the (tampered) checkpoint; returns ``("value", v)`` or ``("error", exc)``."""
    try:
        tup = saver.get_tuple(CONFIG)
    except Exception as exc:  # a refusal is fine; running the payload is not
        return "error", exc
    return "value", tup.checkpoint["channel_values"].get("value")


def test_the_default_serializer_is_strict_for_every_store(tmp_path: Path, redis_url: str) -> None:
    """RedisSaver, AsyncRedisSaver's factory and open_checkpointer (memory, sqlite, redis): StrictSerializer."""
    savers = [
        open_checkpointer("memory://"),
        open_checkpointer(f"sqlite:///{tmp_path}/cp.db"),
        open_checkpointer(redis_url),
        RedisSaver(redis.Redis.from_url(redis_url)),
        AsyncRedisSaver(redis.asyncio.Redis.from_url(redis_url)),
    ]
    for saver in savers:
        assert isinstance(saver.serde, StrictSerializer), type(saver).__name__
        assert saver.serde.pickle_fallback is False
        assert saver.serde._allowed_msgpack_modules is not True  # not LangGraph's permissive default
    for saver in savers[:3]:
        saver.close()


def test_crafted_redis_blobs_are_never_executed(redis_url: str, tmp_path: Path) -> None:
    """A hostile channel value or checkpoint in Redis is read as inert data or refused; the marker never appears."""
    marker = tmp_path / "pwned"
    client = redis.Redis.from_url(redis_url)
    outcomes = {}
    with RedisSaver.from_conn_string(redis_url) as saver:
        for name, (kind, data) in hostile_values(marker).items():
            client.flushdb()
            graph_builder().compile(checkpointer=saver).invoke({"value": "harmless", "trail": []}, CONFIG)
            # Overwrite every stored version of the `value` channel with the payload.
            [blob_key] = client.keys("lgcp:{victim}:blob:*")
            for field in client.hkeys(blob_key):
                if field.startswith(b"value\0"):
                    client.hset(blob_key, field, kind.encode() + b"\n" + data)
            outcomes[name] = read_back(saver)
            assert not marker.exists(), f"{name} ran code"
    # Blocked types come back as their plain data, never as the object.
    assert outcomes["msgpack ext: os.system(cmd)"] == ("value", f"touch {marker}")
    assert outcomes["msgpack ext: os.system(*args)"] == ("value", [f"touch {marker}"])
    assert outcomes["msgpack ext: subprocess.Popen(**kw)"] == ("value", {"args": f"touch {marker}", "shell": True})
    kind, error = outcomes["pickle type tag"]
    assert kind == "error" and isinstance(error, ConfigurationError) and "never" in str(error)
    for name in ("lc:2 constructor JSON", "lc:1 constructor JSON"):
        kind, result = outcomes[name]
        assert kind == "error" or isinstance(result, dict), (name, result)
    assert not marker.exists()


def test_a_crafted_checkpoint_record_is_refused_and_a_graph_on_it_does_not_run_it(redis_url: str, tmp_path: Path) -> None:
    """The checkpoint itself (not a channel) replaced by a pickle: reading and resuming both refuse it."""
    marker = tmp_path / "pwned"
    client = redis.Redis.from_url(redis_url)
    with RedisSaver.from_conn_string(redis_url) as saver:
        graph = graph_builder().compile(checkpointer=saver)
        graph.invoke({"value": 1, "trail": []}, CONFIG)
        [cp_key] = client.keys("lgcp:{victim}:cp:*")
        for field in client.hkeys(cp_key):
            if b":" not in field:  # <cid> -> checkpoint
                client.hset(cp_key, field, b"pickle\n" + pickle.dumps(_Exploit(f"touch {marker}")))
        with pytest.raises(ConfigurationError, match="pickle"):
            graph.invoke({"value": 2, "trail": []}, CONFIG)
        with pytest.raises(ConfigurationError, match="pickle"):
            list(saver.list(CONFIG))
    assert not marker.exists()


def test_crafted_sqlite_and_memory_checkpoints_are_never_executed(tmp_path: Path) -> None:
    """open_checkpointer's SQLite and memory savers use the same strict serializer."""
    marker = tmp_path / "pwned"
    db = tmp_path / "cp.db"
    for name, (kind, data) in hostile_values(marker).items():
        saver = open_checkpointer(f"sqlite:///{db}")
        graph_builder().compile(checkpointer=saver).invoke({"value": "harmless", "trail": []}, CONFIG)
        saver.close()
        conn = sqlite3.connect(db)
        conn.execute("UPDATE checkpoints SET type = ?, checkpoint = ?", (kind, data))
        conn.commit()
        conn.close()
        saver = open_checkpointer(f"sqlite:///{db}")
        try:
            saver.get_tuple(CONFIG)
        except Exception:
            pass
        saver.close()
        db.unlink()
        memory = open_checkpointer("memory://")
        try:
            memory.serde.loads_typed((kind, data))
        except Exception:
            pass
        assert not marker.exists(), f"{name} ran code"


@dataclasses.dataclass
class Money:
    amount: int
    currency: str


def test_allowed_types_rebuild_only_the_listed_types(redis_url: str) -> None:
    """A user's own type round-trips when listed in allowed_types; unlisted, it comes back as plain data."""
    with RedisSaver.from_conn_string(redis_url, allowed_types=[Money]) as saver:
        graph_builder().compile(checkpointer=saver).invoke({"value": Money(5, "EUR"), "trail": []}, CONFIG)
        assert saver.get_tuple(CONFIG).checkpoint["channel_values"]["value"] == Money(5, "EUR")
    with RedisSaver.from_conn_string(redis_url) as strict:
        assert strict.get_tuple(CONFIG).checkpoint["channel_values"]["value"] == {"amount": 5, "currency": "EUR"}
    with open_checkpointer(redis_url, allowed_types=[(Money.__module__, "Money")]) as by_name:
        assert by_name.get_tuple(CONFIG).checkpoint["channel_values"]["value"] == Money(5, "EUR")
    assert "Money" in repr(StrictSerializer([Money]))
    with pytest.raises(ConfigurationError, match="classes or"):
        open_checkpointer("memory://", allowed_types=["money"])


async def test_the_async_saver_takes_allowed_types_too(redis_url: str) -> None:
    async with AsyncRedisSaver.from_conn_string(redis_url, allowed_types=[Money]) as saver:
        await graph_builder().compile(checkpointer=saver).ainvoke({"value": Money(7, "USD"), "trail": []}, CONFIG)
        assert (await saver.aget_tuple(CONFIG)).checkpoint["channel_values"]["value"] == Money(7, "USD")
