"""Conversations and their messages: one item per message, the state item beside them (storage.items)."""

from __future__ import annotations

from typing import Any

from shelfwise import clock
from shelfwise.chat.models import Conversation, Message, MessageDetail, StreamRecord, TurnContext
from shelfwise.errors import AlreadyExists, Conflict, NotFound, TurnInProgress
from shelfwise.pagination import Page, decode_cursor
from shelfwise.storage.dynamo import Change, Dynamo, Put, TransactionCancelled
from shelfwise.storage.expressions import Update, absent, eq, exists, ge, lt
from shelfwise.storage.items import ACTIVITY_INDEX, ChunkItem, ConversationItem, MessageItem

_LIVE = ConversationItem.LIVE
_LOCK_FIELDS = ("turn_id", "turn_until", "turn_message_id", "turn_stop")
# How long an answer's chunks outlive their last write: longer than any turn (Lambda's 15 minutes), so
# they are gone only well after the final message is stored.
CHUNK_TTL_SECONDS = 24 * 3600
# What a refused second message is told to wait (at most): a turn usually ends within seconds, and
# the lock of a crashed one would say minutes.
TURN_RETRY_AFTER_SECONDS = 5


class ConversationRepository:
    def __init__(self, db: Dynamo) -> None:
        self.db = db

    # -- conversations ------------------------------------------------------------------------------
    def create(self, user_id: str, conversation: Conversation) -> None:
        if not self.db.put_if(ConversationItem.new_item(user_id, conversation), absent("pk")):
            # only a client-chosen id can be taken
            raise AlreadyExists(
                f"conversation {conversation.id} already exists", conversation_id=conversation.id
            )

    def get(self, user_id: str, conversation_id: str) -> Conversation:
        item = self.db.get(ConversationItem.key(user_id, conversation_id))
        state = ConversationItem.parse(item) if item else None
        if state is None or state.deleting:
            raise NotFound("conversation not found", conversation_id=conversation_id)
        return state.conversation

    def list_for_user(self, user_id: str, *, limit: int, cursor: str | None) -> Page[Conversation]:
        fixed = {"activity_pk": f"USER#{user_id}"}
        start = decode_cursor(cursor, names=ConversationItem.ACTIVITY_KEYS, fixed=fixed)
        page = self.db.query(
            ConversationItem.of_user(user_id), index=ACTIVITY_INDEX, forward=False, limit=limit, start=start
        )
        items = [ConversationItem.parse(item).conversation for item in page.items]
        return Page.ending_at(items, page.last_key)

    def update(self, user_id: str, conversation_id: str, changes: dict[str, Any]) -> None:
        """Set fields of a conversation (title, title_source, prompt_key); not its activity order."""
        if not self.db.update_if(
            ConversationItem.key(user_id, conversation_id), Update().set(**changes), _LIVE
        ):
            raise NotFound("conversation not found", conversation_id=conversation_id)

    def delete(self, user_id: str, conversation_id: str, *, workers: int = 8) -> int:
        """Delete a conversation and every message, leaving no orphans even if interrupted.

        The state item is first marked `deleting` (it drops out of lists and reads at once), then
        the messages go in parallel batches, and the state item last: a delete cut short leaves a
        hidden conversation that a repeated DELETE finishes, never messages without a parent.
        Returns the number of messages deleted.
        """
        key = ConversationItem.key(user_id, conversation_id)
        hide = Update().set(deleting=True).remove("activity_pk", "activity_sk")
        if not self.db.update_if(key, hide, exists("pk")):
            raise NotFound("conversation not found", conversation_id=conversation_id)
        partition = ConversationItem.partition(user_id, conversation_id)
        deleted = self.db.delete_found(partition, spare=key, workers=workers)  # messages and chunks
        self.db.delete(key)
        return deleted

    # -- messages -----------------------------------------------------------------------------------
    def list_messages(
        self, user_id: str, conversation_id: str, *, limit: int, cursor: str | None
    ) -> Page[Message]:
        fixed = ConversationItem.key(user_id, conversation_id)
        start = decode_cursor(cursor, names=MessageItem.KEYS, fixed={"pk": fixed["pk"]})
        page = self.db.query(MessageItem.of(user_id, conversation_id), limit=limit, start=start)
        items = [MessageItem.parse(item) for item in page.items]
        return Page.ending_at(items, page.last_key)

    def messages_between(self, user_id: str, conversation_id: str, first: int, last: int) -> list[Message]:
        """Messages with first <= seq <= last, oldest first."""
        if last < first:
            return []
        condition = MessageItem.between(user_id, conversation_id, first, last)
        return [MessageItem.parse(item) for page in self.db.query_all(condition) for item in page.items]

    # -- turns --------------------------------------------------------------------------------------
    def load_turn(self, user_id: str, conversation_id: str, *, window: int) -> TurnContext:
        """The state item and the newest `window` messages, with one Query (state sorts last)."""
        page = self.db.query(
            ConversationItem.with_messages(user_id, conversation_id),
            forward=False,
            limit=window + 1,
            consistent=True,
        )
        head = page.items[0] if page.items else None
        state = ConversationItem.parse(head) if head and ConversationItem.is_one(head) else None
        if state is None or state.deleting:
            raise NotFound("conversation not found", conversation_id=conversation_id)
        return TurnContext(
            conversation=state.conversation, recent=[MessageItem.parse(i) for i in page.items[1:]]
        )

    def begin_turn(
        self,
        user_id: str,
        conversation: Conversation,
        message: Message,
        *,
        turn_id: str,
        lock_seconds: int,
        answer_id: str | None = None,
    ) -> None:
        """Store the user's message and reserve the next sequence number for the answer.

        Conditional on the conversation still being at the sequence the caller read and no other
        live turn holding it: of two concurrent turns exactly one wins; the other gets 409 and
        writes nothing, told the running answer's message id (kept with the lock as
        `turn_message_id`) and when to retry. (Throttling and conflicts are the gateway's: a 503,
        never a 409.)
        """
        now = clock.now()
        at, now_s = clock.iso(now), int(now.timestamp())
        # the lock: this turn, until when, and its answer (None removes a taken-over turn's answer id)
        lock = {"turn_id": turn_id, "turn_until": now_s + lock_seconds, "turn_message_id": answer_id}
        activity = {"updated_at": at, "activity_sk": f"{at}#{conversation.id}"}
        update = Update().set(last_seq=message.seq + 1, **lock, **activity).add(message_count=1)
        free = absent("turn_id") | lt("turn_until", now_s)
        state = ConversationItem.key(user_id, conversation.id)
        try:
            self.db.transact(
                [
                    Put(MessageItem.item(user_id, conversation.id, message), absent("pk")),
                    Change(state, update, _LIVE & eq("last_seq", conversation.last_seq) & free),
                ]
            )
        except TransactionCancelled as exc:
            found = exc.item(1) or {}
            if exc.failed(1) and (not found or found.get("deleting")):
                raise NotFound("conversation not found", conversation_id=conversation.id) from exc
            holder = found if found.get("turn_id") is not None else {}  # the turn holding it, if any
            raise TurnInProgress(
                "another message of this conversation is being answered; retry when it is done",
                conversation_id=conversation.id,
                message_id=holder.get("turn_message_id"),
                retry_after=min(TURN_RETRY_AFTER_SECONDS, max(1, int(holder.get("turn_until") or 0) - now_s)),
            ) from exc

    def finish_turn(
        self,
        user_id: str,
        conversation_id: str,
        answer: Message,
        *,
        turn_id: str,
        record: StreamRecord | None = None,
    ) -> None:
        """Store the assistant's message in its reserved slot (a MessageDetail: with its assembly), add
        its usage, free the conversation.

        The conversation is freed only if this turn still holds it. When the old image shows it does
        not (the lock ran out and another turn took it, or it was freed), the answer is still stored
        and the other turn's lock is left alone.
        """
        at = clock.now_iso()
        counters = (
            Update()
            .set(updated_at=at, activity_sk=f"{at}#{conversation_id}")
            .add(
                message_count=1,
                prompt_tokens=answer.prompt_tokens or 0,
                completion_tokens=answer.completion_tokens or 0,
            )
        )
        slot = absent("pk") | eq("turn_id", turn_id)  # empty, or this turn's streaming message
        stored = Put(MessageItem.item(user_id, conversation_id, answer, record), slot)
        key = ConversationItem.key(user_id, conversation_id)
        freeing = Change(key, counters.copy().remove(*_LOCK_FIELDS), _LIVE & eq("turn_id", turn_id))
        # When another turn holds the conversation (or none does): store the answer, keep that lock.
        for change in (freeing, Change(key, counters, _LIVE)):
            try:
                self.db.transact([stored, change])
                return
            except TransactionCancelled as exc:
                if exc.failed(0):
                    raise Conflict(
                        "this answer's slot is already taken", conversation_id=conversation_id
                    ) from exc
                found = exc.item(1)
                if change is not freeing or found is None or found.get("deleting"):
                    raise NotFound(
                        "the conversation was deleted during the turn", conversation_id=conversation_id
                    ) from exc

    # -- answers while they stream ------------------------------------------------------------------
    def open_answer(self, user_id: str, conversation_id: str, message: Message, record: StreamRecord) -> None:
        """The assistant message from its first token, `streaming` (its text is in chunks until the
        final message replaces it). Nothing happens if the final message is already there."""
        self.db.put_if(MessageItem.item(user_id, conversation_id, message, record), absent("pk"))

    def add_chunk(
        self, user_id: str, conversation_id: str, seq: int, n: int, events: list[dict[str, Any]]
    ) -> None:
        expires_at = int(clock.now().timestamp()) + CHUNK_TTL_SECONDS
        self.db.put(ChunkItem.item(user_id, conversation_id, seq, n, events, expires_at))

    def chunks(
        self, user_id: str, conversation_id: str, seq: int, *, after: int = 0
    ) -> list[tuple[int, list[Any]]]:
        """The chunks of answer `seq` after chunk `after` (numbered from 1), in order."""
        condition = ChunkItem.after(user_id, conversation_id, seq, after)
        pages = self.db.query_all(condition, consistent=True, attributes=("n", "events"))
        return [(int(item["n"]), list(item["events"])) for page in pages for item in page.items]

    def find_message(
        self, user_id: str, conversation_id: str, message_id: str
    ) -> tuple[MessageDetail, StreamRecord] | None:
        """A message by its id (newest first: a resumed answer is usually among the last ones)."""
        for page in self.db.query_all(MessageItem.of(user_id, conversation_id), forward=False, limit=50):
            for item in page.items:
                if item.get("id") == message_id:
                    return MessageItem.parse_stored(item)
        return None

    def settle_answer(
        self, user_id: str, conversation_id: str, answer: Message, ending: StreamRecord
    ) -> bool:
        """Store an abandoned answer (`streaming`, its turn gone) as the final message it becomes
        (`ending`: its stream record's tool offsets and closing events), counted in the conversation.
        False, nothing written, when its final message is there already or the conversation is gone."""
        ended = answer.model_dump(
            include={"content", "status", "finish_reason", "tool_calls"}, exclude_none=True
        )
        update = Update().set(**ended, tool_offsets=ending.tool_offsets, closing=ending.closing)
        message = MessageItem.key(user_id, conversation_id, answer.seq)
        counted = Update().add(message_count=1)
        try:
            self.db.transact(
                [
                    Change(message, update, eq("status", "streaming")),
                    Change(ConversationItem.key(user_id, conversation_id), counted, _LIVE),
                ]
            )
        except TransactionCancelled:
            return False
        return True

    def running_answer(self, user_id: str, conversation_id: str) -> tuple[str | None, bool]:
        """The id of the answer holding the conversation (None when none does) and whether its user
        asked it to stop."""
        state = self.db.get(
            ConversationItem.key(user_id, conversation_id),
            attributes=("turn_message_id", "turn_until", "turn_stop"),
        )
        if not state or int(state.get("turn_until") or 0) < int(clock.now().timestamp()):
            return None, False
        running = state.get("turn_message_id")
        return running, bool(running and state.get("turn_stop") == running)

    def request_stop(self, user_id: str, conversation_id: str, message_id: str) -> bool:
        """Ask the turn generating `message_id` to stop; False when that answer is not running."""
        running = eq("turn_message_id", message_id) & ge("turn_until", int(clock.now().timestamp()))
        key = ConversationItem.key(user_id, conversation_id)
        return self.db.update_if(key, Update().set(turn_stop=message_id), _LIVE & running)

    def release_turn(self, user_id: str, conversation_id: str, *, turn_id: str) -> None:
        """Free the conversation after a turn that ends without an answer to store."""
        # Not written when already released, expired and taken over, or deleted: all fine.
        key = ConversationItem.key(user_id, conversation_id)
        self.db.update_if(key, Update().remove(*_LOCK_FIELDS), eq("turn_id", turn_id))

    def fold_summary(
        self,
        user_id: str,
        conversation_id: str,
        *,
        previous_through: int,
        through_seq: int,
        text: str,
        folded: int,
    ) -> bool:
        """Move the summary forward, only from where the caller read it: a message is folded once.
        Returns False when another fold got there first (nothing is written)."""
        fold = (
            Update()
            .set(summary_text=text, summary_through_seq=through_seq, summary_updated_at=clock.now_iso())
            .add(summary_folded=folded)
        )
        condition = exists("pk") & eq("summary_through_seq", previous_through)
        return self.db.update_if(ConversationItem.key(user_id, conversation_id), fold, condition)
