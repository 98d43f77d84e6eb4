"""What the utility model answers -> a title: cleaned, checked, or the fallback."""

from __future__ import annotations

import pytest

from shelfwise.chat.models import TitleState
from shelfwise.chat.personas import library
from shelfwise.chat.titles import FALLBACK_TITLE, MAX_CHARS, clean_title, fallback_title, title_request


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ("Black hoodie stock check", "Black hoodie stock check"),
        ('"Black hoodie stock check."', "Black hoodie stock check"),
        ("\u201cStock des sweats noirs\u201d", "Stock des sweats noirs"),
        ("\u00abInventario de camisetas\u00bb!", "Inventario de camisetas"),
        ("Title: Low stock review", "Low stock review"),
        ("**Low stock review**", "Low stock review"),
        ("# Low stock review\n\nThis conversation is about...", "Low stock review"),
        ("Sure! Here is a title: Tee price check", "Tee price check"),
        ('{"title": "Tee price check"}', "Tee price check"),
        ("<think>The user asks about tees, so...</think>\nTee stock check", "Tee stock check"),
        ("one two three four five six seven eight", "One two three four five six"),
        ("low stock, reorder list, today, now, please, thanks, more", "Low stock, reorder list, today, now"),
        ("Women's tees 'on sale'", "Women's tees on sale"),
        ("\u2018Ada\u2019s reorder\u2019", "Ada\u2019s reorder"),
        ("\u9ed1\u8272\u536b\u8863\u5e93\u5b58\u3002", "\u9ed1\u8272\u536b\u8863\u5e93\u5b58"),
        ("  \n  Inventory value  \n", "Inventory value"),
        ("T-shirt sizes (kids)", "T-shirt sizes (kids)"),
        ("2024 reorder plan", "2024 reorder plan"),
    ],
)
def test_answers_are_cleaned(answer: str, title: str) -> None:
    assert clean_title(answer) == title


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "   ",
        '""',
        "...",
        "<think>still thinking about the best title and then",  # a reasoning model out of tokens
        "I'm sorry, I can't help with that.",
        "As an AI, I do not name things",
    ],
)
def test_junk_is_refused(answer: str) -> None:
    assert clean_title(answer) is None


def test_titles_stay_short_in_any_script() -> None:
    long_word = "\u5e93" * 200  # a script written without spaces
    assert len(clean_title(long_word) or "") == MAX_CHARS
    assert len(clean_title("Supercalifragilistic " * 6) or "") <= MAX_CHARS


@pytest.mark.parametrize(
    ("first_user", "title"),
    [
        ("how many black hoodies in M do we have?", "How many black hoodies in M"),
        ('"Quel est le stock" de TE-0001 ?', "Quel est le stock de TE-0001"),
        ("\n\n  low stock?\nsecond line", "Low stock"),
        ("???", FALLBACK_TITLE),
        ("", FALLBACK_TITLE),
        (None, FALLBACK_TITLE),
    ],
)
def test_fallback_uses_the_users_own_words(first_user: str | None, title: str) -> None:
    assert fallback_title(first_user) == title


def test_the_request_is_the_title_task_and_a_labelled_first_exchange() -> None:
    task = library().task("title")
    assert "name conversations" in task
    messages = title_request(task, "How many tees?", "We have 12 tees in M (as of 10:00 UTC).")
    assert messages[0] == {"role": "system", "content": task}
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "User: How many tees?" in messages[1]["content"]
    assert "Assistant: We have 12 tees" in messages[1]["content"]
    # only the user's side when there is no answer yet; long messages are cut
    only = title_request(task, "x" * 10_000, None)[1]["content"]
    assert "Assistant:" not in only
    assert len(only) < 2_200


@pytest.mark.parametrize(
    ("opening", "exchange"),
    [
        ((), (None, None)),
        ((("user", "  How many tees?  "),), ("How many tees?", None)),
        ((("user", "How many tees?"), ("assistant", "17 in M.")), ("How many tees?", "17 in M.")),
        # a greeting before the user spoke is not an answer; empty messages say nothing
        (
            (
                ("assistant", "Hello!"),
                ("user", " "),
                ("user", "Hoodies?"),
                ("assistant", ""),
                ("assistant", "4"),
            ),
            ("Hoodies?", "4"),
        ),
    ],
)
def test_the_title_is_made_from_the_first_exchange(
    opening: tuple[tuple[str, str], ...], exchange: tuple[str | None, str | None]
) -> None:
    state = TitleState("c1", None, None, None, False, opening)
    assert (state.first_user, state.first_answer) == exchange
