"""Under `make run` one process hosts what are three Lambda functions on AWS, with one Powertools
Logger: the app under uvicorn (ApiFunction's and ChatStreamFunction's routes) and TitleFunction's
handler on the stream pump's thread. Every log line must say which function wrote it, and an API
line must never carry the id of a title invocation."""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from infra.local.api_routes import ApiRoutes
from infra.local.embedded_dynamodb import EmbeddedDynamoDB
from infra.local.flush_metrics import FlushMetrics
from infra.local.stream_pump import StreamPump
from infra.local.table import create_table
from shelfwise.entry.titles import make_handler
from shelfwise.observability import SERVICE, logger
from shelfwise.web.app import create_app
from tests.fixtures.app import bearer, chat_settings, make_settings

TABLE = "shelfwise-log-identity"


def test_each_local_line_names_its_function_and_api_lines_never_carry_a_title_request_id(
    model: Any,
) -> None:
    buffer = io.StringIO()
    capture = logging.StreamHandler(buffer)
    capture.setFormatter(logger.registered_formatter)
    logging.getLogger(SERVICE).addHandler(capture)
    try:
        with EmbeddedDynamoDB() as db:
            create_table(
                boto3.client("dynamodb", endpoint_url=db.endpoint_url, region_name="us-east-1"), TABLE
            )
            settings = make_settings(TABLE, dynamodb_endpoint_url=db.endpoint_url, **chat_settings(model))
            app = create_app(settings)
            headers = bearer("ada")
            with (
                TestClient(FlushMetrics(app)) as client,  # the app as `make run` serves it
                StreamPump(
                    endpoint_url=db.endpoint_url,
                    table_name=TABLE,
                    handler=make_handler(lambda: app.state.services),
                ) as pump,
            ):
                conversation = client.post("/conversations", json={}, headers=headers).json()["id"]
                answered = client.post(
                    f"/conversations/{conversation}/messages",
                    json={"content": "How many black hoodies in M do we have?"},
                    headers={**headers, "Accept": "application/json"},
                )
                assert answered.status_code == 200, answered.text
                deadline = time.monotonic() + 10
                while "title generated" not in buffer.getvalue():  # TitleFunction ran on the pump's thread
                    assert time.monotonic() < deadline, "no title within 10 s"
                    time.sleep(0.02)
                assert pump.wait_until_idle(timeout=10)
                # After the title invocation: a streamed turn that fails upstream, and a buffered delete.
                model.fail("server_error", times=20, task="chat")
                client.post(
                    f"/conversations/{conversation}/messages",
                    json={"content": "And in L?"},
                    headers={**headers, "Accept": "application/json"},
                )
                assert client.delete(f"/conversations/{conversation}", headers=headers).status_code == 204
    finally:
        logging.getLogger(SERVICE).removeHandler(capture)

    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    by_message = {line["message"]: line for line in lines}
    title = by_message["title generated"]
    assert title["function_name"] == "TitleFunction"
    title_request_id = title["function_request_id"]

    deleted = by_message["conversation deleted"]
    assert deleted["function_name"] == "ApiFunction"
    turn_lines = [line for line in lines if line["message"].startswith("turn ended")]
    assert turn_lines, [line["message"] for line in lines]
    assert {line["function_name"] for line in turn_lines} == {"ChatStreamFunction"}

    api_lines = [deleted, *turn_lines]
    for line in api_lines:
        assert title_request_id not in json.dumps(line), line
        assert line.get("correlation_id"), line  # its own request's id
        assert "conversation_id" not in line or line["conversation_id"] == conversation
    assert len({line["correlation_id"] for line in api_lines}) == 2  # one per request


@pytest.mark.parametrize(
    ("method", "path", "function"),
    [
        ("POST", "/conversations/c1/messages", "ChatStreamFunction"),
        ("GET", "/conversations/c1/messages", "ApiFunction"),
        ("POST", "/conversations", "ApiFunction"),
        ("POST", "/conversations/c1/messages/m1/stop", "ApiFunction"),
        ("GET", "/products", "ApiFunction"),
        ("GET", "/health", "ApiFunction"),
    ],
)
def test_requests_are_attributed_to_the_function_template_yaml_routes_them_to(
    method: str, path: str, function: str
) -> None:
    assert ApiRoutes.from_template().function_for(method, path) == function
