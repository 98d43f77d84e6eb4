"""Conversation titles: what TitleFunction reads and the conditional writes that keep it harmless.

Every write here is conditional, so a late, repeated or out-of-order stream delivery can do no harm:

- a generated title is written only while the conversation exists, is not being deleted and has no
  title the user set; a first title only while it has none at all (a duplicate delivery finds the
  title already there), a refreshed one only while the refresh it answers is still pending (the
  token `title_requested` is removed in the same write);
- UpdateItem would create a missing item: `attribute_exists(pk)` keeps a deleted conversation deleted.
"""

from __future__ import annotations

from shelfwise import clock
from shelfwise.chat.models import ConversationRef, RequestRefused, TitleState
from shelfwise.storage.dynamo import ConditionFailed, Dynamo
from shelfwise.storage.expressions import Update, absent, eq, ne
from shelfwise.storage.items import ConversationItem, MessageItem

# How many of the first messages to read for the first exchange (a user message and its answer).
_FIRST_MESSAGES = 6
_LIVE = ConversationItem.LIVE
_NOT_THE_USERS = absent("title_source") | ne("title_source", "user")


class TitleRepository:
    def __init__(self, db: Dynamo) -> None:
        self.db = db

    def read(self, ref: ConversationRef) -> TitleState | None:
        """The conversation's title fields and first messages (consistent reads); None if it is gone."""
        item = self.db.get(ConversationItem.key(ref.user_id, ref.conversation_id))
        if item is None:
            return None
        state = ConversationItem.parse(item)
        conversation, opening = state.conversation, []
        if conversation.message_count:
            page = self.db.query(
                MessageItem.of(ref.user_id, ref.conversation_id),
                attributes=("role", "content"),
                limit=_FIRST_MESSAGES,
                consistent=True,
            )
            opening = [(str(m.get("role")), str(m.get("content") or "")) for m in page.items]
        return TitleState(
            ref.conversation_id,
            conversation.title,
            conversation.title_source,
            state.title_requested,
            state.deleting,
            tuple(opening),
        )

    def write_generated(
        self, ref: ConversationRef, title: str, *, generated_by: str, request_token: str | None
    ) -> bool:
        """Write a generated title. `request_token`: the pending refresh this answers (the write then
        needs it still pending and removes it); None: a first title (the write needs no title yet).
        Returns False when the condition did not hold (nothing is written)."""
        update = Update().set(
            title=title,
            title_source="generated",
            title_generated_at=clock.now_iso(),
            title_generated_by=generated_by,
        )
        condition = _LIVE & _NOT_THE_USERS
        if request_token is None:
            condition &= absent("title")
        else:
            update.remove("title_requested", "title_requested_at")
            condition &= eq("title_requested", request_token)
        return self.db.update_if(ConversationItem.key(ref.user_id, ref.conversation_id), update, condition)

    def request(self, ref: ConversationRef, token: str) -> RequestRefused | None:
        """Mark a fresh title as wanted (the stream carries the change to TitleFunction).

        Conditional on the conversation existing, not being deleted, having a message to title from
        and no title the user set. None when marked, else why not."""
        try:
            self.db.update(
                ConversationItem.key(ref.user_id, ref.conversation_id),
                Update().set(title_requested=token, title_requested_at=clock.now_iso()),
                condition=_LIVE & _NOT_THE_USERS & ne("message_count", 0),
            )
        except ConditionFailed as exc:
            state = (
                ConversationItem.parse(exc.item) if exc.item and ConversationItem.is_one(exc.item) else None
            )
            return RequestRefused(
                gone=state is None or state.deleting,
                user_title=state is not None and state.conversation.title_source == "user",
            )
        return None

    def drop_request(self, ref: ConversationRef, token: str) -> None:
        """Forget a pending refresh that will not be answered (the user has since named it)."""
        # not written when already gone: answered, replaced or deleted
        key = ConversationItem.key(ref.user_id, ref.conversation_id)
        self.db.update_if(
            key, Update().remove("title_requested", "title_requested_at"), eq("title_requested", token)
        )
