"""Micro-batching of concurrent locate requests: who waits, who is batched together, what each gets back."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from locator.methods import LocateSettings
from locator.service.batcher import MicroBatcher


class Recorder:
    """A stand-in for the locator: answers each photo with its name reversed, and records every batch."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[list[str]]] = []
        self.fail = fail

    def __call__(self, groups):
        self.batches.append([list(photos) for photos, _ in groups])
        if self.fail:
            raise RuntimeError("the model broke")
        return [[p[::-1] for p in photos] for photos, _ in groups]


def _run(scenario, recorder, max_batch=32, wait_ms=5.0):
    async def main():
        with ThreadPoolExecutor(max_workers=1) as worker:
            batcher = MicroBatcher(recorder, worker, max_batch, wait_ms)
            try:
                return await scenario(batcher)
            finally:
                await batcher.close()
    return asyncio.run(main())


def test_a_lone_request_starts_at_once():
    recorder = Recorder()

    async def scenario(batcher):  # a minute's wait would time this out if it were spent
        return await asyncio.wait_for(batcher.submit(["ab"], LocateSettings()), 10)

    assert _run(scenario, recorder, wait_ms=60_000) == ["ba"]
    assert recorder.batches == [[["ab"]]]


def test_under_load_a_batch_waits_for_requests_that_come_soon_after():
    recorder = Recorder()

    async def scenario(batcher):
        settings = LocateSettings()
        await asyncio.gather(*(batcher.submit([f"w{k}"], settings) for k in range(3)))  # requests overlap now
        first = asyncio.ensure_future(batcher.submit(["x"], settings))
        await asyncio.sleep(0.05)
        second = await batcher.submit(["y", "z"], settings)
        return await first, second

    assert _run(scenario, recorder, wait_ms=500) == (["x"], ["y", "z"])
    assert recorder.batches == [[["w0"], ["w1"], ["w2"]], [["x"], ["y", "z"]]]


def test_batches_hold_at_most_max_batch_photos_and_answers_keep_their_order():
    recorder = Recorder()

    async def scenario(batcher):
        return await asyncio.gather(*(batcher.submit([f"p{k}a", f"p{k}b"], LocateSettings(k=k + 1))
                                      for k in range(5)))

    answers = _run(scenario, recorder, max_batch=4)
    assert answers == [[f"a{k}p", f"b{k}p"] for k in range(5)]
    assert [sum(len(g) for g in batch) for batch in recorder.batches] == [4, 4, 2]


def test_a_failing_batch_fails_its_requests_and_the_service_goes_on():
    recorder = Recorder(fail=True)

    async def scenario(batcher):
        results = await asyncio.gather(batcher.submit(["a"], LocateSettings()), batcher.submit(["b"], LocateSettings()),
                                       return_exceptions=True)
        recorder.fail = False
        return results, await batcher.submit(["cd"], LocateSettings())

    (first, second), after = _run(scenario, recorder)
    assert isinstance(first, RuntimeError) and isinstance(second, RuntimeError)
    assert after == ["dc"]


@pytest.mark.parametrize("wait_ms", [0.0, 5.0])
def test_every_photo_is_answered_once_under_many_clients(wait_ms):
    recorder = Recorder()

    async def client(batcher, c):
        out = []
        for k in range(10):
            out += await batcher.submit([f"{c}-{k}"], LocateSettings())
            await asyncio.sleep(0.001 * (c % 3))
        return out

    async def scenario(batcher):
        return await asyncio.gather(*(client(batcher, c) for c in range(8)))

    answers = _run(scenario, recorder, max_batch=6, wait_ms=wait_ms)
    assert answers == [[f"{c}-{k}"[::-1] for k in range(10)] for c in range(8)]
    sent = [photo for batch in recorder.batches for group in batch for photo in group]
    assert sorted(sent) == sorted(f"{c}-{k}" for c in range(8) for k in range(10))
    assert max(len(batch) for batch in recorder.batches) > 1  # concurrent clients did share batches
    assert max(sum(len(g) for g in batch) for batch in recorder.batches) <= 6


def test_requests_queued_together_wait_for_company_even_after_a_lone_one():
    recorder = Recorder()

    async def later(batcher, photo):
        await asyncio.sleep(0.05)
        return await batcher.submit([photo], LocateSettings())

    async def scenario(batcher):
        await batcher.submit(["lone"], LocateSettings())
        return await asyncio.gather(batcher.submit(["a"], LocateSettings()), batcher.submit(["b"], LocateSettings()),
                                    later(batcher, "c"))

    _run(scenario, recorder, wait_ms=500)
    assert recorder.batches == [[["lone"]], [["a"], ["b"], ["c"]]]


def test_after_an_idle_spell_a_lone_request_starts_at_once_again():
    recorder = Recorder()

    async def scenario(batcher):
        settings = LocateSettings()
        await asyncio.gather(*(batcher.submit([f"w{k}"], settings) for k in range(3)))
        await asyncio.sleep(0.7)  # longer than the wait: the load is over
        first = asyncio.ensure_future(batcher.submit(["x"], settings))
        await asyncio.sleep(0.05)
        await batcher.submit(["y"], settings)
        await first

    _run(scenario, recorder, wait_ms=600)
    assert recorder.batches[1:] == [[["x"]], [["y"]]]  # x did not wait 600 ms for y


def test_a_request_never_joins_a_batch_it_would_overfill():
    recorder = Recorder()

    async def scenario(batcher):
        return await asyncio.gather(*(batcher.submit([f"{k}a", f"{k}b", f"{k}c"], LocateSettings()) for k in range(3)))

    answers = _run(scenario, recorder, max_batch=4)
    assert answers == [[f"a{k}", f"b{k}", f"c{k}"] for k in range(3)]
    assert [[len(g) for g in batch] for batch in recorder.batches] == [[3], [3], [3]]


def test_closing_cancels_the_requests_still_waiting():
    release = threading.Event()

    def slow(groups):
        release.wait(10)
        return [[p for p in photos] for photos, _ in groups]

    async def scenario(batcher):
        running = asyncio.ensure_future(batcher.submit(["a"], LocateSettings()))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(batcher.submit(["b"], LocateSettings()))
        await asyncio.sleep(0.05)
        await batcher.close()
        release.set()
        return [await asyncio.gather(asyncio.wait_for(f, 3), return_exceptions=True) for f in (running, queued)]

    outcomes = _run(scenario, slow, max_batch=1)
    assert all(isinstance(o[0], asyncio.CancelledError) for o in outcomes)


def test_a_request_after_closing_starts_a_new_loop():
    recorder = Recorder()

    async def scenario(batcher):
        first = await batcher.submit(["ab"], LocateSettings())
        await batcher.close()
        return first, await asyncio.wait_for(batcher.submit(["cd"], LocateSettings()), 10)

    assert _run(scenario, recorder) == (["ba"], ["dc"])
    assert recorder.batches == [[["ab"]], [["cd"]]]
