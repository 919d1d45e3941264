"""Deleting from the saver never blocks Redis: prunes go in bounded batches, whole keys are UNLINKed."""

from __future__ import annotations

import operator
import uuid
from typing import Annotated, Any, TypedDict

import redis
from langgraph.graph import END, START, StateGraph

from checkpoints import RedisSaver
from checkpoints import core as saver_module


class Count(TypedDict):
    seen: Annotated[list[int], operator.add]
    n: int


def counter() -> StateGraph:
    def step(state: Count) -> dict[str, Any]:
        return {"seen": [state["n"]], "n": state["n"] + 1}

    builder = StateGraph(Count)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_edge("step", END)
    return builder


def calls(r: redis.Redis, command: str) -> int:
    return int((r.info("commandstats").get(f"cmdstat_{command}") or {}).get("calls", 0))


def test_a_long_thread_is_pruned_in_bounded_batches_to_its_newest_checkpoint_with_its_state_intact(redis_url, monkeypatch):
    monkeypatch.setattr(saver_module, "PRUNE_BATCH", 4)
    r = redis.Redis.from_url(redis_url)
    with RedisSaver.from_conn_string(redis_url) as saver:
        graph = counter().compile(checkpointer=saver)
        config = {"configurable": {"thread_id": f"long-{uuid.uuid4()}"}}
        graph.invoke({"seen": [], "n": 0}, config)
        for _ in range(9):
            graph.invoke({"seen": []}, config)
        before = graph.get_state(config).values
        n_before = len(list(saver.list(config)))
        assert n_before > 3 * 4
        evals = calls(r, "evalsha") + calls(r, "eval")
        saver.prune([config["configurable"]["thread_id"]], strategy="keep_latest")
        used = calls(r, "evalsha") + calls(r, "eval") - evals
        assert len(list(saver.list(config))) == 1
        assert graph.get_state(config).values == before and before["seen"] == list(range(10))
        # one skeleton read, then one delete per batch of at most PRUNE_BATCH checkpoints
        assert used == 1 + -(-(n_before - 1) // 4)
        graph.invoke({"seen": []}, config)  # the pruned thread goes on from its newest checkpoint
        assert graph.get_state(config).values["seen"] == list(range(11))


def test_deleting_a_thread_unlinks_its_keys_and_never_deletes_them_in_the_foreground(redis_url):
    r = redis.Redis.from_url(redis_url)
    r.config_resetstat()
    with RedisSaver.from_conn_string(redis_url) as saver:
        graph = counter().compile(checkpointer=saver)
        config = {"configurable": {"thread_id": f"gone-{uuid.uuid4()}"}}
        for i in range(3):
            graph.invoke({"seen": [], "n": i} if i == 0 else {"seen": []}, config)
        saver.delete_thread(config["configurable"]["thread_id"])
        assert list(saver.list(config)) == []
    assert calls(r, "unlink") > 0 and calls(r, "del") == 0
    assert not list(r.scan_iter("*gone-*"))
