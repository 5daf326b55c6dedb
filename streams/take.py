"""A stage's micro-batches: faust's ``Stream.take_events``, bounded by bytes as well as by messages.

faust counts a batch in messages only. A stage's input messages range from one event (about 200
bytes) to a bundle of partials or KPI inputs (about ``callqa.topics.MESSAGE_BYTES``; one row alone may
be larger), so a count that suits the events topic let a stage downstream catching up on a backlog
take tens of MB at once (measured: a window stage took 2,557 messages, 31 MB, in one batch), and the
worker's peak memory grew with the backlog (README, ``bench/memory.py``).

This is faust-streaming 0.15.3's ``Stream.take_events`` (``faust/streams.py``) as a function of the
stream, with the byte bound: a batch holds at most ``max_bytes`` of message values, or one larger
message alone. As faust's, the generator is registered with the stream (closed when it stops), and on
exit it restores the stream's acks and removes its buffering processor.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from faust.types import EventT
from mode.utils.aiter import aiter
from mode.utils.futures import notify


def take_events(stream, max_: int, max_bytes: int, within: float) -> AsyncIterator[list[EventT]]:
    """Yield the events that arrived: ``max_`` of them or ``max_bytes`` of values at most (a larger
    message alone), or what came within ``within`` seconds (> 0). Each is acked once its batch was
    consumed, as faust's own."""
    batches = _take(stream, max_, max_bytes, within)
    stream._active_agens.add(batches)  # as faust's ``_tracks_buffer_agen``: closed on the stream's stop
    return batches


async def _take(stream, max_: int, max_bytes: int, within: float) -> AsyncIterator[list[EventT]]:
    events: list[EventT] = []
    size = 0
    buffer_full, buffer_consumed = asyncio.Event(), asyncio.Event()
    consuming: asyncio.Future | None = None

    async def full() -> None:  # strict: nothing more is taken until the batch was consumed
        buffer_full.set()
        buffer_consumed.clear()
        await stream.wait(buffer_consumed)

    async def add_to_buffer(value):
        nonlocal consuming, size
        try:
            if consuming is not None:  # the batch is being consumed: wait for it
                try:
                    await consuming
                finally:
                    consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("Take buffer found current_event is None")
            n = len(event.message.value or b"")
            if events and size + n > max_bytes:  # it would overfill the batch: it opens the next one
                await full()
            events.append(event)
            size += n
            if len(events) >= max_ or size >= max_bytes:
                await full()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # as faust: a failed buffer crashes the stream
            stream.log.exception("Error adding to take buffer: %r", exc)
            await stream.crash(exc)
        return value

    acks = stream.enable_acks
    stream.enable_acks = False  # acked here, after the batch was consumed
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter(stream.channel))
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(buffer_full, timeout=within)
            if events:
                consuming = asyncio.get_running_loop().create_future()
                try:
                    yield list(events)
                finally:
                    for event in events:
                        await stream.ack(event)
                    events.clear()
                    size = 0
                    notify(consuming)
                    buffer_full.clear()
                    buffer_consumed.set()
    finally:
        stream.enable_acks = acks
        stream._processors.remove(add_to_buffer)
