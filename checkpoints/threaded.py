"""The async half of a sync checkpoint saver: each call runs the sync one in a worker thread."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Unpack

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple

from checkpoints.core import ListOptions

__all__ = ["ThreadedAsync", "in_thread"]


def in_thread(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    """The async twin of the sync method ``name``: the same call, run in a worker thread.

    Written once rather than once per method: the twin takes exactly the sync
    method's arguments (its signature is ``BaseCheckpointSaver``'s, shown through
    ``__wrapped__``). ``asyncio.to_thread`` keeps the caller's context variables,
    so a sandbox or a trace set around ``ainvoke`` is seen by the saver.
    """
    base = getattr(BaseCheckpointSaver, "a" + name, None) or getattr(BaseCheckpointSaver, name)

    @functools.wraps(base)
    async def twin(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self, name), *args, **kwargs)

    twin.__doc__ = f"``{name}`` in a worker thread."
    return twin


class ThreadedAsync:
    """Mix in before a sync ``BaseCheckpointSaver`` so ``ainvoke`` works on it too."""

    aget_tuple = in_thread("get_tuple")
    aput = in_thread("put")
    aput_writes = in_thread("put_writes")
    adelete_thread = in_thread("delete_thread")

    async def alist(self, config: RunnableConfig | None, **options: Unpack[ListOptions]) -> AsyncIterator[CheckpointTuple]:
        """``list`` in a worker thread (fetched whole, then yielded)."""
        items = await asyncio.to_thread(lambda: list(self.list(config, **options)))  # type: ignore[attr-defined]
        for item in items:
            yield item
