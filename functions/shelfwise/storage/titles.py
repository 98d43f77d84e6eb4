"""Conversation titles: what TitleFunction reads and the conditional writes that keep it harmless.

Every write here is conditional, so a late, repeated or out-of-order stream delivery can do no harm:

- a generated title is written only while the conversation exists, is not being deleted and has no
  title the user set; a first title only while it has none at all (a duplicate delivery finds the
  title already there), a refreshed one only while the refresh it answers is still pending (the
  token `title_requested` is removed in the same write);
- UpdateItem would create a missing item: `attribute_exists(pk)` keeps a deleted conversation deleted.

Stream records are DynamoDB-shaped, so reading them (`conversation_ref`) lives here too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shelfwise import clock
from shelfwise.storage import keys
from shelfwise.storage.codec import decode_item, encode_item, to_attr
from shelfwise.storage.dynamo import ConditionFailed, Dynamo

# How many of the first messages to read to find the first exchange (a user message and the answer).
_FIRST_MESSAGES = 6
_CONV_MARK = "#CONV#"


@dataclass(frozen=True)
class ConversationRef:
    user_id: str
    conversation_id: str


@dataclass(frozen=True)
class TitleState:
    """What TitleFunction needs to decide: the conversation's title fields and its first exchange."""

    user_id: str
    conversation_id: str
    title: str | None
    title_source: str | None
    title_requested: str | None  # the token of a pending POST /conversations/{id}/title
    deleting: bool
    message_count: int
    first_user: str | None
    first_answer: str | None


def conversation_ref(record: Mapping[str, Any]) -> ConversationRef | None:
    """The conversation a stream record is about, or None when it is about anything else."""
    data = record.get("dynamodb") or {}
    image = data.get("NewImage") or data.get("OldImage") or {}
    item = decode_item(image) if image else {}
    if item.get("type") == "conversation" and item.get("user_id") and item.get("id"):
        return ConversationRef(str(item["user_id"]), str(item["id"]))
    raw_keys = data.get("Keys") or {}
    pk = (raw_keys.get("pk") or {}).get("S", "")
    sk = (raw_keys.get("sk") or {}).get("S", "")
    user_part, mark, conversation_id = pk.partition(_CONV_MARK)
    if sk == "STATE" and mark and user_part.startswith("USER#") and conversation_id:
        return ConversationRef(user_part.removeprefix("USER#"), conversation_id)
    return None


class TitleRepository:
    def __init__(self, db: Dynamo) -> None:
        self.db = db

    def read(self, ref: ConversationRef) -> TitleState | None:
        """The conversation's title fields and first exchange (consistent reads); None if it is gone."""
        key = keys.conversation_key(ref.user_id, ref.conversation_id)
        out = self.db.call("get_item", TableName=self.db.table, Key=encode_item(key), ConsistentRead=True)
        if "Item" not in out:
            return None
        item = decode_item(out["Item"])
        first_user: str | None = None
        first_answer: str | None = None
        if item.get("message_count", 0):
            page = self.db.call(
                "query",
                TableName=self.db.table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :msg)",
                ExpressionAttributeValues={
                    ":pk": to_attr(keys.conversation_pk(ref.user_id, ref.conversation_id)),
                    ":msg": to_attr(keys.MESSAGE_PREFIX),
                },
                ProjectionExpression="#role, #content",
                ExpressionAttributeNames={"#role": "role", "#content": "content"},
                Limit=_FIRST_MESSAGES,
                ConsistentRead=True,
            )
            for raw in page.get("Items", []):
                message = decode_item(raw)
                content = str(message.get("content") or "").strip()
                if not content:
                    continue
                if message.get("role") == "user" and first_user is None:
                    first_user = content
                elif message.get("role") == "assistant" and first_user is not None and first_answer is None:
                    first_answer = content
        return TitleState(
            user_id=ref.user_id,
            conversation_id=ref.conversation_id,
            title=item.get("title"),
            title_source=item.get("title_source"),
            title_requested=item.get("title_requested"),
            deleting=bool(item.get("deleting")),
            message_count=int(item.get("message_count", 0)),
            first_user=first_user,
            first_answer=first_answer,
        )

    def write_generated(
        self, ref: ConversationRef, title: str, *, generated_by: str, request_token: str | None
    ) -> bool:
        """Write a generated title. `request_token`: the pending refresh this answers (the write then
        needs it still pending and removes it); None: a first title (the write needs no title yet).
        Returns False when the condition did not hold (nothing is written)."""
        names = {"#title": "title", "#source": "title_source"}
        values: dict[str, Any] = {
            ":title": to_attr(title),
            ":generated": to_attr("generated"),
            ":user": to_attr("user"),
            ":at": to_attr(clock.now_iso()),
            ":by": to_attr(generated_by),
        }
        update = (
            "SET #title = :title, #source = :generated, title_generated_at = :at, title_generated_by = :by"
        )
        condition = (
            "attribute_exists(pk) AND attribute_not_exists(deleting) "
            "AND (attribute_not_exists(#source) OR #source <> :user)"
        )
        if request_token is None:
            condition += " AND attribute_not_exists(#title)"
        else:
            update += " REMOVE title_requested, title_requested_at"
            condition += " AND title_requested = :token"
            values[":token"] = to_attr(request_token)
        try:
            self.db.call(
                "update_item",
                TableName=self.db.table,
                Key=encode_item(keys.conversation_key(ref.user_id, ref.conversation_id)),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ConditionFailed:
            return False
        return True

    def request(self, ref: ConversationRef, token: str) -> tuple[bool, dict[str, Any] | None]:
        """Mark a fresh title as wanted (the stream carries the change to TitleFunction).

        Conditional on the conversation existing, not being deleted, having a message to title from
        and no title the user set. Returns (True, None) when marked, else (False, the item as it is
        now or None when there is none) so the caller can say why."""
        try:
            self.db.call(
                "update_item",
                TableName=self.db.table,
                Key=encode_item(keys.conversation_key(ref.user_id, ref.conversation_id)),
                UpdateExpression="SET title_requested = :token, title_requested_at = :at",
                ConditionExpression=(
                    "attribute_exists(pk) AND attribute_not_exists(deleting) AND message_count > :zero "
                    "AND (attribute_not_exists(title_source) OR title_source <> :user)"
                ),
                ExpressionAttributeValues={
                    ":token": to_attr(token),
                    ":at": to_attr(clock.now_iso()),
                    ":zero": to_attr(0),
                    ":user": to_attr("user"),
                },
            )
        except ConditionFailed:
            out = self.db.call(
                "get_item",
                TableName=self.db.table,
                Key=encode_item(keys.conversation_key(ref.user_id, ref.conversation_id)),
                ConsistentRead=True,
            )
            return False, decode_item(out["Item"]) if "Item" in out else None
        return True, None

    def drop_request(self, ref: ConversationRef, token: str) -> None:
        """Forget a pending refresh that will not be answered (the user has since named it)."""
        with contextlib.suppress(ConditionFailed):  # already gone: answered, replaced or deleted
            self.db.call(
                "update_item",
                TableName=self.db.table,
                Key=encode_item(keys.conversation_key(ref.user_id, ref.conversation_id)),
                UpdateExpression="REMOVE title_requested, title_requested_at",
                ConditionExpression="title_requested = :token",
                ExpressionAttributeValues={":token": to_attr(token)},
            )
