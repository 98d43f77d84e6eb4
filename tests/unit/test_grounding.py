"""The grounding check: which numbers of an answer are figures, and which a tool result holds."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from shelfwise.chat.grounding import MAX_UNSUPPORTED, check, figures, readings, supporting_numbers

AS_OF = "2026-11-29T13:05:00.000Z"
TEES: dict[str, Any] = {
    "as_of": AS_OF,
    "count": 2,
    "products": [
        {
            "sku": "TE-0001",
            "name": "Essential Tee",
            "color": "black",
            "price": 24.0,
            "total_stock": 20,
            "variants": [{"size": "M", "quantity": 17, "reorder_level": 5}, {"size": "L", "quantity": 3}],
        },
        {
            "sku": "FO-0002",
            "name": "Canvas Low Sneaker",
            "price": 70.5,
            "variants": [{"size": "42", "quantity": 0, "reorder_level": 3}],
        },
    ],
}
VALUE = {"as_of": AS_OF, "currency": "USD", "units": 8123, "value": 312450.5, "by_category": []}


def texts(answer: str) -> list[str]:
    return [f.text for f in figures(answer)]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("We have 17 in stock.", ["17"]),
        ("S 3, M 17, L 0", ["3", "17", "0"]),
        ("priced at $24.50, or 24.5 USD", ["$24.50", "24.5"]),
        ("worth 312,450.50 USD and €1.234,50", ["312,450.50", "€1.234,50"]),
        ("**17** units, *3* left, `5` more", ["17", "3", "5"]),
        ("about 312k in stock", ["312k"]),
        ("a change of -2", ["2"]),
        ("12% of it", ["12"]),
        ("17 may be low", ["17"]),
        # not figures: identifiers, sizes glued to letters, versions, addresses
        ("Essential Tee (TE-0001) and SH-12345", []),
        ("a 2XL, the o200k encoding, 3rd row, v1 API, x=5, #7, id_9", []),
        ("see http://127.0.0.1:8000/v1/models or 1.2.3", []),
        # dates and times
        ("as of 13:05 UTC on 2026-11-29", []),
        ("read at 2026-11-29T13:05:00Z", []),
        ("on 29/11/2026, at 5 pm or 5:30am", []),
        ("on 29 November 2026, Nov 29, 3rd of March and May 4", []),
        # ranges and list markers
        ("sizes 40-45 and 40\u201345", []),
        ("1. Essential Tee\n2) Pocket Tee\n  3. Boxy Tee", []),
        ("", []),
        ("no digits at all", []),
    ],
)
def test_what_reads_as_a_figure(answer: str, expected: list[str]) -> None:
    assert texts(answer) == expected


@pytest.mark.parametrize(
    ("written", "values"),
    [
        ("17", {"17"}),
        ("24.50", {"24.5"}),
        ("1,234", {"1234", "1.234"}),  # thousands, or a continental decimal comma
        ("1.234", {"1.234", "1234"}),
        ("24,50", {"24.5"}),
        ("1,234.50", {"1234.5"}),
        ("1.234,50", {"1234.5"}),
        ("12,34,567", set()),  # not a grouping either way
        ("1.2.3", set()),
        ("0", {"0"}),
    ],
)
def test_readings_of_separators(written: str, values: set[str]) -> None:
    assert readings(written) == {Decimal(v) for v in values}


def test_numbers_of_tool_results_are_found_everywhere_in_them() -> None:
    found = supporting_numbers([TEES, "the user asked about 5 tees"])
    assert {Decimal(n) for n in ("17", "3", "5", "24", "70.5", "20", "2", "42", "0")} <= found
    assert Decimal("1") not in found  # the digits of TE-0001 are no number
    assert Decimal("2026") not in found
    assert Decimal("13") not in found
    assert supporting_numbers([True, False, None]) == set()  # booleans are not numbers
    assert supporting_numbers([{"note": "8 tool calls per round at most"}]) == {Decimal(8)}
    assert supporting_numbers([{"delta": -2}]) == {Decimal(2)}  # signs are ignored on both sides
    assert supporting_numbers([{"n": "NaN"}, {"n": "Infinity"}]) == set()


def test_an_answer_from_its_results_is_fully_supported() -> None:
    answer = (
        "We have 17 Essential Tee in black, size M (TE-0001) in stock, as of 13:05 UTC. "
        "It is priced at $24.00; the sneaker in size 42 is out of stock (0 left) at 70.50."
    )
    assert check(answer, [TEES]) == {"checked": 5, "unsupported": []}


def test_an_invented_or_derived_figure_is_unsupported() -> None:
    # 20 - 17 = 3 happens to be in the results (a known limit: values are matched, not meanings);
    # 37 (17 + 20) and 40 (a made-up quantity) are not; 7 and 312k are derived from the results
    answer = "17 in M, 37 in all, 40 in L, 7 more than last week; value about 312k, or 312,450.5."
    assert check(answer, [TEES, VALUE]) == {"checked": 6, "unsupported": ["37", "40", "7", "312k"]}


def test_no_tool_ran_so_only_the_users_own_numbers_are_supported() -> None:
    assert check("You asked about 5 tees; we have 12.", [], "do we have 5 tees?") == {
        "checked": 2,
        "unsupported": ["12"],
    }


def test_rounding_is_not_support_but_trailing_zeros_are_the_same_value() -> None:
    assert check("worth 312,450.50 USD", [VALUE])["unsupported"] == []
    assert check("worth $312,451", [VALUE])["unsupported"] == ["$312,451"]
    assert check("8,123 units", [VALUE])["unsupported"] == []
    assert check("8.123 Stück", [VALUE])["unsupported"] == []  # a continental thousands point


def test_unsupported_figures_are_listed_once_each_and_bounded() -> None:
    assert check("12 and 12 and 13", [])["unsupported"] == ["12", "13"]
    many = " ".join(str(n) for n in range(1000, 1200))
    result = check(many, [])
    assert result["checked"] == 200
    assert len(result["unsupported"]) == MAX_UNSUPPORTED


def test_other_languages_and_formats() -> None:
    results = [{"products": [{"price": 24.5, "variants": [{"size": "M", "quantity": 1234}]}]}]
    assert check("Tenemos 1.234 camisetas a 24,50 €.", results) == {"checked": 2, "unsupported": []}
    assert check("Wir haben 1.234 Stück zu je 24,50 EUR.", results)["unsupported"] == []
    assert check("Nous en avons 1 234.", results)["unsupported"] == ["1", "234"]  # spaced groups: two
