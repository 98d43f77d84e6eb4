"""Server-sent events for a turn: `id:` + `event:` + one-line JSON `data:` per event."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from shelfwise.chat.events import TurnEvent
from shelfwise.chat.service import Turn

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # proxies (nginx and kin) must not buffer the stream
}
_FIRST_OUTPUT = frozenset({"delta", "tool", "usage", "done", "error"})


def frame(event_id: int, event: TurnEvent) -> bytes:
    data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False, default=str)
    return f"id: {event_id}\nevent: {event.name}\ndata: {data}\n\n".encode()


async def stream_turn(turn: Turn) -> StreamingResponse:
    """Start the turn and wait for the model's first output before answering: a failure before
    then (timeout, rate limit, upstream error) raises, so the caller gets an ordinary JSON error
    with the right status. After that, everything goes out as it comes."""
    events = turn.events()
    head: list[TurnEvent] = []
    async for event in events:
        head.append(event)
        if event.name in _FIRST_OUTPUT:
            break
    if head and head[-1].name == "error" and turn.error is not None:
        await events.aclose()
        raise turn.error

    async def body() -> AsyncIterator[bytes]:
        event_id = 0
        try:
            for event in head:
                event_id += 1
                yield frame(event_id, event)
            async for event in events:
                event_id += 1
                yield frame(event_id, event)
        finally:
            await events.aclose()  # a client that left: the turn stores what was said

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
        background=BackgroundTask(turn.fold_summary),
    )
