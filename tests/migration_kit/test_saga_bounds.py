"""The saga journal holds each saga once and the audit list its newest handovers; rollback still finds every saga."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from graph_flows import flow_from_bus
from migration_kit import Migration
from migration_kit.live import sagas as sagas_module
from migration_kit.store import Store

sys.path.insert(0, str(Path(__file__).parent))
import saga_app  # noqa: E402


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_url(request, tmp_path):
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("redis_url")


def test_a_trimmed_list_keeps_its_newest_items_in_order_and_goes_on_appending(store_url):
    records = Store(store_url, namespace="trim").records
    for i in range(7):
        records.append("l", {"i": i})
    records.trim("l", 3)
    assert [x["i"] for x in records.items("l")] == [4, 5, 6]
    assert records.append("l", {"i": 7}) == 4
    assert [x["i"] for x in records.items("l")] == [4, 5, 6, 7]
    assert [x["i"] for x in records.items("l", 1, 3)] == [5, 6]
    records.close()


def test_sagas_promoted_and_rolled_back_twice_are_journaled_once_and_the_audit_keeps_its_newest(redis_url, monkeypatch):
    monkeypatch.setattr(sagas_module, "MAX_AUDIT", 5)
    events = saga_app.events(6)
    pure = saga_app.build()
    for e in events:
        pure.bus.dispatch(e.model_copy(deep=True))
    shop = saga_app.build()
    m = Migration("saga-bounds", legacy=shop.bus, candidate=flow_from_bus(shop.bus), store=redis_url)
    with m.attach():
        for attempt, part in enumerate((events[:6], events[6:12])):
            m.promote(to="primary")
            for e in part:
                shop.bus.dispatch(e.model_copy(deep=True))
            m.rollback(f"test round {attempt}")
            m.settle()
        for e in events[12:]:
            shop.bus.dispatch(e.model_copy(deep=True))
    ledger = m.sagas(shop.bus.state_store)
    journal = m.store.records.items(sagas_module.JOURNAL)
    assert len(journal) == len(set(journal))  # each saga once, however often it moved
    audit = ledger.audit()
    assert len(audit) == 5  # the newest handovers; the rest trimmed
    orders = sorted({e.correlation_id for e in events})
    assert {o: shop.bus.state_for(o) for o in orders} == {o: pure.bus.state_for(o) for o in orders}
    assert not shop.violations
    m.close()
