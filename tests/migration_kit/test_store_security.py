"""A migration's Store on an authenticated TLS Redis: records and checkpoints work, secrets stay hidden."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

from migration_errors import StoreUnavailable
from migration_kit.store import Store
from servers import RedisServer, TlsFiles, make_tls_files

PASSWORD = "st0re-Pa55-w0rd"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(str(tmp_path_factory.mktemp("store-tls")))


@pytest.fixture(scope="module")
def server(tls: TlsFiles) -> Iterator[RedisServer]:
    """TLS only, client certificate required, ``--requirepass``."""
    srv = RedisServer.start_tls(tls, "--requirepass", PASSWORD, auth_clients=True)
    srv.password = PASSWORD
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def tls_env(tls: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    """Certificates from the environment, as a deployment would set them."""
    monkeypatch.setenv("MIGRATION_KIT_REDIS_SSL_CA_CERTS", tls.ca_cert)
    monkeypatch.setenv("MIGRATION_KIT_REDIS_SSL_CERTFILE", tls.client_cert)
    monkeypatch.setenv("MIGRATION_KIT_REDIS_SSL_KEYFILE", tls.client_key)
    for name in ("MIGRATION_KIT_REDIS_USERNAME", "MIGRATION_KIT_REDIS_PASSWORD", "MIGRATION_KIT_CHECKPOINT_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_store_records_and_checkpointer_over_tls_with_a_password(server: RedisServer, tls_env: None) -> None:
    url = f"rediss://:{PASSWORD}@localhost:{server.port}/0"
    store = Store(url, namespace="secure")
    try:
        assert store.records.put("phase", {"phase": "canary"}, version=0) == 1
        assert store.records.get("phase") == ({"phase": "canary"}, 1)
        assert store.checkpointer.get_tuple({"configurable": {"thread_id": "none"}}) is None
        for text in (repr(store), store.display_url, repr(store.records), repr(store.checkpointer)):
            assert PASSWORD not in text and "***" in text, text
    finally:
        store.close()
    assert server.cli("HGET", "mk:{secure}:doc:phase", "version") == "1"


def test_store_with_a_wrong_password_is_unavailable_without_showing_it(server: RedisServer, tls_env: None) -> None:
    store = Store(f"rediss://:not-{PASSWORD}@localhost:{server.port}/0")
    with pytest.raises(StoreUnavailable, match="check the password") as info:
        store.records
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)


def test_store_checkpoints_are_encrypted_when_the_key_is_in_the_environment(
    server: RedisServer, tls_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGRATION_KIT_CHECKPOINT_KEY", os.urandom(32).hex())
    monkeypatch.setenv("MIGRATION_KIT_REDIS_PASSWORD", PASSWORD)
    store = Store(f"rediss://localhost:{server.port}/0")
    try:
        assert isinstance(store.checkpointer.serde, EncryptedSerializer)
        assert isinstance(store.checkpointer.client, redis.Redis)
    finally:
        store.close()
