"""GetRecords records (boto3's shape, as moto and DynamoDB Local answer) -> Lambda's record shape."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from infra.local.stream_records import epoch_seconds, lambda_event, to_lambda_record

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-11-29T13:30:23.916"


def test_a_moto_record_becomes_what_lambda_delivers() -> None:
    raw = {  # what boto3 returns for moto's record: a datetime, eventVersion 1.0, no eventSourceARN
        "eventID": "c28b916b41834f429a8d96c19f64970d",
        "eventName": "MODIFY",
        "eventVersion": "1.0",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2026, 11, 29, 13, 30, 24, 54000, tzinfo=UTC),
            "Keys": {"pk": {"S": "a"}, "sk": {"S": "b"}},
            "NewImage": {"pk": {"S": "a"}, "sk": {"S": "b"}, "n": {"N": "2"}, "blob": {"B": b"\x00\xff"}},
            "OldImage": {
                "pk": {"S": "a"},
                "sk": {"S": "b"},
                "n": {"N": "1"},
                "m": {"M": {"bs": {"BS": [b"x"]}, "e": {}}},
            },
            "SequenceNumber": "1100000000017454423010",
            "SizeBytes": 370,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    record = to_lambda_record(raw, stream_arn=ARN, region="eu-west-1")
    assert list(record) == [
        "eventID",
        "eventName",
        "eventVersion",
        "eventSource",
        "awsRegion",
        "dynamodb",
        "eventSourceARN",
    ]
    assert record["eventVersion"] == "1.1"
    assert record["eventSource"] == "aws:dynamodb"
    assert record["awsRegion"] == "us-east-1"  # the record's own region wins
    assert record["eventSourceARN"] == ARN
    stream = record["dynamodb"]
    assert stream["ApproximateCreationDateTime"] == 1795959024
    assert isinstance(stream["ApproximateCreationDateTime"], int)
    assert list(stream) == [
        "ApproximateCreationDateTime",
        "Keys",
        "NewImage",
        "OldImage",
        "SequenceNumber",
        "SizeBytes",
        "StreamViewType",
    ]
    assert stream["NewImage"]["blob"] == {"B": "AP8="}
    assert stream["OldImage"]["m"] == {"M": {"bs": {"BS": ["eA=="]}, "e": {}}}  # DynamoDB Local's {}
    assert stream["NewImage"]["n"] == {"N": "2"}
    assert lambda_event([record]) == {"Records": [record]}


def test_ttl_deletions_keep_their_user_identity() -> None:
    raw = {
        "eventID": "1",
        "eventName": "REMOVE",
        "dynamodb": {"ApproximateCreationDateTime": 1795959024.7, "Keys": {"pk": {"S": "a"}}},
        "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
    }
    record = to_lambda_record(raw, stream_arn=ARN, region="us-east-1")
    assert record["userIdentity"] == {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    assert record["awsRegion"] == "us-east-1"
    assert record["dynamodb"]["ApproximateCreationDateTime"] == 1795959024


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1795959024, 1795959024),
        (1795959024.9, 1795959024),
        ("1678831218.0", 1678831218),
        ("2026-11-29 13:30:24.054000+00:00", 1795959024),  # moto's JSON
        (datetime(2026, 11, 29, 13, 30, 24), 1795959024),  # naive: UTC
    ],
)
def test_epoch_seconds(value: object, expected: int) -> None:
    assert epoch_seconds(value) == expected
