"""Conversation and message models. No HTTP, no DynamoDB."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
PromptKey = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
# A conversation id: 32 lowercase hex digits (a uuid4 without dashes when the server makes it).
ConversationId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
TitleSource = Literal["user", "generated"]
Role = Literal["user", "assistant"]
Status = Literal["streaming", "complete", "interrupted"]

_STRICT = ConfigDict(extra="forbid")
# US dollars, exact in storage (DynamoDB numbers), a JSON number on the wire.
Usd = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class ConversationIn(BaseModel):
    model_config = _STRICT
    # A client may choose the id (an offline client, a replayable sam local event); taken: 409.
    id: ConversationId | None = None
    prompt_key: PromptKey | None = None
    title: Title | None = None


class ConversationPatch(BaseModel):
    model_config = _STRICT
    title: Title | None = None
    prompt_key: PromptKey | None = None


class SummaryState(BaseModel):
    through_seq: int = 0  # every message with seq <= through_seq is folded into `text`
    updated_at: str | None = None
    text: str = ""
    folded_messages: int = 0  # how many messages the summary has taken in (each exactly once)


class Conversation(BaseModel):
    id: str
    title: str | None = None
    title_source: TitleSource | None = None
    prompt_key: str
    summary: SummaryState = Field(default_factory=SummaryState)
    message_count: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    last_seq: int = 0
    created_at: str
    updated_at: str


def _exact(value: Any) -> Any:
    """JSON numbers as int or Decimal, never float (DynamoDB stores numbers exactly, not floats)."""
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {str(k): _exact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_exact(v) for v in value]
    return value


def _as_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if int(value.as_tuple().exponent) >= 0 else float(value)
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    return value


# A tool call's arguments as the model sent them: kept exact, answered as JSON numbers.
ToolArguments = Annotated[
    dict[str, Any], AfterValidator(_exact), PlainSerializer(_as_json, return_type=dict, when_used="json")
]


class ToolCallRecord(BaseModel):
    id: str
    name: str
    arguments: ToolArguments = Field(default_factory=dict)
    ok: bool = True
    as_of: str | None = None


class Grounding(BaseModel):
    """An answer's figures checked against the tool results of its turn (chat/grounding.py):
    `checked` figures in all; `unsupported`, as written, those that no tool result of the turn and
    not the user's own message holds."""

    checked: int = 0
    unsupported: list[str] = Field(default_factory=list)


class Message(BaseModel):
    id: str
    seq: int
    role: Role
    content: str
    status: Status = "complete"
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: int | None = None
    latency_ms: int | None = None
    cost_usd: Usd | None = None  # an answer's cost by the model's price (settings.model_prices)
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    # Why an answer ended: stop, length (the model's), stopped (the user asked), deadline, upstream_error.
    finish_reason: str | None = None
    grounding: Grounding | None = None  # an assistant message's, once it has ended
    created_at: str


class PromptParts(BaseModel):
    """Tokens of one model request by part (estimated as chat/tokens.py counts them); `framing` is
    the rest of `total` (the reply priming)."""

    system: int = 0  # the persona's prompt
    summary: int = 0  # the rolling summary, inside the system message
    tools: int = 0  # the tool schemas
    history: int = 0  # earlier messages sent
    new_message: int = 0
    tool_rounds: int = 0  # this turn's tool calls and results
    framing: int = 0
    total: int = 0


class AssemblyHistory(BaseModel):
    read: int = 0  # messages of the window read for the turn
    sent: list[list[int]] = Field(default_factory=list)  # the seqs sent, as [first, last] ranges
    sent_count: int = 0
    trimmed: int = 0  # read, with text, but left out by the token budget
    dropped_for_tools: int = 0  # sent at first, left out of later rounds to make room for tool results


class AssemblySummary(BaseModel):
    through_seq: int = 0  # the summary sent covers every message up to this seq
    tokens: int = 0


class AssemblyToolCall(BaseModel):
    name: str
    arguments: str  # as the model sent them, cut to a bounded length
    ok: bool = True
    round: int = 1
    outcome: Literal["ran", "reused", "refused"] = "ran"


class Assembly(BaseModel):
    """How an answer's prompt was put together and what it cost: what the budget allowed, each part's
    tokens (of the request that wrote the answer, and every request's total), the history sent and
    trimmed, how far the summary reached, the tool calls, the model and the cost. Kept with the
    message, bounded in size; on the single-message GET only. It may hold tool arguments, so it is
    never logged."""

    budget: int
    tokens: PromptParts
    requests: list[int] = Field(default_factory=list)  # each model request's prompt tokens, in order
    history: AssemblyHistory = Field(default_factory=AssemblyHistory)
    summary: AssemblySummary = Field(default_factory=AssemblySummary)
    tool_calls: list[AssemblyToolCall] = Field(default_factory=list)
    tool_calls_omitted: int = 0  # beyond the record's bound
    tool_results_shrunk: int = 0  # times a tool result was halved to fit the budget
    model: str
    prompt_tokens: int = 0  # billed (the model's usage)
    completion_tokens: int = 0
    cost_usd: Usd = Decimal(0)


class MessageDetail(Message):
    """GET /conversations/{id}/messages/{message_id}: the message, with its assembly (an answer's,
    once it has ended; null otherwise)."""

    assembly: Assembly | None = None


class StreamRecord(BaseModel):
    """What storage keeps beside an assistant message so that its stream can be replayed with the same
    event ids at any age: the start event, where each tool ran in the text, the closing events."""

    turn_id: str | None = None
    opening: dict[str, Any] = Field(default_factory=dict)
    tool_offsets: list[int] = Field(default_factory=list)
    closing: list[dict[str, Any]] = Field(default_factory=list)


def _said(content: str) -> str:
    if not content.strip():
        raise ValueError("the message is empty")
    return content


class MessageIn(BaseModel):
    model_config = _STRICT
    content: Annotated[str, AfterValidator(_said)]


class Usage(BaseModel):
    """GET /usage: a caller's spend this period."""

    period: str
    resets_at: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    limit_tokens: int | None
    remaining_tokens: int | None


@dataclass(frozen=True)
class TurnContext:
    """What one turn reads: the conversation and its newest messages (newest first)."""

    conversation: Conversation
    recent: list[Message]


# -- titles ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConversationRef:
    user_id: str
    conversation_id: str


@dataclass(frozen=True)
class PeriodUsage:
    """A user's tokens and cost in one budget period; `committed` also counts what running turns
    have reserved (see chat.usage)."""

    committed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = Decimal(0)


@dataclass(frozen=True)
class TitleState:
    """What TitleFunction needs to decide: the conversation's title fields and its first messages."""

    conversation_id: str
    title: str | None
    title_source: str | None
    title_requested: str | None  # the token of a pending POST /conversations/{id}/title
    deleting: bool
    opening: tuple[tuple[str, str], ...] = ()  # (role, content) of the first messages, oldest first

    @property
    def first_user(self) -> str | None:
        """The first thing the user said (None: nothing yet to title from)."""
        return self._first_exchange()[0]

    @property
    def first_answer(self) -> str | None:
        """The first answer to it, if there is one yet."""
        return self._first_exchange()[1]

    def _first_exchange(self) -> tuple[str | None, str | None]:
        user = None
        for role, content in self.opening:
            if not (text := content.strip()):
                continue
            if role == "user" and user is None:
                user = text
            elif role == "assistant" and user is not None:
                return user, text
        return user, None


@dataclass(frozen=True)
class RequestRefused:
    """Why a fresh title could not be asked for."""

    gone: bool  # no such conversation, or it is being deleted
    user_title: bool  # its user named it
