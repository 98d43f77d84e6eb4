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

import json
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field

import anyio

from shelfwise import clock
from shelfwise.chat import memory, tokens
from shelfwise.chat.events import TurnEvent
from shelfwise.chat.llm import ChatModel, RoundEnd, TextDelta, Usage
from shelfwise.chat.models import (
    Conversation,
    ConversationIn,
    ConversationPatch,
    Message,
    ToolCallRecord,
)
from shelfwise.chat.personas import PromptLibrary, library
from shelfwise.chat.tools import TOOLS, InventoryTools
from shelfwise.errors import DomainError, InvalidInput, UpstreamError
from shelfwise.observability import logger, metrics
from shelfwise.pagination import Page
from shelfwise.settings import Settings
from shelfwise.storage.conversations import ConversationRepository


def _ms(since: float) -> int:
    return round((time.perf_counter() - since) * 1000)


@dataclass
class Turn:
    """One running turn. `events()` streams it; `message` is the stored answer once it ended."""

    service: ChatService
    user_id: str
    conversation: Conversation
    recent: list[Message]
    user_message: Message
    prompt: memory.Prompt
    turn_id: str
    assistant_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    message: Message | None = None
    error: DomainError | None = None

    async def events(self) -> AsyncGenerator[TurnEvent]:
        svc = self.service
        settings = svc.settings
        model = settings.main_model
        started = time.perf_counter()
        ttft_ms: int | None = None
        parts: list[str] = []
        records: list[ToolCallRecord] = []
        usage = Usage()
        last_prompt_tokens = 0
        finish_reason = "stop"
        stored = False

        yield TurnEvent.start(
            conversation_id=self.conversation.id,
            user_message_id=self.user_message.id,
            assistant_message_id=self.assistant_id,
            model=model,
        )
        try:
            for round_no in range(settings.max_tool_rounds + 1):
                offer_tools = round_no < settings.max_tool_rounds
                self.prompt.tools = TOOLS if offer_tools else []
                memory.fit_tool_round(self.prompt)
                last_prompt_tokens = self.prompt.tokens()
                end: RoundEnd | None = None
                round_text: list[str] = []
                stream = svc.model.stream(
                    model=model,
                    messages=self.prompt.messages(),
                    tools=self.prompt.tools,
                    max_completion_tokens=settings.chat_max_completion_tokens,
                    retry=not parts,  # never start again once the user has seen text
                )
                async with aclosing(stream):  # closes the upstream call if we stop early
                    async for event in stream:
                        if isinstance(event, TextDelta):
                            if ttft_ms is None:
                                ttft_ms = _ms(started)
                            parts.append(event.text)
                            round_text.append(event.text)
                            yield TurnEvent.delta(event.text)
                        else:
                            end = event
                if end is None:
                    raise UpstreamError("the model's stream ended without finishing")
                if end.usage:
                    usage.prompt_tokens += end.usage.prompt_tokens
                    usage.completion_tokens += end.usage.completion_tokens
                finish_reason = end.finish_reason
                if not (end.tool_calls and offer_tools):
                    break
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
                for call in end.tool_calls:
                    yield TurnEvent.tool(call.name, "running")
                    result, ok = await anyio.to_thread.run_sync(svc.tools.run, call.name, call.arguments)
                    try:
                        arguments = json.loads(call.arguments or "{}")
                    except ValueError:
                        arguments = {"raw": call.arguments}
                    records.append(
                        ToolCallRecord(
                            id=call.id,
                            name=call.name,
                            arguments=arguments if isinstance(arguments, dict) else {"value": arguments},
                            ok=ok,
                            as_of=result.get("as_of"),
                        )
                    )
                    metrics.add_metric(name="ToolCalls", unit="Count", value=1)
                    yield TurnEvent.tool(call.name, "done" if ok else "error")
                    self.prompt.extra.append(
                        {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result, default=str)}
                    )
            message = self._answer(parts, records, usage, finish_reason, ttft_ms, started, "complete")
            await anyio.to_thread.run_sync(self._store, message)
            stored = True
            yield TurnEvent.usage(usage.prompt_tokens, usage.completion_tokens)
            yield TurnEvent.done(
                message_id=message.id,
                finish_reason=finish_reason,
                ttft_ms=ttft_ms,
                latency_ms=message.latency_ms,
                prompt_tokens_sent=last_prompt_tokens,
            )
            metrics.add_metric(name="TurnsCompleted", unit="Count", value=1)
            if ttft_ms is not None:
                metrics.add_metric(name="TimeToFirstToken", unit="Milliseconds", value=ttft_ms)
        except DomainError as error:
            self.error = error
            stored = self._end_interrupted(parts, records, usage, ttft_ms, started, error.code)
            yield TurnEvent.error(
                error.code,
                error.message,
                retryable=error.code in ("upstream_timeout", "rate_limited", "upstream_error"),
                message_id=self.assistant_id if stored else None,
                **({"retry_after": error.details["retry_after"]} if error.details.get("retry_after") else {}),
            )
        finally:
            # The client went away (cancellation / aclose) or something unexpected broke: keep
            # what was said, marked interrupted, and free the conversation. Synchronous on purpose:
            # this may run inside a cancelled scope, where awaiting would raise again.
            if not stored and self.error is None:
                self._end_interrupted(parts, records, usage, ttft_ms, started, "client_disconnected")

    def _answer(
        self,
        parts: list[str],
        records: list[ToolCallRecord],
        usage: Usage,
        finish_reason: str,
        ttft_ms: int | None,
        started: float,
        status: str,
    ) -> Message:
        content = "".join(parts)
        return Message(
            id=self.assistant_id,
            seq=self.user_message.seq + 1,
            role="assistant",
            content=content,
            status="complete" if status == "complete" else "interrupted",
            model=self.service.settings.main_model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens or (tokens.count_text(content) if content else 0),
            ttft_ms=ttft_ms,
            latency_ms=_ms(started),
            tool_calls=records,
            finish_reason=finish_reason,
            created_at=clock.now_iso(),
        )

    def _store(self, message: Message) -> None:
        self.service.repo.finish_turn(self.user_id, self.conversation.id, message, turn_id=self.turn_id)
        self.message = message

    def _end_interrupted(
        self,
        parts: list[str],
        records: list[ToolCallRecord],
        usage: Usage,
        ttft_ms: int | None,
        started: float,
        reason: str,
    ) -> bool:
        """Store a partial answer as interrupted (if anything was said), else just free the
        conversation. Returns whether a message was stored."""
        metrics.add_metric(name="TurnsInterrupted", unit="Count", value=1)
        try:
            if parts or records:
                self._store(self._answer(parts, records, usage, reason, ttft_ms, started, "interrupted"))
                logger.warning("turn interrupted, partial answer stored", extra={"reason": reason})
                return True
            self.service.repo.release_turn(self.user_id, self.conversation.id, turn_id=self.turn_id)
            logger.warning("turn ended without an answer", extra={"reason": reason})
        except DomainError:
            logger.exception("could not record the end of an interrupted turn")
        return False

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
        return self.repo.list_messages(user_id, conversation_id, limit=limit, cursor=cursor)

    # -- turns --------------------------------------------------------------------------------------
    def begin_turn(self, user_id: str, conversation_id: str, content: str) -> Turn:
        """Everything that can refuse a turn happens here, before any byte of an answer: a missing
        conversation (404), a message too long (400), another turn running (409)."""
        if len(content) > self.settings.message_max_chars:
            raise InvalidInput(
                f"the message is longer than {self.settings.message_max_chars} characters", field="content"
            )
        if not content.strip():
            raise InvalidInput("the message is empty", field="content")
        context = self.repo.load_turn(user_id, conversation_id, window=self.settings.history_window_messages)
        conversation = context.conversation
        persona = self.prompts.persona(conversation.prompt_key)
        prompt = memory.build_prompt(
            persona_prompt=persona.system_prompt,
            summary=conversation.summary.text,
            summary_max_tokens=self.settings.summary_max_tokens,
            recent=context.recent,
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
        self.repo.begin_turn(
            user_id,
            conversation,
            user_message,
            turn_id=turn_id,
            lock_seconds=self.settings.turn_lock_seconds,
            answer_id=assistant_id,
        )
        return Turn(
            service=self,
            user_id=user_id,
            conversation=conversation,
            recent=context.recent,
            user_message=user_message,
            prompt=prompt,
            turn_id=turn_id,
            assistant_id=assistant_id,
        )

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

    async def answer(self, user_id: str, conversation_id: str, content: str) -> Message:
        """A whole turn for callers that want one JSON answer (Accept: application/json)."""
        turn = await anyio.to_thread.run_sync(self.begin_turn, user_id, conversation_id, content)
        return await self.finish(turn)

    async def finish(self, turn: Turn) -> Message:
        """Run a begun turn to its end and return the stored answer (raising its error, if any)."""
        async for _ in turn.events():
            pass
        if turn.error is not None:
            raise turn.error
        assert turn.message is not None
        await turn.fold_summary()
        return turn.message
