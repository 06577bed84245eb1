"""Dynamic batching: requests that arrive together are decoded together.

Why: one search over 32 sentences costs little more than over one (the products get wider,
not more numerous), so a server answering each request alone wastes most of the machine
under load.  A batch takes every request waiting when the decoder is free (those that came
in while it was busy) and those arriving within ``window_s`` of the first (up to
``max_sentences`` sentences in all); it is then split by decoding settings and run on one
worker thread, which keeps the model out of the event loop (health checks and new
requests are answered while it works) and runs one search at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

Key = tuple  # decoding settings: requests with equal keys share a search


@dataclass
class Job:
    texts: list[str]
    key: Key
    future: asyncio.Future = field(repr=False)


class DynamicBatcher:
    """``await submit(texts, key)`` returns ``decode(all texts of the batch, key)``'s results for ``texts``."""

    def __init__(self, decode: Callable[[list[str], Key], list[Any]], max_sentences: int, window_s: float) -> None:
        self.decode = decode
        self.max_sentences = max_sentences
        self.window_s = window_s
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decoder")
        self.batches = 0  # for /health: how many searches have run
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.worker.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list[str], key: Key) -> list[Any]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(Job(texts, key, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect(loop)
            for key in dict.fromkeys(j.key for j in jobs):  # each setting once, in arrival order
                group = [j for j in jobs if j.key == key and not j.future.cancelled()]
                if group:
                    await self._decode_group(loop, key, group)

    async def _collect(self, loop: asyncio.AbstractEventLoop) -> list[Job]:
        """The first job to arrive, every job already waiting behind it, and those arriving within
        ``window_s`` of it, up to ``max_sentences`` sentences (the first job always goes)."""
        jobs = [await self.queue.get()]
        n, deadline = len(jobs[0].texts), loop.time() + self.window_s
        while n < self.max_sentences:
            try:
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), left)
                except TimeoutError:
                    break
            jobs.append(job)
            n += len(job.texts)
        return jobs

    async def _decode_group(self, loop: asyncio.AbstractEventLoop, key: Key, group: list[Job]) -> None:
        texts = [t for j in group for t in j.texts]
        try:
            results = await loop.run_in_executor(self.worker, self.decode, texts, key)
        except Exception as err:  # noqa: BLE001 - the server must go on; each waiting request gets the error
            for j in group:
                if not j.future.done():
                    j.future.set_exception(err)
            return
        self.batches += 1
        start = 0
        for j in group:
            if not j.future.done():
                j.future.set_result(results[start : start + len(j.texts)])
            start += len(j.texts)
