"""Authenticated and encrypted Redis: passwords, ACL users and TLS, against real servers started here.

Every server is a real ``redis-server``: one with ``--requirepass`` and an ACL
user, one TLS-only, one TLS-only that also requires a client certificate and
a password. The certificates are made by the ``openssl`` CLI per module.
"""

from __future__ import annotations

import logging
import operator
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from checkpoints import AsyncRedisSaver, ConfigurationError, RedisSaver, StoreUnavailable, open_checkpointer
from redis_connect.urls import parse_redis_url
from migration_kit.store import Store
from servers import RedisServer, TlsFiles, make_tls_files

ADMIN_PW = "adm1n-Pa55-w0rd"
ALICE_PW = "al1ce-Pa55-w0rd"
WRONG_PW = "wr0ng-Pa55-w0rd"
KEY_PASSPHRASE = "k3y-Pa55phrase"
SECRETS = (ADMIN_PW, ALICE_PW, WRONG_PW, KEY_PASSPHRASE)


class State(TypedDict):
    value: int
    trail: Annotated[list[str], operator.add]


def small_graph() -> StateGraph:
    """``double -> inc``: a real two-node graph, enough to write checkpoints, blobs and writes."""

    def double(state: State) -> dict[str, Any]:
        return {"value": state["value"] * 2, "trail": ["double"]}

    def inc(state: State) -> dict[str, Any]:
        return {"value": state["value"] + 1, "trail": ["inc"]}

    builder = StateGraph(State)
    builder.add_node("double", double)
    builder.add_node("inc", inc)
    builder.add_edge(START, "double")
    builder.add_edge("double", "inc")
    builder.add_edge("inc", END)
    return builder


def run_graph(saver: Any, thread: str = "t") -> None:
    """Run the graph twice on one thread and check the state came back from the saver."""
    graph = small_graph().compile(checkpointer=saver)
    config = {"configurable": {"thread_id": thread}}
    assert graph.invoke({"value": 3, "trail": []}, config)["value"] == 7
    assert graph.invoke({"value": 5, "trail": []}, config)["trail"] == ["double", "inc", "double", "inc"]
    assert saver.get_tuple(config).checkpoint["channel_values"]["value"] == 11
    assert len(list(saver.list(config))) >= 6


async def arun_graph(saver: Any, thread: str = "at") -> None:
    graph = small_graph().compile(checkpointer=saver)
    config = {"configurable": {"thread_id": thread}}
    assert (await graph.ainvoke({"value": 1, "trail": []}, config))["value"] == 3
    assert (await saver.aget_tuple(config)).checkpoint["channel_values"]["value"] == 3


def use_records(url: str) -> None:
    """The migration's own records (Store.records on Redis) work through the same URL."""
    store = Store(url, namespace="secure")
    try:
        records = store.records
        assert records.put("phase", {"phase": "shadow"}, version=0) == 1
        assert records.get("phase") == ({"phase": "shadow"}, 1)
        assert records.append("history", {"to": "shadow"}) == 1
        assert records.incr("results", {"compared": 2}) == {"compared": 2}
    finally:
        store.close()


def assert_no_secret(error: BaseException) -> None:
    """No secret in the message, repr, args, the printed traceback, or any chained exception's text."""
    texts = [str(error), repr(error), repr(error.args), "".join(traceback.format_exception(error))]
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        texts += [str(link), repr(link), repr(link.args)]
        link = link.__cause__ or link.__context__
    for secret in SECRETS:
        for text in texts:
            assert secret not in text, f"secret leaked into: {text[:300]}"


# -- servers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    """``--requirepass`` for the default user, and an ACL user ``alice``."""
    server = RedisServer.start(
        "--requirepass", ADMIN_PW,
        "--user", "alice", "on", f">{ALICE_PW}", "~*", "&*", "+@all",
        "--user", "reader", "on", f">{ALICE_PW}", "~*", "+@read", "+ping", "+info", "+hello", "+auth",
    )  # fmt: skip
    server.password = ADMIN_PW
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(str(tmp_path_factory.mktemp("tls")), key_passphrase=KEY_PASSPHRASE)


@pytest.fixture(scope="module")
def tls_server(tls: TlsFiles) -> Iterator[RedisServer]:
    """TLS only (``--port 0``); no client certificate required."""
    server = RedisServer.start_tls(tls)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mtls_server(tls: TlsFiles) -> Iterator[RedisServer]:
    """TLS only, ``--tls-auth-clients yes`` and ``--requirepass``."""
    server = RedisServer.start_tls(tls, "--requirepass", ADMIN_PW, auth_clients=True)
    server.password = ADMIN_PW
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "MIGRATION_KIT_REDIS_USERNAME",
        "MIGRATION_KIT_REDIS_PASSWORD",
        "MIGRATION_KIT_REDIS_SSL_CA_CERTS",
        "MIGRATION_KIT_REDIS_SSL_CERTFILE",
        "MIGRATION_KIT_REDIS_SSL_KEYFILE",
        "MIGRATION_KIT_REDIS_SSL_PASSWORD",
        "MIGRATION_KIT_REDIS_SSL_CERT_REQS",
        "MIGRATION_KIT_REDIS_SSL_CHECK_HOSTNAME",
        "MIGRATION_KIT_CHECKPOINT_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


# -- passwords and ACL users ----------------------------------------------------


def test_password_in_the_url_runs_a_graph_and_the_store_records(password_server: RedisServer) -> None:
    """``redis://:pw@`` (requirepass) and ``redis://alice:pw@`` (ACL user): saver, open_checkpointer, records."""
    port = password_server.port
    for url in (f"redis://:{ADMIN_PW}@127.0.0.1:{port}/0", f"redis://alice:{ALICE_PW}@127.0.0.1:{port}/1"):
        with RedisSaver.from_conn_string(url) as saver:
            run_graph(saver)
        saver = open_checkpointer(url)
        try:
            run_graph(saver, thread="opened")
        finally:
            saver.close()
        use_records(url)
    assert password_server.cli("-n", "1", "EXISTS", "mk:{secure}:doc:phase") == "1"


async def test_credentials_from_the_environment_for_sync_async_and_records(
    password_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL without credentials takes the ACL user and password from MIGRATION_KIT_REDIS_*."""
    monkeypatch.setenv("MIGRATION_KIT_REDIS_USERNAME", "alice")
    monkeypatch.setenv("MIGRATION_KIT_REDIS_PASSWORD", ALICE_PW)
    url = f"redis://127.0.0.1:{password_server.port}/2"
    assert ALICE_PW not in repr(parse_redis_url(url))
    with RedisSaver.from_conn_string(url) as saver:
        run_graph(saver, thread="env")
    async with AsyncRedisSaver.from_conn_string(url) as asaver:
        await arun_graph(asaver)
    use_records(url)
    # A user named in the URL, its password from the environment.
    with RedisSaver.from_conn_string(f"redis://alice@127.0.0.1:{password_server.port}/2") as saver:
        assert saver.get_tuple({"configurable": {"thread_id": "env"}}) is not None


def test_a_percent_encoded_password_is_decoded(tmp_path: Path) -> None:
    """Reserved characters in a URL's password are percent-encoded, and decoded before AUTH."""
    server = RedisServer.start("--requirepass", "p@ss:w/rd")
    try:
        with RedisSaver.from_conn_string(f"redis://:p%40ss%3Aw%2Frd@127.0.0.1:{server.port}/0") as saver:
            run_graph(saver)
    finally:
        server.stop()


async def test_a_wrong_password_is_a_clear_error_that_never_shows_it(
    password_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Every entry point says to check the password / ACL user, names the masked URL, and hides the password."""
    caplog.set_level(logging.DEBUG)
    port = password_server.port
    for url, user in ((f"redis://:{WRONG_PW}@127.0.0.1:{port}/0", "default"), (f"redis://alice:{WRONG_PW}@127.0.0.1:{port}/0", "alice")):
        masked = url.replace(WRONG_PW, "***")
        errors = []
        with pytest.raises(StoreUnavailable) as info:
            with RedisSaver.from_conn_string(url):
                pass
        errors.append(info.value)
        with pytest.raises(StoreUnavailable) as info:
            async with AsyncRedisSaver.from_conn_string(url):
                pass
        errors.append(info.value)
        with pytest.raises(StoreUnavailable) as info:
            open_checkpointer(url)
        errors.append(info.value)
        with pytest.raises(StoreUnavailable) as info:
            Store(url).records
        errors.append(info.value)
        for error in errors:
            message = str(error)
            assert masked in message
            assert "check the password" in message and f"ACL user ({user!r}" in message
            assert_no_secret(error)
    assert WRONG_PW not in caplog.text


def test_a_wrong_password_from_the_environment_names_the_variable_not_the_value(
    password_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGRATION_KIT_REDIS_PASSWORD", WRONG_PW)
    with pytest.raises(StoreUnavailable) as info:
        open_checkpointer(f"redis://127.0.0.1:{password_server.port}/0")
    assert "MIGRATION_KIT_REDIS_PASSWORD" in str(info.value)
    assert_no_secret(info.value)


def test_no_password_for_a_protected_server_says_where_to_put_one(password_server: RedisServer) -> None:
    with pytest.raises(StoreUnavailable, match="requires a password.*MIGRATION_KIT_REDIS_PASSWORD"):
        open_checkpointer(f"redis://127.0.0.1:{password_server.port}/0")


def test_an_acl_user_without_the_needed_commands_gets_a_permission_hint(password_server: RedisServer) -> None:
    """A read-only ACL user cannot load the saver's scripts: the error names the user and ACL SETUSER."""
    with pytest.raises(StoreUnavailable) as info:
        open_checkpointer(f"redis://reader:{ALICE_PW}@127.0.0.1:{password_server.port}/0")
    assert "'reader' lacks a permission" in str(info.value)
    assert_no_secret(info.value)


def test_reprs_and_display_urls_never_show_secrets(password_server: RedisServer) -> None:
    """Savers, their clients, Store, RedisURL: nothing a user may print carries the password."""
    url = f"redis://alice:{ALICE_PW}@127.0.0.1:{password_server.port}/0"
    with RedisSaver.from_conn_string(url) as saver:
        texts = [repr(saver), str(saver), repr(saver.client), repr(saver.serde), repr(parse_redis_url(url))]
    store = Store(url)
    texts += [repr(store), store.display_url]
    for text in texts:
        assert ALICE_PW not in text, text
    assert "alice:***@" in repr(store) and "alice:***@" in texts[0]


def test_secrets_are_refused_as_query_options_and_tls_options_need_rediss(tls: TlsFiles) -> None:
    with pytest.raises(ConfigurationError) as info:
        open_checkpointer(f"rediss://127.0.0.1:1/0?ssl_password={KEY_PASSPHRASE}")
    assert "MIGRATION_KIT_REDIS_SSL_PASSWORD" in str(info.value)
    assert_no_secret(info.value)
    with pytest.raises(ConfigurationError, match="use rediss://"):
        open_checkpointer(f"redis://127.0.0.1:1/0?ssl_ca_certs={tls.ca_cert}")
    with pytest.raises(ConfigurationError, match="does not exist"):
        open_checkpointer("rediss://127.0.0.1:1/0?ssl_ca_certs=/no/such/ca.pem")
    with pytest.raises(ConfigurationError, match="required"):
        open_checkpointer(f"rediss://127.0.0.1:1/0?ssl_ca_certs={tls.ca_cert}&ssl_cert_reqs=maybe")


# -- TLS ------------------------------------------------------------------------


def test_rediss_with_the_ca_in_the_url_runs_a_graph_and_the_store_records(tls_server: RedisServer, tls: TlsFiles) -> None:
    """``rediss://...?ssl_ca_certs=`` verifies the server certificate (host name included) and works end to end."""
    url = f"rediss://localhost:{tls_server.port}/0?ssl_ca_certs={tls.ca_cert}"
    with RedisSaver.from_conn_string(url) as saver:
        run_graph(saver)
    use_records(url)
    assert tls_server.cli("EXISTS", "mk:{secure}:doc:phase") == "1"


async def test_rediss_with_the_ca_from_the_environment_for_the_async_saver(
    tls_server: RedisServer, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGRATION_KIT_REDIS_SSL_CA_CERTS", tls.ca_cert)
    url = f"rediss://127.0.0.1:{tls_server.port}/0"
    async with AsyncRedisSaver.from_conn_string(url) as saver:
        await arun_graph(saver)
    with open_checkpointer(url) as saver:
        run_graph(saver, thread="tls-env")


def test_rediss_without_the_ca_fails_verification_with_a_tls_hint(tls_server: RedisServer) -> None:
    with pytest.raises(StoreUnavailable) as info:
        open_checkpointer(f"rediss://127.0.0.1:{tls_server.port}/0")
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) and "ssl_ca_certs" in str(info.value)


def test_plain_redis_url_on_a_tls_port_suggests_rediss(tls_server: RedisServer) -> None:
    with pytest.raises(StoreUnavailable, match="use rediss://"):
        open_checkpointer(f"redis://127.0.0.1:{tls_server.port}/0")


def test_client_certificate_and_password_over_tls(mtls_server: RedisServer, tls: TlsFiles) -> None:
    """``--tls-auth-clients yes`` + ``--requirepass``: the client certificate from the URL, then from the environment."""
    port = mtls_server.port
    url = (
        f"rediss://:{ADMIN_PW}@localhost:{port}/0?ssl_ca_certs={tls.ca_cert}"
        f"&ssl_certfile={tls.client_cert}&ssl_keyfile={tls.client_key}"
    )
    with RedisSaver.from_conn_string(url) as saver:
        run_graph(saver)
    use_records(url)

    # Without a client certificate the server ends the handshake.
    with pytest.raises(StoreUnavailable) as info:
        open_checkpointer(f"rediss://:{ADMIN_PW}@localhost:{port}/0?ssl_ca_certs={tls.ca_cert}")
    assert "ssl_certfile" in str(info.value)
    assert_no_secret(info.value)


def test_an_encrypted_client_key_with_its_passphrase_from_the_environment(
    mtls_server: RedisServer, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key passphrase comes only from MIGRATION_KIT_REDIS_SSL_PASSWORD and appears in no message."""
    monkeypatch.setenv("MIGRATION_KIT_REDIS_PASSWORD", ADMIN_PW)
    monkeypatch.setenv("MIGRATION_KIT_REDIS_SSL_CA_CERTS", tls.ca_cert)
    monkeypatch.setenv("MIGRATION_KIT_REDIS_SSL_CERTFILE", tls.client_cert)
    monkeypatch.setenv("MIGRATION_KIT_REDIS_SSL_KEYFILE", tls.client_key_encrypted)
    monkeypatch.setenv("MIGRATION_KIT_REDIS_SSL_PASSWORD", KEY_PASSPHRASE)
    url = f"rediss://localhost:{mtls_server.port}/0"
    with RedisSaver.from_conn_string(url) as saver:
        run_graph(saver, thread="enc-key")
        assert KEY_PASSPHRASE not in repr(saver.client)
    monkeypatch.setenv("MIGRATION_KIT_REDIS_SSL_PASSWORD", WRONG_PW)
    with pytest.raises(StoreUnavailable) as info:
        open_checkpointer(url)
    assert_no_secret(info.value)
