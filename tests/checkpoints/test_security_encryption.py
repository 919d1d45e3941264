"""Checkpoints encrypted at rest with LangGraph's EncryptedSerializer (AES-EAX) when a key is configured."""

from __future__ import annotations

import base64
import operator
import os
import re
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
import redis
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from checkpoints import AsyncRedisSaver, ConfigurationError, RedisSaver, open_checkpointer
from checkpoints.serde import StrictSerializer

MARKER = "CARD-4111-1111-1111-1111"
KEY = os.urandom(32)
CONFIG = {"configurable": {"thread_id": "enc"}}


class State(TypedDict):
    card: str
    trail: Annotated[list[str], operator.add]
    approved: str


def approval_graph() -> StateGraph:
    """``take -> approve (interrupts) -> charge``: the card number is in state across the interrupt."""

    def take(state: State) -> dict[str, Any]:
        return {"trail": [f"took {state['card']}"]}

    def approve(state: State) -> dict[str, Any]:
        return {"approved": interrupt({"card": state["card"]}), "trail": ["approve"]}

    def charge(state: State) -> dict[str, Any]:
        return {"trail": [f"charged {state['card']} ({state['approved']})"]}

    builder = StateGraph(State)
    for name, fn in (("take", take), ("approve", approve), ("charge", charge)):
        builder.add_node(name, fn)
    builder.add_edge(START, "take")
    builder.add_edge("take", "approve")
    builder.add_edge("approve", "charge")
    builder.add_edge("charge", END)
    return builder


def raw_redis_bytes(url: str) -> bytes:
    """Every key and value in the database, concatenated."""
    client = redis.Redis.from_url(url)
    out = []
    for key in client.scan_iter(count=1000):
        out.append(key)
        kind = client.type(key)
        if kind == b"hash":
            for f, v in client.hgetall(key).items():
                out += [f, v]
        elif kind == b"zset":
            out += client.zrange(key, 0, -1)
        elif kind == b"set":
            out += list(client.smembers(key))
        elif kind == b"string":
            out.append(client.get(key))
    client.close()
    return b"\0".join(out)


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIGRATION_KIT_CHECKPOINT_KEY", raising=False)


def test_with_a_key_redis_holds_no_plaintext_and_the_graph_resumes(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """encryption_key=: no byte of the card number in Redis; a new saver (key from the env) resumes the graph."""
    with open_checkpointer(redis_url, encryption_key=KEY) as saver:
        assert isinstance(saver.serde, EncryptedSerializer) and isinstance(saver.serde.serde, StrictSerializer)
        graph = approval_graph().compile(checkpointer=saver)
        graph.invoke({"card": MARKER, "trail": []}, CONFIG)
        assert graph.get_state(CONFIG).next == ("approve",)
    raw = raw_redis_bytes(redis_url)
    assert len(raw) > 500  # checkpoints, blobs and writes are there ...
    assert MARKER.encode() not in raw  # ... but the card number is not, in any encoding LangGraph uses
    # Channel versions are plaintext by design ("<32-digit counter>.<random fraction>", in keys and in the
    # checkpoint's blob list); their random digits may hold "4111", so they are left out of this check.
    assert b"4111" not in re.sub(rb"\d{32}\.\d\.\d+", b"", raw)

    monkeypatch.setenv("MIGRATION_KIT_CHECKPOINT_KEY", base64.b64encode(KEY).decode())
    with RedisSaver.from_conn_string(redis_url) as saver:
        graph = approval_graph().compile(checkpointer=saver)
        final = graph.invoke(Command(resume="yes"), CONFIG)
    assert final["trail"] == [f"took {MARKER}", "approve", f"charged {MARKER} (yes)"]
    assert MARKER.encode() not in raw_redis_bytes(redis_url)


def test_a_wrong_key_fails_reading_with_a_clear_error(redis_url: str) -> None:
    with RedisSaver.from_conn_string(redis_url, encryption_key=KEY) as saver:
        approval_graph().compile(checkpointer=saver).invoke({"card": MARKER, "trail": []}, CONFIG)
    other = os.urandom(32).hex()
    with RedisSaver.from_conn_string(redis_url, encryption_key=other) as saver:
        with pytest.raises(ConfigurationError, match="cannot decrypt a checkpoint value: the encryption key") as info:
            saver.get_tuple(CONFIG)
        assert other not in str(info.value) and KEY.hex() not in str(info.value)
        with pytest.raises(ConfigurationError, match="cannot decrypt"):
            approval_graph().compile(checkpointer=saver).invoke(Command(resume="yes"), CONFIG)
    with RedisSaver.from_conn_string(redis_url) as no_key:
        with pytest.raises(ConfigurationError, match="encrypted .* no key is configured.*MIGRATION_KIT_CHECKPOINT_KEY"):
            no_key.get_tuple(CONFIG)


def test_checkpoints_written_before_the_key_stay_readable(redis_url: str) -> None:
    """Turning encryption on in place: old plaintext checkpoints still load, new ones are encrypted."""
    with RedisSaver.from_conn_string(redis_url) as saver:
        approval_graph().compile(checkpointer=saver).invoke({"card": MARKER, "trail": []}, CONFIG)
    with RedisSaver.from_conn_string(redis_url, encryption_key=KEY) as saver:
        final = approval_graph().compile(checkpointer=saver).invoke(Command(resume="ok"), CONFIG)
    assert final["trail"][-1] == f"charged {MARKER} (ok)"


async def test_the_async_saver_encrypts_too(redis_url: str) -> None:
    async with AsyncRedisSaver.from_conn_string(redis_url, encryption_key=KEY.hex()) as saver:
        graph = approval_graph().compile(checkpointer=saver)
        await graph.ainvoke({"card": MARKER, "trail": []}, CONFIG)
        final = await graph.ainvoke(Command(resume="yes"), CONFIG)
    assert final["trail"][-1] == f"charged {MARKER} (yes)"
    assert MARKER.encode() not in raw_redis_bytes(redis_url)


def test_sqlite_and_memory_checkpoints_are_encrypted_with_a_key_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGRATION_KIT_CHECKPOINT_KEY", KEY.hex())
    db = tmp_path / "cp.db"
    with open_checkpointer(f"sqlite:///{db}") as saver:
        approval_graph().compile(checkpointer=saver).invoke({"card": MARKER, "trail": []}, CONFIG)
    assert MARKER.encode() not in db.read_bytes()
    with open_checkpointer(f"sqlite:///{db}") as saver:
        final = approval_graph().compile(checkpointer=saver).invoke(Command(resume="y"), CONFIG)
    assert final["trail"][-1] == f"charged {MARKER} (y)"
    memory = open_checkpointer("memory://")
    assert isinstance(memory.serde, EncryptedSerializer)


@pytest.mark.parametrize("key", ["short", "zz" * 32, b"12345", "c2hvcnQ="])
def test_a_malformed_key_is_refused_without_echoing_it(key: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="16, 24 or 32 bytes") as info:
        open_checkpointer("memory://", encryption_key=key)
    assert str(key) not in str(info.value)
    monkeypatch.setenv("MIGRATION_KIT_CHECKPOINT_KEY", "not-a-key")
    with pytest.raises(ConfigurationError, match="MIGRATION_KIT_CHECKPOINT_KEY is not a valid AES key"):
        open_checkpointer("memory://")


def test_a_replays_saved_saga_state_is_encrypted_like_checkpoints_and_resumes(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3
    import threading

    from graph_flows import flow_from_bus
    from legacy_bus import Event, EventBus, EventLog
    from migration_kit import Migration
    from migration_kit.run.resume import ReplayInterrupted

    monkeypatch.setenv("MIGRATION_KIT_CHECKPOINT_KEY", KEY.hex())
    bus = EventBus("vault")

    @bus.on("Deposit")
    def deposit(e, ctx):
        ctx.state["pin"] = e.payload["pin"]
        ctx.state["n"] = ctx.state.get("n", 0) + 1

    log = tmp_path / "events.jsonl"
    with EventLog(log).writer() as w:
        for i in range(20):
            w.append(Event(type="Deposit", payload={"pin": f"pin-{i:04d}-secret"}, correlation_id=f"acct-{i % 3}"))
    store = f"sqlite:///{tmp_path / 'store.db'}"
    stop = threading.Event()

    def halt(comparison, tally):
        if tally.total == 10:
            stop.set()

    m = Migration("vault", legacy=bus, candidate=flow_from_bus(bus), store=store)
    with pytest.raises(ReplayInterrupted):
        m.replay(log, on_result=halt, stop=stop)
    m.close()
    raw = b"".join(
        (v if isinstance(v, bytes) else str(v).encode())
        for row in sqlite3.connect(tmp_path / "store.db").execute("SELECT value FROM mk_docs")
        for v in row
    )
    assert b"acct-0" in raw or b"Deposit" in raw  # the progress was saved...
    assert b"-secret" not in raw  # ...with the saga state encrypted
    report = Migration("vault", legacy=bus, candidate=flow_from_bus(bus), store=store).replay(log, resume=True)
    assert (report.total, report.divergent, report.errors) == (20, 0, 0)
