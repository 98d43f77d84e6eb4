"""The table fixture builds template.yaml's table on both backends (moto and DynamoDB Local)."""

from __future__ import annotations

import os
import time
from typing import Any

import boto3
import pytest

from infra.local.dynamodb_local import DynamoDBLocal, DynamoDBLocalError
from infra.local.table import create_table_input, table_properties
from tests.fixtures.dynamodb import DynamoTarget

PROPS = table_properties()
GSIS = {gsi["IndexName"]: gsi for gsi in PROPS["GlobalSecondaryIndexes"]}


def _describe(ddb: DynamoTarget) -> dict[str, Any]:
    return ddb.client.describe_table(TableName=ddb.table_name)["Table"]  # type: ignore[return-value]


def test_table_has_template_keys_and_indexes(ddb: DynamoTarget) -> None:
    table = _describe(ddb)
    assert table["TableStatus"] == "ACTIVE"
    assert table["KeySchema"] == PROPS["KeySchema"]
    assert table["BillingModeSummary"]["BillingMode"] == PROPS["BillingMode"]
    # DynamoDB Local does not keep the template's index order: compare by name.
    described = {gsi["IndexName"]: gsi for gsi in table["GlobalSecondaryIndexes"]}
    assert described.keys() == GSIS.keys()
    for name, gsi in GSIS.items():
        assert described[name]["KeySchema"] == gsi["KeySchema"]
        assert described[name]["Projection"] == gsi["Projection"]
        assert described[name]["IndexStatus"] == "ACTIVE"


def test_table_has_template_stream(ddb: DynamoTarget) -> None:
    table = _describe(ddb)
    assert table["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": PROPS["StreamSpecification"]["StreamViewType"],
    }
    assert table["LatestStreamArn"]


def test_ttl_is_enabled_on_template_attribute(ddb: DynamoTarget) -> None:
    ttl = ddb.client.describe_time_to_live(TableName=ddb.table_name)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    assert ttl["AttributeName"] == PROPS["TimeToLiveSpecification"]["AttributeName"]


@pytest.mark.parametrize("index_name", list(GSIS))
def test_put_then_query_each_gsi(ddb: DynamoTarget, index_name: str) -> None:
    hash_key, range_key = (k["AttributeName"] for k in GSIS[index_name]["KeySchema"])
    for n in (2, 1, 3):
        ddb.client.put_item(
            TableName=ddb.table_name,
            Item={
                "pk": {"S": f"ITEM#{n}"},
                "sk": {"S": "META"},
                hash_key: {"S": "GROUP#a"},
                range_key: {"S": f"{n:04d}"},
            },
        )
    # An item without the index keys stays out of the (sparse) index.
    ddb.client.put_item(TableName=ddb.table_name, Item={"pk": {"S": "ITEM#9"}, "sk": {"S": "META"}})

    result = ddb.client.query(
        TableName=ddb.table_name,
        IndexName=index_name,
        KeyConditionExpression="#h = :h AND #r >= :r",
        ExpressionAttributeNames={"#h": hash_key, "#r": range_key},
        ExpressionAttributeValues={":h": {"S": "GROUP#a"}, ":r": {"S": "0002"}},
    )
    assert [item["pk"]["S"] for item in result["Items"]] == ["ITEM#2", "ITEM#3"]


def test_stream_records_a_write(ddb: DynamoTarget) -> None:
    stream_arn = _describe(ddb)["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams", **ddb.client_kwargs)
    ddb.client.put_item(TableName=ddb.table_name, Item={"pk": {"S": "P"}, "sk": {"S": "S"}})

    shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    assert shards
    records: list[Any] = []
    deadline = time.monotonic() + 10
    while not records and time.monotonic() < deadline:
        for shard in shards:
            iterator = streams.get_shard_iterator(
                StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            records += streams.get_records(ShardIterator=iterator)["Records"]
    assert [r["eventName"] for r in records] == ["INSERT"]
    assert records[0]["dynamodb"]["NewImage"] == {"pk": {"S": "P"}, "sk": {"S": "S"}}
    assert records[0]["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"


def test_create_table_input_skips_what_create_table_cannot_take() -> None:
    request = create_table_input("shelfwise-test")
    for skipped in ("PointInTimeRecoverySpecification", "SSESpecification", "DeletionProtectionEnabled"):
        assert skipped not in request
    assert request["StreamSpecification"]["StreamEnabled"] is True


def test_create_table_input_rejects_intrinsics() -> None:
    props = {**PROPS, "BillingMode": {"Fn::If": ["Cond", "PAY_PER_REQUEST", "PROVISIONED"]}}
    with pytest.raises(ValueError, match="Fn::If"):
        create_table_input("shelfwise-test", props)


def test_missing_jar_names_make_tools(tmp_path) -> None:
    with pytest.raises(DynamoDBLocalError, match="make tools"), DynamoDBLocal(package_dir=tmp_path):
        pass


@pytest.mark.slow
def test_emulator_process_is_gone_after_exit() -> None:
    with DynamoDBLocal(shared_db=False) as emulator:
        pid = emulator.pid
        assert emulator.running
        assert emulator.client().list_tables()["TableNames"] == []
    assert not emulator.running
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
