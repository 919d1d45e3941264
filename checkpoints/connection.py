"""Opening Redis clients from URLs, standalone or cluster, with errors a user can act on.

``connect`` / ``aconnect`` return a ready client (sync / asyncio) for a
``redis://`` or ``rediss://`` URL: they PING it, detect Redis Cluster (unless
``?cluster=`` decides), and turn every way of failing to reach the server into
``StoreUnavailable`` naming the URL (password masked) and what to check.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import AuthenticationError, RedisClusterException, ResponseError

from checkpoints.urls import RedisURL, parse_redis_url
from migration_errors import StoreUnavailable

__all__ = ["aconnect", "connect", "is_cluster", "unavailable"]

# Errors that mean "the store cannot be reached or used", as opposed to a bug.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, RedisClusterException, OSError)

_CLIENT_OPTIONS: dict[str, Any] = {
    "decode_responses": False,
    "socket_connect_timeout": 5.0,
    "socket_keepalive": True,
}


def unavailable(target: RedisURL | str, error: BaseException | str) -> StoreUnavailable:
    """Build the ``StoreUnavailable`` for ``target`` failing with ``error``."""
    parsed = target if isinstance(target, RedisURL) else _safe_parse(target)
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    if parsed is None:
        where, hostport = str(target), "the host and port in the URL"
    else:
        where, hostport = parsed.masked, f"{parsed.host}:{parsed.port}"
    hint = "check the password (or ACL user)" if isinstance(error, AuthenticationError) else "check the URL, firewall, TLS and password"
    return StoreUnavailable(
        f"cannot use the Redis checkpoint store at {where} ({reason}); "
        f"is redis-server running on {hostport}? {hint}"
    )


def _safe_parse(url: str) -> RedisURL | None:
    try:
        return parse_redis_url(url)
    except Exception:
        return None


def _cluster_enabled(info: dict[str, Any]) -> bool:
    return str(info.get("cluster_enabled", "0")) == "1"


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a (sync or asyncio) Redis Cluster client."""
    return isinstance(client, (RedisCluster, AsyncRedisCluster))


def connect(url: str, **options: Any) -> redis.Redis | RedisCluster:
    """Open a sync client for ``url``, PING it, and pick standalone or cluster.

    Raises:
        ConfigurationError: the URL is malformed.
        StoreUnavailable: the server cannot be reached, refuses the password, or
            the cluster mode forced by ``?cluster=`` does not match the server.
    """
    target = parse_redis_url(url)
    opts = {**_CLIENT_OPTIONS, **options}
    try:
        if target.cluster:
            return _sync_cluster(target, opts)
        client = redis.Redis.from_url(target.url, **opts)
        try:
            client.ping()
            if target.cluster is None and _cluster_enabled(client.info("cluster")):
                client.close()
                return _sync_cluster(target, opts)
        except BaseException:
            client.close()
            raise
        return client
    except UNREACHABLE as e:
        raise unavailable(target, e) from None
    except ResponseError as e:
        raise unavailable(target, e) from None


def _sync_cluster(target: RedisURL, opts: dict[str, Any]) -> RedisCluster:
    client = RedisCluster.from_url(target.cluster_url, **opts)
    try:
        client.ping(target_nodes=RedisCluster.PRIMARIES)
    except BaseException:
        client.close()
        raise
    return client


async def aconnect(url: str, **options: Any) -> aredis.Redis | AsyncRedisCluster:
    """Asyncio twin of ``connect``."""
    target = parse_redis_url(url)
    opts = {**_CLIENT_OPTIONS, **options}
    try:
        if target.cluster:
            return await _async_cluster(target, opts)
        client = aredis.Redis.from_url(target.url, **opts)
        try:
            await client.ping()
            if target.cluster is None and _cluster_enabled(await client.info("cluster")):
                await client.aclose()
                return await _async_cluster(target, opts)
        except BaseException:
            await client.aclose()
            raise
        return client
    except UNREACHABLE as e:
        raise unavailable(target, e) from None
    except ResponseError as e:
        raise unavailable(target, e) from None


async def _async_cluster(target: RedisURL, opts: dict[str, Any]) -> AsyncRedisCluster:
    client = AsyncRedisCluster.from_url(target.cluster_url, **opts)
    try:
        await client.initialize()
        await client.ping(target_nodes=AsyncRedisCluster.PRIMARIES)
    except BaseException:
        await client.aclose()
        raise
    return client
