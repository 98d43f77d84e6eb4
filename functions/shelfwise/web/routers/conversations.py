"""Conversation routes. Another user's conversation is a 404, never a 403."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query, Request, Response, status
from starlette.responses import StreamingResponse

from shelfwise.chat.models import (
    Conversation,
    ConversationIn,
    ConversationPatch,
    Message,
    MessageDetail,
    MessageIn,
    Usage,
)
from shelfwise.errors import InvalidInput
from shelfwise.pagination import Page
from shelfwise.web.deps import CallerDep, ChatDep
from shelfwise.web.routers.inventory import Cursor, Limit
from shelfwise.web.sse import sse_response, stream_turn

router = APIRouter(tags=["conversations"])


@router.get("/prompts")
def list_prompts(chat: ChatDep, _: CallerDep) -> dict[str, object]:
    """The personas a conversation can use (`prompt_key`)."""
    library = chat.prompts
    return {
        "default": library.default,
        "items": [{"key": p.key, "description": p.description} for p in library.personas.values()],
        "next_cursor": None,  # one page: the list shape every list answers
    }


@router.get("/usage")
def get_usage(chat: ChatDep, caller: CallerDep) -> Usage:
    """The caller's tokens and cost this period (a UTC day) and what is left of their budget
    (`limit_tokens` and `remaining_tokens` are null when there is no limit)."""
    return Usage(**chat.budgets.usage(caller.user_id, caller.groups))


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
    request: Request,
    accept: Annotated[str, Header()] = "text/event-stream",
) -> Message | StreamingResponse:
    """Ask the assistant. Streams `text/event-stream` by default; one JSON answer (the stored
    assistant message) with `Accept: application/json`. The answer is the server's: a client that
    leaves can resume it (`GET .../messages/{message_id}/events`) or stop it (`POST .../stop`)."""
    remaining_ms = _remaining_ms(request)
    if _wants_json(accept):
        return await chat.answer(
            caller.user_id, conversation_id, body.content, remaining_ms=remaining_ms, groups=caller.groups
        )
    turn = await anyio.to_thread.run_sync(
        partial(
            chat.begin_turn,
            caller.user_id,
            conversation_id,
            body.content,
            remaining_ms=remaining_ms,
            groups=caller.groups,
        )
    )
    return await stream_turn(chat, turn)


@router.get("/conversations/{conversation_id}/messages/{message_id}")
def get_message(conversation_id: str, message_id: str, chat: ChatDep, caller: CallerDep) -> MessageDetail:
    """One message; an answer still `streaming` carries its text so far. An answer that has ended
    carries its `grounding` (as every listed message does) and, here only, its `assembly`: the
    budget, each part's tokens, the history seqs sent and trimmed, how far the summary reached, the
    tool calls with their arguments, the model and the cost."""
    return chat.get_message(caller.user_id, conversation_id, message_id)


@router.get(
    "/conversations/{conversation_id}/messages/{message_id}/events",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "SSE: the answer's events"},
        204: {"description": "the answer has ended and nothing follows the given event id"},
    },
)
async def message_events(
    conversation_id: str,
    message_id: str,
    chat: ChatDep,
    caller: CallerDep,
    request: Request,
    after: Annotated[int | None, Query(ge=0, description="Replay only the events after this id")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """An answer's events with the ids of its original stream: what was said after `Last-Event-ID`
    (or `?after=N`; given both, the later id: a browser's EventSource reconnects to the URL it opened
    with the header of the last event it got), then the live answer until `done` or `error`. A
    finished answer replays at any age."""
    start = max(after or 0, _event_id(last_event_id))
    remaining = _remaining_ms(request)
    follow = chat.settings.turn_max_seconds if remaining is None else remaining / 1000 - 1
    events = chat.events(caller.user_id, conversation_id, message_id, after=start, follow_seconds=follow)
    head = []
    async for numbered_event in events:  # a missing message is a 404 before any byte of a stream
        head.append(numbered_event)
        break
    if not head:  # an ended answer with nothing after the client's id: 204 stops an EventSource
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return sse_response(head, events)


@router.post(
    "/conversations/{conversation_id}/messages/{message_id}/stop", status_code=status.HTTP_202_ACCEPTED
)
async def stop_message(
    conversation_id: str, message_id: str, chat: ChatDep, caller: CallerDep
) -> dict[str, str]:
    """Stop a running answer: it ends within a second, stored `interrupted` with `finish_reason:
    stopped`. 409 `not_running` once it has ended."""
    await chat.stop(caller.user_id, conversation_id, message_id)
    return {"message_id": message_id, "status": "stopping"}


def _remaining_ms(request: Request) -> int | None:
    """The Lambda invocation's time left (Mangum and the streaming loop put its context in the scope)."""
    context = request.scope.get("aws.context")
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return int(remaining()) if callable(remaining) else None


def _event_id(header: str | None) -> int:
    if header is None or not header.strip():
        return 0
    try:
        value = int(header.strip())
    except ValueError as exc:
        raise InvalidInput(
            "Last-Event-ID must be an event id this server sent", field="Last-Event-ID"
        ) from exc
    if value < 0:
        raise InvalidInput("Last-Event-ID must be an event id this server sent", field="Last-Event-ID")
    return value


def _wants_json(accept: str) -> bool:
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return "application/json" in types and "text/event-stream" not in types
