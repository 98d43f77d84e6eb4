"""DynamoDB Local listens where make run says, and nowhere else (it has no host option of its own)."""

from __future__ import annotations

import socket
from contextlib import closing
from pathlib import Path

import pytest

from infra.local.dynamodb_local import DynamoDBLocal

pytestmark = pytest.mark.slow


def _answers(host: str, port: int) -> bool:
    with closing(socket.socket()) as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0


def test_it_listens_only_on_the_addresses_it_is_given() -> None:
    with DynamoDBLocal() as alone:
        assert not alone.bound_to_all_interfaces
        assert _answers("127.0.0.1", alone.port)
        assert not _answers("127.0.0.2", alone.port)  # another loopback address: not listened on
    with DynamoDBLocal(hosts=("127.0.0.1", "127.0.0.2")) as both:
        assert _answers("127.0.0.2", both.port)
        assert both.client().list_tables()["TableNames"] == []


def test_data_kept_on_disk_survives_a_restart(tmp_path: Path) -> None:
    with DynamoDBLocal(db_path=tmp_path) as first:
        first.client().create_table(
            TableName="kept",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        first.client().put_item(TableName="kept", Item={"pk": {"S": "a"}})
    with DynamoDBLocal(db_path=tmp_path) as second:
        assert second.client().get_item(TableName="kept", Key={"pk": {"S": "a"}})["Item"] == {
            "pk": {"S": "a"}
        }
