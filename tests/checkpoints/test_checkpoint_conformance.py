"""LangGraph's own conformance suite on AsyncRedisSaver: a single server and a 3-master cluster."""

from __future__ import annotations

from langgraph.checkpoint.conformance import validate
from langgraph.checkpoint.conformance.initializer import checkpointer_test
from langgraph.checkpoint.conformance.report import ProgressCallbacks

from checkpoints import AsyncRedisSaver
from redis_connect.connection import is_cluster

ALL_CAPABILITIES = 8


async def _validate(url: str, name: str, *, cluster: bool):
    modes: list[bool] = []

    @checkpointer_test(name=name)
    async def factory():
        async with AsyncRedisSaver.from_conn_string(url) as saver:
            modes.append(is_cluster(saver.client))
            yield saver

    report = await validate(factory, progress=ProgressCallbacks.verbose())
    report.print_report()
    assert modes and set(modes) == {cluster}, f"expected cluster={cluster}, saw {modes}"
    return report


def _assert_full(report) -> None:
    failures = {name: r.failures for name, r in report.results.items() if r.passed is not True}
    passed = sum(1 for r in report.results.values() if r.detected and r.passed is True)
    assert not failures, failures
    assert passed == ALL_CAPABILITIES, report.to_dict()


async def test_conformance_passes_all_capabilities_on_single_server(redis_url: str) -> None:
    """validate() reports 8/8 capabilities for AsyncRedisSaver on a standalone redis-server."""
    _assert_full(await _validate(redis_url, "AsyncRedisSaver (standalone)", cluster=False))


async def test_conformance_passes_all_capabilities_on_cluster(redis_cluster) -> None:
    """validate() reports 8/8 capabilities for AsyncRedisSaver on a 3-master Redis Cluster."""
    redis_cluster.flushall()
    _assert_full(await _validate(redis_cluster.url, "AsyncRedisSaver (cluster)", cluster=True))
