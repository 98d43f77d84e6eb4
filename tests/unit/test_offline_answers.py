"""The offline model's rules, without a server: what it reads in a question and what it answers."""

from __future__ import annotations

from typing import Any

import pytest

from infra.local.offline_answers import (
    Plan,
    calls_for,
    detect_task,
    is_clearly_not_english,
    limit,
    make_title,
    parse_ask,
    read_transcript,
)
from infra.local.offline_model import argument_pieces, content_pieces
from shelfwise.chat import tokens


@pytest.mark.parametrize(
    ("text", "product"),
    [
        ("how many medium black tees are in stock?", "tee"),
        ("any T-shirts left?", "tee"),
        ("do we have the t-shirt dress in XS?", "dress"),
        ("hoodies in navy?", "hoodie"),
        ("stock of the crewneck", "crewneck"),
        ("trousers in 32?", "pant"),
        ("slim chinos in khaki", "chino"),
        ("shorts for summer", "short"),
        ("white sneakers size 42", "sneaker"),
        ("chelsea boots in 44", "boot"),
        ("a mustard beanie", "beanie"),
        ("the canvas tote", "tote"),
        ("brown belts", "belt"),
        ("linen shirts", "shirt"),
        ("jackets for winter", "jacket"),
        ("hello there", None),
    ],
)
def test_product_words_map_to_catalog_names(text: str, product: str | None) -> None:
    assert parse_ask(text).product == product


def test_colors_sizes_and_skus() -> None:
    ask = parse_ask("how many medium black tees are in stock?")
    assert (ask.colors, ask.sizes, ask.stockish) == (("black",), ("M",), True)
    assert parse_ask("Essential Tee in heather gray, extra large").colors == ("heather grey",)
    assert parse_ask("Essential Tee in heather gray, extra large").sizes == ("XL",)
    assert parse_ask("tees in S or XXL?").sizes == ("S", "XXL")
    assert parse_ask("I'm after a tee").sizes == ()  # the M of I'M is no size
    assert parse_ask("sneakers in 42").sizes == ("42",)
    assert parse_ask("do you have te-0001 and SH-12345?").skus == ("TE-0001", "SH-12345")


def test_calls_for_questions() -> None:
    assert calls_for(parse_ask("how many medium black tees are in stock?")) == [
        [("search_products", {"query": "tee"})]
    ]
    assert calls_for(parse_ask("stock of TE-0001 and TE-0002?")) == [
        [("get_product", {"sku": "TE-0001"}), ("get_product", {"sku": "TE-0002"})]
    ]
    assert calls_for(parse_ask("what should we reorder?")) == [[("list_low_stock", {"limit": 10})]]
    assert calls_for(parse_ask("what is the inventory worth?")) == [[("get_inventory_value", {})]]
    assert calls_for(parse_ask("hello!")) == []
    assert calls_for(parse_ask("what is in stock?")) == []  # which product? the model asks back


def test_task_detection() -> None:
    summary = [{"role": "system", "content": "You maintain the running summary of a conversation."}]
    title = [{"role": "developer", "content": "You name conversations."}]
    assert detect_task(summary, None) == "summary"
    assert detect_task(title, None) == "title"
    assert detect_task(summary, [{"type": "function", "function": {"name": "x"}}]) == "chat"
    assert detect_task([{"role": "user", "content": "running summary"}], None) == "chat"


def test_transcripts_in_one_message_or_as_messages() -> None:
    inline = read_transcript(
        [
            {
                "role": "user",
                "content": "Summary so far: none\n\nUser: first\nmore of it\nAssistant: reply\nuser: second",
            }
        ]
    )
    assert inline.user_turns == ["first\nmore of it", "second"]
    assert inline.other_text == ["Summary so far: none"]
    plain = read_transcript([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    assert plain.user_turns == ["a"]


def test_language() -> None:
    assert not is_clearly_not_english("how many medium black tees are in stock?")
    assert is_clearly_not_english("¿Cuántas camisetas negras hay en la tienda?")
    assert is_clearly_not_english("黒いTシャツの在庫はありますか")
    assert is_clearly_not_english("Combien de t-shirts noirs avons nous")


def test_titles_are_short_and_clean() -> None:
    assert make_title("how many medium black tees are in stock?") == "Black tee stock check"
    assert make_title("") == "New conversation"
    assert (
        make_title("黒いTシャツの在庫はありますか\uff1f") == "黒いTシャツの在庫はありますか"
    )  # no full-width ?
    long = make_title('"Could you please tell me everything about everything you know?"')
    assert len(long.split()) <= 6
    assert '"' not in long


@pytest.mark.parametrize("text", ["", "one", "  two  words\n\nand more  ", "tabs\tand\r\nnewlines\n"])
def test_streamed_pieces_join_to_the_text(text: str) -> None:
    assert "".join(content_pieces(text)) == text
    assert "".join(argument_pieces('{"query": "' + text + '"}')) == '{"query": "' + text + '"}'


def test_limit_cuts_to_the_token_budget() -> None:
    plan = Plan(content="one two three four five six seven eight nine ten")
    assert limit(plan, 100) is plan
    cut = limit(plan, 4)
    assert cut.finish_reason == "length"
    assert cut.content == "one two three four"
    assert tokens.count_text(cut.content) == 4


def test_an_inventory_value_result_with_a_product_count_is_read_as_a_value() -> None:
    """Regression: the value result carries `products` (a count); the call's name decides how it
    is read, not the keys of its result."""
    from infra.local.offline_answers import respond

    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You help."},
        {"role": "user", "content": "what is our inventory worth?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_inventory_value", "arguments": "{}"},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": '{"as_of":"2026-11-29T13:00:00.000Z","currency":"USD","units":12,"value":288.0,'
            '"products":1,"variants":2,"by_category":[{"category":"tees","units":12,"value":288.0}]}',
        },
    ]
    plan = respond(
        "chat", messages, [{"type": "function", "function": {"name": "get_inventory_value"}}], None
    )
    assert "288" in (plan.content or "")
