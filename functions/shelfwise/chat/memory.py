"""Memory: what of a conversation goes into the next prompt, and what is folded into its summary.

The budget covers everything sent: system prompt + summary + tool schemas + history + the new
message (+ tool calls and results in later rounds of the same turn). The system prompt and the new
message are always kept; history is taken newest first while it fits. Whatever has left the window
is folded into the rolling summary exactly once (the conversation records how far the summary
reaches, and the fold is a conditional write on that mark).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shelfwise.chat import tokens
from shelfwise.chat.models import AssemblyHistory, Message, PromptParts
from shelfwise.errors import InvalidInput

SUMMARY_HEADER = (
    "Summary of the earlier conversation (figures in it are not current; look stock and prices up again):\n"
)


@dataclass
class Prompt:
    system: dict[str, Any]
    history: list[dict[str, Any]]  # oldest first
    history_seqs: list[int]  # the seq of each history message
    new: dict[str, Any]
    tools: Sequence[dict[str, Any]]
    budget: int
    extra: list[dict[str, Any]] = field(default_factory=list)  # tool rounds of this turn
    # what the assembly record tells of it (models.Assembly)
    persona: str = ""  # the persona's prompt alone (the system message may add the summary)
    read: int = 0  # messages of the window read
    trimmed: int = 0  # read, with text, left out by the budget when the prompt was built
    sent_at_first: list[int] = field(default_factory=list)  # the history seqs of the first request
    shrunk: int = 0  # tool results halved to fit

    def messages(self) -> list[dict[str, Any]]:
        return [self.system, *self.history, self.new, *self.extra]

    def tokens(self, *, with_tools: bool = True) -> int:
        return tokens.count_messages(self.messages(), self.tools if with_tools else None)

    @property
    def window_start(self) -> int | None:
        """The lowest seq still in the prompt's history (None: no history in the prompt)."""
        return self.history_seqs[0] if self.history_seqs else None

    def drop_oldest(self) -> bool:
        if not self.history:
            return False
        self.history.pop(0)
        self.history_seqs.pop(0)
        return True

    def parts(self) -> PromptParts:
        """This request's tokens by part (the summary's are the system message's beyond the persona's)."""
        system = tokens.count_message({"role": "system", "content": self.persona})
        whole_system = tokens.count_message(self.system)
        parts = PromptParts(
            system=system if self.persona else whole_system,
            summary=max(0, whole_system - system) if self.persona else 0,
            tools=tokens.count_tools(self.tools),
            history=sum(tokens.count_message(m) for m in self.history),
            new_message=tokens.count_message(self.new),
            tool_rounds=sum(tokens.count_message(m) for m in self.extra),
            total=self.tokens(),
        )
        named = parts.system + parts.summary + parts.tools + parts.history + parts.new_message
        parts.framing = parts.total - named - parts.tool_rounds
        return parts

    def history_record(self) -> AssemblyHistory:
        """The history sent (seqs of the first request, as ranges) and what the budget left out."""
        return AssemblyHistory(
            read=self.read,
            sent=seq_ranges(self.sent_at_first),
            sent_count=len(self.sent_at_first),
            trimmed=self.trimmed,
            dropped_for_tools=len(set(self.sent_at_first) - set(self.history_seqs)),
        )


MAX_SEQ_RANGES = 20


def seq_ranges(seqs: Sequence[int], *, max_ranges: int = MAX_SEQ_RANGES) -> list[list[int]]:
    """[1, 2, 3, 7, 8] -> [[1, 3], [7, 8]]: at most `max_ranges` ranges, the newest kept (bounded
    whatever the window)."""
    ranges: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    return ranges[-max_ranges:]


def system_message(persona_prompt: str, summary: str) -> dict[str, Any]:
    content = persona_prompt if not summary else f"{persona_prompt}\n\n{SUMMARY_HEADER}{summary}"
    return {"role": "system", "content": content}


def build_prompt(
    *,
    persona_prompt: str,
    summary: str,
    summary_max_tokens: int,
    recent: Sequence[Message],
    new_content: str,
    tools: Sequence[dict[str, Any]],
    budget: int,
) -> Prompt:
    """The prompt for a new user message. `recent` is newest first (as the turn Query reads it)."""
    summary = tokens.truncate_text(summary, summary_max_tokens) if summary else ""
    prompt = Prompt(
        system=system_message(persona_prompt, summary),
        history=[],
        history_seqs=[],
        new={"role": "user", "content": new_content},
        tools=tools,
        budget=budget,
        persona=persona_prompt,
        read=len(recent),
    )
    used = prompt.tokens()
    if used > budget:
        raise InvalidInput(
            f"the message is too long for the prompt budget ({used} > {budget} tokens)", field="content"
        )
    with_text = [m for m in recent if m.content]  # newest first
    for message in with_text:
        entry = {"role": message.role, "content": message.content}
        cost = tokens.count_message(entry)
        if used + cost > budget:
            break
        prompt.history.insert(0, entry)
        prompt.history_seqs.insert(0, message.seq)
        used += cost
    prompt.trimmed = len(with_text) - len(prompt.history)
    prompt.sent_at_first = list(prompt.history_seqs)
    return prompt


def fit_tool_round(prompt: Prompt) -> None:
    """After tool results joined the prompt: drop the oldest history, then shrink the largest tool
    results, until the whole prompt is within the budget again."""
    while prompt.tokens() > prompt.budget and prompt.drop_oldest():
        pass
    while prompt.tokens() > prompt.budget:
        results = [m for m in prompt.extra if m["role"] == "tool"]
        if not results:
            break
        largest = max(results, key=lambda m: len(m["content"]))
        if len(largest["content"]) < 64:
            break
        largest["content"] = _shrink(largest["content"])
        prompt.shrunk += 1


def _shrink(content: str) -> str:
    """Halve a tool result and keep it JSON: drop half of its longest list, wherever it is (a search's
    products, a product's variants), saying beside it that it is `truncated` and how many are
    `shown`. Only a result with no list to halve (none of the tools' answers) has its text cut."""
    try:
        data = json.loads(content)
    except ValueError:
        data = None
    if (found := _longest_list(data)) is not None:
        holder, key = found
        holder[key] = holder[key][: len(holder[key]) // 2]
        holder["truncated"], holder["shown"] = True, len(holder[key])
        return json.dumps(data, separators=(",", ":"))
    return content[: len(content) // 2]


def _longest_list(data: Any) -> tuple[dict[str, Any], str] | None:
    """The object and key of the longest list (of two entries or more) in a JSON value."""
    best: tuple[dict[str, Any], str] | None = None
    longest = 1
    nodes = [data]
    while nodes:
        node = nodes.pop()
        if isinstance(node, list):
            nodes += node
        elif isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, list) and len(value) > longest:
                    best, longest = (node, key), len(value)
                nodes.append(value)
    return best


def to_fold(recent: Sequence[Message], summary_through: int, window_start: int) -> list[Message]:
    """Messages that have left the window and are not in the summary yet, oldest first."""
    return sorted((m for m in recent if summary_through < m.seq < window_start), key=lambda m: m.seq)


def summary_request(task_prompt: str, previous: str, messages: Sequence[Message]) -> list[dict[str, Any]]:
    lines = [f"{m.role.capitalize()}: {m.content}" for m in messages if m.content]
    body = (
        f"Summary so far:\n{previous or '(none yet)'}\n\nMessages to fold in (oldest first):\n"
        + "\n".join(lines)
    )
    return [{"role": "system", "content": task_prompt}, {"role": "user", "content": body}]


_PRICE = re.compile(r"(?:[$€£]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d+)?\s?(?:USD|EUR|GBP|dollars?)\b)", re.I)
_QUANTITY = re.compile(
    r"\b\d[\d,]*\s+(?=(?:units?|pieces?|pcs|items?|left|in stock|on hand|available|remaining)\b)", re.I
)
_STOCK_IS = re.compile(r"\b((?:stock|quantity|inventory|value|price)\s+(?:is|was|of|at|:)\s*)\d[\d,.]*", re.I)


def scrub_figures(text: str) -> str:
    """Take stock numbers and prices out of a summary: they are looked up live, never remembered."""
    text = _PRICE.sub("[price]", text)
    text = _QUANTITY.sub("some ", text)
    return _STOCK_IS.sub(r"\1[figure]", text).strip()
