"""The Redis savers' shared core: the key layout, encoding, and the sans-IO plans both drivers run.

``RedisSaver`` (``checkpoints/redis_saver.py``) drives it with blocking calls, ``AsyncRedisSaver``
(``checkpoints/aio.py``) with ``await``, the way LangGraph's checkpoint-postgres splits
``base.py`` from its sync and async savers.

Redis key layout. ``P`` is the key prefix (default ``lgcp``), ``T`` the thread's
hash tag (the thread id, hex-encoded as ``=<hex>`` when it is empty, contains a
brace or starts with ``=``), ``NS`` the checkpoint namespace (``""`` for the
root graph). All keys of one thread share ``{T}``, so they live in one Cluster
slot and every per-thread operation is one atomic Lua script on one node:

    P:{T}:nss        SET   namespaces of the thread that hold checkpoints or writes
    P:{T}:idx:NS     ZSET  checkpoint ids, all score 0; lexical order = time order (uuid6)
    P:{T}:cp:NS      HASH  <cid> -> checkpoint without channel values ("<type>\\n<bytes>"),
                           <cid>:m -> metadata, <cid>:p -> parent id ("" for none),
                           <cid>:b -> msgpack list of "<channel>\\0<version>" blob fields
                           the checkpoint reads, <cid>:r -> run id from the metadata
    P:{T}:blob:NS    HASH  "<channel>\\0<version>" -> channel value ("<type>\\n<bytes>"), written
                           once per new channel version, shared by later checkpoints
    P:{T}:widx:NS    ZSET  "<cid>\\0<task_id>\\0<idx>", all score 0: the writes of one
                           checkpoint are one lexical range
    P:{T}:w:NS       HASH  "<cid>\\0<task_id>\\0<idx>" -> msgpack [task_id, channel, type,
                           bytes, task_path, idx] (pending writes)

With a TTL, every write refreshes the expiry of all the thread's keys, so a
thread lives until ``ttl`` seconds after its last write. Writes (``PUT``,
``PUT_WRITES``, ``DELETE_THREAD``) of a standalone server go over one
pipelined connection, so Redis applies a thread's scripts in the order
LangGraph issued them; what waits for their replies is the run's durability
(``checkpoints/durability.py``). Cross-thread
operations (``list`` without a thread, ``delete_for_runs``) SCAN every master
for ``P:{*}:nss``.
"""

from __future__ import annotations

import random
from collections.abc import Generator, Mapping, Sequence
from typing import Any, NamedTuple, TypedDict, Unpack

import ormsgpack
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

import checkpoints.scripts as scripts
from checkpoints.durability import Policy, write_policy
from checkpoints.scripts import Script
from checkpoints.serde import AllowedTypes, checkpoint_serde
from migration_errors import ConfigurationError
from redis_connect.urls import mask_url

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "EVAL",
    "FENCE",
    "ITEM",
    "SCAN",
    "SETTLE",
    "KeyScheme",
    "ListOptions",
    "Plan",
    "RedisSaverCore",
    "SaverOptions",
    "Write",
    "check_options",
    "prepared_options",
]

DEFAULT_KEY_PREFIX = "lgcp"


class SaverOptions(TypedDict, total=False):
    """The keyword options every Redis saver's constructors and ``open_checkpointer`` take, written once."""

    ttl: float | None  # seconds a thread lives after its last write; None (the default) keeps it forever
    key_prefix: str  # prefix of every key, no braces (DEFAULT_KEY_PREFIX)
    serde: SerializerProtocol | None  # the serializer; None for checkpoints.serde.StrictSerializer
    allowed_types: AllowedTypes  # extra types checkpoints may rebuild: classes or (module, name)
    encryption_key: bytes | str | None  # AES key to encrypt at rest; None reads MIGRATION_KIT_CHECKPOINT_KEY


class ListOptions(TypedDict, total=False):
    """The keyword filters of ``list`` / ``alist`` (``BaseCheckpointSaver``'s), written once for every driver."""

    filter: dict[str, Any] | None  # metadata keys and values a checkpoint must have
    before: RunnableConfig | None  # only checkpoints older than this one
    limit: int | None  # at most this many


def check_options(where: str, options: Mapping[str, Any]) -> None:
    """Refuse a keyword that is not a ``SaverOptions`` name, as Python refuses one a signature lacks."""
    for name in options:
        if name not in SaverOptions.__optional_keys__:
            raise TypeError(f"{where}() got an unexpected keyword argument {name!r}")


def prepared_options(where: str, options: Mapping[str, Any]) -> SaverOptions:
    """The options with the serializer built (so a bad key fails before connecting): what a saver is made with."""
    check_options(where, options)
    out = SaverOptions(
        serde=checkpoint_serde(
            options.get("serde"), allowed_types=options.get("allowed_types", ()), encryption_key=options.get("encryption_key")
        )
    )
    if "ttl" in options:
        out["ttl"] = options["ttl"]
    if "key_prefix" in options:
        out["key_prefix"] = options["key_prefix"]
    return out

_KINDS = ("idx:", "cp:", "blob:", "widx:", "w:")
_PAGE_FIRST = 16
_PAGE_MAX = 256


class KeyScheme:
    """Builds the Redis keys of the layout above for one key prefix."""

    __slots__ = ("prefix", "_tags")

    def __init__(self, prefix: str = DEFAULT_KEY_PREFIX) -> None:
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise ConfigurationError(
                f"key_prefix {prefix!r} must be a non-empty string without braces "
                "(braces would change the Redis Cluster hash tag of every key)"
            )
        self.prefix = prefix

    @staticmethod
    def tag(thread_id: str) -> str:
        """The hash tag of a thread: its id, or ``=<hex>`` when the id could break the tag."""
        if thread_id and thread_id[0] != "=" and "{" not in thread_id and "}" not in thread_id:
            return thread_id
        return "=" + thread_id.encode().hex()

    def base(self, thread_id: str) -> str:
        """``P:{T}:``, the prefix of every key of ``thread_id``."""
        return f"{self.prefix}:{{{self.tag(thread_id)}}}:"

    @staticmethod
    def ns_keys(base: str, ns: str) -> list[str]:
        """``[idx, cp, blob, widx, w]`` keys of namespace ``ns``."""
        return [base + "idx:" + ns, base + "cp:" + ns, base + "blob:" + ns, base + "widx:" + ns, base + "w:" + ns]

    def nss_pattern(self) -> str:
        """SCAN pattern matching the ``nss`` key of every thread."""
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix)
        return escaped + ":{*}:nss"

    def thread_of(self, nss_key: bytes | str) -> str:
        """The thread id of an ``nss`` key found by SCAN."""
        key = nss_key.decode() if isinstance(nss_key, bytes) else nss_key
        tag = key[len(self.prefix) + 2 : -len("}:nss")]
        return bytes.fromhex(tag[1:]).decode() if tag.startswith("=") else tag


def _pack(typed: tuple[str, bytes]) -> bytes:
    return typed[0].encode() + b"\n" + typed[1]


def _split(raw: bytes) -> tuple[str, bytes]:
    kind, _, data = raw.partition(b"\n")
    return kind.decode(), data


#: Checkpoints one prune script deletes at most (a big thread is pruned in several calls).
PRUNE_BATCH = 200


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _matches(metadata: dict[str, Any], filter: dict[str, Any]) -> bool:
    return all(metadata.get(k) == v for k, v in filter.items())


class Write(NamedTuple):
    """One script call that writes a thread, as the core plans it: the driver sends it in the thread's order and waits as ``policy`` says."""

    base: str  # the thread's key prefix, P:{T}: (writes of one thread keep their order)
    script: Script
    keys: list[str]
    args: list[Any]
    policy: Policy


# Operations a sans-IO plan yields to its driver (see `RedisSaverCore`).
EVAL = 0  # (EVAL, script, keys, args) -> the script's reply
SCAN = 1  # (SCAN, pattern) -> list of matching keys on every master
ITEM = 2  # (ITEM, value) -> value is handed to the caller; reply None
FENCE = 3  # (FENCE, thread_id) -> the thread's writes in flight are acknowledged first; reply None
SETTLE = 4  # (SETTLE,) -> every write in flight is acknowledged first (a whole-store operation); reply None

Plan = Generator[tuple, Any, Any]


class RedisSaverCore(BaseCheckpointSaver[str]):
    """What the sync and async Redis savers share: keys, encoding, and I/O-free plans.

    Hot paths (``put``, ``put_writes``, ``get_tuple``) build their one script call
    here and run it directly. Multi-step operations are written once as
    generators ("plans") that yield ``EVAL``/``SCAN`` requests and receive the
    replies; the sync saver drives them with blocking calls, the async one with
    ``await``.
    """

    def __init__(self, client: Any, *, owns_client: bool = False, url: str | None = None, **options: Unpack[SaverOptions]) -> None:
        prepared = prepared_options(type(self).__name__, options)
        super().__init__(serde=prepared["serde"])
        ttl = prepared.get("ttl")
        if ttl is not None and ttl <= 0:
            raise ConfigurationError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
        kwargs = getattr(client, "get_connection_kwargs", None)
        if kwargs is not None and kwargs().get("decode_responses"):
            raise ConfigurationError("the Redis client must be created with decode_responses=False (checkpoints are binary)")
        self.client = client
        self.ttl = ttl
        self.keys = KeyScheme(prepared.get("key_prefix", DEFAULT_KEY_PREFIX))
        self._ttl_arg = str(int(ttl * 1000)) if ttl else ""
        self._owns_client = owns_client
        # Only ever the masked form: it goes into error messages and the repr.
        self._url = mask_url(url) if url else _describe(client)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._url!r})"

    # -- versions ---------------------------------------------------------

    def get_next_version(self, current: str | int | None, channel: None) -> str:
        """Next channel version: a zero-padded counter plus a random fraction.

        The random part keeps versions distinct when two forks of one thread
        both advance a channel from the same parent, so their blobs never
        overwrite each other.
        """
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    # -- single-call operations: arguments and replies ----------------------

    def _put_write(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> tuple[Write, RunnableConfig]:
        """The ``PUT`` of a checkpoint, and the config that names it."""
        conf = config["configurable"]
        thread_id = conf["thread_id"]
        ns = conf.get("checkpoint_ns") or ""
        cid = checkpoint["id"]
        dumps = self.serde.dumps_typed
        c = checkpoint.copy()
        values: dict[str, Any] = c.pop("channel_values")  # type: ignore[misc]
        md = get_checkpoint_metadata(config, metadata)
        base = self.keys.base(str(thread_id))
        run_id = md.get("run_id")
        args: list[Any] = [
            ns,
            cid,
            _pack(dumps(c)),
            _pack(dumps(md)),
            conf.get("checkpoint_id") or "",
            ormsgpack.packb([f"{k}\0{v}" for k, v in c["channel_versions"].items()]),
            "" if run_id is None else str(run_id),
            self._ttl_arg,
            base,
        ]
        for k, v in new_versions.items():
            if k in values:
                args.append(f"{k}\0{v}")
                args.append(_pack(dumps(values[k])))
        keys = [base + "nss", base + "idx:" + ns, base + "cp:" + ns, base + "blob:" + ns]
        out: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}}
        return Write(base, scripts.PUT, keys, args, write_policy(conf, checkpoint=True)), out

    def _put_writes_write(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> Write | None:
        """The ``PUT_WRITES`` of a task's pending writes (None when it has none)."""
        if not writes:
            return None
        conf = config["configurable"]
        ns = conf.get("checkpoint_ns") or ""
        cid = conf["checkpoint_id"]
        base = self.keys.base(str(conf["thread_id"]))
        dumps = self.serde.dumps_typed
        args: list[Any] = [ns, self._ttl_arg, base]
        for i, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, i)
            kind, data = dumps(value)
            args.append(f"{cid}\0{task_id}\0{idx}")
            args.append(ormsgpack.packb([task_id, channel, kind, data, task_path, idx]))
            args.append("n" if idx >= 0 else "s")
        keys = [base + "nss", base + "widx:" + ns, base + "w:" + ns]
        return Write(base, scripts.PUT_WRITES, keys, args, write_policy(conf, checkpoint=False))

    def _delete_thread_write(self, thread_id: str, policy: Policy = Policy.ACK) -> Write:
        """The ``DELETE_THREAD`` of every checkpoint, blob and write of a thread (all namespaces)."""
        base = self.keys.base(str(thread_id))
        return Write(base, scripts.DELETE_THREAD, [base + "nss"], [base], policy)

    def _fetch_keys(self, thread_id: Any, ns: str) -> list[str]:
        return self.keys.ns_keys(self.keys.base(str(thread_id)), ns)

    def _get_call(self, config: RunnableConfig) -> tuple[list[str], list[Any]]:
        conf = config["configurable"]
        keys = self._fetch_keys(conf["thread_id"], conf.get("checkpoint_ns") or "")
        cid = conf.get("checkpoint_id")
        return keys, (["ids", cid] if cid else ["latest"])

    def _tuple(self, thread_id: Any, ns: str, rec: list[Any]) -> CheckpointTuple:
        cid_b, ckpt, meta, parent, fields, blobs, writes = rec
        loads = self.serde.loads_typed
        cid = _text(cid_b)
        checkpoint = loads(_split(ckpt))
        values: dict[str, Any] = {}
        if blobs:
            for field, raw in zip(ormsgpack.unpackb(fields), blobs):
                if raw is not None:
                    values[field.rpartition("\0")[0]] = loads(_split(raw))
        checkpoint["channel_values"] = values
        pending: list[tuple[str, str, Any]] = []
        if writes:
            decoded = [ormsgpack.unpackb(w) for w in writes if w is not None]
            decoded.sort(key=lambda w: (w[4], w[0], w[5]))
            pending = [(w[0], w[1], loads((w[2], w[3]))) for w in decoded]
        parent_id = _text(parent) if parent else ""
        return CheckpointTuple(
            config={"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}},
            checkpoint=checkpoint,
            metadata=loads(_split(meta)),
            parent_config=(
                {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": parent_id}}
                if parent_id
                else None
            ),
            pending_writes=pending,
        )

    def _first_tuple(self, config: RunnableConfig, reply: list[Any]) -> CheckpointTuple | None:
        if not reply:
            return None
        conf = config["configurable"]
        return self._tuple(conf["thread_id"], conf.get("checkpoint_ns") or "", reply[0])

    # -- multi-step plans ---------------------------------------------------

    def _list_plan(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Plan:
        """Yield checkpoint tuples newest first, merging namespaces and threads by id (after the writes it would miss)."""
        yield (SETTLE,) if config is None else (FENCE, config["configurable"]["thread_id"])
        if limit is not None and limit <= 0:
            return
        before_id = get_checkpoint_id(before) if before else None
        streams: list[tuple[Any, str]] = []
        if config is None:
            keys = yield (SCAN, self.keys.nss_pattern())
            threads = sorted({self.keys.thread_of(k) for k in keys})
        else:
            conf = config["configurable"]
            thread_id, ns, cid = conf["thread_id"], conf.get("checkpoint_ns"), conf.get("checkpoint_id")
            if cid:
                # One exact checkpoint (of the root namespace unless one is given).
                if before_id and cid >= before_id:
                    return
                ns = ns or ""
                reply = yield (EVAL, scripts.FETCH, self._fetch_keys(thread_id, ns), ["ids", cid])
                for rec in reply:
                    tup = self._tuple(thread_id, ns, rec)
                    if not filter or _matches(tup.metadata, filter):
                        yield (ITEM, tup)
                return
            if ns is not None:
                streams.append((thread_id, ns))
                threads = []
            else:
                threads = [thread_id]
        for thread_id in threads:
            base = self.keys.base(str(thread_id))
            members = yield (EVAL, scripts.NAMESPACES, [base + "nss"], [])
            streams.extend((thread_id, _text(ns)) for ns in sorted(members))
        # One buffer per (thread, namespace); refill a buffer when it runs dry.
        state = [
            {"thread": t, "ns": ns, "cursor": before_id or "", "page": _PAGE_FIRST, "buf": [], "done": False}
            for t, ns in streams
        ]
        remaining = limit
        while True:
            best = None
            for s in state:
                if not s["buf"] and not s["done"]:
                    yield from self._refill(s, filter, remaining)
                if s["buf"] and (best is None or _text(s["buf"][-1][0]) > _text(best["buf"][-1][0])):
                    best = s
            if best is None:
                return
            rec = best["buf"].pop()
            yield (ITEM, self._tuple(best["thread"], best["ns"], rec))
            if remaining is not None:
                remaining -= 1
                if remaining <= 0:
                    return

    def _refill(self, s: dict[str, Any], filter: dict[str, Any] | None, remaining: int | None) -> Plan:
        keys = self._fetch_keys(s["thread"], s["ns"])
        while not s["buf"] and not s["done"]:
            page = s["page"] if remaining is None or filter else min(s["page"], remaining)
            s["page"] = min(s["page"] * 2, _PAGE_MAX)
            if filter:
                heads = yield (EVAL, scripts.FETCH, keys, ["range", s["cursor"], page, "1"])
                loads = self.serde.loads_typed
                wanted = [h[0] for h in heads if h[1] is not None and _matches(loads(_split(h[1])), filter)]
                recs = (yield (EVAL, scripts.FETCH, keys, ["ids", *wanted])) if wanted else []
                got = heads
            else:
                recs = yield (EVAL, scripts.FETCH, keys, ["range", s["cursor"], page, "0"])
                got = recs
            if len(got) < page:
                s["done"] = True
            if got:
                s["cursor"] = _text(got[-1][0])
            s["buf"] = list(reversed(recs))  # pop() from the end = newest first

    def _delete_for_runs_plan(self, run_ids: Sequence[str]) -> Plan:
        yield (SETTLE,)
        runs = [str(r) for r in run_ids]
        if not runs:
            return 0
        keys = yield (SCAN, self.keys.nss_pattern())
        deleted = 0
        for key in keys:
            base = _text(key)[: -len("nss")]
            deleted += yield (EVAL, scripts.DELETE, [base + "nss"], [base, "runs", *runs])
        return deleted

    def _prune_plan(self, thread_ids: Sequence[str], strategy: str) -> Plan:
        yield (SETTLE,)
        if strategy not in ("keep_latest", "delete"):
            raise ConfigurationError(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'")
        for thread_id in thread_ids:
            base = self.keys.base(str(thread_id))
            if strategy == "delete":
                yield (EVAL, scripts.DELETE_THREAD, [base + "nss"], [base])
                continue
            skeleton = yield (EVAL, scripts.SKELETON, [base + "nss"], [base])
            for ns, ids, parents, fields, meta, stored in skeleton:
                doomed = self._prunable(ids, parents, fields, meta, stored)
                # Bounded batches, oldest first: no one script holds Redis for long, and a cut-off
                # prune leaves a consistent thread (only ancestors of what it keeps are gone).
                for at in range(0, len(doomed), PRUNE_BATCH):
                    batch = doomed[at : at + PRUNE_BATCH]
                    yield (EVAL, scripts.DELETE, [base + "nss"], [base, "ids", ns, len(batch), *batch])

    def _prunable(self, ids: list[bytes], parents: list[Any], fields: list[Any], meta: Any, stored: list[bytes]) -> list[bytes]:
        """Checkpoint ids ``keep_latest`` may delete in one namespace, DeltaChannel-safe.

        The newest checkpoint is kept, and so is every ancestor (with its writes)
        back to the nearest one that stores a value for each DeltaChannel the
        newest checkpoint still reconstructs from writes: the channels listed in
        its ``counters_since_delta_snapshot`` metadata without a stored value.
        """
        if not ids:
            return []
        latest = ids[-1]
        parent_of = {cid: p for cid, p in zip(ids, parents)}
        fields_of = {cid: f for cid, f in zip(ids, fields)}
        stored_set = set(stored)
        keep = {latest}
        counters = {}
        if meta:
            counters = (self.serde.loads_typed(_split(meta)) or {}).get("counters_since_delta_snapshot") or {}
        remaining = set(counters)
        cid: Any = latest
        while remaining and cid is not None:
            keep.add(cid)
            versions = {}
            if fields_of.get(cid):
                for f in ormsgpack.unpackb(fields_of[cid]):
                    ch, _, _ = f.rpartition("\0")
                    versions[ch] = f.encode()
            # A channel is settled at the first checkpoint (walking back) that
            # stores its value, or that has no version of it (nothing older
            # can contribute writes).
            remaining = {ch for ch in remaining if ch in versions and versions[ch] not in stored_set}
            parent = parent_of.get(cid)
            cid = parent if parent and parent in parent_of else None
        return [c for c in ids if c not in keep]

    def _copy_plan(self, source_thread_id: str, target_thread_id: str) -> Plan:
        yield (SETTLE,)
        src = self.keys.base(str(source_thread_id))
        dst = self.keys.base(str(target_thread_id))
        dump = yield (EVAL, scripts.DUMP, [src + "nss"], [src])
        if not dump:
            return
        args: list[Any] = [dst, self._ttl_arg]
        for ns, idx, cp, blob, widx, w in dump:
            args += [ns, len(idx), *idx, len(cp), *cp, len(blob), *blob, len(widx), *widx, len(w), *w]
        yield (EVAL, scripts.COPY_IN, [dst + "nss"], args)



def _describe(client: Any) -> str:
    try:
        kw = client.get_connection_kwargs()
        return f"redis://{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"
    except Exception:
        return "the configured Redis server"
