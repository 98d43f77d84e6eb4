"""Conformance of TitleFunction in template.yaml: its stream mapping, filters, role, dead-letter queue
and alarm, in the source template and in samtranslator's translation (the same two judges as
test_template.py, whose helpers this reuses)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.local.event_filter import MAX_PATTERN_CHARS, FilterCriteria
from infra.local.stream_pump import StreamSource
from infra.local.template import load_template, resource
from tests.conformance.test_template import (
    _as_list,
    _getatt,
    _ref,
    _resources_of_type,
)

Template = dict[str, Any]
STREAM_EVENT = "TableStream"


def _stream_event() -> dict[str, Any]:
    event: dict[str, Any] = resource("TitleFunction")["Properties"]["Events"][STREAM_EVENT]
    return event


def _policy_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [st for policy in role["Properties"]["Policies"] for st in policy["PolicyDocument"]["Statement"]]


def test_title_function() -> None:
    fn = resource("TitleFunction")
    props = fn["Properties"]
    assert fn["Type"] == "AWS::Serverless::Function"
    assert props["Handler"] == "shelfwise.entry.titles.lambda_handler"
    assert props["Role"] == _getatt("TitleFunctionRole", "Arn")
    assert props["LoggingConfig"] == {"LogGroup": _ref("TitleFunctionLogGroup")}
    assert 30 <= props["Timeout"] <= 120, "room for a slow model call, not a runaway batch"
    env = props["Environment"]["Variables"]
    assert (
        float(env["SHELFWISE_LLM_TIMEOUT_SECONDS"]) * (int(env["SHELFWISE_LLM_MAX_RETRIES"]) + 1)
        < props["Timeout"]
    ), "one record's model calls must end well before the function's timeout"
    assert set(props["Events"]) == {STREAM_EVENT}
    assert env["SHELFWISE_OPENAI_API_KEY_PARAMETER"] == _ref("OpenAIKeyParameter")


def test_title_stream_mapping() -> None:
    event = _stream_event()
    assert event["Type"] == "DynamoDB"
    props = event["Properties"]
    assert props["Stream"] == _getatt("Table", "StreamArn")
    assert props["StartingPosition"] == "LATEST"
    assert 1 <= props["BatchSize"] <= 100
    assert 0 <= props["MaximumBatchingWindowInSeconds"] <= 2, "titles should follow the first answer closely"
    assert 0 <= props["MaximumRetryAttempts"] <= 5, "bounded retries"
    assert 60 <= props["MaximumRecordAgeInSeconds"] <= 6 * 3600, "bounded age"
    assert props["BisectBatchOnFunctionError"] is True
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["DestinationConfig"] == {"OnFailure": {"Destination": _getatt("TitleDLQ", "Arn")}}


def test_title_filters_are_valid_lambda_patterns_on_the_dynamodb_key_only() -> None:
    filters = _stream_event()["Properties"]["FilterCriteria"]["Filters"]
    assert 1 <= len(filters) <= 5, "Lambda's default quota is five filters per mapping"
    for entry in filters:
        assert set(entry) == {"Pattern"}
        assert isinstance(entry["Pattern"], str), "CloudFormation wants the pattern as a JSON string"
        assert len(entry["Pattern"]) <= MAX_PATTERN_CHARS
        assert set(json.loads(entry["Pattern"])) == {"dynamodb"}, "DynamoDB mappings filter on `dynamodb`"
    # The local stack reads the very same criteria (and refuses what Lambda would not support).
    compiled = FilterCriteria.from_properties(_stream_event()["Properties"]["FilterCriteria"])
    assert [p.source for p in compiled.patterns] == [f["Pattern"] for f in filters]
    local = StreamSource.from_template("TitleFunction").filters
    assert [p.source for p in local.patterns] == [p.source for p in compiled.patterns]


def test_title_function_role_is_least_privilege() -> None:
    role = resource("TitleFunctionRole")
    assert role["Type"] == "AWS::IAM::Role"
    props = role["Properties"]
    (trust,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert trust == {
        "Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    # X-Ray's write actions have no resource-level permissions: the managed policy is the usual way.
    assert props["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSXrayWriteOnlyAccess"}
    ]
    parameter = {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${OpenAIKeyParameter}"
    }
    granted: dict[str, set[str]] = {}
    for st in _policy_statements(role):
        assert st["Effect"] == "Allow"
        if st.get("Sid") == "ModelKeyDecrypt":  # any key, but only through SSM and for that parameter
            assert _as_list(st["Action"]) == ["kms:Decrypt"]
            condition = st["Condition"]["StringEquals"]
            assert condition["kms:EncryptionContext:PARAMETER_ARN"] == parameter
            assert condition["kms:ViaService"] == {"Fn::Sub": "ssm.${AWS::Region}.${AWS::URLSuffix}"}
            continue
        for res in _as_list(st["Resource"]):
            assert res != "*"
            granted.setdefault(json.dumps(res, sort_keys=True), set()).update(_as_list(st["Action"]))
    assert granted == {
        json.dumps(_getatt("TitleFunctionLogGroup", "Arn")): {"logs:CreateLogStream", "logs:PutLogEvents"},
        json.dumps(_getatt("Table", "Arn")): {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query"},
        json.dumps(_getatt("Table", "StreamArn")): {
            "dynamodb:DescribeStream",
            "dynamodb:GetRecords",
            "dynamodb:GetShardIterator",
        },
        json.dumps({"Fn::Sub": "${Table.Arn}/stream/*"}): {"dynamodb:ListStreams"},
        json.dumps(_getatt("TitleDLQ", "Arn")): {"sqs:SendMessage"},
        json.dumps(parameter): {"ssm:GetParameter"},
    }


def test_title_dead_letter_queue_and_its_alarm() -> None:
    template = load_template()
    queue = resource("TitleDLQ")
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    alarms = [
        a["Properties"]
        for a in _resources_of_type(template, "AWS::CloudWatch::Alarm").values()
        if {"Name": "QueueName", "Value": _getatt("TitleDLQ", "QueueName")}
        in a["Properties"].get("Dimensions", [])
    ]
    assert len(alarms) == 1
    (alarm,) = alarms
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["EvaluationPeriods"] == 1
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == {
        "Fn::If": ["HasAlarmTopic", [_ref("AlarmTopicArn")], _ref("AWS::NoValue")]
    }
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""
    assert template["Outputs"]["TitleDeadLetterQueueUrl"]["Value"] == _ref("TitleDLQ")


# --------------------------------------------------------------------------------------------
# samtranslator's translation


@pytest.mark.slow
def test_translated_title_event_source_mapping(translated: Template) -> None:
    mappings = {
        k: v["Properties"]
        for k, v in _resources_of_type(translated, "AWS::Lambda::EventSourceMapping").items()
        if v["Properties"]["FunctionName"] == _ref("TitleFunction")
    }
    assert list(mappings) == ["TitleFunctionTableStream"]
    (mapping,) = mappings.values()
    source = _stream_event()["Properties"]
    assert mapping["EventSourceArn"] == _getatt("Table", "StreamArn")
    assert mapping["FilterCriteria"] == source["FilterCriteria"]  # the local pump's patterns, verbatim
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": _getatt("TitleDLQ", "Arn")}}
    for key in (
        "StartingPosition",
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "MaximumRetryAttempts",
        "MaximumRecordAgeInSeconds",
        "BisectBatchOnFunctionError",
    ):
        assert mapping[key] == source[key], key


@pytest.mark.slow
def test_translated_title_function_uses_its_own_role(translated: Template) -> None:
    fn = translated["Resources"]["TitleFunction"]["Properties"]
    assert fn["Role"] == _getatt("TitleFunctionRole", "Arn")
    assert fn["Handler"] == "shelfwise.entry.titles.lambda_handler"
    assert fn["LoggingConfig"] == {"LogGroup": _ref("TitleFunctionLogGroup")}
    assert fn["TracingConfig"] == {"Mode": "Active"}
    assert fn["Architectures"] == ["arm64"]
    assert fn["Environment"]["Variables"]["SHELFWISE_TABLE_NAME"] == _ref("Table")
    # SAM generated no role with the account-wide stream policy for it
    for name, role in _resources_of_type(translated, "AWS::IAM::Role").items():
        managed = json.dumps(role["Properties"].get("ManagedPolicyArns", []))
        assert "AWSLambdaDynamoDBExecutionRole" not in managed, name
