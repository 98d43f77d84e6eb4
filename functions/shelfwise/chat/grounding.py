"""Grounding: is every figure of an answer one that a tool of the same turn returned?

A pure check, run on each answer once it ends. It rewrites nothing: the answer is stored as said, with
`{"checked": n, "unsupported": [...]}` beside it, so the user sees which figures no lookup of the
turn holds and the operator counts them.

What counts as a figure (`figures`): a number written with digits that reads as a quantity or a price:
`17`, `1,234`, `24.5`, `$24.50`, `€24,50`, `312,450.50 USD`, `3k`, `-2`. Not a figure:
- a number inside a word or an identifier: the digits of a SKU (`TE-0001`), `2XL`, `o200k`, `v1`,
  `3rd`, anything glued to a letter, `#`, `/`, `_` or `=`;
- dates and times: `2026-11-29`, `29/11/2026`, `13:05`, `5 pm`, `29 November 2026`, `Nov 29`;
- dotted or dashed runs: `127.0.0.1`, `1.2.3`, a range written `40-45`;
- a list marker at the start of a line (`1.` or `2)`);
- anything inside a link's address (`https://...`).
Words for numbers ("twelve") are not read. A figure's sign is ignored (`-2` is checked as 2).

What supports a figure (`supporting_numbers`): a number of a tool result of the same turn, or of the
user's own message. In a tool result that is any JSON number (not true/false), a string that is a
number (a size such as "42"), or a figure inside a string (found the same way as in the answer);
walked recursively, keys and nesting alike. The as-of stamps hold no figure by the rules above.

Strict: a figure is supported only when its value equals one of those numbers. Nothing derived is
allowed: not a sum, a difference, a count of list entries, a percentage or a rounding ("about 312k"
for 312,450.50 is unsupported). The tools report the counts and totals an answer needs
(`total_stock`, `count`, `units`, `value`), so an honest answer never needs to compute one. A written
form that could be read two ways (`1,234` or `1.234`: thousands or decimals) is supported if either
reading is. Known limit: a figure is matched by value alone, so a wrong figure that happens to equal
some other number of the results passes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_UNSUPPORTED = 50  # entries kept in `unsupported` (distinct figures, first seen first)
MAX_FIGURE_CHARS = 32

# A run of digits with separators, with an optional currency sign before it and a k/K after it.
# Before it: no word character, no . , : / # _ = (identifiers, dotted runs, times) and no
# letter-or-digit followed by a dash (SKUs, dates, ranges). After it: no word character (except one
# k/K for thousands), and no separator followed by another digit (times, dates, dotted runs, ranges).
_FIGURE = re.compile(
    r"(?<![\w.,:/#=])(?<![\w][-\u2013])"
    r"(?P<sign>[-\u2212]\s?)?(?P<currency>[$\u20ac\u00a3]\s?)?"
    r"(?P<number>\d+(?:[.,]\d+)*)"
    r"(?P<kilo>[kK](?!\w))?"
    r"(?![\w])(?![.,:/\-\u2013]\d)"
)
# Month names (English); "May" only capitalised, so that "17 may be low" keeps its figure.
_MONTHS = (
    r"(?:(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)|May)\.?"
)
_NOT_FIGURES = [
    re.compile(r"https?://\S+", re.IGNORECASE),
    re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"),
    re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS}(?:,?\s+\d{{4}})?(?!\w)"),
    re.compile(rf"\b{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?(?!\w)"),
    re.compile(r"\b\d{1,2}(?::\d{2})?\s?(?:[ap]\.?m\.?)(?!\w)", re.IGNORECASE),
    re.compile(r"^[ \t]*\d{1,3}[.)](?=\s)", re.MULTILINE),  # a numbered list's marker
]


@dataclass(frozen=True)
class Figure:
    text: str  # as written (with its currency sign), for the reader
    values: frozenset[Decimal]  # what it can mean (one value, or two when the separators are ambiguous)


def _blank(text: str) -> str:
    for pattern in _NOT_FIGURES:
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text


def _grouped(groups: list[str]) -> bool:
    """Thousands groups: 1-3 digits, then groups of exactly 3."""
    return 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])


def readings(number: str) -> frozenset[Decimal]:
    """The values a run of digits and separators can mean: `1,234` is 1234 (or 1.234 written the
    continental way), `24,50` is 24.5, `1.234,50` is 1234.5, `1.2.3` is nothing."""
    found: set[Decimal] = set()
    separators = [c for c in number if c in ".,"]
    if not separators:
        return frozenset({Decimal(number)})
    for decimal_mark, thousands in ((".", ","), (",", ".")):
        whole, mark, fraction = number.rpartition(decimal_mark)
        if mark and thousands not in fraction:
            groups = whole.split(thousands)
            if all(g.isdigit() for g in groups) and (len(groups) == 1 or _grouped(groups)):
                found.add(Decimal("".join(groups) + "." + fraction))
        groups = number.split(thousands)
        if decimal_mark not in number and len(groups) > 1 and _grouped(groups):
            found.add(Decimal("".join(groups)))
    return frozenset(found)


def figures(text: str) -> Iterator[Figure]:
    """The figures of a text, in order (see the module's docstring for what is one)."""
    for match in _FIGURE.finditer(_blank(text)):
        values = readings(match.group("number"))
        if not values:
            continue
        if match.group("kilo"):
            values = frozenset(v * 1000 for v in values)
        start = match.start("currency") if match.group("currency") else match.start("number")
        written = text[start : match.end()].strip()
        yield Figure(text=written[:MAX_FIGURE_CHARS], values=values)


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        try:
            return Decimal(repr(value))
        except InvalidOperation:
            return None
    return None


def supporting_numbers(sources: Iterable[Any]) -> set[Decimal]:
    """Every number in `sources` (tool results as parsed JSON, or text such as the user's message)."""
    found: set[Decimal] = set()
    stack = list(sources)
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list | tuple | set | frozenset):
            stack.extend(value)
        elif isinstance(value, str):
            try:
                whole = Decimal(value.strip())
            except InvalidOperation:
                whole = None
            if whole is not None and whole.is_finite():
                found.add(abs(whole))
            else:
                for figure in figures(value):
                    found |= figure.values
        elif (number := _number(value)) is not None and number.is_finite():
            found.add(abs(number))
    return found


def check(answer: str, tool_results: Iterable[Any], user_message: str = "") -> dict[str, Any]:
    """`{"checked": n, "unsupported": [...]}`: how many figures the answer states, and (as written,
    each once) those whose value no tool result of the turn and not the user's message holds."""
    supported = supporting_numbers([*tool_results, user_message])
    checked = 0
    unsupported: list[str] = []
    for figure in figures(answer):
        checked += 1
        new = figure.text not in unsupported and len(unsupported) < MAX_UNSUPPORTED
        if new and figure.values.isdisjoint(supported):
            unsupported.append(figure.text)
    return {"checked": checked, "unsupported": unsupported}
