"""Checkpoint store URLs: which store a URL names, and how to print it without secrets.

Supported forms:

- ``memory://`` – LangGraph's ``InMemorySaver`` (nothing persists).
- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
  ``sqlite:///:memory:`` – LangGraph's ``SqliteSaver``.
- ``redis://[user:password@]host:port/db`` and ``rediss://...`` (TLS) – the
  Redis savers of this package; ``?cluster=true`` forces Redis Cluster mode,
  ``?cluster=false`` forbids it, otherwise it is detected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from migration_errors import ConfigurationError

__all__ = ["RedisURL", "mask_url", "parse_redis_url", "scheme_of", "sqlite_path"]

SUPPORTED = "memory://, sqlite:///path (sqlite:////abs/path for an absolute path) or redis://host:port/db (rediss:// for TLS)"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe to log or show)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None and "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
    # "redis://secret@host" puts the password where a user name would be.
    masked = f"{user}:***" if ":" in userinfo else "***"
    return urlunsplit((parts.scheme, f"{masked}@{hostport}", parts.path, parts.query, parts.fragment))


def scheme_of(url: str) -> str:
    """Return the lower-cased scheme of ``url`` or raise ``ConfigurationError``."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"checkpoint store URL {mask_url(str(url))!r} has no scheme: expected {SUPPORTED}"
        )
    return url.split("://", 1)[0].lower()


def sqlite_path(url: str) -> str:
    """Return the file path of a ``sqlite:///path`` URL (``:memory:`` kept as is).

    ``sqlite:///state.db`` is relative to the working directory,
    ``sqlite:////var/lib/state.db`` is absolute (SQLAlchemy's convention).
    """
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or rest == "/":
        raise ConfigurationError(
            f"SQLite URL {url!r} has no path: use sqlite:///relative.db or sqlite:////absolute/path.db"
        )
    path = rest[1:].split("?", 1)[0]
    if path == ":memory:":
        return path
    return os.path.expanduser(path)


@dataclass(frozen=True)
class RedisURL:
    """A parsed ``redis://`` / ``rediss://`` URL."""

    url: str
    """The URL to hand to redis-py (our own query options removed)."""
    masked: str
    """The URL with its password masked, for messages."""
    host: str
    port: int
    db: int
    tls: bool
    cluster: bool | None
    """``True``/``False`` when ``?cluster=`` says so, ``None`` to detect."""

    @property
    def cluster_url(self) -> str:
        """The URL without a database path (a cluster has only database 0)."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, "", parts.query, parts.fragment))


def parse_redis_url(url: str) -> RedisURL:
    """Parse a Redis URL, validating the scheme, port, database and ``cluster`` option."""
    scheme = scheme_of(url)
    if scheme not in ("redis", "rediss"):
        raise ConfigurationError(f"{mask_url(url)!r} is not a Redis URL: expected redis://host:port/db or rediss://")
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError as e:
        raise ConfigurationError(f"Redis URL {mask_url(url)!r} is malformed ({e}): expected redis://host:port/db") from None
    path = parts.path.strip("/")
    try:
        db = int(path) if path else 0
    except ValueError:
        raise ConfigurationError(
            f"Redis URL {mask_url(url)!r} names database {path!r}: the path must be a database number, e.g. redis://host:6379/0"
        ) from None
    cluster: bool | None = None
    query = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() == "cluster":
            if value.lower() in _TRUE:
                cluster = True
            elif value.lower() in _FALSE:
                cluster = False
            else:
                raise ConfigurationError(f"Redis URL {mask_url(url)!r}: cluster={value!r} must be true or false")
        else:
            query.append((key, value))
    clean = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
    return RedisURL(
        url=clean,
        masked=mask_url(clean),
        host=parts.hostname or "localhost",
        port=port,
        db=db,
        tls=scheme == "rediss",
        cluster=cluster,
    )
