"""An answer whose process was killed mid-stream becomes the final message its chunks hold, and
replays with the event ids its stream had."""

from __future__ import annotations

from shelfwise.chat.events import TurnEvent, abandoned, answer_events, numbered
from shelfwise.chat.models import Message, StreamRecord

START = {"conversation_id": "c1", "assistant_message_id": "m2", "model": "offline"}


def _streaming() -> Message:
    return Message(id="m2", seq=2, role="assistant", content="", status="streaming", created_at="t0")


def _replay(message: Message, record: StreamRecord) -> list[tuple[int, TurnEvent]]:
    return list(numbered(answer_events(message, record)))


def test_the_chunks_text_and_tools_become_the_answer_and_replay_with_their_ids() -> None:
    said = [
        TurnEvent.delta("Let me "),
        TurnEvent.delta("check. "),
        TurnEvent.tool("search_products", "running"),
        TurnEvent.tool("search_products", "done"),
        TurnEvent.delta("We have 17"),
        TurnEvent.tool("get_stock", "running"),
        TurnEvent.tool("get_stock", "error"),
        TurnEvent.delta(" black tees"),
    ]
    answer, ending = abandoned(_streaming(), said)
    assert (answer.status, answer.finish_reason) == ("interrupted", "deadline")
    assert answer.content == "Let me check. We have 17 black tees"
    assert [(c.name, c.ok) for c in answer.tool_calls] == [("search_products", True), ("get_stock", False)]
    record = StreamRecord(
        turn_id="t", opening=START, tool_offsets=ending.tool_offsets, closing=ending.closing
    )
    live = list(numbered([TurnEvent.start(**START), *said]))
    replay = _replay(answer, record)
    assert replay[:-1] == live
    assert replay[-1] == (
        live[-1][0] + 1,
        TurnEvent.done(message_id="m2", status="interrupted", finish_reason="deadline"),
    )


def test_a_tool_cut_off_while_running_replays_as_failed_after_what_was_said() -> None:
    said = [TurnEvent.delta("Checking"), TurnEvent.tool("get_stock", "running")]
    answer, ending = abandoned(_streaming(), said)
    assert [(c.name, c.ok) for c in answer.tool_calls] == [("get_stock", False)]
    record = StreamRecord(opening=START, tool_offsets=ending.tool_offsets, closing=ending.closing)
    names = [(i, e.name, e.data.get("status")) for i, e in _replay(answer, record)]
    assert names == [
        (1, "start", None),
        (9, "delta", None),
        (10, "tool", "running"),
        (11, "tool", "error"),
        (12, "done", "interrupted"),
    ]


def test_an_answer_killed_before_anything_was_saved_is_empty_and_ends() -> None:
    answer, ending = abandoned(_streaming(), [])
    assert (answer.content, answer.tool_calls, answer.status) == ("", [], "interrupted")
    assert ending.tool_offsets == []
    assert [c["name"] for c in ending.closing] == ["done"]
