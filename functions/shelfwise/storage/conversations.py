"""Conversations and their messages: one item per message, the state item beside them."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shelfwise import clock
from shelfwise.chat.models import Conversation, Message, SummaryState, ToolCallRecord
from shelfwise.errors import AlreadyExists, Conflict, NotFound, TurnInProgress
from shelfwise.pagination import Page
from shelfwise.storage import keys
from shelfwise.storage.codec import decode_cursor, decode_item, encode_cursor, encode_item, to_attr
from shelfwise.storage.dynamo import ConditionFailed, Dynamo, TransactionCancelled

_ACTIVITY_KEY_NAMES = ("pk", "sk", "activity_pk", "activity_sk")
_MESSAGE_KEY_NAMES = ("pk", "sk")


@dataclass(frozen=True)
class TurnContext:
    """What one turn reads: the conversation and its newest messages (newest first)."""

    conversation: Conversation
    recent: list[Message]


def _to_conversation(item: dict[str, Any]) -> Conversation:
    return Conversation(
        id=item["id"],
        title=item.get("title"),
        title_source=item.get("title_source"),
        prompt_key=item["prompt_key"],
        summary=SummaryState(
            through_seq=item.get("summary_through_seq", 0),
            updated_at=item.get("summary_updated_at"),
            text=item.get("summary_text", ""),
            folded_messages=item.get("summary_folded", 0),
        ),
        message_count=item.get("message_count", 0),
        prompt_tokens=item.get("prompt_tokens", 0),
        completion_tokens=item.get("completion_tokens", 0),
        last_seq=item.get("last_seq", 0),
        created_at=item["created_at"],
        updated_at=item["updated_at"],
    )


def _to_message(item: dict[str, Any]) -> Message:
    return Message(
        id=item["id"],
        seq=item["seq"],
        role=item["role"],
        content=item.get("content", ""),
        status=item.get("status", "complete"),
        model=item.get("model"),
        prompt_tokens=item.get("prompt_tokens"),
        completion_tokens=item.get("completion_tokens"),
        ttft_ms=item.get("ttft_ms"),
        latency_ms=item.get("latency_ms"),
        tool_calls=[ToolCallRecord(**c) for c in item.get("tool_calls", [])],
        finish_reason=item.get("finish_reason"),
        created_at=item["created_at"],
    )


def _message_item(user_id: str, conversation_id: str, message: Message) -> dict[str, Any]:
    return {
        **keys.message_key(user_id, conversation_id, message.seq),
        "type": "message",
        "conversation_id": conversation_id,
        **message.model_dump(exclude_none=True),
    }


class ConversationRepository:
    def __init__(self, db: Dynamo) -> None:
        self.db = db

    # -- conversations ------------------------------------------------------------------------------
    def create(self, user_id: str, conversation: Conversation) -> None:
        item = {
            **keys.conversation_key(user_id, conversation.id),
            "type": "conversation",
            "user_id": user_id,
            "id": conversation.id,
            "title": conversation.title,
            "title_source": conversation.title_source,
            "prompt_key": conversation.prompt_key,
            "message_count": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "last_seq": 0,
            "summary_through_seq": 0,
            "summary_folded": 0,
            "created_at": conversation.created_at,
            "updated_at": conversation.updated_at,
            "activity_pk": keys.user_pk(user_id),
            "activity_sk": keys.activity_sk(conversation.updated_at, conversation.id),
        }
        try:
            self.db.call(
                "put_item",
                TableName=self.db.table,
                Item=encode_item(item),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ConditionFailed as exc:  # only a client-chosen id can be taken
            raise AlreadyExists(
                f"conversation {conversation.id} already exists", conversation_id=conversation.id
            ) from exc

    def _get_item(self, user_id: str, conversation_id: str) -> dict[str, Any]:
        out = self.db.call(
            "get_item",
            TableName=self.db.table,
            Key=encode_item(keys.conversation_key(user_id, conversation_id)),
            ConsistentRead=True,
        )
        item = decode_item(out["Item"]) if "Item" in out else None
        if item is None or item.get("deleting"):
            raise NotFound("conversation not found", conversation_id=conversation_id)
        return item

    def get(self, user_id: str, conversation_id: str) -> Conversation:
        return _to_conversation(self._get_item(user_id, conversation_id))

    def list_for_user(self, user_id: str, *, limit: int, cursor: str | None) -> Page[Conversation]:
        query: dict[str, Any] = {
            "TableName": self.db.table,
            "IndexName": keys.ACTIVITY_INDEX,
            "KeyConditionExpression": "activity_pk = :user",
            "ExpressionAttributeValues": {":user": to_attr(keys.user_pk(user_id))},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            query["ExclusiveStartKey"] = decode_cursor(
                cursor, names=_ACTIVITY_KEY_NAMES, fixed={"activity_pk": keys.user_pk(user_id)}
            )
        out = self.db.call("query", **query)
        last = out.get("LastEvaluatedKey")
        items = [_to_conversation(decode_item(raw)) for raw in out.get("Items", [])]
        return Page(items=items, next_cursor=encode_cursor(last) if last else None)

    def update(self, user_id: str, conversation_id: str, changes: dict[str, Any]) -> None:
        """Set fields of a conversation (title, title_source, prompt_key); not its activity order."""
        names = {f"#f{i}": field for i, field in enumerate(sorted(changes))}
        values = {f":v{i}": to_attr(changes[field]) for i, field in enumerate(sorted(changes))}
        sets = [f"#f{i} = :v{i}" for i in range(len(changes))]
        try:
            self.db.call(
                "update_item",
                TableName=self.db.table,
                Key=encode_item(keys.conversation_key(user_id, conversation_id)),
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(deleting)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ConditionFailed as exc:
            raise NotFound("conversation not found", conversation_id=conversation_id) from exc

    def delete(self, user_id: str, conversation_id: str, *, workers: int = 8) -> int:
        """Delete a conversation and every message, leaving no orphans even if interrupted.

        The state item is first marked `deleting` (it drops out of lists and reads at once), then
        the messages go in parallel batches, and the state item last: a delete cut short leaves a
        hidden conversation that a repeated DELETE finishes, never messages without a parent.
        Returns the number of messages deleted.
        """
        key = encode_item(keys.conversation_key(user_id, conversation_id))
        try:
            self.db.call(
                "update_item",
                TableName=self.db.table,
                Key=key,
                UpdateExpression="SET deleting = :t REMOVE activity_pk, activity_sk",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":t": to_attr(True)},
            )
        except ConditionFailed as exc:
            raise NotFound("conversation not found", conversation_id=conversation_id) from exc
        batches: list[list[dict[str, Any]]] = []
        batch: list[dict[str, Any]] = []
        for key_item in self._message_keys(user_id, conversation_id):
            batch.append({"DeleteRequest": {"Key": key_item}})
            if len(batch) == 25:
                batches.append(batch)
                batch = []
        if batch:
            batches.append(batch)
        if batches:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(workers, len(batches))) as pool:
                list(pool.map(self._batch_delete, batches))
        self.db.call("delete_item", TableName=self.db.table, Key=key)
        return sum(len(b) for b in batches)

    def _message_keys(self, user_id: str, conversation_id: str) -> Iterator[dict[str, Any]]:
        for page in self.db.query_pages(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :msg)",
            ExpressionAttributeValues={
                ":pk": to_attr(keys.conversation_pk(user_id, conversation_id)),
                ":msg": to_attr(keys.MESSAGE_PREFIX),
            },
            ProjectionExpression="pk, sk",
        ):
            yield from page.get("Items", [])

    def _batch_delete(self, requests: list[dict[str, Any]]) -> None:
        pending: dict[str, Any] = {self.db.table: requests}
        for attempt in range(10):
            out = self.db.call("batch_write_item", RequestItems=pending)
            pending = out.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(1.0, 0.05 * 2**attempt) * random.random())
        raise Conflict("the database is busy; the delete did not finish, repeat it")

    # -- messages -----------------------------------------------------------------------------------
    def list_messages(
        self, user_id: str, conversation_id: str, *, limit: int, cursor: str | None
    ) -> Page[Message]:
        pk = keys.conversation_pk(user_id, conversation_id)
        query: dict[str, Any] = {
            "TableName": self.db.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :msg)",
            "ExpressionAttributeValues": {":pk": to_attr(pk), ":msg": to_attr(keys.MESSAGE_PREFIX)},
            "Limit": limit,
        }
        if cursor:
            query["ExclusiveStartKey"] = decode_cursor(cursor, names=_MESSAGE_KEY_NAMES, fixed={"pk": pk})
        out = self.db.call("query", **query)
        last = out.get("LastEvaluatedKey")
        items = [_to_message(decode_item(raw)) for raw in out.get("Items", [])]
        return Page(items=items, next_cursor=encode_cursor(last) if last else None)

    def messages_between(self, user_id: str, conversation_id: str, first: int, last: int) -> list[Message]:
        """Messages with first <= seq <= last, oldest first."""
        if last < first:
            return []
        out: list[Message] = []
        for page in self.db.query_pages(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :a AND :b",
            ExpressionAttributeValues={
                ":pk": to_attr(keys.conversation_pk(user_id, conversation_id)),
                ":a": to_attr(keys.message_sk(first)),
                ":b": to_attr(keys.message_sk(last)),
            },
        ):
            out += [_to_message(decode_item(raw)) for raw in page.get("Items", [])]
        return out

    # -- turns --------------------------------------------------------------------------------------
    def load_turn(self, user_id: str, conversation_id: str, *, window: int) -> TurnContext:
        """The state item and the newest `window` messages, with one Query (state sorts last)."""
        out = self.db.call(
            "query",
            TableName=self.db.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": to_attr(keys.conversation_pk(user_id, conversation_id))},
            ScanIndexForward=False,
            Limit=window + 1,
            ConsistentRead=True,
        )
        items = [decode_item(raw) for raw in out.get("Items", [])]
        if not items or items[0].get("type") != "conversation" or items[0].get("deleting"):
            raise NotFound("conversation not found", conversation_id=conversation_id)
        return TurnContext(
            conversation=_to_conversation(items[0]),
            recent=[_to_message(i) for i in items[1:]],
        )

    def begin_turn(
        self, user_id: str, conversation: Conversation, message: Message, *, turn_id: str, lock_seconds: int
    ) -> None:
        """Store the user's message and reserve the next sequence number for the answer.

        Conditional on the conversation still being at the sequence the caller read and no other
        live turn holding it: of two concurrent turns exactly one wins; the other gets 409 and
        writes nothing.
        """
        now = clock.now()
        at = clock.iso(now)
        lock_until = int(now.timestamp()) + lock_seconds
        try:
            self.db.call(
                "transact_write_items",
                TransactItems=[
                    self._put_message(user_id, conversation.id, message),
                    {
                        "Update": {
                            "TableName": self.db.table,
                            "Key": encode_item(keys.conversation_key(user_id, conversation.id)),
                            "UpdateExpression": (
                                "SET last_seq = :next, message_count = message_count + :one, "
                                "turn_id = :turn, turn_until = :until, updated_at = :at, "
                                "activity_sk = :activity"
                            ),
                            "ConditionExpression": (
                                "attribute_exists(pk) AND attribute_not_exists(deleting) AND last_seq = :seq "
                                "AND (attribute_not_exists(turn_id) OR turn_until < :now)"
                            ),
                            "ExpressionAttributeValues": {
                                ":next": to_attr(message.seq + 1),
                                ":seq": to_attr(conversation.last_seq),
                                ":one": to_attr(1),
                                ":turn": to_attr(turn_id),
                                ":until": to_attr(lock_until),
                                ":now": to_attr(int(now.timestamp())),
                                ":at": to_attr(at),
                                ":activity": to_attr(keys.activity_sk(at, conversation.id)),
                            },
                        }
                    },
                ],
            )
        except TransactionCancelled as exc:
            raise TurnInProgress(
                "another message of this conversation is being answered; retry when it is done",
                conversation_id=conversation.id,
            ) from exc

    def _put_message(self, user_id: str, conversation_id: str, message: Message) -> dict[str, Any]:
        """A transaction action writing a message into its slot, never over another."""
        return {
            "Put": {
                "TableName": self.db.table,
                "Item": encode_item(_message_item(user_id, conversation_id, message)),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def finish_turn(self, user_id: str, conversation_id: str, message: Message, *, turn_id: str) -> None:
        """Store the assistant's message (in its reserved slot), add its usage, free the conversation.

        The conversation is freed only if this turn still holds it: a turn that outlived its lock
        (`turn_lock_seconds`) and was overtaken still stores its answer, but leaves the newer
        turn's lock alone.
        """
        at = clock.now_iso()
        counters = (
            "SET message_count = message_count + :one, prompt_tokens = prompt_tokens + :pt, "
            "completion_tokens = completion_tokens + :ct, updated_at = :at, activity_sk = :activity"
        )
        values = {
            ":one": to_attr(1),
            ":pt": to_attr(message.prompt_tokens or 0),
            ":ct": to_attr(message.completion_tokens or 0),
            ":at": to_attr(at),
            ":activity": to_attr(keys.activity_sk(at, conversation_id)),
        }
        live = "attribute_exists(pk) AND attribute_not_exists(deleting)"
        attempts = [
            (
                counters + " REMOVE turn_id, turn_until",
                f"{live} AND turn_id = :turn",
                {":turn": to_attr(turn_id)},
            ),
            (counters, live, {}),
        ]
        for update, condition, extra in attempts:
            try:
                self.db.call(
                    "transact_write_items",
                    TransactItems=[
                        self._put_message(user_id, conversation_id, message),
                        {
                            "Update": {
                                "TableName": self.db.table,
                                "Key": encode_item(keys.conversation_key(user_id, conversation_id)),
                                "UpdateExpression": update,
                                "ConditionExpression": condition,
                                "ExpressionAttributeValues": {**values, **extra},
                            }
                        },
                    ],
                )
                return
            except TransactionCancelled as exc:
                if exc.failed(0):
                    raise Conflict(
                        "this answer's slot is already taken", conversation_id=conversation_id
                    ) from exc
                last = exc
        raise NotFound(
            "the conversation was deleted during the turn", conversation_id=conversation_id
        ) from last

    def release_turn(self, user_id: str, conversation_id: str, *, turn_id: str) -> None:
        """Free the conversation after a turn that ends without an answer to store."""
        # ConditionFailed: already released, expired and taken over, or deleted - all fine.
        with contextlib.suppress(ConditionFailed):
            self.db.call(
                "update_item",
                TableName=self.db.table,
                Key=encode_item(keys.conversation_key(user_id, conversation_id)),
                UpdateExpression="REMOVE turn_id, turn_until",
                ConditionExpression="turn_id = :turn",
                ExpressionAttributeValues={":turn": to_attr(turn_id)},
            )

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
        try:
            self.db.call(
                "update_item",
                TableName=self.db.table,
                Key=encode_item(keys.conversation_key(user_id, conversation_id)),
                UpdateExpression=(
                    "SET summary_text = :text, summary_through_seq = :through, summary_updated_at = :at, "
                    "summary_folded = summary_folded + :folded"
                ),
                ConditionExpression="attribute_exists(pk) AND summary_through_seq = :previous",
                ExpressionAttributeValues={
                    ":text": to_attr(text),
                    ":through": to_attr(through_seq),
                    ":at": to_attr(clock.now_iso()),
                    ":folded": to_attr(folded),
                    ":previous": to_attr(previous_through),
                },
            )
        except ConditionFailed:
            return False
        return True
