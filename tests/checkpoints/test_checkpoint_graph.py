"""The sync RedisSaver under a real LangGraph graph: interrupt, resume, time travel, durability."""

from __future__ import annotations

import operator
import uuid
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

import redis
from redis.exceptions import ResponseError

from checkpoints import AsyncRedisSaver, RedisSaver


class State(TypedDict):
    value: int
    trail: Annotated[list[str], operator.add]
    approved: str


def approval_graph():
    """``a -> b (asks for approval) -> c``."""

    def a(state: State) -> dict[str, Any]:
        return {"value": state["value"] + 1, "trail": ["a"]}

    def b(state: State) -> dict[str, Any]:
        answer = interrupt({"question": "approve?", "value": state["value"]})
        return {"approved": answer, "trail": ["b"]}

    def c(state: State) -> dict[str, Any]:
        return {"value": state["value"] * 10, "trail": ["c"]}

    builder = StateGraph(State)
    builder.add_node("a", a)
    builder.add_node("b", b)
    builder.add_node("c", c)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    return builder


def chain_graph(n: int = 4):
    builder = StateGraph(State)
    prev = START
    for i in range(1, n + 1):

        def node(state: State, _name: str = f"n{i}") -> dict[str, Any]:
            return {"value": state["value"] + 1, "trail": [_name]}

        builder.add_node(f"n{i}", node)
        builder.add_edge(prev, f"n{i}")
        prev = f"n{i}"
    builder.add_edge(prev, END)
    return builder


def _config(thread_id: str | None = None) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id or str(uuid.uuid4())}}


def test_interrupt_then_resume_completes_from_the_saved_checkpoint(redis_url: str) -> None:
    """A graph interrupted in node b resumes with Command(resume=...) and finishes; a new saver sees it."""
    config = _config()
    with RedisSaver.from_conn_string(redis_url) as saver:
        graph = approval_graph().compile(checkpointer=saver)
        first = graph.invoke({"value": 1, "trail": []}, config)
        assert first["__interrupt__"][0].value == {"question": "approve?", "value": 2}
        state = graph.get_state(config)
        assert state.next == ("b",)
        assert state.values["trail"] == ["a"]

        final = graph.invoke(Command(resume="yes"), config)
        assert final["approved"] == "yes"
        assert final["value"] == 20
        assert final["trail"] == ["a", "b", "c"]

    # A fresh process-level view (new saver, new connections) reads the same state.
    with RedisSaver.from_conn_string(redis_url) as other:
        state = approval_graph().compile(checkpointer=other).get_state(config)
        assert state.next == ()
        assert state.values == {"value": 20, "trail": ["a", "b", "c"], "approved": "yes"}


def test_time_travel_replays_and_forks_from_an_earlier_checkpoint(redis_url: str) -> None:
    """get_state_history lists every step; invoking from an earlier checkpoint re-runs only what follows it."""
    config = _config()
    with RedisSaver.from_conn_string(redis_url) as saver:
        graph = chain_graph(4).compile(checkpointer=saver)
        assert graph.invoke({"value": 0, "trail": []}, config)["trail"] == ["n1", "n2", "n3", "n4"]

        history = list(graph.get_state_history(config))
        assert [h.metadata["step"] for h in history] == [4, 3, 2, 1, 0, -1]
        ids = [h.config["configurable"]["checkpoint_id"] for h in history]
        assert ids == sorted(ids, reverse=True)
        before_n3 = next(h for h in history if h.next == ("n3",))
        assert before_n3.values["trail"] == ["n1", "n2"]

        # Replay: resuming from the checkpoint before n3 runs n3 and n4 again.
        replayed = graph.invoke(None, before_n3.config)
        assert replayed["trail"] == ["n1", "n2", "n3", "n4"]
        assert replayed["value"] == 4

        # Fork: change the past, then continue from the fork.
        forked_config = graph.update_state(before_n3.config, {"value": 100})
        forked = graph.invoke(None, forked_config)
        assert forked["value"] == 102
        assert forked["trail"] == ["n1", "n2", "n3", "n4"]

        history_after = list(graph.get_state_history(config))
        assert len(history_after) > len(history)
        # The original branch is intact: its checkpoints still read as before.
        original_end = graph.get_state(history[0].config)
        assert original_end.values["value"] == 4
        assert graph.get_state(config).values["value"] == 102


def test_history_filter_before_and_limit(redis_url: str) -> None:
    """get_state_history honours filter, before and limit."""
    config = _config()
    with RedisSaver.from_conn_string(redis_url) as saver:
        graph = chain_graph(4).compile(checkpointer=saver)
        graph.invoke({"value": 0, "trail": []}, config)
        full = list(graph.get_state_history(config))
        assert [h.metadata["step"] for h in graph.get_state_history(config, limit=2)] == [4, 3]
        assert [h.metadata["step"] for h in graph.get_state_history(config, before=full[1].config, limit=2)] == [2, 1]
        assert [h.metadata["source"] for h in graph.get_state_history(config, filter={"source": "input"})] == ["input"]


@pytest.mark.parametrize("durability", ["async", "sync", "exit"])
def test_every_durability_mode_has_the_final_state_in_redis_when_invoke_returns(redis_url: str, durability: str) -> None:
    """With each durability mode, another saver (its own connection) reads the final state right after invoke."""
    config = _config()
    with RedisSaver.from_conn_string(redis_url) as saver:
        graph = chain_graph(3).compile(checkpointer=saver)
        graph.invoke({"value": 0, "trail": []}, config, durability=durability)
        assert saver._pipe is not None and saver._pipe.pending == 0
        with RedisSaver.from_conn_string(redis_url) as reader:
            state = chain_graph(3).compile(checkpointer=reader).get_state(config)
        assert state.values == {"value": 3, "trail": ["n1", "n2", "n3"]}


@pytest.mark.parametrize("durability", ["async", "sync", "exit"])
async def test_async_saver_has_the_final_state_in_redis_when_ainvoke_returns(redis_url: str, durability: str) -> None:
    """AsyncRedisSaver follows the same rules: nothing of the run is in flight when ainvoke returns."""
    config = _config()
    async with AsyncRedisSaver.from_conn_string(redis_url) as saver:
        graph = chain_graph(3).compile(checkpointer=saver)
        await graph.ainvoke({"value": 0, "trail": []}, config, durability=durability)
        assert saver._ledger.idle() and not saver._tails
        with RedisSaver.from_conn_string(redis_url) as reader:
            state = chain_graph(3).compile(checkpointer=reader).get_state(config)
        assert state.values == {"value": 3, "trail": ["n1", "n2", "n3"]}


def _refuse_writes(url: str) -> redis.Redis:
    admin = redis.Redis.from_url(url)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")  # every write script now fails with OOM
    return admin


def test_a_write_redis_refuses_under_async_durability_fails_the_run(redis_url: str) -> None:
    """A write sent behind the run is not swallowed: Redis's OOM reaches invoke; afterwards the saver works."""
    with RedisSaver.from_conn_string(redis_url) as saver:
        graph = chain_graph(2).compile(checkpointer=saver)
        admin = _refuse_writes(redis_url)
        try:
            with pytest.raises(ResponseError, match="maxmemory"):
                graph.invoke({"value": 0, "trail": []}, _config("doomed"))
        finally:
            admin.config_set("maxmemory", "0")
        config = _config()
        assert graph.invoke({"value": 0, "trail": []}, config)["value"] == 2
        assert graph.get_state(config).values["value"] == 2


async def test_async_saver_raises_a_refused_write_from_ainvoke(redis_url: str) -> None:
    """AsyncRedisSaver: the OOM of a write made behind the run is raised by ainvoke."""
    async with AsyncRedisSaver.from_conn_string(redis_url) as saver:
        graph = chain_graph(2).compile(checkpointer=saver)
        admin = _refuse_writes(redis_url)
        try:
            with pytest.raises(ResponseError, match="maxmemory"):
                await graph.ainvoke({"value": 0, "trail": []}, _config("doomed"))
        finally:
            admin.config_set("maxmemory", "0")
        config = _config()
        assert (await graph.ainvoke({"value": 0, "trail": []}, config))["value"] == 2


def test_many_threads_stay_isolated(redis_url: str) -> None:
    """Concurrent-looking runs on different threads never see each other's state."""
    with RedisSaver.from_conn_string(redis_url) as saver:
        graph = chain_graph(2).compile(checkpointer=saver)
        configs = [_config(f"thread-{i}") for i in range(20)]
        for i, config in enumerate(configs):
            graph.invoke({"value": i * 100, "trail": []}, config)
        for i, config in enumerate(configs):
            assert graph.get_state(config).values["value"] == i * 100 + 2
        assert len({t.config["configurable"]["thread_id"] for t in saver.list(None)}) == 20
