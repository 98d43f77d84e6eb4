"""`: ping` through ChatStreamFunction's runtime loop: while an answer is silent (the model pausing
before its first word once a tool has answered, and between words), the keep-alive comment reaches
the fake Lambda Runtime API when it is due, as a chunk of its own between two events, and the answer
around it still arrives whole.

The loop is a subprocess, so the ping interval is lowered where the loop builds its app: it serves
`pinging_app` below (the real app, with a short PING_INTERVAL_SECONDS), named to it the way the
test-only apps of tests/fixtures/stream_apps.py are.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from shelfwise.entry.streaming_runtime import ASGIApp
from tests.fixtures.runtime_api import (
    USER_SUB,
    FakeRuntimeAPI,
    StreamProcess,
    StreamStack,
    create_conversation,
    local_backend,
    loop_environment,
    sse_events,
    turn_event,
)

INTERVAL = 0.06  # seconds of silence before a ping (15 s in production)
DELAY_MS = 150  # the model's pause before each word: two pings' worth of silence, and some
PING = b": ping\n\n"
# A tool call (its arguments streamed before the first event: nothing goes out then), the tool's
# result, then the answer a word per chunk.
QUESTION = "How many black Essential Tees in M do we have?"


def pinging_app() -> ASGIApp:
    """The real app, built as the loop builds it, with pings after INTERVAL of silence."""
    from shelfwise.web import sse
    from shelfwise.web.app import create_app

    sse.PING_INTERVAL_SECONDS = INTERVAL
    app: ASGIApp = create_app()
    return app


@pytest.fixture
def stack(offline_model: Any) -> Iterator[StreamStack]:
    offline_model.reset()
    offline_model.token_delay_ms = DELAY_MS
    try:
        with (
            local_backend(offline_model, "stream-pings") as (settings, services),
            FakeRuntimeAPI() as api,
            StreamProcess(
                loop_environment(api, **settings, PYTHONUNBUFFERED="1"),
                app="tests.e2e.test_lambda_loop_pings:pinging_app",
            ) as process,
        ):
            api.wait_next_calls(1, timeout=20)  # the app was built: the loop asks for work
            assert api.errors == [], process.output()[-3000:]
            yield StreamStack(api, process, services)
    finally:
        offline_model.reset()
        offline_model.token_delay_ms = 0


def test_a_silent_answer_sends_pings_through_the_loop(stack: StreamStack) -> None:
    conversation_id = create_conversation(stack.services)
    request_id = stack.api.invoke(turn_event(conversation_id, QUESTION))
    response = stack.api.wait_response(request_id, timeout=30)
    assert response.complete, stack.process.output()[-3000:]
    assert response.prelude["statusCode"] == 200, response.payload
    assert response.prelude["headers"]["content-type"] == "text/event-stream; charset=utf-8"
    assert response.trailers == {}

    # Every chunk after the prelude is a ping on its own or one whole SSE frame: a ping never rides
    # with an event, and never splits one.
    chunks = response.payload_chunks
    kinds: list[str] = []
    for _, data in chunks:
        if data == PING:
            kinds.append("ping")
        else:
            frames = sse_events(data)
            assert len(frames) == 1, data
            assert data.endswith(b"\n\n")
            assert PING not in data
            kinds.append(frames[0][0])
    assert kinds[0] == "start"  # nothing goes out before the first event
    pings = [i for i, kind in enumerate(kinds) if kind == "ping"]
    deltas = [i for i, kind in enumerate(kinds) if kind == "delta"]
    assert len(deltas) >= 10, kinds
    # Once the tool has answered, the model's pause before its first word is filled.
    last_tool = max(i for i, kind in enumerate(kinds) if kind == "tool")
    assert last_tool < deltas[0], kinds
    assert "ping" in kinds[last_tool + 1 : deltas[0]], kinds
    # Each pause between two words is over two intervals of silence: pings fill it.
    assert len(pings) >= len(deltas) - 1, kinds
    gaps_with_a_ping = sum(1 for a, b in itertools.pairwise(deltas) if "ping" in kinds[a + 1 : b])
    assert gaps_with_a_ping >= (len(deltas) - 1) * 0.8, kinds

    # A ping goes out after an interval of silence, the moment it is due: well before the next event.
    for i in pings:
        silence = chunks[i][0] - chunks[i - 1][0]
        assert silence >= INTERVAL * 0.7, (silence, kinds[i - 2 : i + 1])
    first_pings = [i for i in pings if kinds[i - 1] != "ping"]
    leads = []
    for i in first_pings:
        following = next(j for j in range(i + 1, len(kinds)) if kinds[j] != "ping")
        leads.append(chunks[following][0] - chunks[i][0])
    assert min(leads) > 0, leads
    assert sorted(leads)[len(leads) // 2] >= INTERVAL / 2, leads  # median: ~90 ms expected

    # The answer is whole around the pings: every event, each with its id (increasing), up to done.
    frames = sse_events(response.payload)
    names = [name for name, _ in frames]
    assert names == [kind for kind in kinds if kind != "ping"]
    assert names[0] == "start"
    assert names[-2:] == ["usage", "done"]
    ids = [
        int(line.removeprefix(b"id: "))
        for _, data in chunks
        if data != PING
        for line in data.splitlines()
        if line.startswith(b"id: ")
    ]
    assert len(ids) == len(names)
    assert ids == sorted(set(ids)), ids
    answer = "".join(data["content"] for name, data in frames if name == "delta")
    assert "17 Essential Tee in black, size M" in answer  # read live from the table
    done = frames[-1][1]
    stored = stack.services.chat.list_messages(USER_SUB, conversation_id, limit=10, cursor=None).items
    assert [(m.role, m.status) for m in stored] == [("user", "complete"), ("assistant", "complete")]
    assert stored[1].content == answer
    assert stored[1].id == done["message_id"]
    log = stack.process.wait_for_log(request_id, "streamed")
    assert log["status"] == 200
    assert log["chunks"] == len(chunks)  # the pings counted among the chunks the loop wrote
    print(
        f"\n{len(deltas)} deltas, {len(pings)} pings; first ping of a pause "
        f"{min(leads) * 1000:.0f}-{max(leads) * 1000:.0f} ms before the next event; "
        f"{json.dumps(done)}"
    )
