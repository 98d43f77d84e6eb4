"""The offline model's rules, without a server: what it reads in a question and what it answers."""

from __future__ import annotations

import json
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
        [("search_products", {"query": "", "category": "tees"})]
    ]
    assert calls_for(parse_ask("stock of TE-0001 and TE-0002?")) == [
        [("get_product", {"sku": "TE-0001"}), ("get_product", {"sku": "TE-0002"})]
    ]
    assert calls_for(parse_ask("what should we reorder?")) == [[("list_low_stock", {"limit": 50})]]
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


@pytest.mark.parametrize(
    ("text", "product", "colors", "sizes"),
    [
        ("¿cuántas camisetas negras talla M tenemos?", "tee", ("black",), ("M",)),
        ("Wie viele schwarze T-Shirts in Größe M haben wir?", "tee", ("black",), ("M",)),
        ("Combien de t-shirts noirs en taille M avons-nous ?", "tee", ("black",), ("M",)),
        ("¿Cuántas sudaderas blancas tenemos?", "hoodie", ("white",), ()),
        ("Haben wir Stiefel in Größe 42?", "boot", (), ("42",)),
        ("pantalones cortos azul marino", "short", ("navy",), ()),
    ],
)
def test_spanish_german_and_french_words(
    text: str, product: str, colors: tuple[str, ...], sizes: tuple[str, ...]
) -> None:
    ask = parse_ask(text)
    assert (ask.product, ask.colors, ask.sizes) == (product, colors, sizes)


@pytest.mark.parametrize(
    ("text", "calls"),
    [
        # a whole category is searched by category (its products whatever their names), a name by name
        ("which hoodies are out of stock?", [[("search_products", {"query": "", "category": "hoodies"})]]),
        ("any chelsea boots in 42?", [[("search_products", {"query": "boot"})]]),
        # generic stock questions get the tool that answers them
        ("which products are out of stock?", [[("list_low_stock", {"limit": 50})]]),
        ("¿Qué productos tienen poco stock?", [[("list_low_stock", {"limit": 50})]]),
        ("Welche Produkte sind ausverkauft?", [[("list_low_stock", {"limit": 50})]]),
        ("compare stock of jackets vs pants", [[("get_inventory_value", {})]]),
        ("how many hoodies do we have?", [[("get_inventory_value", {})]]),
        ("how many units do we have in total?", [[("get_inventory_value", {})]]),
        ("which category is worth the most?", [[("get_inventory_value", {})]]),
        (
            "compare sneakers and boots",
            [[("search_products", {"query": "sneaker"}), ("search_products", {"query": "boot"})]],
        ),
        # a request to change something calls nothing: it is refused
        ("set the stock of TE-0001 size M to 20", []),
        ("please add 5 black tees in size M", []),
        ("cambia el stock de TE-0001 a 5", []),
        ("Setze den Bestand von TE-0001 auf 3", []),
        ("what should we restock?", [[("list_low_stock", {"limit": 50})]]),  # a question, not a write
        ("do we sell socks?", []),
    ],
)
def test_calls_for_generic_questions_and_writes(text: str, calls: list[Any]) -> None:
    assert calls_for(parse_ask(text)) == calls


def _chat(*user_turns: str) -> str:
    from infra.local.offline_answers import respond

    messages: list[dict[str, Any]] = [{"role": "system", "content": "You help."}]
    for turn in user_turns:
        messages += [{"role": "user", "content": turn}, {"role": "assistant", "content": "ok"}]
    tools = [{"type": "function", "function": {"name": "search_products"}}]
    plan = respond("chat", messages[:-1], tools, None)
    return plan.content or json.dumps([(c.name, c.arguments) for c in plan.tool_calls])


def test_writes_are_refused_pointing_to_the_api_and_the_unknown_is_said_to_be_so() -> None:
    refusal = _chat("set the stock of TE-0001 size M to 20")
    assert "cannot change stock" in refusal
    assert "/adjustments" in refusal
    unknown = _chat("what's the weather like tomorrow?")
    assert "did not understand" in unknown
    assert "out of stock or running low" in unknown  # what it can answer


def test_a_product_carries_over_only_to_a_short_follow_up() -> None:
    assert "tees" in _chat("any black tees in M?", "and in white?")
    # a question of its own whose product word is unknown does not inherit the earlier product
    other = _chat("any chelsea boots in 42?", "do we have any of the wool socks in size M please?")
    assert "boot" not in other
    assert "Which product do you mean?" in other
