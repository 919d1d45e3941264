"""``RedisSaver``: LangGraph checkpoint saver on plain Redis (standalone or Cluster), the sync driver.

The key layout, the encoding and the multi-step plans live in ``checkpoints/core.py``
(shared with ``AsyncRedisSaver``); this module runs them with blocking calls. Writes
(``PUT``, ``PUT_WRITES``, ``DELETE_THREAD``) of a standalone server go over one
pipelined connection (``checkpoints/pipeline.py``), so Redis applies a thread's
scripts in the order LangGraph issued them; what waits for their replies is the
run's durability (``checkpoints/durability.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Unpack

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from redis.exceptions import NoPermissionError, NoScriptError, ResponseError

import checkpoints.scripts as scripts
from checkpoints.core import (
    DEFAULT_KEY_PREFIX,
    EVAL,
    FENCE,
    ITEM,
    SCAN,
    KeyScheme,
    ListOptions,
    Plan,
    RedisSaverCore,
    SaverOptions,
    prepared_options,
)
from checkpoints.durability import Policy
from checkpoints.pipeline import Pipeline
from checkpoints.scripts import Script
from checkpoints.threaded import ThreadedAsync, in_thread
from migration_errors import StoreUnavailable
from redis_connect.connection import UNREACHABLE, connect, is_cluster, unavailable

__all__ = ["DEFAULT_KEY_PREFIX", "KeyScheme", "RedisSaver", "resp_command"]


def resp_command(args: Sequence[Any]) -> bytes:
    """Encode one command in RESP (what redis-py's packer does, without its per-call overhead)."""
    out = [b"*%d\r\n" % len(args)]
    append = out.append
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif not isinstance(arg, (bytes, bytearray, memoryview)):
            arg = str(arg).encode()
        append(b"$%d\r\n" % len(arg))
        append(arg)
        append(b"\r\n")
    return b"".join(out)


class RedisSaver(ThreadedAsync, RedisSaverCore):
    """LangGraph checkpoint saver on plain Redis (sync; async methods run in a thread).

    One script call per ``put``, ``put_writes`` and ``get_tuple``; works on a
    standalone server, Valkey, or a Redis Cluster (per-thread hash tags).

    Writes follow the durability of the run that makes them (see
    ``checkpoints/durability.py``): under LangGraph's default
    ``durability="async"`` they go out pipelined on one ordered connection
    while the graph moves on, and the run's writes are acknowledged by Redis
    before ``invoke`` returns; under ``"sync"`` each checkpoint is
    acknowledged before the next step; under ``"exit"`` the run's writes go
    out together at its end and are acknowledged before it returns. A read of
    a thread (``get_tuple``, ``list``) first waits for that thread's writes in
    flight. On a Redis Cluster every write waits for its own reply.

    Args:
        client: A ``redis.Redis`` or ``redis.cluster.RedisCluster`` created with
            ``decode_responses=False``.
        ttl: Seconds a thread lives after its last write; ``None`` keeps it forever.
        key_prefix: Prefix of every key (no braces).
        serde: Serializer; defaults to ``checkpoints.serde.StrictSerializer``
            (LangGraph's ``JsonPlusSerializer``, no pickle, strict allowlist).
        allowed_types: Extra types checkpoints may rebuild (classes or
            ``(module, name)``), beside LangGraph's safe ones; others come back
            as plain data.
        encryption_key: AES key (16/24/32 bytes, or hex/base64 text) to encrypt
            checkpoints at rest; ``None`` reads ``MIGRATION_KIT_CHECKPOINT_KEY``.

    Example:
        ```python
        with RedisSaver.from_conn_string("redis://localhost:6379/0") as saver:
            graph = builder.compile(checkpointer=saver)
        ```
    """

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        # On a standalone server, script calls go over private connections
        # (same class and options as the client's pool) with pre-encoded RESP:
        # redis-py's generic command path costs more CPU than the round trip.
        pool = getattr(client, "connection_pool", None)
        self._direct = pool is not None and not is_cluster(client) and getattr(client, "connection", None) is None
        self._pool = pool
        self._idle: list[Any] = []
        self._idle_lock = threading.Lock()
        self._pipe: Pipeline | None = Pipeline(self._connection, self._load_scripts, self._url) if self._direct else None

    @classmethod
    @contextmanager
    def from_conn_string(cls, url: str, **options: Unpack[SaverOptions]) -> Iterator[RedisSaver]:
        """Open a saver for ``url`` (cluster detected, or forced by ``?cluster=true``); close it on exit.

        Raises:
            StoreUnavailable: Redis cannot be reached.
            ConfigurationError: the URL or an option is invalid.
        """
        saver = cls.from_url(url, **options)
        try:
            yield saver
        finally:
            saver.close()

    @classmethod
    def from_url(cls, url: str, **options: Unpack[SaverOptions]) -> RedisSaver:
        """Open a saver for ``url`` that the caller closes with ``close()`` (options: ``SaverOptions``)."""
        prepared = prepared_options("from_url", options)  # fail before connecting
        client = connect(url)
        try:
            saver = cls(client, owns_client=True, url=url, **prepared)
            saver._load_scripts()  # so no hot-path call pays a NOSCRIPT round trip
            return saver
        except BaseException:
            client.close()
            raise

    def __enter__(self) -> RedisSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Wait for the writes in flight (10s at most), then close the Redis client if this saver opened it."""
        try:
            self.flush(10.0)
        finally:
            if self._pipe is not None:
                self._pipe.close()
            with self._idle_lock:
                idle, self._idle = self._idle, []
            for conn in idle:
                conn.disconnect()
            if self._owns_client:
                self.client.close()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every checkpoint write sent so far is acknowledged by Redis.

        Runs return with their writes acknowledged already; this is for writes
        queued on purpose (``_queue_delete_thread``) and for failures nobody
        waited for.

        Raises:
            StoreUnavailable: the timeout passed first.
            Exception: a write failed (its error, once).
        """
        if self._pipe is not None and not self._pipe.flush(timeout):
            raise StoreUnavailable(
                f"{self._pipe.pending} checkpoint writes to {self._url} were not acknowledged within {timeout}s"
            )

    def _write(self, base: str, script: Script, keys: list[str], args: list[Any], policy: Policy) -> None:
        """One script call of thread ``base``: pipelined and waited for as ``policy`` says, or a plain call."""
        if self._pipe is None:
            self._eval(script, keys, args)
        else:
            self._pipe.send(base, resp_command(["EVALSHA", script.sha, len(keys), *keys, *args]), policy)

    def _fence(self, thread_id: Any) -> None:
        if self._pipe is not None:
            self._pipe.fence(self.keys.base(str(thread_id)))

    def _queue_delete_thread(self, thread_id: str) -> None:
        """Delete a thread behind its writes in flight, without waiting (``flush()`` waits)."""
        self._write(*self._delete_thread_write(thread_id, Policy.QUEUED))

    def _connection(self) -> Any:
        conn = self._pool.connection_class(**self._pool.connection_kwargs)
        try:
            conn.connect()
        except UNREACHABLE as e:
            raise unavailable(self._url, e) from None
        return conn

    def _take(self) -> Any:
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()
        return self._pool.connection_class(**self._pool.connection_kwargs)

    def _give(self, conn: Any) -> None:
        with self._idle_lock:
            if len(self._idle) < 16:
                self._idle.append(conn)
                return
        conn.disconnect()

    def _load_scripts(self, needed: set[Script] | None = None) -> None:
        """SCRIPT LOAD every script (on every master of a cluster): one NOSCRIPT reloads them all."""
        try:
            for script in scripts.ALL_SCRIPTS:
                self.client.script_load(script.source)
        except (*UNREACHABLE, NoPermissionError) as e:  # NOPERM: an ACL user without SCRIPT/EVALSHA
            raise unavailable(self._url, e) from None

    # -- I/O ------------------------------------------------------------------

    def _eval(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        if self._direct:
            return self._direct_eval(script, keys, args)
        try:
            try:
                return self.client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                self._load_scripts()
                return self.client.evalsha(script.sha, len(keys), *keys, *args)
        except UNREACHABLE as e:
            raise unavailable(self._url, e) from None

    def _direct_eval(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        packed = resp_command(["EVALSHA", script.sha, len(keys), *keys, *args])
        for attempt in (1, 2, 3):
            conn = self._take()
            try:
                conn.send_packed_command([packed], check_health=False)
                reply = conn.read_response()
            except NoScriptError:
                self._give(conn)
                if attempt == 3:
                    raise
                self._load_scripts({script})
                continue
            except ResponseError:
                self._give(conn)  # the reply was read in full; the connection is clean
                raise
            except UNREACHABLE as e:
                conn.disconnect()
                if attempt == 3:
                    raise unavailable(self._url, e) from None
                continue  # every script is idempotent, so one retry after a dropped connection is safe
            except BaseException:
                conn.disconnect()
                raise
            self._give(conn)
            return reply
        raise AssertionError("unreachable")

    def _drive(self, plan: Plan) -> Iterator[Any]:
        reply = None
        while True:
            try:
                op = plan.send(reply)
            except StopIteration as stop:
                return stop.value
            kind = op[0]
            if kind == ITEM:
                reply = None
                yield op[1]
            elif kind == EVAL:
                reply = self._eval(op[1], op[2], op[3])
            elif kind == SCAN:
                reply = self._scan(op[1])
            elif kind == FENCE:
                reply = self._fence(op[1])
            else:  # SETTLE
                reply = self._settle()

    def _run(self, plan: Plan) -> Any:
        gen = self._drive(plan)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return stop.value

    def _scan(self, pattern: str) -> list[bytes]:
        try:
            return list(self.client.scan_iter(match=pattern, count=1000))
        except UNREACHABLE as e:
            raise unavailable(self._url, e) from None

    # -- BaseCheckpointSaver ------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Fetch a checkpoint (the newest without ``checkpoint_id``) with its blobs and writes: one round trip."""
        keys, args = self._get_call(config)
        self._fence(config["configurable"]["thread_id"])
        return self._first_tuple(config, self._eval(scripts.FETCH, keys, args))

    def _settle(self) -> None:
        """Before a whole-store operation: every write in flight lands first."""
        self.flush()

    def list(self, config: RunnableConfig | None, **options: Unpack[ListOptions]) -> Iterator[CheckpointTuple]:
        """List checkpoints newest first; ``config=None`` lists every thread (SCAN on all masters)."""
        return self._drive(self._list_plan(config, **options))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint and its new channel values atomically, acknowledged as the run's durability says."""
        write, out = self._put_write(config, checkpoint, metadata, new_versions)
        self._write(*write)
        return out

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes atomically, acknowledged as the run's durability says."""
        write = self._put_writes_write(config, writes, task_id, task_path)
        if write is not None:
            self._write(*write)

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, blob and write of a thread (all namespaces), behind its writes in flight."""
        self._write(*self._delete_thread_write(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) created by these runs, in every thread."""
        self._run(self._delete_for_runs_plan(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, blob and write of one thread into another (merging)."""
        self._run(self._copy_plan(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep only the newest checkpoint per namespace (``keep_latest``, DeltaChannel-safe) or delete all."""
        self._run(self._prune_plan(thread_ids, strategy))

    # -- async API: the sync calls, run in a worker thread ---------------------------

    adelete_for_runs = in_thread("delete_for_runs")
    acopy_thread = in_thread("copy_thread")
    aprune = in_thread("prune")
