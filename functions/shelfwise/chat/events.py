"""What a turn tells its caller, in order: start, (tool | delta)*, usage, done - or error.

The same events become SSE frames (`event:` + one-line JSON `data:`) or one JSON answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

from shelfwise.chat.models import Message, StreamRecord, ToolCallRecord

EventName = Literal["start", "delta", "tool", "usage", "done", "error"]


@dataclass(frozen=True)
class TurnEvent:
    name: EventName
    data: dict[str, Any]

    @classmethod
    def start(cls, **data: Any) -> TurnEvent:
        return cls("start", data)

    @classmethod
    def delta(cls, content: str) -> TurnEvent:
        return cls("delta", {"content": content})

    @classmethod
    def tool(cls, name: str, status: str, **data: Any) -> TurnEvent:
        return cls("tool", {"name": name, "status": status, **data})

    @classmethod
    def usage(cls, prompt_tokens: int, completion_tokens: int) -> TurnEvent:
        return cls(
            "usage",
            {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        )

    @classmethod
    def done(cls, **data: Any) -> TurnEvent:
        return cls("done", data)

    @classmethod
    def error(cls, code: str, message: str, *, retryable: bool, **data: Any) -> TurnEvent:
        return cls("error", {"code": code, "message": message, "retryable": retryable, **data})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- event ids and replays -----------------------------------------------------------------------------
#
# An event's id is its position in the answer: the characters of text said up to and including it,
# plus the events that are not text up to and including it. So ids grow with every event, and a replay
# that joins many deltas into one still gives each event the id it had in the original stream: a
# client resuming after id N gets exactly what follows N, whether the replay comes from the live turn,
# from its chunks, or from the stored message.


def next_id(previous: int, event: TurnEvent) -> int:
    return previous + (len(event.data["content"]) if event.name == "delta" else 1)


def numbered(events: Iterable[TurnEvent], *, after: int = 0) -> Iterator[tuple[int, TurnEvent]]:
    """The events after id `after`, with their ids; consecutive deltas joined into one. A delta that
    straddles `after` (a client that saw part of it) is cut to what the client has not seen."""
    position = 0
    text: list[str] = []
    for event in events:
        end = next_id(position, event)
        if event.name == "delta":
            if end > after:
                content = event.data["content"]
                text.append(content[max(0, after - position) :])
        else:
            if text:
                yield position, TurnEvent.delta("".join(text))
                text = []
            if end > after:
                yield end, event
        position = end
    if text:
        yield position, TurnEvent.delta("".join(text))


def chunk_events(events: Iterable[TurnEvent]) -> list[dict[str, Any]]:
    """What a chunk item stores of an answer's events: its text and its tool events, compactly."""
    stored: list[dict[str, Any]] = []
    for event in events:
        if event.name == "delta":
            if stored and "d" in stored[-1]:
                stored[-1]["d"] += event.data["content"]
            else:
                stored.append({"d": event.data["content"]})
        elif event.name == "tool":
            stored.append({"t": event.data["name"], "s": event.data["status"]})
    return stored


def from_chunk(stored: Iterable[dict[str, Any]]) -> Iterator[TurnEvent]:
    for entry in stored:
        yield TurnEvent.delta(entry["d"]) if "d" in entry else TurnEvent.tool(entry["t"], entry["s"])


def answer_events(
    message: Message, record: StreamRecord, chunks: Iterable[TurnEvent] = ()
) -> list[TurnEvent]:
    """An answer's events as its stream said them, rebuilt from storage: the stored start event, then
    the text with its tool events where they ran (from the final message, or from the chunks while it
    is still streaming), then the closing events of a final message."""
    events = [TurnEvent.start(**record.opening)]
    if message.status == "streaming":
        return [*events, *chunks]
    at = 0
    for call, offset in zip(message.tool_calls, record.tool_offsets, strict=False):
        if offset > at:
            events.append(TurnEvent.delta(message.content[at:offset]))
            at = offset
        events += [
            TurnEvent.tool(call.name, "running"),
            TurnEvent.tool(call.name, "done" if call.ok else "error"),
        ]
    if at < len(message.content):
        events.append(TurnEvent.delta(message.content[at:]))
    return events + [TurnEvent(c["name"], c["data"]) for c in record.closing]


def abandoned[M: Message](message: M, chunks: Iterable[TurnEvent]) -> tuple[M, StreamRecord]:
    """A `streaming` answer whose turn is gone without storing it (its process was killed: Lambda's
    deadline, a crash), as the final message it becomes: the text and tool calls its chunks hold,
    `interrupted` at the deadline, with the end of its stream record (`tool_offsets`, `closing`; the
    start event stays as stored). Its replay gives the chunks' events with the ids they had, then
    `done` (and `error` for a tool that had not finished)."""
    text: list[str] = []
    calls: list[ToolCallRecord] = []
    offsets: list[int] = []
    for event in chunks:
        if event.name == "delta":
            text.append(event.data["content"])
        elif event.data["status"] == "running":
            calls.append(ToolCallRecord(id=f"{message.id}-{len(calls)}", name=event.data["name"], ok=False))
            offsets.append(sum(map(len, text)))
        elif calls:
            calls[-1] = calls[-1].model_copy(update={"ok": event.data["status"] == "done"})
    done = TurnEvent.done(message_id=message.id, status="interrupted", finish_reason="deadline")
    ended = {
        "content": "".join(text),
        "status": "interrupted",
        "finish_reason": "deadline",
        "tool_calls": calls,
    }
    return message.model_copy(update=ended), StreamRecord(tool_offsets=offsets, closing=[done.as_dict()])
