"""Conversations and turns. Knows nothing of HTTP or Lambda: it yields TurnEvents.

A turn:
 1. read the conversation and its newest messages (one Query), build the prompt within the budget;
 2. store the user's message, reserving the next sequence number for the answer (409 if another
    turn holds the conversation) - before the model is called;
 3. stream the main model with the inventory tools, run the tools it asks for, loop (bounded);
 4. store the answer with usage and timings (marked interrupted if cut short), free the conversation;
 5. afterwards, fold what left the window into the rolling summary, exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

import anyio

from shelfwise import clock
from shelfwise.chat import grounding, memory, tokens
from shelfwise.chat import live as running
from shelfwise.chat.events import TurnEvent, abandoned, answer_events, chunk_events, from_chunk, numbered
from shelfwise.chat.live import LiveTurn
from shelfwise.chat.llm import ChatModel, RoundEnd, TextDelta, Usage
from shelfwise.chat.models import (
    Assembly,
    AssemblySummary,
    AssemblyToolCall,
    Conversation,
    ConversationIn,
    ConversationPatch,
    Grounding,
    Message,
    MessageDetail,
    PromptParts,
    StreamRecord,
    ToolCallRecord,
)
from shelfwise.chat.personas import PromptLibrary, library
from shelfwise.chat.tools import TOOL_NAMES, TOOLS, InventoryTools
from shelfwise.chat.usage import Budgets, Period, Reservation, cost_usd
from shelfwise.errors import (
    DomainError,
    InvalidInput,
    NotFound,
    NotRunning,
    StorageError,
    UpstreamError,
    UpstreamTimeout,
)
from shelfwise.observability import emit, logger, metrics
from shelfwise.pagination import Page
from shelfwise.settings import Settings
from shelfwise.storage.conversations import ConversationRepository
from shelfwise.storage.usage import UsageRepository


def _ms(since: float) -> int:
    return round((time.perf_counter() - since) * 1000)


# How an answer is kept while it streams: a chunk item at most every CHUNK_SECONDS and every
# CHUNK_TOKENS deltas, whichever comes later (a tool event needs only the time); a stop is looked
# for every STOP_POLL_SECONDS (and at once when asked in this process).
CHUNK_SECONDS = 0.25
CHUNK_TOKENS = 64
STOP_POLL_SECONDS = 0.5
# The assembly record's bounds: it is stored with the message, so it must stay small whatever the
# turn did (a few KB at most).
ASSEMBLY_TOOL_CALLS = 16
ASSEMBLY_ARGUMENT_CHARS = 160
ASSEMBLY_REQUESTS = 16


@dataclass
class Turn:
    """One turn, run by `run` to its end whoever listens, its events published as they are said and
    its text kept in DynamoDB as it streams; `message` is the stored answer once it ended."""

    service: ChatService
    user_id: str
    conversation: Conversation
    recent: list[Message]
    user_message: Message
    prompt: memory.Prompt
    turn_id: str
    assistant_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    deadline: float = field(default_factory=lambda: time.monotonic() + 840)  # time.monotonic()
    reservation: Reservation | None = None  # the tokens reserved against the caller's budget
    message: Message | None = None
    error: DomainError | None = None
    # what has been said so far
    parts: list[str] = field(default_factory=list)
    records: list[ToolCallRecord] = field(default_factory=list)
    tool_offsets: list[int] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    ttft_ms: int | None = None
    finish_reason: str = "stop"
    prompt_tokens_sent: int = 0
    # what the grounding check and the assembly record are made of
    tool_results: list[Any] = field(default_factory=list)  # every result the model was given
    tool_trace: list[AssemblyToolCall] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)  # each model request's prompt tokens
    last_request: PromptParts | None = None  # the last request's tokens by part
    grounding: Grounding | None = None
    _started: float = field(default_factory=time.perf_counter)
    _live: LiveTurn | None = None
    _opening: dict[str, Any] = field(default_factory=dict)
    _pending: list[TurnEvent] = field(default_factory=list)  # said, not yet in a chunk
    _pending_tokens: int = 0
    _chunks: int = 0
    _last_write: float = 0.0
    _writing: asyncio.Task[None] | None = None
    _opened: bool = False
    _settled: bool = False  # stored, or the conversation freed

    # -- running ------------------------------------------------------------------------------------
    async def run(self, live: LiveTurn) -> None:
        """The whole turn: its events go to `live`; then the summary fold (after the answer)."""
        self._live = live
        self._opening = {
            "conversation_id": self.conversation.id,
            "user_message_id": self.user_message.id,
            "assistant_message_id": self.assistant_id,
            "model": self.service.settings.main_model,
        }
        try:
            self._publish(TurnEvent.start(**self._opening))
            ended_by = await self._generate_until_ended(live)
            if self._writing is not None:  # the streaming message goes first; the final one holds all
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._writing)
            await anyio.to_thread.run_sync(self._end, ended_by)
        finally:
            if not self._settled:  # cancelled (the process is ending): keep what was said
                self._end("deadline")
            live.end()
        if self.message is not None:
            await self.fold_summary()

    async def _generate_until_ended(self, live: LiveTurn) -> str | None:
        """Generate until the model is done, the user stops it ("stopped") or the deadline comes
        ("deadline"); a model failure is kept in `error`."""
        ended_by: str | None = None
        async with anyio.create_task_group() as group:

            async def watch_for_stop() -> None:
                nonlocal ended_by
                await self._stop_asked(live)
                ended_by = "stopped"
                group.cancel_scope.cancel()

            group.start_soon(watch_for_stop)
            with anyio.move_on_after(max(0.0, self.deadline - time.monotonic())) as budget:
                try:
                    await self._generate()
                except DomainError as error:
                    self.error = error
            if budget.cancelled_caught:
                ended_by = "deadline"
            group.cancel_scope.cancel()
        return ended_by

    async def _stop_asked(self, live: LiveTurn) -> None:
        """Return once this answer's user asked it to stop (here, or through another invocation)."""
        repo = self.service.repo
        while True:
            with anyio.move_on_after(STOP_POLL_SECONDS):
                await live.stop.wait()
                return
            running, stop = await anyio.to_thread.run_sync(
                repo.running_answer, self.user_id, self.conversation.id
            )
            if stop and running == self.assistant_id:
                return

    async def _generate(self) -> None:
        svc = self.service
        settings = svc.settings
        tools = svc.tools.for_turn(
            per_round=settings.max_tool_calls_per_round, per_turn=settings.max_tool_calls_per_turn
        )
        for round_no in range(settings.max_tool_rounds + 1):
            # once the turn's tool calls are spent, the model is offered none: it must answer
            offer_tools = round_no < settings.max_tool_rounds and tools.left > 0
            self.prompt.tools = TOOLS if offer_tools else []
            memory.fit_tool_round(self.prompt)
            self.last_request = self.prompt.parts()
            self.prompt_tokens_sent = self.last_request.total
            self.requests.append(self.prompt_tokens_sent)
            end: RoundEnd | None = None
            round_text: list[str] = []
            stream = svc.model.stream(
                model=settings.main_model,
                messages=self.prompt.messages(),
                tools=self.prompt.tools,
                max_completion_tokens=settings.chat_max_completion_tokens,
                retry=not self.parts,  # never start again once the user has seen text
            )
            async with aclosing(stream):  # closes the upstream call if we stop early
                async for event in stream:
                    if isinstance(event, TextDelta):
                        if not event.text:
                            continue
                        if self.ttft_ms is None:
                            self.ttft_ms = _ms(self._started)
                        self.parts.append(event.text)
                        round_text.append(event.text)
                        self._publish(TurnEvent.delta(event.text))
                    else:
                        end = event
            if end is None:
                raise UpstreamError("the model's stream ended without finishing")
            if end.usage:
                self.usage.prompt_tokens += end.usage.prompt_tokens
                self.usage.completion_tokens += end.usage.completion_tokens
            self.finish_reason = end.finish_reason
            if not (end.tool_calls and offer_tools):
                return
            self.prompt.extra.append(
                {
                    "role": "assistant",
                    "content": "".join(round_text) or None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in end.tool_calls
                    ],
                }
            )
            tools.start_round()
            for call in end.tool_calls:
                # A refused call too gets both its events and its record (a replay rebuilds both
                # from the record: the ids stay the same), and its tool message (OpenAI wants one
                # for every call).
                self._publish(TurnEvent.tool(call.name, "running"))
                answer = await anyio.to_thread.run_sync(tools.run, call.name, call.arguments)
                result, ok = answer.result, answer.ok
                try:
                    arguments = json.loads(call.arguments or "{}")
                except ValueError:
                    arguments = {"raw": call.arguments}
                self.records.append(
                    ToolCallRecord(
                        id=call.id,
                        name=call.name,
                        arguments=arguments if isinstance(arguments, dict) else {"value": arguments},
                        ok=ok,
                        as_of=result.get("as_of"),
                    )
                )
                self.tool_offsets.append(sum(map(len, self.parts)))
                self.tool_results.append(result)
                self.tool_trace.append(
                    AssemblyToolCall(
                        name=call.name[:64],
                        arguments=(call.arguments or "")[:ASSEMBLY_ARGUMENT_CHARS],
                        ok=ok,
                        round=round_no + 1,
                        outcome="refused" if answer.refused else "reused" if answer.reused else "ran",
                    )
                )
                if answer.refused:
                    metrics.add_metric(name="ToolCallsRefused", unit="Count", value=1)
                else:
                    emit("ToolCalls", "Count", 1, tool=call.name if call.name in TOOL_NAMES else "unknown")
                self._publish(TurnEvent.tool(call.name, "done" if ok else "error"))
                self.prompt.extra.append(
                    {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result, default=str)}
                )

    # -- keeping it as it streams -------------------------------------------------------------------
    def _publish(self, event: TurnEvent) -> None:
        assert self._live is not None
        self._live.publish(event)
        if event.name not in ("delta", "tool"):
            return
        self._pending.append(event)
        self._pending_tokens += event.name == "delta"
        if not self._opened:
            self._opened = True
            self._last_write = time.monotonic()
            self._writing = asyncio.ensure_future(anyio.to_thread.run_sync(self._open_answer))
            return
        due = time.monotonic() - self._last_write >= CHUNK_SECONDS and (
            self._pending_tokens >= CHUNK_TOKENS or event.name == "tool"
        )
        if due and (self._writing is None or self._writing.done()):
            self._writing = asyncio.ensure_future(self._write_pending())

    def _open_answer(self) -> None:
        streaming = Message(
            id=self.assistant_id,
            seq=self.user_message.seq + 1,
            role="assistant",
            content="",
            status="streaming",
            model=self.service.settings.main_model,
            created_at=clock.now_iso(),
        )
        record = StreamRecord(turn_id=self.turn_id, opening=self._opening)
        self.service.repo.open_answer(self.user_id, self.conversation.id, streaming, record)

    async def _write_pending(self) -> None:
        """Write what was said since the last chunk (after any write under way: chunks stay in order)."""
        writing = self._writing
        if writing is not None and writing is not asyncio.current_task():
            with contextlib.suppress(Exception):
                await asyncio.shield(writing)
        if not self._pending:
            return
        events, self._pending, self._pending_tokens = self._pending, [], 0
        self._chunks += 1
        self._last_write = time.monotonic()
        try:
            await anyio.to_thread.run_sync(
                self.service.repo.add_chunk,
                self.user_id,
                self.conversation.id,
                self.user_message.seq + 1,
                self._chunks,
                chunk_events(events),
            )
        except DomainError:  # the final message holds everything; a lost chunk only slows a resume
            logger.warning("an answer's chunk could not be written", extra={"chunk": self._chunks})

    # -- the end ------------------------------------------------------------------------------------
    def _end(self, ended_by: str | None) -> None:
        """Store the answer (complete, or interrupted with what was said), free the conversation, and
        publish the closing events. Synchronous: it may run inside a cancelled scope."""
        if self._settled:
            return
        self._settled = True
        said = bool(self.parts or self.records)
        # Stored: what was said, a complete answer, and an answer its user stopped (even before its
        # first token: the stop was answered 202 for it, so it is there to read back).
        keep = said or (self.error is None and ended_by in (None, "stopped"))
        if said or (self.error is None and not ended_by):
            self.grounding = Grounding.model_validate(
                grounding.check("".join(self.parts), self._sources(), self.user_message.content)
            )
        if self.error is not None:
            status, reason = "interrupted", "upstream_error"
            error = self.error
            closing = [
                TurnEvent.error(
                    error.code,
                    error.message,
                    retryable=error.code in ("upstream_timeout", "rate_limited", "upstream_error"),
                    message_id=self.assistant_id if said else None,
                    **(
                        {"retry_after": error.details["retry_after"]}
                        if error.details.get("retry_after")
                        else {}
                    ),
                )
            ]
        else:
            status, reason = ("interrupted", ended_by) if ended_by else ("complete", self.finish_reason)
            closing = [
                TurnEvent.usage(self.usage.prompt_tokens, self.usage.completion_tokens),
                TurnEvent.done(
                    message_id=self.assistant_id if keep else None,
                    status=status,
                    finish_reason=reason,
                    ttft_ms=self.ttft_ms,
                    latency_ms=_ms(self._started),
                    prompt_tokens_sent=self.prompt_tokens_sent,
                    **({"grounding": self.grounding.model_dump()} if self.grounding else {}),
                ),
            ]
        if ended_by == "deadline":
            metrics.add_metric(name="TurnDeadlines", unit="Count", value=1)
            logger.warning("turn reached its deadline", extra={"conversation_id": self.conversation.id})
        if status == "complete":
            metrics.add_metric(name="TurnsCompleted", unit="Count", value=1)
        else:
            emit("TurnsInterrupted", "Count", 1, reason=reason)
        metrics.add_metric(name="TurnLatency", unit="Milliseconds", value=_ms(self._started))
        try:
            if keep:
                answer = self._answer(status, reason)
                record = StreamRecord(
                    turn_id=self.turn_id,
                    opening=self._opening,
                    tool_offsets=self.tool_offsets,
                    closing=[e.as_dict() for e in closing],
                )
                stored = MessageDetail(**dict(answer), assembly=self._assembly())
                self.service.repo.finish_turn(
                    self.user_id, self.conversation.id, stored, turn_id=self.turn_id, record=record
                )
                self.message = answer
                self._count_grounding()
                if self.ttft_ms is not None and status == "complete":
                    metrics.add_metric(name="TimeToFirstToken", unit="Milliseconds", value=self.ttft_ms)
            else:
                self.service.repo.release_turn(self.user_id, self.conversation.id, turn_id=self.turn_id)
            if status != "complete":
                said_so = (
                    "turn interrupted, partial answer stored"
                    if self.message
                    else "turn ended without an answer"
                )
                logger.warning(said_so, extra={"reason": reason})
        except Exception as failure:  # not stored: the conversation is freed all the same
            logger.exception("could not store the end of a turn")
            with contextlib.suppress(Exception):
                self.service.repo.release_turn(self.user_id, self.conversation.id, turn_id=self.turn_id)
            if self.error is None:
                error = (
                    failure if isinstance(failure, DomainError) else StorageError("the answer was not stored")
                )
                self.error = error  # not retryable when it was a bug: a retry would meet it again
                closing = [TurnEvent.error(error.code, error.message, retryable=error is failure)]
        self._settle_usage()
        for event in closing:
            assert self._live is not None
            self._live.publish(event)

    def _sources(self) -> list[Any]:
        """What the answer's figures may come from: every tool result as the tools returned it, and
        as the model last saw it (a result halved to fit the budget says how many entries it kept)."""
        sent = []
        for message in self.prompt.extra:
            if message.get("role") == "tool":
                with contextlib.suppress(ValueError, TypeError):
                    sent.append(json.loads(message["content"]))
        return [*self.tool_results, *sent]

    def _count_grounding(self) -> None:
        """The operator's view of the check: figures checked and unsupported, by model."""
        if self.grounding is None:
            return
        model = self.service.settings.main_model
        emit("FiguresChecked", "Count", self.grounding.checked, model=model)
        emit("UnsupportedFigures", "Count", len(self.grounding.unsupported), model=model)

    def _assembly(self) -> Assembly:
        """What the prompt was made of and what the answer cost (bounded: see ASSEMBLY_*)."""
        prompt = self.prompt
        summary_tokens = self.last_request.summary if self.last_request else 0
        used = self._used()
        return Assembly(
            budget=prompt.budget,
            tokens=self.last_request or prompt.parts(),
            requests=self.requests[:ASSEMBLY_REQUESTS],
            history=prompt.history_record(),
            summary=AssemblySummary(
                through_seq=self.conversation.summary.through_seq if summary_tokens else 0,
                tokens=summary_tokens,
            ),
            tool_calls=self.tool_trace[:ASSEMBLY_TOOL_CALLS],
            tool_calls_omitted=max(0, len(self.tool_trace) - ASSEMBLY_TOOL_CALLS),
            tool_results_shrunk=prompt.shrunk,
            model=self.service.settings.main_model,
            prompt_tokens=used.prompt_tokens,
            completion_tokens=used.completion_tokens,
            cost_usd=self._cost(),
        )

    def _settle_usage(self) -> None:
        """Replace the turn's reservation with what it used (or record it, with no budget set), and
        count the tokens and the cost by model."""
        usage = self._used()
        model = self.service.settings.main_model
        emit("PromptTokens", "Count", usage.prompt_tokens, model=model)
        emit("CompletionTokens", "Count", usage.completion_tokens, model=model)
        emit("CostUSD", "None", float(self._cost()), model=model)
        reservation = self.reservation or Reservation(self.user_id, Period.of(clock.now()).name, 0)
        try:
            self.service.budgets.settle(
                reservation, prompt=usage.prompt_tokens, completion=usage.completion_tokens, cost=self._cost()
            )
        except DomainError:
            logger.exception("could not record a turn's usage")

    def _used(self) -> Usage:
        content = "".join(self.parts)
        completion = self.usage.completion_tokens or (tokens.count_text(content) if content else 0)
        return Usage(prompt_tokens=self.usage.prompt_tokens, completion_tokens=completion)

    def _cost(self) -> Decimal:
        used = self._used()
        return cost_usd(
            self.service.settings,
            self.service.settings.main_model,
            used.prompt_tokens,
            used.completion_tokens,
        )

    def _answer(self, status: str, finish_reason: str) -> Message:
        content = "".join(self.parts)
        return Message(
            id=self.assistant_id,
            seq=self.user_message.seq + 1,
            role="assistant",
            content=content,
            status="complete" if status == "complete" else "interrupted",
            model=self.service.settings.main_model,
            prompt_tokens=self.usage.prompt_tokens,
            completion_tokens=self._used().completion_tokens,
            ttft_ms=self.ttft_ms,
            latency_ms=_ms(self._started),
            cost_usd=self._cost(),
            tool_calls=self.records,
            finish_reason=finish_reason,
            grounding=self.grounding,
            created_at=clock.now_iso(),
        )

    async def fold_summary(self) -> int:
        """Fold what has left the window into the summary (after the turn; never raises)."""
        try:
            return await self.service.fold(self)
        except Exception:
            logger.exception("summary fold failed; it will be retried on a later turn")
            return 0


class ChatService:
    def __init__(
        self,
        settings: Settings,
        repo: ConversationRepository,
        model: ChatModel,
        tools: InventoryTools,
        prompts: PromptLibrary | None = None,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.model = model
        self.tools = tools
        self._prompts = prompts
        self.budgets = Budgets(settings, UsageRepository(repo.db))

    @property
    def prompts(self) -> PromptLibrary:
        return self._prompts or library()

    # -- conversations ------------------------------------------------------------------------------
    def create_conversation(self, user_id: str, data: ConversationIn) -> Conversation:
        persona = self.prompts.persona(data.prompt_key)
        at = clock.now_iso()
        conversation = Conversation(
            id=data.id or uuid.uuid4().hex,
            title=data.title,
            title_source="user" if data.title else None,
            prompt_key=persona.key,
            created_at=at,
            updated_at=at,
        )
        self.repo.create(user_id, conversation)
        metrics.add_metric(name="ConversationsCreated", unit="Count", value=1)
        return conversation

    def list_conversations(self, user_id: str, *, limit: int, cursor: str | None) -> Page[Conversation]:
        return self.repo.list_for_user(user_id, limit=limit, cursor=cursor)

    def get_conversation(self, user_id: str, conversation_id: str) -> Conversation:
        return self.repo.get(user_id, conversation_id)

    def update_conversation(
        self, user_id: str, conversation_id: str, patch: ConversationPatch
    ) -> Conversation:
        changes = patch.model_dump(exclude_unset=True)
        if "title" in changes:
            if changes["title"] is None:
                raise InvalidInput("title cannot be removed; set a new one", field="title")
            changes["title_source"] = "user"  # a title the user set is never overwritten
        if "prompt_key" in changes:
            if changes["prompt_key"] is None:
                raise InvalidInput("prompt_key cannot be removed", field="prompt_key")
            self.prompts.persona(changes["prompt_key"])
        if changes:
            self.repo.update(user_id, conversation_id, changes)
        return self.repo.get(user_id, conversation_id)

    def delete_conversation(self, user_id: str, conversation_id: str) -> None:
        deleted = self.repo.delete(user_id, conversation_id)
        logger.info("conversation deleted", extra={"conversation_id": conversation_id, "messages": deleted})

    def list_messages(
        self, user_id: str, conversation_id: str, *, limit: int, cursor: str | None
    ) -> Page[Message]:
        self.repo.get(user_id, conversation_id)  # 404 for a conversation that is not the caller's
        page = self.repo.list_messages(user_id, conversation_id, limit=limit, cursor=cursor)
        page.items = [self._with_progress(user_id, conversation_id, m) for m in page.items]
        return page

    # -- turns --------------------------------------------------------------------------------------
    def begin_turn(
        self,
        user_id: str,
        conversation_id: str,
        content: str,
        *,
        remaining_ms: int | None = None,
        groups: frozenset[str] = frozenset(),
    ) -> Turn:
        """Everything that can refuse a turn happens here, before any byte of an answer: a missing
        conversation (404), a message too long (400), another turn running (409), a spent budget
        (429: the turn's tokens are reserved first, and released if the turn is refused after).
        `remaining_ms`: the Lambda invocation's time left, which bounds the turn's deadline;
        `groups`: the caller's, which set their budget."""
        if len(content) > self.settings.message_max_chars:
            raise InvalidInput(
                f"the message is longer than {self.settings.message_max_chars} characters", field="content"
            )
        if not content.strip():
            raise InvalidInput("the message is empty", field="content")
        context = self.repo.load_turn(user_id, conversation_id, window=self.settings.history_window_messages)
        conversation = context.conversation
        # an answer left streaming by a killed turn is stored before the next one, and heard in its prompt
        recent = [self._with_progress(user_id, conversation_id, m) for m in context.recent]
        persona = self.prompts.persona(conversation.prompt_key)
        prompt = memory.build_prompt(
            persona_prompt=persona.system_prompt,
            summary=conversation.summary.text,
            summary_max_tokens=self.settings.summary_max_tokens,
            recent=recent,
            new_content=content,
            tools=TOOLS if self.settings.max_tool_rounds else [],
            budget=self.settings.prompt_token_budget,
        )
        user_message = Message(
            id=uuid.uuid4().hex,
            seq=conversation.last_seq + 1,
            role="user",
            content=content,
            prompt_tokens=tokens.count_text(content),
            created_at=clock.now_iso(),
        )
        turn_id = uuid.uuid4().hex
        assistant_id = uuid.uuid4().hex  # named with the lock: a refused second message is told it
        reservation = None
        if self.budgets.limit_for(groups) is not None:  # no limit: usage is only recorded, after
            reservation = self.budgets.reserve(
                user_id, groups, prompt.tokens() + self.settings.chat_max_completion_tokens
            )
        try:
            self.repo.begin_turn(
                user_id,
                conversation,
                user_message,
                turn_id=turn_id,
                lock_seconds=self.settings.turn_lock_seconds,
                answer_id=assistant_id,
            )
        except DomainError:
            if reservation is not None:  # refused: nothing of the budget is spent
                self.budgets.settle(reservation, prompt=0, completion=0, cost=Decimal(0))
            raise
        return Turn(
            service=self,
            user_id=user_id,
            conversation=conversation,
            recent=recent,
            user_message=user_message,
            prompt=prompt,
            turn_id=turn_id,
            assistant_id=assistant_id,
            deadline=self.deadline(remaining_ms),
            reservation=reservation,
        )

    def deadline(self, remaining_ms: int | None) -> float:
        """When a turn starting now must end (time.monotonic()): the local bound, or on Lambda the
        invocation's end less the margin if that comes first."""
        budget = self.settings.turn_max_seconds
        if remaining_ms is not None:
            budget = min(budget, remaining_ms / 1000 - self.settings.turn_deadline_margin_seconds)
        return time.monotonic() + max(1.0, budget)

    def start(self, turn: Turn) -> LiveTurn:
        """Run a begun turn in a task of its own: it ends when the answer does, whoever listens."""
        return running.start((turn.user_id, turn.conversation.id, turn.assistant_id), turn.run)

    async def fold(self, turn: Turn) -> int:
        """Fold every message that left this turn's window into the summary. Returns how many."""
        conversation = turn.conversation
        window_start = turn.prompt.window_start or turn.user_message.seq
        through = conversation.summary.through_seq
        pending = memory.to_fold(turn.recent, through, window_start)
        oldest_read = min((m.seq for m in turn.recent), default=window_start)
        if through + 1 < oldest_read:
            # an earlier fold failed and the gap is older than this turn's read: catch up
            pending = await anyio.to_thread.run_sync(
                turn.service.repo.messages_between,
                turn.user_id,
                conversation.id,
                through + 1,
                window_start - 1,
            )
        pending = pending[: self.settings.history_window_messages]
        if not pending:
            return 0
        request = memory.summary_request(self.prompts.task("summary"), conversation.summary.text, pending)
        text, _ = await self.model.complete(
            model=self.settings.utility_model,
            messages=request,
            max_completion_tokens=self.settings.summary_max_completion_tokens,
        )
        if not text.strip():
            logger.warning("utility model returned an empty summary; asking the main model")
            text, _ = await self.model.complete(
                model=self.settings.main_model,
                messages=request,
                max_completion_tokens=self.settings.summary_max_completion_tokens,
            )
        text = memory.scrub_figures(text)
        if not text:
            logger.warning("no summary could be made; the messages stay pending for a later turn")
            return 0
        text = tokens.truncate_text(text, self.settings.summary_max_tokens)
        folded = await anyio.to_thread.run_sync(
            lambda: self.repo.fold_summary(
                turn.user_id,
                conversation.id,
                previous_through=through,
                through_seq=pending[-1].seq,
                text=text,
                folded=len(pending),
            )
        )
        if not folded:
            return 0  # another turn folded first: nothing is folded twice
        metrics.add_metric(name="MessagesSummarised", unit="Count", value=len(pending))
        logger.info(
            "summary folded", extra={"conversation_id": conversation.id, "through_seq": pending[-1].seq}
        )
        return len(pending)

    async def answer(
        self,
        user_id: str,
        conversation_id: str,
        content: str,
        *,
        remaining_ms: int | None = None,
        groups: frozenset[str] = frozenset(),
    ) -> Message:
        """A whole turn for callers that want one JSON answer: its stored answer (or its error). The
        summary fold goes on after, in the turn's own task (`settle` waits for it)."""
        turn = await anyio.to_thread.run_sync(
            partial(
                self.begin_turn, user_id, conversation_id, content, remaining_ms=remaining_ms, groups=groups
            )
        )
        live = self.start(turn)
        async for _ in live.follow():
            pass
        if turn.error is not None:
            raise turn.error
        if turn.message is None:  # its deadline came before the model said anything
            raise UpstreamTimeout("the model said nothing before the turn's deadline", retry_after=1)
        return turn.message

    @staticmethod
    async def settle() -> None:
        """Wait until every turn of this process has ended, after-turn work included."""
        await running.drain()

    # -- answers, while and after they stream -------------------------------------------------------
    def get_message(self, user_id: str, conversation_id: str, message_id: str) -> MessageDetail:
        """One message with its assembly record (an answer's, once it has ended)."""
        self.repo.get(user_id, conversation_id)
        found = self.repo.find_message(user_id, conversation_id, message_id)
        if found is None:
            raise NotFound("message not found", message_id=message_id)
        return self._with_progress(user_id, conversation_id, found[0])

    def _with_progress[M: Message](self, user_id: str, conversation_id: str, message: M) -> M:
        """A streaming answer with its text so far (from its chunks); an abandoned one (no turn holds
        the conversation for it any more) as the final message it is then stored as (`_settle`)."""
        if message.status != "streaming":
            return message
        said = [
            event
            for _, stored in self.repo.chunks(user_id, conversation_id, message.seq)
            for event in from_chunk(stored)
        ]
        running_id, _ = self.repo.running_answer(user_id, conversation_id)
        if running_id != message.id:
            return self._settle(user_id, conversation_id, message, said)[0]
        text = "".join(e.data["content"] for e in said if e.name == "delta")
        return message.model_copy(update={"content": text})

    def _settle[M: Message](
        self, user_id: str, conversation_id: str, message: M, said: list[TurnEvent]
    ) -> tuple[M, StreamRecord]:
        """Store an answer that is `streaming` while no turn holds the conversation for it (its
        process was killed: Lambda's deadline, a crash) as what its chunks hold, `interrupted` at the
        deadline (events.abandoned): it reads the same once the chunks expire. Answers the message
        as stored and the end of its stream record. The first reader stores it; another finds it
        stored (the write is conditional on `streaming`), and so does a reader that raced the turn's
        own end (the message was read before the lock)."""
        answer, ending = abandoned(message, said)
        if self.repo.settle_answer(user_id, conversation_id, answer, ending):
            metrics.add_metric(name="AnswersAbandoned", unit="Count", value=1)
            logger.warning(
                "an abandoned answer was stored as far as its chunks go",
                extra={"conversation_id": conversation_id, "message_id": message.id},
            )
            return answer, ending
        found = self.repo.find_message(user_id, conversation_id, message.id)
        if found is None or found[0].status == "streaming":  # the conversation is going
            return answer, ending
        stored, record = found
        return type(message).model_validate(
            stored.model_dump(include=set(type(message).model_fields))
        ), record

    async def stop(self, user_id: str, conversation_id: str, message_id: str) -> None:
        """Ask a running answer to stop: it ends within a second, stored `interrupted`. The flag is
        kept with the turn's lock, where the generating invocation looks for it."""
        await anyio.to_thread.run_sync(self.repo.get, user_id, conversation_id)
        if await anyio.to_thread.run_sync(self.repo.request_stop, user_id, conversation_id, message_id):
            if (live := running.find((user_id, conversation_id, message_id))) is not None:
                live.stop.set()  # generated here: no need to wait for the next look
            return
        if (
            await anyio.to_thread.run_sync(self.repo.find_message, user_id, conversation_id, message_id)
            is None
        ):
            raise NotFound("message not found", message_id=message_id)
        raise NotRunning("this answer is not being generated any more", message_id=message_id)

    async def events(
        self,
        user_id: str,
        conversation_id: str,
        message_id: str,
        *,
        after: int = 0,
        follow_seconds: float = 840,
    ) -> AsyncGenerator[tuple[int, TurnEvent]]:
        """An answer's events after id `after`, with the ids of its original stream: replayed from
        this process's live turn, or from storage (its chunks while it streams, its stored message
        once it ended), following a live answer until it ends."""
        live = running.find((user_id, conversation_id, message_id))
        if live is not None:
            async for numbered_event in live.follow(after=after):
                yield numbered_event
            return
        repo = self.repo
        await anyio.to_thread.run_sync(repo.get, user_id, conversation_id)
        until = time.monotonic() + follow_seconds
        chunks: list[TurnEvent] = []
        read = 0
        while True:
            # The lock first, then the message: the final message and the lock's release are one
            # transaction, so a message still streaming after the lock was seen free was abandoned.
            running_id, _ = await anyio.to_thread.run_sync(repo.running_answer, user_id, conversation_id)
            found = await anyio.to_thread.run_sync(repo.find_message, user_id, conversation_id, message_id)
            if found is None and running_id != message_id:
                raise NotFound("message not found", message_id=message_id)
            if found is not None:
                message, record = found
                if message.status == "streaming":
                    seq = message.seq
                    for n, stored in await anyio.to_thread.run_sync(
                        lambda: repo.chunks(user_id, conversation_id, seq, after=read)  # noqa: B023
                    ):
                        chunks += from_chunk(stored)
                        read = n
                if message.status == "streaming" and running_id != message_id:
                    # its turn ended without storing it (the process was killed): stored now
                    message, ending = await anyio.to_thread.run_sync(
                        self._settle, user_id, conversation_id, message, chunks
                    )
                    record = record.model_copy(
                        update={"tool_offsets": ending.tool_offsets, "closing": ending.closing}
                    )
                for event_id, event in numbered(answer_events(message, record, chunks), after=after):
                    yield event_id, event
                    after = event_id
                if message.status != "streaming":
                    return
            if time.monotonic() > until:
                return
            await anyio.sleep(CHUNK_SECONDS)
