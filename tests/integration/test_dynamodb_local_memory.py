"""DynamoDB Local's memory is bounded: Java would otherwise let its heap grow toward a quarter of the
machine's memory over a long `make run`."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.local.dynamodb_local import DynamoDBLocal

pytestmark = pytest.mark.slow

_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _max_heap_bytes(pid: int) -> int | None:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    found = [a[4:] for a in args if a.startswith("-Xmx")]
    if not found:
        return None
    value = found[-1].lower()  # the last -Xmx wins, as in java
    return int(value[:-1]) * _UNITS[value[-1]] if value[-1] in _UNITS else int(value)


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc (Linux)")
def test_its_heap_is_capped_at_half_a_gigabyte_and_still_serves_a_busy_table(tmp_path: Path) -> None:
    with DynamoDBLocal(db_path=tmp_path) as ddb:
        assert ddb.pid is not None
        heap = _max_heap_bytes(ddb.pid)
        assert heap is not None, "DynamoDB Local runs without -Xmx"
        assert heap <= 512 << 20, heap
        client = ddb.client()
        client.create_table(
            TableName="busy",
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        blob = "x" * 4000
        for batch in range(40):  # 1,000 items of 4 KB
            client.batch_write_item(
                RequestItems={
                    "busy": [
                        {
                            "PutRequest": {
                                "Item": {
                                    "pk": {"S": "p"},
                                    "sk": {"S": f"{batch:02}-{i:02}"},
                                    "b": {"S": blob},
                                }
                            }
                        }
                        for i in range(25)
                    ]
                }
            )
        paginator = client.get_paginator("query")
        pages = paginator.paginate(
            TableName="busy", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}}
        )
        assert sum(page["Count"] for page in pages) == 1000
