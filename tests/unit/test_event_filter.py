"""Lambda's event filtering, as the local stack evaluates it (infra.local.event_filter)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.local.event_filter import FilterCriteria, UnsupportedPattern, compile_pattern

RECORD: dict[str, Any] = {
    "eventName": "MODIFY",
    "dynamodb": {
        "ApproximateCreationDateTime": 1795959515,
        "Keys": {"pk": {"S": "USER#ada#CONV#c1"}, "sk": {"S": "STATE"}},
        "NewImage": {
            "type": {"S": "conversation"},
            "title": {"S": "Tee stock"},
            "message_count": {"N": "2"},
            "deleting": {"BOOL": False},
            "tags": {"L": [{"S": "a"}, {"S": "b"}]},
            "empty": {"S": ""},
        },
        "SizeBytes": 120,
    },
    "sizes": ["S", "M"],
    "nothing": None,
}


def matches(pattern: dict[str, Any], record: dict[str, Any] = RECORD) -> bool:
    return compile_pattern(json.dumps(pattern)).matches(record)


def new_image(**fields: Any) -> dict[str, Any]:
    return {"dynamodb": {"NewImage": fields}}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        # exact values, OR within a leaf array, AND across keys
        ({"eventName": ["MODIFY"]}, True),
        ({"eventName": ["INSERT", "MODIFY"]}, True),
        ({"eventName": ["INSERT"]}, False),
        ({"eventName": ["MODIFY"], **new_image(type={"S": ["product"]})}, False),
        (new_image(type={"S": ["conversation"]}, title={"S": ["Tee stock"]}), True),
        # numbers match JSON numbers only: a DynamoDB N is a string
        ({"dynamodb": {"SizeBytes": [120]}}, True),
        ({"dynamodb": {"SizeBytes": [120.0]}}, True),
        ({"dynamodb": {"SizeBytes": ["120"]}}, False),
        (new_image(message_count={"N": ["2"]}), True),
        (new_image(message_count={"N": [{"numeric": [">", 1]}]}), False),
        ({"dynamodb": {"SizeBytes": [{"numeric": [">", 100, "<=", 120]}]}}, True),
        ({"dynamodb": {"SizeBytes": [{"numeric": [">", 120]}]}}, False),
        ({"dynamodb": {"SizeBytes": [{"numeric": ["=", 120]}]}}, True),
        # booleans, null, empty
        (new_image(deleting={"BOOL": [False]}), True),
        (new_image(deleting={"BOOL": [True]}), False),
        ({"nothing": [None]}, True),
        ({"eventName": [None]}, False),
        (new_image(empty={"S": [""]}), True),
        (new_image(title={"S": [""]}), False),
        # prefix, suffix, equals-ignore-case
        ({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "USER#"}]}}}}, True),
        ({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "PRODUCT#"}]}}}}, False),
        ({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": {"equals-ignore-case": "user#ada"}}]}}}}, True),
        ({"dynamodb": {"Keys": {"pk": {"S": [{"suffix": "#c1"}]}}}}, True),
        ({"dynamodb": {"Keys": {"sk": {"S": [{"equals-ignore-case": "state"}]}}}}, True),
        # anything-but: values, prefix; never matches a missing field
        ({"eventName": [{"anything-but": ["INSERT", "REMOVE"]}]}, True),
        ({"eventName": [{"anything-but": "MODIFY"}]}, False),
        ({"eventName": [{"anything-but": {"prefix": "MOD"}}]}, False),
        ({"eventName": [{"anything-but": {"equals-ignore-case": ["insert"]}}]}, True),
        ({"missing": [{"anything-but": "x"}]}, False),
        # exists: leaves only
        (new_image(title={"S": [{"exists": True}]}), True),
        (new_image(title={"S": [{"exists": False}]}), False),
        (new_image(turn_id={"S": [{"exists": False}]}), True),
        (new_image(turn_id={"S": [{"exists": True}]}), False),
        ({"dynamodb": {"OldImage": {"type": {"S": [{"exists": False}]}}}}, True),  # no OldImage at all
        ({"dynamodb": {"OldImage": {"type": {"S": [{"exists": True}]}}}}, False),
        # on an intermediate node `exists` sees no leaf: false matches, true does not (as in Lambda)
        (new_image(title=[{"exists": False}]), True),
        (new_image(title=[{"exists": True}]), False),
        # arrays in the record: any element
        ({"sizes": ["M"]}, True),
        ({"sizes": ["XL"]}, False),
        ({"sizes": [{"prefix": "S"}]}, True),
        (new_image(tags={"L": {"S": ["b"]}}), True),
        (new_image(tags={"L": {"S": ["c"]}}), False),
        # a missing path matches nothing but exists:false
        ({"missing": {"deeper": ["x"]}}, False),
        ({"missing": {"deeper": [{"exists": False}]}}, True),
    ],
)
def test_pattern_semantics(pattern: dict[str, Any], expected: bool) -> None:
    assert matches(pattern) is expected


def test_filters_are_ored_and_no_filters_pass_everything() -> None:
    insert = {"Pattern": json.dumps({"eventName": ["INSERT"]})}
    modify = {"Pattern": json.dumps({"eventName": ["MODIFY"]})}
    assert FilterCriteria.from_properties({"Filters": [insert, modify]}).matches(RECORD)
    assert not FilterCriteria.from_properties({"Filters": [insert]}).matches(RECORD)
    assert FilterCriteria.from_properties(None).matches(RECORD)
    assert FilterCriteria.from_properties({"Filters": []}).matches(RECORD)


@pytest.mark.parametrize(
    "pattern",
    [
        "not json",
        json.dumps(["a list"]),
        json.dumps({}),
        json.dumps({"eventName": "MODIFY"}),  # a leaf must be an array
        json.dumps({"eventName": []}),
        json.dumps({"eventName": [{"wildcard": "MOD*"}]}),  # not supported by Lambda
        json.dumps({"ip": [{"cidr": "10.0.0.0/24"}]}),
        json.dumps({"$or": [{"a": ["b"]}, {"c": ["d"]}]}),
        json.dumps({"a": [{"exists": "yes"}]}),
        json.dumps({"a": [{"numeric": [">", "1"]}]}),
        json.dumps({"a": [{"numeric": ["~", 1]}]}),
        json.dumps({"a": [{"prefix": 1}]}),
        json.dumps({"a": [{"anything-but": {"wildcard": "x"}}]}),
        json.dumps({"a": [{"prefix": "x", "suffix": "y"}]}),
        json.dumps({"a": ["x" * 5000]}),  # over Lambda's 4096 characters
    ],
)
def test_unsupported_patterns_fail_loudly(pattern: str) -> None:
    with pytest.raises(UnsupportedPattern):
        compile_pattern(pattern)
