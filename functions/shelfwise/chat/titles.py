"""Conversation titles: made by the utility model after the fact, never in the way of a turn.

TitleFunction calls `TitleService.process()` for every stream record its filter lets through (see
template.yaml). Processing is state-based, not event-based: the record only names the conversation;
what happens follows from the conversation as it is now (consistent read):

- gone or being deleted            -> skipped (and the conditional write could not resurrect it);
- titled by the user               -> skipped (a pending refresh is dropped): the user's word wins;
- a refresh pending (POST .../title) -> a fresh title, written only while that refresh is pending;
- no title yet                     -> a first title, written only while there is still none;
- already titled, nothing pending  -> skipped: a repeated or stale delivery does nothing.

The title comes from the utility model (at most six words, the user's language), is cleaned and
checked here, and falls back to the user's own first words when the model fails or answers junk,
or when the time left for it is too short to ask (under MIN_MODEL_SECONDS): the conversation always
ends up named, and nothing of it ever reaches the user as an error.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from shelfwise import clock
from shelfwise.chat.llm import ChatModel
from shelfwise.chat.models import ConversationRef, TitleState
from shelfwise.chat.personas import PromptLibrary, library
from shelfwise.errors import Conflict, NotFound
from shelfwise.observability import emit, logger, metrics
from shelfwise.settings import Settings
from shelfwise.storage.titles import TitleRepository

MAX_WORDS = 6
MAX_CHARS = 60  # also bounds titles in scripts written without spaces
FALLBACK_TITLE = "New conversation"
EXCERPT_CHARS = 2000  # of each message sent to the model: a title needs the gist, not the whole text
MIN_MODEL_SECONDS = 1.0  # a shorter budget is not worth a model call: the fallback title at once

Outcome = Literal["generated", "fallback", "skipped"]


class TitleSetByUser(Conflict):
    code = "title_set_by_user"


class NothingToTitle(Conflict):
    code = "nothing_to_title"


class TitleRequested(BaseModel):
    """The answer to POST /conversations/{id}/title (202): the title follows on the conversation."""

    conversation_id: str
    status: Literal["requested"] = "requested"
    requested_at: str


@dataclass(frozen=True)
class TitleResult:
    outcome: Outcome
    reason: str
    title: str | None = None


# -- cleaning ----------------------------------------------------------------------------------------

_THINK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.IGNORECASE | re.DOTALL)
_OPEN_THINK = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)
_LABEL = re.compile(
    r"^(?:(?:conversation\s+)?title|titre|t[i\u00ed]tulo|titel|titolo)\s*[:\uff1a\-\u2013]\s*", re.IGNORECASE
)
_PREAMBLE = re.compile(r"^.{0,40}?\btitle\b[^:\uff1a]{0,30}[:\uff1a]\s*(?P<rest>.+)$", re.IGNORECASE)
# Double quotes, guillemets and CJK corner brackets go wherever they are; single quotes only where
# they quote (an apostrophe inside a word stays: "Women's tees").
_QUOTES = re.compile(
    '["\u201c\u201d\u201e\u201f\u00ab\u00bb\u2039\u203a\u300c\u300d\u300e\u300f]'
    "|(?<!\\w)['`\u2018\u2019\u201a\u201b]|['`\u2018\u2019\u201a\u201b](?!\\w)"
)
_MARKUP = re.compile(r"^(?:#+\s*|[*_>\-\u2022]+\s*|\d+[.)]\s+)|[*_]{2,}")
# Trimmed from both ends: whitespace and punctuation (ASCII, typographic, CJK full-width).
_EDGE = (
    " \t.,;:!?\u00bf\u00a1\u2026-\u2013\u2014\u00b7/\\|*_~"
    "\u3002\u3001\uff0c\uff1b\uff1a\uff01\uff1f\u300c\u300d\u300e\u300f"
)
_REFUSALS = ("i'm sorry", "i am sorry", "sorry,", "i cannot", "i can't", "i can not", "as an ai")


def _strip_quotes_and_edges(text: str) -> str:
    text = _QUOTES.sub("", text)
    return " ".join(text.split()).strip(_EDGE)


def _limit(text: str) -> str:
    words = text.split()
    if len(words) > MAX_WORDS:
        text = " ".join(words[:MAX_WORDS]).rstrip(_EDGE)
    if len(text) > MAX_CHARS:
        cut = text[:MAX_CHARS]
        text = cut.rsplit(" ", 1)[0] if " " in cut else cut
        text = text.rstrip(_EDGE)
    return text


def clean_title(raw: str) -> str | None:
    """The model's answer as a title (at most six words, no quotes, no trailing punctuation), or
    None when nothing usable is in it (empty, only reasoning, a refusal, only punctuation)."""
    text = _THINK.sub(" ", raw or "")
    open_think = _OPEN_THINK.search(text)
    if open_think:  # reasoning that never finished: whatever follows is not an answer
        text = text[: open_think.start()]
    text = text.strip()
    if text.startswith("{"):  # some models answer JSON whatever they are told
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("title"), str):
            text = value["title"]
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = _MARKUP.sub("", _MARKUP.sub("", line)).strip()
    line = _LABEL.sub("", line)
    preamble = _PREAMBLE.match(line)
    if preamble:  # "Sure! Here is a title: Tee stock check"
        line = preamble.group("rest")
    line = line.replace("**", "").replace("__", "")
    if line.lower().replace("\u2019", "'").startswith(_REFUSALS):
        return None
    title = _limit(_strip_quotes_and_edges(line))
    if not title or not any(ch.isalnum() for ch in title):
        return None
    return title[0].upper() + title[1:]


def fallback_title(first_user: str | None) -> str:
    """A title from the user's own first words: their language, no model needed."""
    line = next((part for part in (first_user or "").splitlines() if part.strip()), "")
    title = _limit(_strip_quotes_and_edges(line))
    if not title or not any(ch.isalnum() for ch in title):
        return FALLBACK_TITLE
    return title[0].upper() + title[1:]


def _excerpt(text: str) -> str:
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS].rstrip() + " [...]"


def title_request(task_prompt: str, first_user: str, first_answer: str | None) -> list[dict[str, str]]:
    """The utility model's messages: the title task, then the first exchange as a labelled transcript
    (one user message, so the model names the conversation instead of continuing it)."""
    lines = ["The first exchange of the conversation:", f"User: {_excerpt(first_user)}"]
    if first_answer:
        lines.append(f"Assistant: {_excerpt(first_answer)}")
    return [{"role": "system", "content": task_prompt}, {"role": "user", "content": "\n".join(lines)}]


# -- running the async model client from synchronous code --------------------------------------------

_loops = threading.local()


def _runner() -> asyncio.Runner:
    """One event loop per thread, kept between invocations: the model client's connection pool (and
    its TLS sessions) survive from one warm invocation to the next."""
    runner: asyncio.Runner | None = getattr(_loops, "runner", None)
    if runner is None:
        runner = asyncio.Runner()
        _loops.runner = runner
    return runner


# -- the service -------------------------------------------------------------------------------------


class TitleService:
    def __init__(
        self,
        settings: Settings,
        repo: TitleRepository,
        model: ChatModel,
        prompts: PromptLibrary | None = None,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.model = model
        self._prompts = prompts

    @property
    def prompts(self) -> PromptLibrary:
        return self._prompts or library()

    # -- the API side -------------------------------------------------------------------------------
    def request(self, user_id: str, conversation_id: str) -> TitleRequested:
        """Ask for a fresh generated title (POST /conversations/{id}/title). The change reaches
        TitleFunction through the table's stream; the answer does not wait for it."""
        ref = ConversationRef(user_id, conversation_id)
        refused = self.repo.request(ref, uuid.uuid4().hex)
        if refused is not None:
            if refused.gone:
                raise NotFound("conversation not found", conversation_id=conversation_id)
            if refused.user_title:
                raise TitleSetByUser(
                    "this conversation's title was set by its user and is kept; PATCH it to rename it",
                    conversation_id=conversation_id,
                )
            raise NothingToTitle(
                "this conversation has no messages yet; its title is made from the first exchange",
                conversation_id=conversation_id,
            )
        metrics.add_metric(name="TitlesRequested", unit="Count", value=1)
        return TitleRequested(conversation_id=conversation_id, requested_at=clock.now_iso())

    # -- TitleFunction's side -----------------------------------------------------------------------
    def prepare(self) -> None:
        """Set up the model client before the time for a title is measured out. A failure here is
        only logged: the model call then fails the same way and the fallback title is written."""
        try:
            _runner().run(self.model.prepare())
        except Exception as exc:
            logger.warning("model client could not be set up", extra={"reason": type(exc).__name__})

    def process(self, ref: ConversationRef, *, budget_seconds: float | None = None) -> TitleResult:
        """Bring one conversation's title up to date. Storage errors propagate (the record is then
        retried by Lambda); nothing about the model does. `budget_seconds` bounds the model call;
        under MIN_MODEL_SECONDS the model is not asked and the fallback title is written now (reason
        "no_time"): a conversation named by its first words beats one retried for a better name."""
        state = self.repo.read(ref)
        skip = self._skip_reason(state)
        if skip is not None:
            if state is not None and state.title_requested and skip in ("user_title", "no_messages"):
                self.repo.drop_request(ref, state.title_requested)  # it will not be answered
            return self._skipped(ref, skip)
        assert state is not None
        assert state.first_user is not None
        title, generated_by, failure = self._generate(state, budget_seconds)
        written = self.repo.write_generated(
            ref, title, generated_by=generated_by, request_token=state.title_requested
        )
        if not written:  # the user named it, it was deleted, or another delivery got there first
            return self._skipped(ref, "condition_failed")
        extra = {"conversation_id": ref.conversation_id, "title_by": generated_by}
        if failure is not None:
            metrics.add_metric(name="TitlesFailed", unit="Count", value=1)
            emit("TitleOutcomes", "Count", 1, outcome="fallback")
            logger.warning("title model failed; fallback title written", extra={**extra, "reason": failure})
            return TitleResult("fallback", failure, title)
        metrics.add_metric(name="TitlesGenerated", unit="Count", value=1)
        emit("TitleOutcomes", "Count", 1, outcome="generated")
        logger.info("title generated", extra=extra)
        return TitleResult("generated", "refresh" if state.title_requested else "first", title)

    @staticmethod
    def _skip_reason(state: TitleState | None) -> str | None:
        if state is None or state.deleting:
            return "gone"
        if state.title_source == "user":
            return "user_title"
        if state.title and not state.title_requested:
            return "already_titled"
        if state.first_user is None:
            return "no_messages"
        return None

    @staticmethod
    def _skipped(ref: ConversationRef, reason: str) -> TitleResult:
        metrics.add_metric(name="TitlesSkipped", unit="Count", value=1)
        emit("TitleOutcomes", "Count", 1, outcome="skipped")
        logger.info("title skipped", extra={"conversation_id": ref.conversation_id, "reason": reason})
        return TitleResult("skipped", reason)

    def _generate(self, state: TitleState, budget_seconds: float | None) -> tuple[str, str, str | None]:
        """(title, generated_by, failure reason or None). Never raises for the model's sake."""
        assert state.first_user is not None
        if budget_seconds is not None and budget_seconds < MIN_MODEL_SECONDS:
            return fallback_title(state.first_user), "fallback", "no_time"
        messages = title_request(self.prompts.task("title"), state.first_user, state.first_answer)
        model = self.settings.utility_model
        started = time.perf_counter()
        failure: str | None = None
        title: str | None = None
        try:
            text = _runner().run(self._complete(messages, budget_seconds))
            title = clean_title(text)
            if title is None:
                failure = "empty_answer" if not text.strip() else "unusable_answer"
                logger.warning(
                    "title model answered nothing usable",
                    # its length only: the answer is about the user's words, often quotes them
                    extra={"conversation_id": state.conversation_id, "answer_chars": len(text)},
                )
        except TimeoutError:
            failure = "timeout"
        except Exception as exc:  # any failure of the model ends in the fallback, never in an error
            failure = getattr(exc, "code", None) or type(exc).__name__
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            metrics.add_metric(name="TitleModelLatency", unit="Milliseconds", value=round(elapsed_ms, 1))
        if title is not None:
            return title, model, None
        return fallback_title(state.first_user), "fallback", failure

    async def _complete(self, messages: list[dict[str, str]], budget_seconds: float | None) -> str:
        async with asyncio.timeout(budget_seconds):
            text, _ = await self.model.complete(
                model=self.settings.utility_model,
                messages=messages,
                max_completion_tokens=self.settings.title_max_completion_tokens,
            )
        return text
