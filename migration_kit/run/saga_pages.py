"""A replay's scratch saga state, saved in pages: a save writes only the pages whose sagas were used.

A long replay saves its progress every ``checkpoint_every`` events. Writing
every saga's state each time made that record grow to megabytes, rewritten
every hundred events. Here the sagas (at most ``saga_capacity`` of them, least
recently used out first, as ``BoundedStateStore``) are spread over a fixed
number of pages by a hash of the saga key; a save writes only the pages
holding a saga that was read, written or evicted since the last save, each
under a new version key, and the progress record names the version of every
page (the manifest). A save costs what the events since the last one touched,
not what the replay holds.

Resuming is exact: each saga carries the tick of its last use, so the restored
store has the same sagas in the same least-recently-used order. The progress
record is written after its pages and names only pages already written, and a
superseded page version is deleted only after the record naming its successor
is saved, so a crash between any two writes resumes from one consistent save.

Record keys, under the progress record's key ``replay:<sha1 of the log path>``:

* ``<progress key>:<side>:<page>:<version>``  one page: ``[[saga key, tick, state], ...]``, sealed
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from legacy_bus.state import BoundedStateStore

from migration_kit.store import Records

__all__ = ["PagedStates", "page_count"]

#: Sagas per page, on average; pages = saga_capacity / SAGAS_PER_PAGE within [MIN_PAGES, MAX_PAGES].
SAGAS_PER_PAGE = 16
MIN_PAGES = 16
MAX_PAGES = 4096


def page_count(capacity: int) -> int:
    """How many pages a store of ``capacity`` sagas is spread over."""
    return max(MIN_PAGES, min(MAX_PAGES, capacity // SAGAS_PER_PAGE))


@lru_cache(maxsize=1 << 16)
def _page_of(key: str, pages: int) -> int:
    # A saga is used by every step of its events (the legacy bus saves its state after each handler):
    # hashing its key once per event rather than once per step.
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big") % pages


class PagedStates(BoundedStateStore):
    """A ``BoundedStateStore`` that knows which pages changed since it was last saved."""

    def __init__(self, capacity: int = 10_000, *, side: str = "states") -> None:
        super().__init__(capacity)
        self.side = side
        self.pages = page_count(capacity)
        self._tick = 0
        self._ticks: dict[str, int] = {}  # live saga -> the tick of its last use
        self._members: dict[int, set[str]] = {}  # page -> live sagas on it
        self._dirty: set[int] = set()
        self._versions: dict[int, int] = {}  # page -> the version the saved manifest names
        self._superseded: list[tuple[int, int]] = []  # (page, version) to delete once the record is saved
        self._pending: dict[int, int] = {}

    def _page(self, key: str) -> int:
        return _page_of(key, self.pages)

    def _used(self, key: str) -> None:
        page = self._page(key)
        self._dirty.add(page)
        if key in self._states:
            self._tick += 1
            self._ticks[key] = self._tick
            self._members.setdefault(page, set()).add(key)
        else:
            self._ticks.pop(key, None)
            self._members.get(page, set()).discard(key)

    def load(self, key: str) -> dict[str, Any]:
        """The saga's state, marking its page used."""
        state = super().load(key)
        if key in self._states:  # a read moves the saga in the eviction order
            self._used(key)
        return state

    def save(self, key: str, state: dict[str, Any]) -> None:
        """Keep the saga's state, marking its page (and an evicted saga's) to be rewritten."""
        full = key not in self._states and len(self._states) >= self.capacity
        oldest = next(iter(self._states), None) if full else None
        super().save(key, state)
        self._used(key)
        if oldest is not None and oldest not in self._states:
            self._used(oldest)  # evicted: its page is rewritten without it

    def restore(self, snapshot: dict[str, Any] | None) -> None:
        """Replace the content with a ``snapshot()`` (a progress record saved before pages existed)."""
        super().restore(snapshot)
        self._ticks, self._members = {}, {}
        for key in self._states:
            self._used(key)

    # -- saving ---------------------------------------------------------------------

    def save_pages(self, records: Records, prefix: str, seal: Callable[[Any], Any]) -> dict[str, Any]:
        """Write the pages changed since the last save; returns the manifest for the progress record."""
        self._pending = {}
        for page in sorted(self._dirty):
            version = self._versions.get(page, 0) + 1
            sagas = [[k, self._ticks[k], self._states[k]] for k in sorted(self._members.get(page, ()))]
            records.put(f"{prefix}:{self.side}:{page}:{version}", seal(sagas))
            self._pending[page] = version
        named = {**self._versions, **self._pending}
        return {
            "pages": self.pages,
            "versions": [named.get(p, 0) for p in range(self.pages)],  # 0: never written
            "tick": self._tick,
            "evicted": self.evicted,
            "capacity": self.capacity,
        }

    def saved(self, records: Records, prefix: str) -> None:
        """The progress record naming the new pages is saved: drop the versions it superseded."""
        for page, version in self._pending.items():
            old = self._versions.get(page)
            if old is not None:
                records.delete(f"{prefix}:{self.side}:{page}:{old}")
            self._versions[page] = version
        self._pending = {}
        self._dirty.clear()

    def drop_pages(self, records: Records, prefix: str, manifest: dict[str, Any] | None) -> None:
        """Delete the pages a manifest names (a finished or abandoned replay's)."""
        for page, version in enumerate((manifest or {}).get("versions") or ()):
            if version:
                records.delete(f"{prefix}:{self.side}:{page}:{version}")

    # -- resuming ---------------------------------------------------------------------

    def restore_pages(self, records: Records, prefix: str, manifest: dict[str, Any], unseal: Callable[[Any], Any]) -> None:
        """Replace the content with what the manifest's pages hold, in the saved eviction order."""
        self.pages = int(manifest["pages"])  # as saved, whatever the capacity is now
        rows: list[tuple[int, str, dict[str, Any]]] = []
        self._versions = {}
        for page, version in enumerate(manifest["versions"]):
            if not version:
                continue
            data, _ = records.get(f"{prefix}:{self.side}:{page}:{version}")
            self._versions[page] = int(version)
            rows.extend((int(tick), key, state) for key, tick, state in unseal(data) or [])
        rows.sort()
        self._states = OrderedDict((key, state) for _, key, state in rows)
        self._ticks = {key: tick for tick, key, _ in rows}
        self._members = {}
        for key in self._states:
            self._members.setdefault(self._page(key), set()).add(key)
        self._tick = int(manifest["tick"])
        self.evicted = int(manifest["evicted"])
        self._dirty.clear()
