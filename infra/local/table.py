"""Create the DynamoDB table from template.yaml's own `Table` definition, so local runs and tests
use exactly the keys, indexes and stream the deployed stack has (no hand-written copy to drift).

Works against moto (in-process `mock_aws` or moto server) and DynamoDB Local.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from infra.local.template import resource

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import CreateTableInputTypeDef

TABLE_LOGICAL_ID = "Table"

# CloudFormation properties that map 1:1 onto CreateTable's parameters.
_PASS_THROUGH = (
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "ProvisionedThroughput",
    "OnDemandThroughput",
    "LocalSecondaryIndexes",
)
# Allowed keys of each GlobalSecondaryIndexes entry (CFN's ContributorInsightsSpecification is not
# part of CreateTable's GlobalSecondaryIndex shape).
_GSI_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput", "OnDemandThroughput")

# Deliberately not applied:
#   PointInTimeRecoverySpecification - a backup setting (UpdateContinuousBackups); DynamoDB Local has
#       no backups and nothing local reads it. The template tests assert it instead.
#   SSESpecification                 - encryption at rest; CFN's shape (SSEEnabled) differs from the
#       API's (Enabled), the emulators ignore it, and it changes no behaviour the code can observe.
#   DeletionProtectionEnabled        - a CloudFormation intrinsic (!If on a parameter) and, if set,
#       would stop tests from dropping their throwaway tables.
#   TableName, Tags, ContributorInsights, Kinesis/Import/Resource-policy specs - deployment concerns.
#   TimeToLiveSpecification is applied after creation with UpdateTimeToLive (CreateTable has no TTL).


def table_properties() -> dict[str, Any]:
    """The template's `Table` resource Properties (long-form intrinsics)."""
    props: dict[str, Any] = resource(TABLE_LOGICAL_ID)["Properties"]
    return props


def create_table_input(table_name: str, properties: dict[str, Any] | None = None) -> CreateTableInputTypeDef:
    """CreateTable's parameters built from the template's Properties."""
    props = table_properties() if properties is None else properties
    request: dict[str, Any] = {"TableName": table_name}
    for key in _PASS_THROUGH:
        if key in props:
            request[key] = props[key]
    if gsis := props.get("GlobalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = [{k: gsi[k] for k in _GSI_KEYS if k in gsi} for gsi in gsis]
    if stream := props.get("StreamSpecification"):
        # CFN enables the stream by the presence of StreamSpecification; the API wants it explicit.
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    _reject_intrinsics(request)
    return request  # type: ignore[return-value]  # shape checked by the API, built from the template


def create_table(client: DynamoDBClient, table_name: str, *, timeout: float = 30.0) -> None:
    """Create `table_name` as template.yaml defines `Table`, enable its TTL, wait until ACTIVE."""
    props = table_properties()
    client.create_table(**create_table_input(table_name, props))
    wait_until_active(client, table_name, timeout=timeout)
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        _reject_intrinsics(ttl)
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )


def wait_until_active(client: DynamoDBClient, table_name: str, *, timeout: float = 30.0) -> None:
    """Poll DescribeTable until the table and every GSI are ACTIVE (both emulators are quick)."""
    deadline = time.monotonic() + timeout
    while True:
        table = client.describe_table(TableName=table_name)["Table"]
        indexes = table.get("GlobalSecondaryIndexes", [])
        if table.get("TableStatus") == "ACTIVE" and all(i.get("IndexStatus") == "ACTIVE" for i in indexes):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"table {table_name} not ACTIVE after {timeout:.0f} s")
        time.sleep(0.05)


def _reject_intrinsics(value: Any, path: str = "Table") -> None:
    """A Ref/Fn:: in a property we pass on means the template changed shape: fail loudly."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" or key.startswith("Fn::"):
                raise ValueError(f"{path} uses {key}; infra.local.table cannot resolve intrinsics")
            _reject_intrinsics(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_intrinsics(item, f"{path}[{index}]")
