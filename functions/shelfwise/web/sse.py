"""Server-sent events for a turn: `event:` + one-line JSON `data:` + `id:` per event, and a `: ping`
comment after every PING_INTERVAL_SECONDS of silence (tools running, a model thinking), so that no
proxy or API Gateway takes the stream for idle. The wire format is FastAPI's own (`fastapi.sse`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator

import anyio
from fastapi.sse import KEEPALIVE_COMMENT, format_sse_event
from starlette.responses import StreamingResponse

from shelfwise.chat.events import TurnEvent
from shelfwise.chat.service import ChatService, Turn

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

    The next frame is awaited in a task that a ping never cancels; when the client leaves, that task
    is cancelled and awaited before the stream is closed (the turn itself goes on: it is not this
    stream's)."""
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


async def stream_turn(chat: ChatService, turn: Turn) -> StreamingResponse:
    """Start the turn (in a task of its own) and wait for the model's first output before answering:
    a failure before then (timeout, rate limit, upstream error) raises, so the caller gets an
    ordinary JSON error with the right status. After that the answer's events go out as they come;
    a client that leaves ends only this stream, never the turn."""
    events = chat.start(turn).follow()
    head: list[tuple[int, TurnEvent]] = []
    async for numbered_event in events:
        head.append(numbered_event)
        if numbered_event[1].name in _FIRST_OUTPUT:
            break
    if head and head[-1][1].name == "error" and turn.error is not None:
        await events.aclose()
        raise turn.error
    return sse_response(head, events)


def sse_response(
    head: list[tuple[int, TurnEvent]], rest: AsyncGenerator[tuple[int, TurnEvent]]
) -> StreamingResponse:
    """`head`, then `rest`, as SSE frames with their event ids (pings in the silences)."""

    async def body() -> AsyncGenerator[bytes]:
        try:
            for event_id, event in head:
                yield frame(event_id, event)
            async for event_id, event in rest:
                yield frame(event_id, event)
        finally:
            await rest.aclose()

    return StreamingResponse(with_pings(body()), media_type="text/event-stream", headers=SSE_HEADERS)
