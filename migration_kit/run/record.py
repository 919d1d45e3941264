"""Recording live traffic: the tapped stream exported as a JSON Lines log that ``replay`` reads.

Each line is ``{"event": ..., "effects": [...]}`` with the authoritative
effect calls the live dispatch made (arguments and real responses), so a
replay answers both paths' sandboxed calls with what really happened, not
with stubs. Reading the stream does not consume it (``XRANGE``/``XREAD``,
no consumer group): shadow workers see the same entries.

The log leaves the process, so every line is masked by the migration's
redactor (``migration_kit.observe.redaction``); stream entries were masked by the tap
already, and masking a masked value changes nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from legacy_bus import EffectCall, Event, EventLog
from migration_errors import ConfigurationError

from migration_kit.live.tap import FIELD, BadShadowEntry, ShadowKeys, decode_entry
from migration_kit.types import Recording

__all__ = ["record_stream"]


def record_stream(
    migration: Recording,
    out: str | Path,
    *,
    store_url: str | None = None,
    follow: bool = False,
    append: bool = False,
    block_ms: int = 1000,
    max_events: int | None = None,
    on_line: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Export the migration's tapped stream to ``out``; returns counts (``written``, ``bad``).

    Without ``follow`` it exports what the stream holds now and returns;
    with it, it keeps waiting for new entries until ``stop`` is set (or
    SIGTERM / Ctrl-C). An existing ``out`` is refused unless ``append``.
    ``migration`` gives the stream's keys (its name), its Redis (its store,
    unless ``store_url``) and the redactor every line goes through.
    """
    from redis_connect.connection import connect

    url = store_url or migration.store.url
    if not url.startswith(("redis://", "rediss://")):
        raise ConfigurationError("record reads the live shadow stream, which lives in Redis: pass --store redis://host:port/db")
    client = connect(url)
    keys = ShadowKeys(migration.name)
    redactor = migration.redactor
    stop = stop or threading.Event()
    previous = _install_sigterm(stop) if follow else None
    written = bad = 0
    last = "0-0"
    try:
        with EventLog(out).writer(append=append) as writer:
            while not stop.is_set():
                if follow:
                    got = client.xread({keys.stream: last}, count=500, block=block_ms)
                    batch = got[0][1] if got else []
                else:
                    batch = client.xrange(keys.stream, min=f"({last}" if last != "0-0" else "-", count=500)
                    if not batch:
                        break
                for entry_id, fields in batch:
                    last = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                    try:
                        tapped = decode_entry(fields.get(FIELD), last)
                    except BadShadowEntry:
                        bad += 1
                        continue
                    served = tapped.legacy if tapped.legacy is not None else tapped.candidate
                    authoritative = [c for c in served.effects if c.mode == "real"] if served is not None else []
                    secrets = redactor.event_secrets(tapped.event)
                    event = Event.from_dict(redactor.event(tapped.event, secrets=secrets))
                    calls = [EffectCall.from_dict(redactor.call(c.to_dict(), i, secrets=secrets)) for i, c in enumerate(authoritative)]
                    writer.append(event, calls)
                    written += 1
                    if on_line is not None:
                        on_line(written)
                    if max_events is not None and written >= max_events:
                        stop.set()
                        break
                writer.flush()
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return {"written": written, "bad": bad}


def _install_sigterm(stop: threading.Event) -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda *_: stop.set())
