"""Conversation routes. Another user's conversation is a 404, never a 403."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Response, status
from starlette.responses import StreamingResponse

from shelfwise.chat.models import Conversation, ConversationIn, ConversationPatch, Message, MessageIn
from shelfwise.pagination import Page
from shelfwise.web.deps import CallerDep, ChatDep
from shelfwise.web.routers.inventory import Cursor, Limit
from shelfwise.web.sse import stream_turn

router = APIRouter(tags=["conversations"])


@router.get("/prompts")
def list_prompts(chat: ChatDep, _: CallerDep) -> dict[str, object]:
    """The personas a conversation can use (`prompt_key`)."""
    library = chat.prompts
    return {
        "default": library.default,
        "items": [{"key": p.key, "description": p.description} for p in library.personas.values()],
    }


@router.post("/conversations", status_code=status.HTTP_201_CREATED)
def create_conversation(
    chat: ChatDep, caller: CallerDep, response: Response, body: ConversationIn | None = None
) -> Conversation:
    conversation = chat.create_conversation(caller.user_id, body or ConversationIn())
    response.headers["Location"] = f"/conversations/{conversation.id}"
    return conversation


@router.get("/conversations")
def list_conversations(
    chat: ChatDep, caller: CallerDep, limit: Limit = 20, cursor: Cursor = None
) -> Page[Conversation]:
    return chat.list_conversations(caller.user_id, limit=limit, cursor=cursor)


@router.get("/conversations/{conversation_id}")
def get_conversation(conversation_id: str, chat: ChatDep, caller: CallerDep) -> Conversation:
    return chat.get_conversation(caller.user_id, conversation_id)


@router.patch("/conversations/{conversation_id}")
def update_conversation(
    conversation_id: str, body: ConversationPatch, chat: ChatDep, caller: CallerDep
) -> Conversation:
    return chat.update_conversation(caller.user_id, conversation_id, body)


@router.delete("/conversations/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_conversation(conversation_id: str, chat: ChatDep, caller: CallerDep) -> None:
    chat.delete_conversation(caller.user_id, conversation_id)


@router.get("/conversations/{conversation_id}/messages")
def list_messages(
    conversation_id: str, chat: ChatDep, caller: CallerDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[Message]:
    return chat.list_messages(caller.user_id, conversation_id, limit=limit, cursor=cursor)


@router.post(
    "/conversations/{conversation_id}/messages",
    response_model=Message,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "SSE stream, or the message as JSON"}
    },
)
async def post_message(
    conversation_id: str,
    body: MessageIn,
    chat: ChatDep,
    caller: CallerDep,
    accept: Annotated[str, Header()] = "text/event-stream",
) -> Message | StreamingResponse:
    """Ask the assistant. Streams `text/event-stream` by default; one JSON answer (the stored
    assistant message) with `Accept: application/json`."""
    turn = await anyio.to_thread.run_sync(chat.begin_turn, caller.user_id, conversation_id, body.content)
    if _wants_json(accept):
        return await chat.finish(turn)
    return await stream_turn(turn)


def _wants_json(accept: str) -> bool:
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return "application/json" in types and "text/event-stream" not in types
