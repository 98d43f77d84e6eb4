"""Answers the server owns, through ChatStreamFunction's runtime loop under the fake Runtime API.

Two loop processes on one table, each with its own fake Runtime API: two execution environments of
the function. One generates; the other resumes or stops the answer through DynamoDB, as another
Lambda invocation would. The invocation's own deadline (Lambda-Runtime-Deadline-Ms) bounds a turn.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from shelfwise.storage.items import ChunkItem
from tests.fixtures.runtime_api import (
    USER_SUB,
    FakeRuntimeAPI,
    StreamProcess,
    StreamStack,
    create_conversation,
    local_backend,
    loop_environment,
    request_event,
    sse_ids,
    turn_event,
)

# The offline model says the question back in prose, one word per chunk: a long answer.
CHATTY = "tell me a long story about our store please, with plenty of warmth and colour"
MARGIN_SECONDS = 1.0


@dataclass
class Two:
    here: StreamStack  # generates
    there: StreamStack  # another execution environment of the same function
    settings: dict[str, str]  # what both run with (for a third process of a test's own)


@pytest.fixture(scope="module")
def two(offline_model: Any) -> Iterator[Two]:
    with local_backend(offline_model, "resume-e2e") as (settings, services):
        settings = {**settings, "SHELFWISE_TURN_DEADLINE_MARGIN_SECONDS": str(MARGIN_SECONDS)}
        with (
            FakeRuntimeAPI() as api_here,
            FakeRuntimeAPI() as api_there,
            StreamProcess(loop_environment(api_here, **settings)) as here,
            StreamProcess(loop_environment(api_there, **settings)) as there,
        ):
            yield Two(
                StreamStack(api_here, here, services), StreamStack(api_there, there, services), settings
            )


@pytest.fixture
def paced(offline_model: Any) -> Iterator[Any]:
    offline_model.reset()
    offline_model.token_delay_ms = 40
    yield offline_model
    offline_model.reset()
    offline_model.token_delay_ms = 0


def text_of(events: list[tuple[int, str, dict[str, Any]]]) -> str:
    return "".join(data["content"] for _, name, data in events if name == "delta")


def events_url(conversation_id: str, message_id: str) -> str:
    return f"/conversations/{conversation_id}/messages/{message_id}/events"


def stored_answer(stack: StreamStack, conversation_id: str) -> Any:
    until = time.monotonic() + 20
    while time.monotonic() < until:
        messages = stack.services.chat.list_messages(USER_SUB, conversation_id, limit=10, cursor=None).items
        if len(messages) == 2 and messages[1].status != "streaming":
            return messages[1]
        time.sleep(0.05)
    raise AssertionError("the answer was never stored")


def first_deltas(stack: StreamStack, request_id: str, count: int) -> list[tuple[int, str, dict[str, Any]]]:
    """The events of a streaming response once `count` deltas have arrived (it goes on)."""
    until = time.monotonic() + 20
    while time.monotonic() < until:
        response = stack.api.responses.get(request_id)
        if response is not None and response.chunks:
            try:
                events = sse_ids(response.payload.rpartition(b"\n\n")[0] + b"\n\n")
            except AssertionError:  # the prelude is not complete yet
                events = []
            if sum(name == "delta" for _, name, _ in events) >= count:
                return events
        time.sleep(0.02)
    raise AssertionError("no deltas arrived")


@pytest.mark.usefixtures("paced")
def test_a_client_that_left_resumes_from_another_environment(two: Two) -> None:
    conversation_id = create_conversation(two.here.services)
    # The fake drops the connection after the prelude and three frames: the client behind API
    # Gateway going away (on AWS the function is not even told).
    turn = two.here.api.invoke(turn_event(conversation_id, CHATTY), drop_after_chunks=3)
    dropped = two.here.api.wait_response(turn)
    assert dropped.dropped
    before = sse_ids(dropped.payload)
    assert [name for _, name, _ in before][:2] == ["start", "delta"]
    message_id = before[0][2]["assistant_message_id"]
    last_seen = before[-1][0]

    # Another environment follows the live answer through DynamoDB from where the client was.
    resume = two.there.api.invoke(
        request_event(
            "GET", events_url(conversation_id, message_id), headers={"Last-Event-ID": str(last_seen)}
        )
    )
    resumed = two.there.api.wait_response(resume)
    assert resumed.prelude["statusCode"] == 200
    after = sse_ids(resumed.payload)
    ids = [event_id for event_id, _, _ in after]
    assert ids == sorted(set(ids)), "no duplicate"
    assert ids[0] > last_seen, "nothing the client had"
    assert after[-1][1] == "done"

    answer = stored_answer(two.here, conversation_id)
    assert answer.status == "complete", "the turn ran to its end with no one listening"
    assert text_of(before) + text_of(after) == answer.content, "no gap"

    # The environment that generated it replays it whole, with the same ids, once it is stored.
    replay = sse_ids(
        two.here.api.wait_response(
            two.here.api.invoke(request_event("GET", events_url(conversation_id, message_id)))
        ).payload
    )
    assert text_of(replay) == answer.content
    assert replay[0][:2] == before[0][:2]
    assert replay[-1] == after[-1]


@pytest.mark.usefixtures("paced")
def test_another_environment_stops_a_running_answer(two: Two, paced: Any) -> None:
    paced.token_delay_ms = 100
    conversation_id = create_conversation(two.here.services)
    turn = two.here.api.invoke(turn_event(conversation_id, CHATTY))
    message_id = first_deltas(two.here, turn, 2)[0][2]["assistant_message_id"]

    stop = two.there.api.invoke(
        request_event("POST", f"/conversations/{conversation_id}/messages/{message_id}/stop")
    )
    assert two.there.api.wait_response(stop).prelude["statusCode"] == 202
    asked = time.monotonic()
    ended = two.here.api.wait_response(turn)
    took = time.monotonic() - asked
    assert took < 1.0, f"the answer went on {took:.2f} s after the stop"
    done = sse_ids(ended.payload)[-1]
    assert (done[1], done[2]["status"], done[2]["finish_reason"]) == ("done", "interrupted", "stopped")
    answer = stored_answer(two.here, conversation_id)
    assert (answer.status, answer.finish_reason) == ("interrupted", "stopped")
    assert answer.content == text_of(sse_ids(ended.payload))

    again = two.there.api.invoke(
        request_event("POST", f"/conversations/{conversation_id}/messages/{message_id}/stop")
    )
    refused = two.there.api.wait_response(again)
    assert refused.prelude["statusCode"] == 409
    assert b'"not_running"' in refused.payload


@pytest.mark.usefixtures("paced")
def test_the_invocations_deadline_ends_the_turn(two: Two, paced: Any) -> None:
    paced.token_delay_ms = 100  # the whole answer takes over 6 s
    conversation_id = create_conversation(two.here.services)
    started = time.monotonic()
    turn = two.here.api.invoke(turn_event(conversation_id, CHATTY), seconds=3)
    ended = two.here.api.wait_response(turn)
    took = time.monotonic() - started
    done = sse_ids(ended.payload)[-1]
    assert (done[1], done[2]["status"], done[2]["finish_reason"]) == ("done", "interrupted", "deadline")
    assert took < 3 - MARGIN_SECONDS + 0.8, f"ended {took:.2f} s after the invocation began"
    answer = stored_answer(two.here, conversation_id)
    assert (answer.status, answer.finish_reason) == ("interrupted", "deadline")
    assert answer.content
    assert answer.content == text_of(sse_ids(ended.payload))
    log = two.here.process.wait_for_log(turn, "turn reached its deadline")
    assert log["conversation_id"] == conversation_id
    two.here.process.wait_until(lambda: '"TurnDeadlines"' in two.here.process.output())

    paced.token_delay_ms = 0
    again = two.here.api.wait_response(
        two.here.api.invoke(turn_event(conversation_id, "short one", accept="application/json"))
    )
    assert again.prelude["statusCode"] == 200, "the conversation was freed"


@pytest.mark.usefixtures("paced")
def test_two_watchers_in_two_environments_and_a_second_message_refused(two: Two) -> None:
    conversation_id = create_conversation(two.here.services)
    turn = two.here.api.invoke(turn_event(conversation_id, CHATTY))
    message_id = first_deltas(two.here, turn, 1)[0][2]["assistant_message_id"]

    # A second message meanwhile is refused, naming the running answer.
    second = two.there.api.wait_response(two.there.api.invoke(turn_event(conversation_id, "and another")))
    assert second.prelude["statusCode"] == 409
    refusal = json.loads(second.payload)
    assert (refusal["error"]["code"], refusal["error"]["message_id"]) == ("turn_in_progress", message_id)

    watch_there = two.there.api.invoke(request_event("GET", events_url(conversation_id, message_id)))
    there = sse_ids(two.there.api.wait_response(watch_there).payload)
    live = sse_ids(two.here.api.wait_response(turn).payload)
    answer = stored_answer(two.here, conversation_id)
    assert text_of(there) == text_of(live) == answer.content
    assert there[0][:2] == live[0][:2]
    assert there[-1] == live[-1], "the same id and data for the same last event"


@pytest.mark.usefixtures("paced")
def test_a_finished_answer_replays_after_its_chunks_expired(two: Two) -> None:
    conversation_id = create_conversation(two.here.services)
    live = sse_ids(
        two.here.api.wait_response(two.here.api.invoke(turn_event(conversation_id, CHATTY))).payload
    )
    message_id = live[0][2]["assistant_message_id"]
    db = two.here.services.dynamo
    chunks = db.query_all(ChunkItem.after(USER_SUB, conversation_id, 2, 0), attributes=("pk", "sk"))
    found = [item for page in chunks for item in page.items]
    for key in found:  # what TTL does, a day later (a short answer may have had none)
        db.delete(key)
    replay = sse_ids(
        two.there.api.wait_response(
            two.there.api.invoke(
                request_event("GET", events_url(conversation_id, message_id), query={"after": "0"})
            )
        ).payload
    )
    assert text_of(replay) == text_of(live)
    assert [(i, n) for i, n, _ in replay if n != "delta"] == [(i, n) for i, n, _ in live if n != "delta"]


# Several hundred words, said back by the offline model: several chunks' worth (64 tokens each).
LONG = "tell me a long story about " + " and ".join(f"shelf {n}" for n in range(80))
LOCK_SECONDS = 10  # the shortest turn lock the settings allow: how long a killed turn holds its conversation


@pytest.mark.usefixtures("paced")
def test_an_answer_whose_process_was_killed_is_kept_as_far_as_it_was_saved(two: Two) -> None:
    """A process killed mid-answer (Lambda's deadline, a crash) stores nothing of the answer's end:
    the message stays `streaming` with its text in chunks that expire in a day. Once the dead turn's
    lock has run out, the first read stores the answer as what its chunks hold, `interrupted` at the
    deadline, and counts it: it reads the same after its chunks are gone, with the same event ids."""
    from shelfwise.chat.service import CHUNK_SECONDS

    services = two.here.services
    conversation_id = create_conversation(services)
    with FakeRuntimeAPI() as api:
        env = loop_environment(api, **two.settings, SHELFWISE_TURN_LOCK_SECONDS=str(LOCK_SECONDS))
        with StreamProcess(env) as doomed:
            turn = api.invoke(turn_event(conversation_id, LONG))
            live = first_deltas(StreamStack(api, doomed, services), turn, 1)
            message_id = live[0][2]["assistant_message_id"]
            until = time.monotonic() + 10
            while True:  # the answer's item and a chunk of it are stored: then the process dies
                found = services.chat.repo.find_message(USER_SUB, conversation_id, message_id)
                seq = found[0].seq if found else 0
                if found and services.chat.repo.chunks(USER_SUB, conversation_id, seq):
                    break
                assert time.monotonic() < until, "the answer was not being stored"
                time.sleep(CHUNK_SECONDS / 2)
            assert found[0].status == "streaming"
            doomed.kill()
    saved = "".join(
        e.get("d", "")
        for _, events in services.chat.repo.chunks(USER_SUB, conversation_id, seq)
        for e in events
    )
    path = f"/conversations/{conversation_id}/messages"

    until = time.monotonic() + LOCK_SECONDS + 5
    while services.chat.repo.running_answer(USER_SUB, conversation_id)[0] == message_id:
        # its lock still holds: the answer reads as streaming, with its text so far
        assert time.monotonic() < until, "the dead turn's lock never ran out"
        time.sleep(0.5)

    listed = json.loads(two.there.api.wait_response(two.there.api.invoke(request_event("GET", path))).payload)
    answer = listed["items"][1]
    assert (answer["id"], answer["status"], answer["finish_reason"]) == (
        message_id,
        "interrupted",
        "deadline",
    )
    assert answer["content"] == saved
    assert saved
    stored = services.chat.get_conversation(USER_SUB, conversation_id)
    assert stored.message_count == 2

    # A day later the chunks are gone (TTL): the answer is whole all the same, and replays with the
    # ids its stream had.
    services.dynamo.delete_found(ChunkItem.after(USER_SUB, conversation_id, seq, 0))
    assert services.chat.repo.chunks(USER_SUB, conversation_id, seq) == []
    again = services.chat.get_message(USER_SUB, conversation_id, message_id)
    assert (again.status, again.content) == ("interrupted", saved)
    replay = sse_ids(
        two.there.api.wait_response(
            two.there.api.invoke(request_event("GET", events_url(conversation_id, message_id)))
        ).payload
    )
    assert replay[0][:2] == (1, "start")
    assert replay[0][2] == live[0][2]
    assert text_of(replay) == saved
    assert replay[-1][:2] == (1 + len(saved) + 1, "done")
    assert (replay[-1][2]["status"], replay[-1][2]["finish_reason"]) == ("interrupted", "deadline")
    # The stream and the stored answer say the same text, each as far as it got.
    said, kept = text_of(live), text_of(replay)
    assert said.startswith(kept) or kept.startswith(said)
