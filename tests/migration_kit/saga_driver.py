"""A process the kill -9 handover test starts, kills and starts again.

    python saga_driver.py MODE REDIS_URL ORDERS [KILL_AT]

Legacy saga state lives in Redis (``RedisStateStore``) and the migration's
store is the same Redis, so a restarted process sees both sides.

* ``legacy``:   place and pay every order on the live bus (shadow phase: legacy serves).
* ``promote``:  promote to primary and hand every order's saga to the candidate now.
* ``rollback``: roll back and hand every saga back to legacy.
* ``pay``:      promote to primary and place and pay every order there (the candidate serves).
* ``ship``:     publish every order's ``OrderShipped`` on the live bus (routed by phase).
* ``recover``:  finish the handovers a crash cut off, then print every saga's side and state.

``SAGA_KILL_ORDER``: the candidate dies in ``send_receipt`` of that order (a run cut off
mid-event); ``SAGA_CUTOFF``: the policy's ``cutoff`` (resume | rewind); ``SAGA_LEDGER``: a file
every real effect is appended to.

``KILL_AT=n``: the n-th write of the legacy state store during a handover
sends this process SIGKILL (between the handover's intent and its commit).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import saga_app  # noqa: E402

from graph_flows import flow_from_bus  # noqa: E402
from legacy_bus import RedisStateStore  # noqa: E402
from migration_kit import Migration, default_policy  # noqa: E402

NAME = "saga-kill"


class KillingStore(RedisStateStore):
    """Dies (SIGKILL) on the n-th save while armed: in the middle of a handover."""

    armed = False
    left = 0

    def save(self, key, state):  # noqa: ANN001, ANN201
        if self.armed:
            self.left -= 1
            if self.left <= 0:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().save(key, state)


def candidate(shop: saga_app.Shop):  # noqa: ANN201
    """The shop's own graph; ``SAGA_KILL_ORDER`` makes its ``send_receipt`` die (SIGKILL) on that order."""
    original = shop.bus.handlers_for("ReceiptDue")[0].handler
    doomed = os.environ.get("SAGA_KILL_ORDER")

    def send_receipt(e, ctx):  # noqa: ANN001, ANN202
        if e.payload["order"] == doomed:
            os.kill(os.getpid(), signal.SIGKILL)  # cut off mid-event: take_payment's checkpoint is written
        return original(e, ctx)

    return flow_from_bus(shop.bus).replace("send_receipt", send_receipt)


def main(argv: list[str] | None = None) -> None:
    """Run one MODE (``argv`` as on the command line, without the program name)."""
    argv = sys.argv[1:] if argv is None else argv
    mode, url, n = argv[0], argv[1], int(argv[2])
    kill_at = int(argv[3]) if len(argv) > 3 else 0
    store = KillingStore(url, namespace=NAME)
    shop = saga_app.build(store, os.environ.get("SAGA_LEDGER"))
    policy = default_policy().model_copy(update={"cutoff": os.environ.get("SAGA_CUTOFF", "resume")})
    m = Migration(NAME, legacy=shop.bus, candidate=candidate(shop), store=url, policy=policy)
    orders = [f"o{i:05d}" for i in range(n)]
    events = [e for e in saga_app.events(n) if e.type != "OrderShipped"]
    shipped = [e for e in saga_app.events(n) if e.type == "OrderShipped"]
    if kill_at:
        store.armed, store.left = True, kill_at
    if mode == "legacy":
        for e in events:
            shop.bus.dispatch(e)
    elif mode == "promote":
        if m.phase != "primary":
            m.promote(to="primary")
        m.settle("promoted: hand open orders over", sagas=orders)
    elif mode == "rollback":
        if m.phase != "rolled_back":
            m.rollback("test: roll back")
        m.settle("rolled back")
    elif mode == "pay":
        if m.phase != "primary":
            m.promote(to="primary")
        with m.attach(url):
            for e in events:
                shop.bus.dispatch(e)
    elif mode == "ship":
        with m.attach(url):
            for e in shipped:
                shop.bus.dispatch(e)
    elif mode == "recover":
        store.armed = False
        ledger = m.sagas()
        recovered = ledger.recover()
        out = {"recovered": len(recovered), "sagas": {}, "audit": m.handovers()}
        for o in orders:
            side, state = ledger.state(o)
            legacy_copy = store.peek(o)
            doc, _ = ledger.record(o)
            thread = m.graph.get_state(ledger.config(o)).values
            out["sagas"][o] = {
                "side": side,
                "state": state,
                "legacy_has": bool(legacy_copy),
                "candidate_has": bool(thread) or bool((doc or {}).get("seed")),
                "moving": bool((doc or {}).get("moving")),
            }
        print(json.dumps(out))
    m.close()


if __name__ == "__main__":
    main()
