"""The streaming route through a real uvicorn server and an SSE-reading HTTP client.

The local stack's pieces: embedded DynamoDB (template-built table), the offline model pacing its
tokens, the app under uvicorn on loopback.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest
import uvicorn

from infra.local.embedded_dynamodb import EmbeddedDynamoDB
from infra.local.table import create_table
from shelfwise.services import Services
from shelfwise.storage.dynamo import Dynamo, dynamodb_client
from shelfwise.web.app import create_app
from tests.fixtures.app import bearer, chat_settings, make_settings
from tests.fixtures.catalog import black_tee

DELAY_MS = 40


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def stack(offline_model: Any) -> Iterator[dict[str, Any]]:
    with EmbeddedDynamoDB() as db:
        client = dynamodb_client("us-east-1", db.endpoint_url)
        create_table(client, "sse")
        settings = make_settings("sse", **chat_settings(offline_model))
        services = Services(settings, dynamo=Dynamo(client, "sse"))
        services.inventory.create_product(
            black_tee(),
            actor="test",
        )
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(services=services), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        yield {"url": f"http://127.0.0.1:{port}", "services": services}
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def paced(offline_model: Any) -> Any:
    offline_model.reset()
    offline_model.token_delay_ms = DELAY_MS
    yield offline_model
    offline_model.token_delay_ms = 0


def _conversation(url: str, headers: dict[str, str]) -> str:
    response = httpx.post(f"{url}/conversations", json={}, headers=headers)
    assert response.status_code == 201
    conversation_id: str = response.json()["id"]
    return conversation_id


def _numbered(response: httpx.Response) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(event id, event name, data) as each SSE event arrives."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "" and "event" in fields:
            yield int(fields["id"]), fields["event"], json.loads(fields["data"])
            fields = {}
        elif line and not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value


def _events(response: httpx.Response) -> Iterator[tuple[float, str, dict[str, Any]]]:
    """(arrival time, event name, data) as each SSE event arrives."""
    name, data = "", ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and name:
            yield time.perf_counter(), name, json.loads(data)
            name, data = "", ""


@pytest.mark.usefixtures("paced")
def test_tokens_arrive_one_by_one_not_at_the_end(stack: dict[str, Any]) -> None:
    url, user = stack["url"], bearer("carol")
    conversation_id = _conversation(url, user)
    sent = time.perf_counter()
    with httpx.stream(
        "POST",
        f"{url}/conversations/{conversation_id}/messages",
        json={"content": "tell me something nice about our store please"},
        headers=user,
        timeout=30,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(_events(response))
    deltas = [t for t, name, _ in events if name == "delta"]
    assert len(deltas) >= 5
    spread = deltas[-1] - deltas[0]
    # paced at DELAY_MS per chunk: arrivals are spread over the answer, not bunched at the end
    assert spread >= (len(deltas) - 1) * DELAY_MS / 1000 * 0.5
    assert deltas[0] - sent < spread  # the first token arrived well before the last
    assert [name for _, name, _ in events][-2:] == ["usage", "done"]


def test_a_client_that_leaves_does_not_end_the_answer_and_can_resume_it(
    stack: dict[str, Any], paced: Any
) -> None:
    url, user = stack["url"], bearer("dave")
    conversation_id = _conversation(url, user)
    paced.token_delay_ms = 60
    received = ""
    with httpx.stream(
        "POST",
        f"{url}/conversations/{conversation_id}/messages",
        json={"content": "tell me a long story about our store and its best selling tees"},
        headers=user,
        timeout=30,
    ) as response:
        for event_id, name, data in _numbered(response):
            if name == "start":
                message_id = data["assistant_message_id"]
            if name == "delta":
                received += data["content"]
                last_seen = event_id
                if len(received.split()) >= 3:
                    break  # leave mid-answer: the connection closes with the block
    # The answer is the server's: it goes on, and the client picks it up where it left.
    with httpx.stream(
        "GET",
        f"{url}/conversations/{conversation_id}/messages/{message_id}/events",
        headers={**user, "Last-Event-ID": str(last_seen)},
        timeout=30,
    ) as resumed:
        assert resumed.status_code == 200
        rest = list(_numbered(resumed))
    assert rest[0][0] > last_seen
    assert rest[-1][1] == "done"
    assert rest[-1][2]["finish_reason"] == "stop"
    stored = httpx.get(f"{url}/conversations/{conversation_id}/messages", headers=user).json()["items"]
    assert [(m["role"], m["status"]) for m in stored] == [("user", "complete"), ("assistant", "complete")]
    assert stored[1]["content"] == received + "".join(d["content"] for _, n, d in rest if n == "delta")
    # the conversation stays usable
    again = httpx.post(
        f"{url}/conversations/{conversation_id}/messages",
        json={"content": "short one"},
        headers={**user, "Accept": "application/json"},
        timeout=30,
    )
    assert again.status_code == 200, again.text


@pytest.mark.parametrize(
    ("mode", "status"),
    [("rate_limit", 429), ("server_error", 502), ("unavailable", 502), ("bad_request", 502)],
)
@pytest.mark.usefixtures("paced")
def test_failures_before_the_first_byte_are_json_errors_over_the_wire(
    stack: dict[str, Any], offline_model: Any, mode: str, status: int
) -> None:
    url, user = stack["url"], bearer("erin")
    conversation_id = _conversation(url, user)
    offline_model.fail(mode, times=1, task="chat")
    response = httpx.post(
        f"{url}/conversations/{conversation_id}/messages", json={"content": "hi"}, headers=user, timeout=30
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] in ("rate_limited", "upstream_error")


@pytest.mark.usefixtures("paced")
def test_a_failure_mid_stream_is_an_error_event(stack: dict[str, Any], offline_model: Any) -> None:
    url, user = stack["url"], bearer("frank")
    conversation_id = _conversation(url, user)
    offline_model.fail("midstream", times=1, task="chat")
    with httpx.stream(
        "POST",
        f"{url}/conversations/{conversation_id}/messages",
        json={"content": "tell me something"},
        headers=user,
        timeout=30,
    ) as response:
        assert response.status_code == 200
        events = list(_events(response))
    names = [name for _, name, _ in events]
    assert "delta" in names
    assert names[-1] == "error"
    assert events[-1][2]["code"] == "upstream_error"


def test_silence_is_filled_with_ping_comments(
    stack: dict[str, Any], paced: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While nothing is said (a model thinking, tools running), a `: ping` comment goes out after
    every interval of silence, and the events around it arrive whole."""
    from shelfwise.web import sse

    interval = 0.1
    monkeypatch.setattr(sse, "PING_INTERVAL_SECONDS", interval)
    paced.token_delay_ms = 350  # each pause between two chunks is several intervals of silence
    url, user = stack["url"], bearer("gina")
    conversation_id = _conversation(url, user)
    arrivals: list[tuple[float, str]] = []
    with httpx.stream(
        "POST",
        f"{url}/conversations/{conversation_id}/messages",
        json={"content": "hello there"},
        headers=user,
        timeout=30,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            arrivals.append((time.perf_counter(), line))
    lines = [line for _, line in arrivals]
    pings = [i for i, line in enumerate(lines) if line == ": ping"]
    deltas = [line for line in lines if line == "event: delta"]
    assert len(pings) >= len(deltas) - 1 >= 1, lines
    # Pings only fill silences: between two events there are never more pings than intervals of
    # silence between them (one spare for the delivery jitter of a loaded machine), and none comes
    # right on the heels of an event.
    events_at = [(t, i) for i, (t, line) in enumerate(arrivals) if line.startswith("event: ")]
    for (start, first), (end, last) in itertools.pairwise(events_at):
        between = [i for i in pings if first < i < last]
        assert len(between) <= (end - start) / interval + 1, (end - start, len(between))
        if between:
            assert arrivals[between[0]][0] - start >= interval * 0.5, lines[first : between[0] + 1]
    assert [line for line in lines if line.startswith("event: ")][-2:] == ["event: usage", "event: done"]
