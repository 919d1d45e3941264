"""Opening Redis clients from URLs, standalone or cluster, with errors a user can act on.

``connect`` / ``aconnect`` return a ready client (sync / asyncio) for a
``redis://`` or ``rediss://`` URL: they PING it, detect Redis Cluster (unless
``?cluster=`` decides), and turn every way of failing to reach the server into
``StoreUnavailable`` naming the URL (password masked) and what to check.

Credentials and TLS options are read from the URL or the environment (see
``redis_connect/urls.py``) and handed to redis-py as keyword arguments, never
inside the URL. No message built here contains a password or a key
passphrase: the URL is masked, and any secret text an underlying error
might echo is scrubbed before it is shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import AuthenticationError, NoPermissionError, RedisClusterException, ResponseError

from redis_connect.urls import ENV_PASSWORD, RedisURL, mask_url, parse_redis_url
from migration_errors import ConfigurationError, StoreUnavailable

__all__ = ["aconnect", "connect", "is_cluster", "missing_group", "unavailable"]

# Errors that mean "the store cannot be reached or used", as opposed to a bug.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, RedisClusterException, OSError)

_CLIENT_OPTIONS: dict[str, Any] = {
    "decode_responses": False,
    "socket_connect_timeout": 5.0,
    "socket_keepalive": True,
}


# Options redis-py's asyncio cluster client does not accept.
_NOT_IN_ASYNC_CLUSTER = ("ssl_password", "ssl_ca_path")


def missing_group(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis's ``NOGROUP`` reply: the stream or its consumer group is gone.

    redis-py has no class for this error code, so it is told here, once, by the
    code of the Redis error reply (a pipeline prefixes the reply with the
    command's number, so the code is looked for in the message, not at its start).
    """
    return isinstance(exc, ResponseError) and "NOGROUP" in str(exc)


def unavailable(target: RedisURL | str, error: BaseException | str) -> StoreUnavailable:
    """Build the ``StoreUnavailable`` for ``target`` failing with ``error`` (no secret in its text)."""
    parsed = target if isinstance(target, RedisURL) else _safe_parse(target)
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    if parsed is None:
        where, hostport = mask_url(str(target)), "the host and port in the URL"
    else:
        where, hostport = parsed.masked, f"{parsed.host}:{parsed.port}"
        for secret in parsed.secrets():
            if secret != "***":
                reason = reason.replace(secret, "***")
    return StoreUnavailable(f"cannot use the Redis checkpoint store at {where} ({reason}); {_hint(parsed, error, hostport)}")


def _hint(parsed: RedisURL | None, error: BaseException | str, hostport: str) -> str:
    """What to check next, by kind of failure."""
    user = (parsed.username if parsed else None) or "default"
    if isinstance(error, AuthenticationError):
        if parsed is not None and parsed.password is None:
            return (
                "the server requires a password: give it in the URL (redis://user:password@host:port/db) "
                f"or in {ENV_PASSWORD}"
            )
        source = f" (from {ENV_PASSWORD})" if parsed is not None and parsed.credentials_from == "environment" else ""
        return f"the server refused the credentials: check the password{source} and the ACL user ({user!r}, enabled?)"
    if isinstance(error, NoPermissionError):
        return (
            f"the ACL user {user!r} lacks a permission: allow it the store's commands and keys "
            f"(e.g. ACL SETUSER {user} +@all ~*)"
        )
    text = str(error)
    if parsed is not None and parsed.tls:
        return (
            f"is redis-server listening for TLS on {hostport}? check the CA (ssl_ca_certs), the client "
            "certificate and key (ssl_certfile, ssl_keyfile) and the host name in the server certificate"
        )
    if "SSL" in text or "reset by peer" in text or "closed by server" in text.lower():
        return f"is redis-server running on {hostport}? if it only speaks TLS, use rediss://"
    return f"is redis-server running on {hostport}? check the URL, firewall, TLS and password"


def _safe_parse(url: str) -> RedisURL | None:
    try:
        return parse_redis_url(url)
    except Exception:
        return None


def _cluster_enabled(info: dict[str, Any]) -> bool:
    return str(info.get("cluster_enabled", "0")) == "1"


def _prepared(url: str, options: dict[str, Any]) -> tuple[RedisURL, dict[str, Any]]:
    """The parsed URL and the client options (ours, then the URL's, then the caller's) both drivers open with."""
    target = parse_redis_url(url)
    return target, {**_CLIENT_OPTIONS, **target.client_options(), **options}


@contextmanager
def _reaching(target: RedisURL) -> Iterator[None]:
    """Around opening a client: not reaching the server, or its refusal (password, mode), becomes ``StoreUnavailable``."""
    try:
        yield
    except UNREACHABLE as e:
        raise unavailable(target, e) from None
    except ResponseError as e:
        raise unavailable(target, e) from None


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
    target, opts = _prepared(url, options)
    with _reaching(target):
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
    target, opts = _prepared(url, options)
    with _reaching(target):
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


async def _async_cluster(target: RedisURL, opts: dict[str, Any]) -> AsyncRedisCluster:
    unsupported = [k for k in _NOT_IN_ASYNC_CLUSTER if k in opts]
    if unsupported:
        raise ConfigurationError(
            f"{target.masked}: redis-py's asyncio cluster client does not support {', '.join(unsupported)}; "
            "use RedisSaver (sync), an unencrypted key file, or ssl_ca_certs instead of ssl_ca_path"
        )
    client = AsyncRedisCluster.from_url(target.cluster_url, **opts)
    try:
        await client.initialize()
        await client.ping(target_nodes=AsyncRedisCluster.PRIMARIES)
    except BaseException:
        await client.aclose()
        raise
    return client
