"""Checkpoint store URLs: which store a URL names, and how to print it without secrets.

Supported forms:

- ``memory://`` – LangGraph's ``InMemorySaver`` (nothing persists).
- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
  ``sqlite:///:memory:`` – LangGraph's ``SqliteSaver``.
- ``redis://[user:password@]host:port/db`` and ``rediss://...`` (TLS) – the
  Redis savers of this package; ``?cluster=true`` forces Redis Cluster mode,
  ``?cluster=false`` forbids it, otherwise it is detected.

Redis credentials and TLS options come from the URL first, then from the
environment (so secrets can stay out of URLs, command lines and config files):

- ACL user: ``redis://USER:...@host`` or ``MIGRATION_KIT_REDIS_USERNAME``
  (the ``default`` user when neither is set).
- Password (``requirepass`` or the ACL user's): ``redis://...:PASSWORD@host``
  or ``MIGRATION_KIT_REDIS_PASSWORD``. Percent-encode reserved characters in
  a URL (``p%40ss`` for ``p@ss``).
- TLS, ``rediss://`` only, each as a query option or its variable:
  ``ssl_ca_certs`` / ``MIGRATION_KIT_REDIS_SSL_CA_CERTS`` (CA bundle that
  signed the server certificate), ``ssl_ca_path`` / ``..._SSL_CA_PATH``
  (directory of hashed CA certificates), ``ssl_certfile`` / ``..._SSL_CERTFILE``
  and ``ssl_keyfile`` / ``..._SSL_KEYFILE`` (client certificate and key, for
  ``--tls-auth-clients yes``), ``ssl_cert_reqs`` / ``..._SSL_CERT_REQS``
  (``required``, the default, ``optional`` or ``none``), ``ssl_check_hostname`` /
  ``..._SSL_CHECK_HOSTNAME`` (``true`` by default).
- Passphrase of an encrypted client key: ``MIGRATION_KIT_REDIS_SSL_PASSWORD``
  only. Secrets are refused as query options (``?password=``,
  ``?ssl_password=``): URLs end up in shell history, process lists and logs.

TLS query options on a ``redis://`` URL are an error (the TLS variables are
ignored for it). ``REDISCLI_AUTH`` is deliberately *not* read: it is
``redis-cli``'s interactive setting, and a process-wide fallback would send
that password to every server, including ones without a password (which
refuse an ``AUTH``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from migration_errors import ConfigurationError

__all__ = [
    "ENV_PASSWORD",
    "ENV_USERNAME",
    "TLS_ENV",
    "RedisURL",
    "mask_url",
    "parse_redis_url",
    "scheme_of",
    "sqlite_path",
]

SUPPORTED = "memory://, sqlite:///path (sqlite:////abs/path for an absolute path) or redis://host:port/db (rediss:// for TLS)"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

ENV_USERNAME = "MIGRATION_KIT_REDIS_USERNAME"
ENV_PASSWORD = "MIGRATION_KIT_REDIS_PASSWORD"
TLS_ENV = {
    "ssl_ca_certs": "MIGRATION_KIT_REDIS_SSL_CA_CERTS",
    "ssl_ca_path": "MIGRATION_KIT_REDIS_SSL_CA_PATH",
    "ssl_certfile": "MIGRATION_KIT_REDIS_SSL_CERTFILE",
    "ssl_keyfile": "MIGRATION_KIT_REDIS_SSL_KEYFILE",
    "ssl_password": "MIGRATION_KIT_REDIS_SSL_PASSWORD",
    "ssl_cert_reqs": "MIGRATION_KIT_REDIS_SSL_CERT_REQS",
    "ssl_check_hostname": "MIGRATION_KIT_REDIS_SSL_CHECK_HOSTNAME",
}
"""TLS option -> the environment variable read when the URL does not give it."""
_TLS_PATHS = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile")
_CERT_REQS = ("none", "optional", "required")
# Query keys whose values are secrets: masked in messages, refused in URLs we parse.
_SECRET_QUERY = ("password", "ssl_password")


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe to log or show)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc, query = parts.netloc, parts.query
    secret_query = any(k.lower() in _SECRET_QUERY for k, _ in parse_qsl(query, keep_blank_values=True))
    if "@" not in netloc and not secret_query:
        return url
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
        # "redis://secret@host" puts the password where a user name would be.
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"***@{hostport}"
    if secret_query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in _SECRET_QUERY else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


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
    """The URL to hand to redis-py: no credentials, none of our own query options."""
    masked: str
    """The URL as given, with its password masked, for messages."""
    host: str
    port: int
    db: int
    tls: bool
    cluster: bool | None
    """``True``/``False`` when ``?cluster=`` says so, ``None`` to detect."""
    username: str | None = None
    """The ACL user (``None``: the ``default`` user)."""
    password: str | None = field(default=None, repr=False)
    credentials_from: str | None = None
    """Where the password came from: ``"url"``, ``"environment"`` or ``None`` (no password)."""
    tls_options: dict[str, Any] = field(default_factory=dict, repr=False)
    """``ssl_*`` keyword arguments for redis-py (``rediss://`` only)."""

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments that carry the credentials and TLS options to redis-py's clients."""
        out: dict[str, Any] = dict(self.tls_options)
        if self.username is not None:
            out["username"] = self.username
        if self.password is not None:
            out["password"] = self.password
        return out

    def secrets(self) -> list[str]:
        """The secret strings this URL carries (to scrub them from any text shown to a user)."""
        found = [self.password, self.tls_options.get("ssl_password")]
        return [x for x in found if x]

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
    masked = mask_url(url)
    tls = scheme == "rediss"
    cluster: bool | None = None
    query = []
    given: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        low = key.lower()
        if low == "cluster":
            if value.lower() in _TRUE:
                cluster = True
            elif value.lower() in _FALSE:
                cluster = False
            else:
                raise ConfigurationError(f"Redis URL {masked!r}: cluster={value!r} must be true or false")
        elif low in _SECRET_QUERY:
            what = "MIGRATION_KIT_REDIS_SSL_PASSWORD" if low == "ssl_password" else f"the URL's user info or {ENV_PASSWORD}"
            raise ConfigurationError(
                f"Redis URL {masked!r} carries a secret in ?{low}=: URLs end up in logs and process lists; use {what}"
            )
        elif low in TLS_ENV:
            if not tls:
                raise ConfigurationError(
                    f"Redis URL {masked!r} has TLS option {low!r} but the scheme is redis://; use rediss:// for TLS"
                )
            given[low] = value
        else:
            query.append((key, value))
    username, password, source = _credentials(parts)
    netloc = parts.netloc.rpartition("@")[2]
    clean = urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))
    return RedisURL(
        url=clean,
        masked=masked,
        host=parts.hostname or "localhost",
        port=port,
        db=db,
        tls=tls,
        cluster=cluster,
        username=username,
        password=password,
        credentials_from=source,
        tls_options=_tls_options(given, masked) if tls else {},
    )


def _credentials(parts: Any) -> tuple[str | None, str | None, str | None]:
    """User and password from the URL, else from the environment; and where the password came from."""
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    source = "url" if password is not None else None
    if username is None:
        username = os.environ.get(ENV_USERNAME) or None
    if password is None and os.environ.get(ENV_PASSWORD):
        password, source = os.environ[ENV_PASSWORD], "environment"
    return username, password, source


def _tls_options(given: dict[str, str], masked: str) -> dict[str, Any]:
    """``ssl_*`` keyword arguments from the URL's query, else the environment, validated."""
    raw = dict(given)
    for option, env in TLS_ENV.items():
        if option not in raw and os.environ.get(env):
            raw[option] = os.environ[env]
    out: dict[str, Any] = {}
    for option, value in raw.items():
        where = f"{option} in {masked!r}" if option in given else TLS_ENV[option]
        if option in _TLS_PATHS:
            path = os.path.expanduser(value)
            exists = os.path.isdir(path) if option == "ssl_ca_path" else os.path.isfile(path)
            if not exists:
                raise ConfigurationError(f"TLS option {where}: {path!r} does not exist or cannot be read; check the path")
            out[option] = path
        elif option == "ssl_cert_reqs":
            if value.lower() not in _CERT_REQS:
                raise ConfigurationError(f"TLS option {where}: {value!r} must be one of {', '.join(_CERT_REQS)}")
            out[option] = value.lower()
        elif option == "ssl_check_hostname":
            if value.lower() in _TRUE:
                out[option] = True
            elif value.lower() in _FALSE:
                out[option] = False
            else:
                raise ConfigurationError(f"TLS option {where}: {value!r} must be true or false")
        else:  # ssl_password: from the environment only (refused in URLs above)
            out[option] = value
    if out.get("ssl_cert_reqs") == "none" and "ssl_check_hostname" not in out:
        out["ssl_check_hostname"] = False  # nothing verified means no name to check either
    if "ssl_keyfile" in out and "ssl_certfile" not in out:
        raise ConfigurationError("TLS option ssl_keyfile is set without ssl_certfile: a client certificate needs both")
    return out
