"""POST /conversations/{id}/title: ask for a fresh generated title (202; TitleFunction makes it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from shelfwise.chat.titles import TitleRequested, TitleService
from shelfwise.web.deps import CallerDep, ServicesDep

router = APIRouter(tags=["conversations"])


def get_titles(services: ServicesDep) -> TitleService:
    return services.titles


TitlesDep = Annotated[TitleService, Depends(get_titles)]


@router.post(
    "/conversations/{conversation_id}/title",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"description": "no such conversation (or not the caller's)"},
        409: {
            "description": "`title_set_by_user`: the user named it (PATCH renames it); "
            "`nothing_to_title`: no message yet"
        },
    },
)
def request_title(
    conversation_id: str, titles: TitlesDep, caller: CallerDep, response: Response
) -> TitleRequested:
    """Ask for a fresh generated title. It is made in the background from the first exchange and
    appears on the conversation a moment later (`title`, `title_source: generated`). A title the
    user set is never replaced: that answers 409 `title_set_by_user`."""
    requested = titles.request(caller.user_id, conversation_id)
    response.headers["Location"] = f"/conversations/{conversation_id}"
    return requested
