"""Server-sent events for a turn: `event:` + one-line JSON `data:` + `id:` per event, and a `: ping`
comment after every PING_INTERVAL_SECONDS of silence (tools running, a model thinking), so that no
proxy or API Gateway takes the stream for idle. The wire format is FastAPI's own (`fastapi.sse`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator

import anyio
from fastapi.sse import KEEPALIVE_COMMENT, format_sse_event
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from shelfwise.chat.events import TurnEvent
from shelfwise.chat.service import Turn

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # proxies (nginx and kin) must not buffer the stream
}
_FIRST_OUTPUT = frozenset({"delta", "tool", "usage", "done", "error"})
PING_INTERVAL_SECONDS = 15.0  # read at each wait: a test may set a short one
PING = KEEPALIVE_COMMENT  # b": ping\n\n"


def frame(event_id: int, event: TurnEvent) -> bytes:
    data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False, default=str)
    return format_sse_event(data_str=data, event=event.name, id=str(event_id))


async def with_pings(events: AsyncGenerator[bytes]) -> AsyncIterator[bytes]:
    """The frames as they come, and a ping after every PING_INTERVAL_SECONDS without one.

    The next frame is awaited in a task that a ping never cancels (cancelling it would cut the turn
    short); when the client leaves, that task is cancelled and awaited, so the turn ends (storing
    what was said) before the stream is closed."""
    pending: asyncio.Task[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=PING_INTERVAL_SECONDS)
            if not done:
                yield PING
                continue
            task, pending = pending, None
            try:
                chunk = task.result()
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        if pending is not None:
            pending.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({pending})
        with anyio.CancelScope(shield=True):
            await events.aclose()


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

    async def body() -> AsyncGenerator[bytes]:
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
        with_pings(body()),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
        background=BackgroundTask(turn.fold_summary),
    )
