"""DynamoDB Streams records as Lambda delivers them to a function.

What GetRecords answers (through boto3, from moto or DynamoDB Local) differs from a Lambda event:
the record lacks `eventSourceARN`; boto3 turns `ApproximateCreationDateTime` into a datetime (moto's
JSON even carries a date string) where Lambda sends epoch seconds as a number; binary attributes come
back as bytes where Lambda's JSON has base64 text; moto says eventVersion "1.0" where Lambda's
records say "1.1". `to_lambda_record` fixes all of that, keeping Lambda's key order:

    {"eventID", "eventName", "eventVersion": "1.1", "eventSource": "aws:dynamodb", "awsRegion",
     "dynamodb": {"ApproximateCreationDateTime": <epoch s>, "Keys", "NewImage", "OldImage",
                  "SequenceNumber", "SizeBytes", "StreamViewType"},
     "eventSourceARN": "<stream arn>", "userIdentity" (TTL deletions only)}
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

LAMBDA_EVENT_VERSION = "1.1"
_STREAM_KEYS = (
    "ApproximateCreationDateTime",
    "Keys",
    "NewImage",
    "OldImage",
    "SequenceNumber",
    "SizeBytes",
    "StreamViewType",
)


def epoch_seconds(value: Any) -> int:
    """ApproximateCreationDateTime as Lambda sends it: whole epoch seconds."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return epoch_seconds(datetime.fromisoformat(value))
    raise TypeError(f"cannot read a creation time from {value!r}")


def _b64(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)  # already base64 text


def lambda_attribute(attr: Mapping[str, Any]) -> dict[str, Any]:
    """One attribute value in Lambda's JSON form (binary as base64, recursively). Anything that is
    not a one-key attribute value passes unchanged: DynamoDB Local's stream renders an empty map
    {"M": {}} as {}, and the pump must not choke on what an emulator says."""
    if len(attr) != 1:
        return dict(attr)
    ((kind, value),) = attr.items()
    if kind == "B":
        return {"B": _b64(value)}
    if kind == "BS":
        return {"BS": [_b64(v) for v in value]}
    if kind == "M":
        return {"M": {k: lambda_attribute(v) for k, v in value.items()}}
    if kind == "L":
        return {"L": [lambda_attribute(v) for v in value]}
    return {kind: value}


def lambda_image(image: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {name: lambda_attribute(attr) for name, attr in image.items()}


def to_lambda_record(record: Mapping[str, Any], *, stream_arn: str, region: str) -> dict[str, Any]:
    """One GetRecords record (boto3's shape) as the record of a Lambda event."""
    raw = record.get("dynamodb") or {}
    stream: dict[str, Any] = {}
    for key in _STREAM_KEYS:
        if key not in raw:
            continue
        value = raw[key]
        if key == "ApproximateCreationDateTime":
            value = epoch_seconds(value)
        elif key in ("Keys", "NewImage", "OldImage"):
            value = lambda_image(value)
        elif key == "SizeBytes":
            value = int(value)
        stream[key] = value
    out: dict[str, Any] = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": LAMBDA_EVENT_VERSION,
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion") or region,
        "dynamodb": stream,
        "eventSourceARN": stream_arn,
    }
    if record.get("userIdentity"):
        out["userIdentity"] = dict(record["userIdentity"])
    return out


def lambda_event(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The event a DynamoDB event source mapping invokes its function with."""
    return {"Records": [dict(r) for r in records]}
