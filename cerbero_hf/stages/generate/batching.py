"""Micro-batching of concurrent coroutine calls onto one blocking batch function.

Many coroutines each ``await batcher.submit(item)``; one worker task collects every item pending
at that moment (up to ``max_batch``), runs ``fn(items) -> results`` in a worker thread and hands
each caller its own result. Used by the local generator backend (one batched ``generate`` for many
conversations) and by SelfChat (one ``encode`` call for many candidate messages).

The batcher binds itself to the running event loop on first use and re-binds when called from a
new loop (``Dataset.map`` creates a fresh loop per call), so it is safe to keep in a long-lived
object. It holds no state worth pickling.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Sequence


class AsyncBatcher:
    """Run ``fn`` on batches of items submitted concurrently.

    Args:
        fn: blocking function mapping a list of items to a list of results of the same length.
        max_batch: the most items per call.
        key: optional function grouping items; one batch holds items of one key only
            (e.g. the same sampling parameters).
    """

    def __init__(self, fn: Callable[[list], Sequence[Any]], max_batch: int = 64,
                 key: Callable[[Any], Any] | None = None):
        self.fn = fn
        self.max_batch = max_batch
        self.key = key
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self.calls = 0

    async def submit(self, item: Any) -> Any:
        """Queue ``item`` and wait for its result (exceptions of ``fn`` are raised here)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._queue is None:
            self._loop, self._queue, self._worker = loop, asyncio.Queue(), None
        fut = loop.create_future()
        self._queue.put_nowait((item, fut))
        if self._worker is None or self._worker.done():
            # the worker exits when the queue is empty, so no task outlives the loop's work
            self._worker = loop.create_task(self._run(self._queue))
        return await fut

    async def _run(self, queue: asyncio.Queue) -> None:
        await asyncio.sleep(0)  # let coroutines that are ready queue their items too
        while not queue.empty():
            pending: list[tuple[Any, asyncio.Future]] = []
            while not queue.empty() and len(pending) < self.max_batch * 4:
                pending.append(queue.get_nowait())
            groups: dict = {}
            for item, fut in pending:
                groups.setdefault(self.key(item) if self.key else None, []).append((item, fut))
            for group in groups.values():
                for start in range(0, len(group), self.max_batch):
                    await self._call(group[start:start + self.max_batch])

    async def _call(self, batch: list) -> None:
        batch = [(item, fut) for item, fut in batch if not fut.cancelled()]
        if not batch:
            return
        self.calls += 1
        try:
            results = await asyncio.to_thread(self.fn, [item for item, _ in batch])
        except Exception as err:  # noqa: BLE001 - every caller of this batch sees the error
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        for (_, fut), result in zip(batch, results):
            if not fut.done():
                fut.set_result(result)

    def close(self) -> None:
        """Cancel a worker left running (the caller was interrupted) and let it end on its own loop.

        Without this, an abandoned loop still holds the pending worker, and Python reports "Task was
        destroyed but it is pending" when the process exits.
        """
        worker, loop, self._worker = self._worker, self._loop, None
        if worker is None or worker.done():
            return
        worker.cancel()
        if loop is not None and not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(asyncio.gather(worker, return_exceptions=True))

    def __getstate__(self) -> dict:
        return {"fn": self.fn, "max_batch": self.max_batch, "key": self.key}

    def __setstate__(self, state: dict) -> None:
        AsyncBatcher.__init__(self, **state)
