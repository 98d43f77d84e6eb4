"""What a turn tells its caller, in order: start, (tool | delta)*, usage, done - or error.

The same events become SSE frames (`event:` + one-line JSON `data:`) or one JSON answer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

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
