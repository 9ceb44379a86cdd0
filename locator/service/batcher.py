"""Micro-batching: photos of concurrent requests are read and embedded together, for at most `wait_ms` or
`max_batch` photos (a request of more photos than that is a batch of its own), on the one worker thread that owns
the models and the store; each request then gets its own predictions with its own settings.

The wait is only spent under concurrent load: when the last batch served one request alone, or the service sat
idle for longer than the wait, and none is queued, the next request starts at once (a lone analyst does not pay
`wait_ms` for company that never comes). Once requests overlap, batches wait again, which is what keeps the
throughput of many clients."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from locator.methods import LocateSettings
from locator.predictions import Prediction

Run = Callable[[list[tuple[list[bytes], LocateSettings]]], list[list[Prediction]]]


@dataclass
class _Job:
    photos: list[bytes]
    settings: LocateSettings
    done: asyncio.Future


class MicroBatcher:
    def __init__(self, run: Run, executor: Executor, max_batch: int, wait_ms: float) -> None:
        self.run, self.executor, self.max_batch, self.wait_s = run, executor, max_batch, wait_ms / 1000
        self.queue: asyncio.Queue[_Job] | None = None
        self.task: asyncio.Task | None = None
        self.held: _Job | None = None  # taken from the queue, but too large for the batch it came to: starts the next
        self.batch: list[_Job] = []  # the batch being run, or the last one until the next is gathered

    async def submit(self, photos: list[bytes], settings: LocateSettings) -> list[Prediction]:
        if self.task is None:
            self.queue = asyncio.Queue()
            self.task = asyncio.get_running_loop().create_task(self._serve())
        job = _Job(photos, settings, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        return await job.done

    async def _next_batch(self) -> list[_Job]:
        idle_since = time.monotonic()
        first, self.held = self.held or await self.queue.get(), None
        idle = time.monotonic() - idle_since > self.wait_s
        alone = (len(self.batch) <= 1 or idle) and self.queue.empty()  # self.batch: still the last one
        deadline = time.monotonic() + (0 if alone else self.wait_s)
        jobs, size = [first], len(first.photos)
        self.batch = jobs
        while size < self.max_batch:
            if not self.queue.empty():  # already waiting: taken even once the wait is over
                job = self.queue.get_nowait()
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), left)
                except asyncio.TimeoutError:
                    break
            if size + len(job.photos) > self.max_batch:
                self.held = job
                break
            jobs.append(job)
            size += len(job.photos)
        return jobs

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                jobs = await self._next_batch()
                try:
                    results = await loop.run_in_executor(self.executor, self.run,
                                                         [(j.photos, j.settings) for j in jobs])
                except Exception as exc:  # handed to each waiting request: the service answers, the loop goes on
                    for job in jobs:
                        if not job.done.done():
                            job.done.set_exception(exc)
                    continue
                for job, result in zip(jobs, results):
                    if not job.done.done():
                        job.done.set_result(result)
        except asyncio.CancelledError:  # closing: no request is left waiting for an answer that never comes
            waiting = self.batch + ([self.held] if self.held else [])
            while not self.queue.empty():
                waiting.append(self.queue.get_nowait())
            for job in waiting:
                job.done.cancel()
            raise

    async def close(self) -> None:
        """Stop the loop, cancelling every request still waiting; a later request starts a new loop."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.task, self.queue, self.held, self.batch = None, None, None, []
