"""``AsyncRedisSaver``: the asyncio twin of ``RedisSaver`` (same layout, scripts, plans and durability rules).

The key layout is documented at the top of ``checkpoints/core.py``; the
rules for what a write waits for in ``checkpoints/durability.py``. Here the
writes of one thread run as one chain of tasks (each starts when the one before
it has its reply), so Redis sees them in the order LangGraph issued them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Unpack

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from redis.exceptions import NoPermissionError, NoScriptError

import checkpoints.scripts as scripts
from checkpoints.core import EVAL, FENCE, ITEM, SCAN, ListOptions, Plan, RedisSaverCore, SaverOptions, prepared_options
from checkpoints.durability import AckLedger, Policy
from checkpoints.scripts import Script
from redis_connect.connection import UNREACHABLE, aconnect, unavailable

__all__ = ["AsyncRedisSaver", "through_loop"]


def through_loop(name: str) -> Callable[..., Any]:
    """The sync twin of the async method ``name``: the same call, run on the saver's event loop and waited for.

    Written once rather than once per method; the twin takes exactly the async
    method's arguments (its signature is ``BaseCheckpointSaver``'s, shown through
    ``__wrapped__``).
    """

    @functools.wraps(getattr(BaseCheckpointSaver, name[1:]))
    def twin(self: AsyncRedisSaver, *args: Any, **kwargs: Any) -> Any:
        return self._sync(getattr(self, name)(*args, **kwargs))

    twin.__doc__ = f"Sync ``{name}``, from a thread other than the saver's event loop."
    return twin


class AsyncRedisSaver(RedisSaverCore):
    """LangGraph checkpoint saver on plain Redis for asyncio (``ainvoke``, ``astream``).

    One round trip per ``aput``, ``aput_writes`` and ``aget_tuple``; standalone
    Redis, Valkey or Redis Cluster. The sync methods also work when called from
    another thread than the saver's event loop (e.g. ``graph.invoke`` in a
    worker thread); on the loop itself they raise, as blocking it would deadlock.

    Args:
        client: A ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``
            created with ``decode_responses=False``.
        ttl: Seconds a thread lives after its last write; ``None`` keeps it forever.
        key_prefix: Prefix of every key (no braces).
        serde: Serializer; defaults to ``checkpoints.serde.StrictSerializer``
            (LangGraph's ``JsonPlusSerializer``, no pickle, strict allowlist).
        allowed_types: Extra types checkpoints may rebuild (classes or ``(module, name)``).
        encryption_key: AES key to encrypt checkpoints at rest; ``None`` reads
            ``MIGRATION_KIT_CHECKPOINT_KEY``.

    Example:
        ```python
        async with AsyncRedisSaver.from_conn_string("redis://localhost:6379/0") as saver:
            graph = builder.compile(checkpointer=saver)
            await graph.ainvoke(inputs, {"configurable": {"thread_id": "t-1"}})
        ```
    """

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._ledger = AckLedger()
        self._tails: dict[str, asyncio.Future[None]] = {}  # per thread: its newest write's task
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    @classmethod
    @asynccontextmanager
    async def from_conn_string(cls, url: str, **options: Unpack[SaverOptions]) -> AsyncIterator[AsyncRedisSaver]:
        """Open a saver for ``url`` (cluster detected, or forced by ``?cluster=true``); close it on exit.

        Raises:
            StoreUnavailable: Redis cannot be reached.
            ConfigurationError: the URL or an option is invalid.
        """
        prepared = prepared_options("from_conn_string", options)  # fail before connecting
        client = await aconnect(url)
        try:
            saver = cls(client, owns_client=True, url=url, **prepared)
            for script in scripts.ALL_SCRIPTS:  # so no hot-path call pays a NOSCRIPT round trip
                await client.script_load(script.source)
        except (*UNREACHABLE, NoPermissionError) as e:  # NOPERM: an ACL user without SCRIPT/EVALSHA
            await client.aclose()
            raise unavailable(url, e) from None
        except BaseException:
            await client.aclose()
            raise
        try:
            yield saver
        finally:
            await saver.aclose()

    async def aclose(self) -> None:
        """Wait for the writes in flight, then close the Redis client if this saver opened it."""
        try:
            await self.aflush()
        finally:
            if self._owns_client:
                await self.client.aclose()

    async def aflush(self) -> None:
        """Wait until every checkpoint write made so far is acknowledged; raise a failed one (once)."""
        while self._tails:
            await asyncio.wait(list(self._tails.values()))
        error = self._ledger.take_error()
        if error is not None:
            raise error

    # -- durability: the rules of checkpoints/durability.py on chains of tasks --

    async def _write(self, base: str, script: Script, keys: list[str], args: list[Any], policy: Policy) -> None:
        ledger = self._ledger
        error = ledger.take_error(base)
        if error is not None:
            raise error
        seq = ledger.sent(base)
        task = asyncio.ensure_future(self._chained(self._tails.get(base), base, seq, script, keys, args))
        self._tails[base] = task
        ticket = ledger.ticket(base, seq, policy)
        if ticket is not None:
            await self._until(base, ticket)

    async def _chained(
        self, prev: asyncio.Future[None] | None, base: str, seq: int, script: Script, keys: list[str], args: list[Any]
    ) -> None:
        if prev is not None and not prev.done():
            await asyncio.wait([prev])
        error: BaseException | None = None
        try:
            await self._eval(script, keys, args)
        except Exception as e:  # noqa: BLE001 - recorded, raised to whoever waits for this write
            error = e
        finally:
            self._ledger.acked(base, seq, error)
            if self._tails.get(base) is asyncio.current_task():
                del self._tails[base]

    async def _until(self, base: str, ticket: Any) -> None:
        while not self._ledger.satisfied(base, ticket):
            await asyncio.wait([self._tails[base]])
        error = self._ledger.release(base, ticket)
        if error is not None:
            raise error

    async def _fence(self, thread_id: Any) -> None:
        base = self.keys.base(str(thread_id))
        ticket = self._ledger.fence(base)
        if ticket is not None:
            await self._until(base, ticket)

    # -- I/O ------------------------------------------------------------------

    async def _eval(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        try:
            try:
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                for each in scripts.ALL_SCRIPTS:  # one NOSCRIPT reloads them all
                    await self.client.script_load(each.source)
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)
        except UNREACHABLE as e:
            raise unavailable(self._url, e) from None

    async def _scan(self, pattern: str) -> list[bytes]:
        try:
            return [k async for k in self.client.scan_iter(match=pattern, count=1000)]
        except UNREACHABLE as e:
            raise unavailable(self._url, e) from None

    async def _drive(self, plan: Plan) -> AsyncIterator[Any]:
        reply = None
        while True:
            try:
                op = plan.send(reply)
            except StopIteration:
                return
            kind = op[0]
            if kind == ITEM:
                reply = None
                yield op[1]
            elif kind == EVAL:
                reply = await self._eval(op[1], op[2], op[3])
            elif kind == SCAN:
                reply = await self._scan(op[1])
            elif kind == FENCE:
                reply = await self._fence(op[1])
            else:  # SETTLE
                reply = await self.aflush()

    async def _run(self, plan: Plan) -> None:
        async for _ in self._drive(plan):
            pass

    # -- async BaseCheckpointSaver -------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async ``get_tuple``: a checkpoint (the newest without ``checkpoint_id``) with its blobs and writes, one round trip."""
        keys, args = self._get_call(config)
        await self._fence(config["configurable"]["thread_id"])
        return self._first_tuple(config, await self._eval(scripts.FETCH, keys, args))

    async def alist(self, config: RunnableConfig | None, **options: Unpack[ListOptions]) -> AsyncIterator[CheckpointTuple]:
        """Async ``list``: checkpoints newest first; ``config=None`` lists every thread (SCAN on all masters)."""
        async for item in self._drive(self._list_plan(config, **options)):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async ``put``: the checkpoint stored atomically, awaited as the run's durability says."""
        write, out = self._put_write(config, checkpoint, metadata, new_versions)
        await self._write(*write)
        return out

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Async ``put_writes``: the task's pending writes stored atomically, awaited as the run's durability says."""
        write = self._put_writes_write(config, writes, task_id, task_path)
        if write is not None:
            await self._write(*write)

    async def adelete_thread(self, thread_id: str) -> None:
        """Async ``delete_thread``: the whole thread deleted, behind its writes in flight."""
        await self._write(*self._delete_thread_write(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async ``delete_for_runs``: these runs' checkpoints (and writes) deleted in every thread."""
        await self._run(self._delete_for_runs_plan(run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async ``copy_thread``: every checkpoint, blob and write of one thread copied into another (merging)."""
        await self._run(self._copy_plan(source_thread_id, target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Async ``prune``: only the newest checkpoint per namespace kept (``keep_latest``, DeltaChannel-safe), or all deleted."""
        await self._run(self._prune_plan(thread_ids, strategy))

    # -- sync API: from another thread, through the saver's event loop --------

    def _sync(self, coro: Any) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is self.loop:
            coro.close()
            raise asyncio.InvalidStateError(
                "AsyncRedisSaver's sync methods cannot run on its own event loop; "
                "use the async methods (await saver.aget_tuple(...), await graph.ainvoke(...)) "
                "or RedisSaver for sync code"
            )
        if self.loop is None or not self.loop.is_running():
            coro.close()
            raise asyncio.InvalidStateError(
                "AsyncRedisSaver's sync methods need the saver's event loop running in another thread; "
                "use RedisSaver for sync code"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    get_tuple = through_loop("aget_tuple")
    put = through_loop("aput")
    put_writes = through_loop("aput_writes")
    delete_thread = through_loop("adelete_thread")
    delete_for_runs = through_loop("adelete_for_runs")
    copy_thread = through_loop("acopy_thread")
    prune = through_loop("aprune")

    def list(self, config: RunnableConfig | None, **options: Unpack[ListOptions]) -> Iterator[CheckpointTuple]:
        """Sync ``alist``, from a thread other than the saver's event loop."""

        async def collect() -> list[CheckpointTuple]:
            return [t async for t in self.alist(config, **options)]

        return iter(self._sync(collect()))
