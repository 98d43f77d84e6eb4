"""ChatStreamFunction's runtime loop, run for real against a fake Lambda Runtime API.

The loop runs as Lambda runs it: a subprocess started through the exec wrapper (layers/stream/bootstrap,
given a decoy runtime command it must ignore), talking HTTP to a fake Runtime API on loopback that
timestamps every chunk as it arrives. Behind the app: the embedded DynamoDB (moto server) and the
offline model pacing its tokens. The failures the real app never makes on purpose come from the
test-only apps in tests/fixtures/stream_apps.py, served by the same loop.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures import stream_apps
from tests.fixtures.runtime_api import (
    DELIMITER,
    FUNCTION_ARN,
    USER_SUB,
    FakeRuntimeAPI,
    StreamProcess,
    StreamStack,
    create_conversation,
    local_backend,
    loop_environment,
    sse_events,
    stream_stack,
    turn_event,
)

DELAY_MS = 30
STOCK_QUESTION = "How many black Essential Tees in M do we have?"
# Without a stock question the offline model answers in prose (one word per chunk): a long answer.
CHATTY = "tell me a long story about our store please, with plenty of warmth and colour"


@pytest.fixture(scope="module")
def stack(offline_model: Any) -> Iterator[StreamStack]:
    """One loop process for the module: every test's invocations go to the same process, as they
    would to one warm Lambda execution environment."""
    with stream_stack(offline_model, table="stream-e2e") as stack:
        yield stack


@pytest.fixture
def paced(offline_model: Any) -> Iterator[Any]:
    offline_model.reset()
    offline_model.token_delay_ms = DELAY_MS
    yield offline_model
    offline_model.reset()
    offline_model.token_delay_ms = 0


# --------------------------------------------------------------------------------------------------
# The real app


@pytest.mark.usefixtures("paced")
def test_tokens_reach_the_runtime_api_as_they_come(stack: StreamStack) -> None:
    conversation_id = create_conversation(stack.services)
    # A first turn warms the process (imports, clients, the token vocabulary): the timing below is
    # a warm invocation's.
    warm_up = stack.api.invoke(
        turn_event(create_conversation(stack.services), "hi", accept="application/json")
    )
    assert stack.api.wait_response(warm_up).prelude["statusCode"] == 200
    request_id = stack.api.invoke(turn_event(conversation_id, CHATTY))
    response = stack.api.wait_response(request_id)

    # The request the loop made: streaming mode, chunked, the HTTP integration content type, and the
    # trailers it may use declared up front.
    assert response.headers["lambda-runtime-function-response-mode"] == "streaming"
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.headers["content-type"] == "application/vnd.awslambda.http-integration-response"
    assert response.headers["trailer"] == (
        "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"
    )
    # The prelude, byte for byte, in a chunk of its own, ended by the 8 NUL bytes.
    assert response.chunks[0][1] == (
        b'{"statusCode":200,"headers":{"cache-control":"no-cache","x-accel-buffering":"no",'
        b'"content-type":"text/event-stream; charset=utf-8"},"cookies":[]}' + DELIMITER
    )
    assert response.complete
    assert response.trailers == {}

    # One SSE frame per chunk: start, the deltas, usage, done.
    frames = [sse_events(data) for _, data in response.payload_chunks]
    assert all(len(f) == 1 for f in frames), frames
    names = [f[0][0] for f in frames]
    assert names[0] == "start"
    assert names[-2:] == ["usage", "done"]
    assert set(names[1:-2]) == {"delta"}
    done = frames[-1][0][1]
    assert frames[0][0][1]["conversation_id"] == conversation_id

    # The chunks arrived over the answer's duration, not at its end: from the first token to the
    # last, the answer took (latency - ttft); the chunks are spread over most of that.
    deltas = [t for (t, _), f in zip(response.payload_chunks, frames, strict=True) if f[0][0] == "delta"]
    assert len(deltas) >= 15
    spread = deltas[-1] - deltas[0]
    paced_for = (len(deltas) - 1) * DELAY_MS / 1000
    assert spread >= 0.6 * paced_for, (spread, paced_for)
    first_chunk, last_chunk = response.chunks[0][0], response.chunks[-1][0]
    streaming_s = (done["latency_ms"] - done["ttft_ms"]) / 1000
    assert last_chunk - first_chunk >= 0.6 * streaming_s, (last_chunk - first_chunk, streaming_s)
    # The prelude left with the first token (the app holds its headers until then), not at the end.
    since_dispatch = first_chunk - stack.api.dispatched_at[request_id]
    assert since_dispatch < done["ttft_ms"] / 1000 + 0.5, (since_dispatch, done["ttft_ms"])
    print(
        f"\n{len(deltas)} deltas; chunk spread {spread * 1000:.0f} ms (paced {paced_for * 1000:.0f} ms); "
        f"prelude {since_dispatch * 1000:.0f} ms after dispatch (ttft {done['ttft_ms']} ms); "
        f"answer {done['latency_ms']} ms"
    )

    # What the client saw is what was stored.
    text = "".join(f[0][1]["content"] for f in frames if f[0][0] == "delta")
    stored = stack.services.chat.list_messages(USER_SUB, conversation_id, limit=10, cursor=None).items
    assert [(m.role, m.status) for m in stored] == [("user", "complete"), ("assistant", "complete")]
    assert stored[1].content == text
    assert stored[1].id == done["message_id"]


@pytest.mark.usefixtures("paced")
def test_a_stock_answer_calls_the_tools_with_the_callers_identity(stack: StreamStack) -> None:
    conversation_id = create_conversation(stack.services)
    request_id = stack.api.invoke(turn_event(conversation_id, STOCK_QUESTION))
    response = stack.api.wait_response(request_id)
    assert response.prelude["statusCode"] == 200
    frames = sse_events(response.payload)
    assert ("tool", {"name": "search_products", "status": "running"}) in frames
    answer = "".join(data["content"] for name, data in frames if name == "delta")
    assert "17 Essential Tee in black, size M" in answer  # read live from the table
    assert frames[-1][0] == "done"


def test_an_upstream_failure_mid_stream_ends_with_an_sse_error_event(stack: StreamStack, paced: Any) -> None:
    conversation_id = create_conversation(stack.services)
    paced.fail("midstream", times=1, task="chat")
    request_id = stack.api.invoke(turn_event(conversation_id, CHATTY))
    response = stack.api.wait_response(request_id)
    assert response.prelude["statusCode"] == 200
    assert response.complete
    assert response.trailers == {}
    frames = sse_events(response.payload)
    names = [name for name, _ in frames]
    assert "delta" in names
    assert names[-1] == "error"
    error = frames[-1][1]
    assert (error["code"], error["retryable"]) == ("upstream_error", True)
    stored = stack.services.chat.list_messages(USER_SUB, conversation_id, limit=10, cursor=None).items
    assert [(m.role, m.status) for m in stored] == [("user", "complete"), ("assistant", "interrupted")]
    assert stored[1].id == error["message_id"]


def test_a_client_that_leaves_does_not_end_the_turn(stack: StreamStack, paced: Any) -> None:
    conversation_id = create_conversation(stack.services)
    paced.token_delay_ms = 60
    # The fake drops the connection after the prelude and three frames: what the loop sees when the
    # client behind API Gateway goes away (on AWS it would not even be told).
    request_id = stack.api.invoke(turn_event(conversation_id, CHATTY), drop_after_chunks=3)
    response = stack.api.wait_response(request_id)
    assert response.dropped
    said = "".join(d["content"] for n, d in sse_events(response.payload) if n == "delta")
    assert said

    log = stack.process.wait_for_log(request_id, "the client left mid-answer")
    assert log["disconnected"] is True
    # The turn is the server's: the invocation ends only once the answer has, whole.
    paced.token_delay_ms = 0
    again = stack.api.wait_response(
        stack.api.invoke(turn_event(conversation_id, "short one", accept="application/json"))
    )
    assert again.prelude["statusCode"] == 200, again.payload
    stored = stack.services.chat.list_messages(USER_SUB, conversation_id, limit=10, cursor=None).items
    assert [(m.role, m.status) for m in stored][:2] == [("user", "complete"), ("assistant", "complete")]
    assert stored[1].content.startswith(said)
    assert len(stored[1].content) > len(said)
    assert stored[1].finish_reason == "stop"


@pytest.mark.usefixtures("paced")
def test_invocations_in_a_row_each_with_its_request_id_logs_and_metrics(stack: StreamStack) -> None:
    conversation_id = create_conversation(stack.services)
    asked = stack.api.next_calls  # counts the `next` the loop is waiting on now
    events = [
        turn_event(conversation_id, "first question", accept="application/json"),
        turn_event(conversation_id, "second question", accept="application/json"),
    ]
    request_ids = [stack.api.invoke(event) for event in events]
    responses = [stack.api.wait_response(request_id) for request_id in request_ids]
    stack.api.wait_next_calls(asked + 2)  # both served, and the loop is back asking for more

    for request_id, event, response in zip(request_ids, events, responses, strict=True):
        # Accept: application/json through the same streaming function: one JSON answer.
        assert response.prelude["headers"]["content-type"] == "application/json"
        message = json.loads(response.payload)
        assert (message["role"], message["status"]) == ("assistant", "complete")
        # Powertools: the Lambda request id and the API Gateway request id on the invocation's logs.
        log = stack.process.wait_for_log(request_id, "streamed")
        assert log["correlation_id"] == event["requestContext"]["requestId"]
        assert log["function_arn"] == FUNCTION_ARN
        assert log["function_name"] == "ChatStreamFunction"
        assert log["cold_start"] is False
        assert log["status"] == 200
        assert log["xray_trace_id"].startswith("1-")  # from Lambda-Runtime-Trace-Id
    stored = stack.services.chat.list_messages(USER_SUB, conversation_id, limit=10, cursor=None).items
    assert [m.content for m in stored if m.role == "user"] == ["first question", "second question"]

    # Metrics are flushed per invocation (EMF on stdout), not held until the process ends.
    def api_metrics() -> list[dict[str, Any]]:
        return [r for r in stack.process.records() if "_aws" in r and "ApiRequests" in r]

    stack.process.wait_until(lambda: len(api_metrics()) >= 2)  # one line per invocation
    emf = api_metrics()
    assert emf[-1]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Shelfwise"


def _logs_of(process: StreamProcess, request_id: str) -> list[dict[str, Any]]:
    return [r for r in process.records() if r.get("function_request_id") == request_id]


def test_a_completion_invocation_is_acknowledged_silently(stack: StreamStack) -> None:
    """What API Gateway sends after each streamed response: answered like any invocation (an empty
    `null` answer), never an invocation error (which would count in the Errors metric every time)."""
    stack.api.errors.clear()
    streamed = stack.api.invoke(turn_event("0" * 32, "anyone there?"))
    assert stack.api.wait_response(streamed).prelude["statusCode"] == 404
    completion = stack.api.invoke({"invokeCompletionStatus": "Success", "requestId": streamed})
    assert stack.api.wait_answer(completion) == b"null"
    assert stack.api.errors == []
    assert completion not in stack.api.responses  # not streamed: nothing for a client
    # The process goes on serving: the next real invocation is answered.
    after = stack.api.wait_response(stack.api.invoke(turn_event("0" * 32, "still there?")))
    assert after.prelude["statusCode"] == 404
    assert stack.process.running
    levels = {r["level"] for r in _logs_of(stack.process, completion)}
    assert levels <= {"DEBUG", "INFO"}, _logs_of(stack.process, completion)
    assert stack.api.errors == []


def test_a_completion_that_did_not_succeed_is_counted(stack: StreamStack) -> None:
    stack.api.errors.clear()
    streamed = str(uuid.uuid4())
    completion = stack.api.invoke({"invokeCompletionStatus": "Failure", "requestId": streamed})
    assert stack.api.wait_answer(completion) == b"null"
    assert stack.api.errors == []
    log = stack.process.wait_for_log(completion, "a streamed response did not complete")
    assert (log["level"], log["invoke_completion_status"], log["stream_request_id"]) == (
        "WARNING",
        "Failure",
        streamed,
    )
    # The EMF line of that invocation: one StreamCompletionNotSuccess, with the status beside it.
    emf = stack.process.wait_until(
        lambda: [r for r in stack.process.records() if "_aws" in r and r.get("stream_request_id") == streamed]
    )
    assert emf[0]["StreamCompletionNotSuccess"] == [1.0]
    assert emf[0]["invoke_completion_status"] == "Failure"
    names = {m["Name"] for m in emf[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert "StreamCompletionNotSuccess" in names
    assert "ApiRequests" not in names  # not a request


def test_an_unknown_event_is_warned_about_not_an_error(stack: StreamStack) -> None:
    stack.api.errors.clear()
    request_id = stack.api.invoke({"source": "aws.events", "detail": {"secret": "do not log me"}})
    assert stack.api.wait_answer(request_id) == b"null"
    assert stack.api.errors == []
    assert request_id not in stack.api.responses
    log = stack.process.wait_for_log(request_id, "ignored an event that is not an HTTP request")
    assert log["level"] == "WARNING"
    assert log["event_keys"] == ["detail", "source"]
    assert "do not log me" not in stack.process.output()
    warnings = [r for r in _logs_of(stack.process, request_id) if r["level"] in ("WARNING", "ERROR")]
    assert len(warnings) == 1, warnings
    after = stack.api.wait_response(stack.api.invoke(turn_event("0" * 32, "still there?")))
    assert after.prelude["statusCode"] == 404


def test_a_malformed_api_gateway_event_is_an_invocation_error(stack: StreamStack) -> None:
    """API Gateway-shaped but not a request Mangum can read: that is a fault worth an error."""
    stack.api.errors.clear()
    request_id = stack.api.invoke({"requestContext": {"requestId": "x"}, "detail": {}})
    error = stack.api.wait_error()
    assert error.path == f"/2018-06-01/runtime/invocation/{request_id}/error"
    assert error.headers["lambda-runtime-function-error-type"] == "NotAnHttpRequest"
    assert error.body["errorType"] == "NotAnHttpRequest"
    assert request_id not in stack.api.responses
    stack.api.errors.clear()


def test_the_runtime_apis_reply_to_a_stream_is_read(stack: StreamStack) -> None:
    """Lambda answers a streamed response once its body has ended; a refusal (here: too large) is
    only seen by a loop that reads that answer, and it is logged."""
    refusal = b'{"errorMessage":"Response payload size exceeded","errorType":"Function.ResponseSizeTooLarge"}'
    # An SSE answer: Starlette's streaming response is what used to cancel the read of the reply.
    event = turn_event(create_conversation(stack.services), "hi")
    request_id = stack.api.invoke(event, refuse_with=(413, refusal))
    response = stack.api.wait_response(request_id)
    assert response.complete
    assert sse_events(response.payload)[-1][0] == "done"
    log = stack.process.wait_for_log(request_id, "the Runtime API did not acknowledge the response")
    assert log["level"] == "WARNING"
    assert "413" in log["runtime_error"]
    assert "Function.ResponseSizeTooLarge" in log["runtime_error"]
    # An answer that is accepted is read too, and logged as streamed (no warning).
    accepted = stack.api.invoke(turn_event("0" * 32, "anyone there?"))
    stack.api.wait_response(accepted)
    assert stack.process.wait_for_log(accepted, "streamed")["status"] == 404
    assert all(r["level"] == "INFO" for r in _logs_of(stack.process, accepted)), _logs_of(
        stack.process, accepted
    )


def test_the_unknown_conversation_is_an_ordinary_404(stack: StreamStack) -> None:
    request_id = stack.api.invoke(turn_event("0" * 32, "anyone there?"))
    response = stack.api.wait_response(request_id)
    assert response.prelude == {
        "statusCode": 404,
        "headers": {"content-length": str(len(response.payload)), "content-type": "application/json"},
        "cookies": [],
    }
    assert json.loads(response.payload)["error"]["code"] == "not_found"


# --------------------------------------------------------------------------------------------------
# Failures only a test app makes, through the same loop


def _test_app_process(api: FakeRuntimeAPI, name: str) -> StreamProcess:
    return StreamProcess(loop_environment(api), app=f"tests.fixtures.stream_apps:{name}")


def test_an_exception_after_the_first_byte_goes_in_the_error_trailers() -> None:
    with FakeRuntimeAPI() as api, _test_app_process(api, "fails_after_first_byte") as process:
        first = api.invoke(turn_event("a" * 32, "x"))
        response = api.wait_response(first)
        assert response.prelude["statusCode"] == 200  # the client already had its 200
        assert response.payload == stream_apps.FIRST_BYTES
        assert response.complete
        # A generic error for the caller; what went wrong only in the function's own log.
        assert response.error_trailer() == (
            "Function.InternalError",
            {
                "errorMessage": "the function failed after its response had started",
                "errorType": "Function.InternalError",
            },
        )
        assert stream_apps.BROKE_OFF not in json.dumps(response.trailers)
        assert "RuntimeError" not in json.dumps(response.trailers)
        log = process.wait_for_log(first, "the answer broke off after its first byte")
        assert stream_apps.BROKE_OFF in log["exception"]
        assert log["exception_name"] == "RuntimeError"
        # ... and the process serves the next invocation.
        second = api.invoke(turn_event("a" * 32, "x"))
        assert api.wait_response(second).error_trailer() is not None


def test_an_exception_before_the_response_started_is_a_500_prelude() -> None:
    with FakeRuntimeAPI() as api, _test_app_process(api, "fails_before_start") as process:
        request_id = api.invoke(turn_event("a" * 32, "x"))
        response = api.wait_response(request_id)
        assert response.prelude == {
            "statusCode": 500,
            "headers": {"content-type": "application/json"},
            "cookies": [],
        }
        assert json.loads(response.payload) == {
            "error": {"code": "internal_error", "message": "something went wrong on our side"}
        }
        assert response.trailers == {}
        log = process.wait_for_log(request_id, "the request failed")
        assert "LookupError" in log["exception"]


def test_a_response_the_app_leaves_open_ends_with_the_error_trailers() -> None:
    with FakeRuntimeAPI() as api, _test_app_process(api, "leaves_response_open") as process:
        response = api.wait_response(api.invoke(turn_event("a" * 32, "x")))
        assert response.payload == b"partial"
        trailer = response.error_trailer()
        assert trailer is not None
        assert trailer[0] == "Function.InternalError"
        log = process.wait_for_log(response.request_id, "the answer broke off after its first byte")
        assert log["exception_name"] == "IncompleteResponse"


@pytest.mark.parametrize(
    ("app", "settings", "error_type"),
    [
        # the real app through the wrapper, with settings it refuses
        (None, {"SHELFWISE_AUTH_MODE": "bogus"}, "ValidationError"),
        # a module that is not there (what a missing layer looks like)
        ("shelfwise.entry.no_such_module:create_app", {}, "ModuleNotFoundError"),
    ],
)
def test_an_init_failure_goes_to_init_error(
    app: str | None, settings: dict[str, str], error_type: str
) -> None:
    with FakeRuntimeAPI() as api:
        process = StreamProcess(loop_environment(api, **settings), app=app)
        with process:
            error = api.wait_error()
            assert process.wait(30) == 1, process.output()
        assert error.path == "/2018-06-01/runtime/init/error"
        assert error.headers["lambda-runtime-function-error-type"] == error_type
        assert error.body["errorType"] == error_type
        assert error.body["errorMessage"]
        assert api.next_calls == 0  # no invocation is asked for after a failed init
        assert "init failed" in process.output()


def test_each_invocation_joins_its_own_xray_trace(offline_model: Any) -> None:
    """With tracing on (as on AWS), the Tracer's handler segment and the DynamoDB calls go to the
    X-Ray daemon under the trace id the Runtime API handed out with that invocation."""
    offline_model.reset()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as daemon,
        local_backend(offline_model, "stream-xray") as (settings, services),
        FakeRuntimeAPI() as api,
    ):
        daemon.bind(("127.0.0.1", 0))
        daemon.settimeout(0.5)
        env = loop_environment(api, **settings)
        env.pop("POWERTOOLS_TRACE_DISABLED")
        env.update(
            LAMBDA_TASK_ROOT="/var/task",  # what makes the X-Ray SDK take the Lambda context
            AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{daemon.getsockname()[1]}",
            AWS_XRAY_CONTEXT_MISSING="LOG_ERROR",
        )
        with StreamProcess(env):
            traces = []
            for question in ("first question", "second question"):
                request_id = api.invoke(turn_event(create_conversation(services), question))
                assert api.wait_response(request_id).prelude["statusCode"] == 200
                traces.append(api.traces[request_id])
            # The SDK sends each segment as a UDP datagram: a JSON header line, then the segment.
            segments: list[dict[str, Any]] = []
            roots = {t.split(";")[0].removeprefix("Root=") for t in traces}
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                handled = {s["trace_id"] for s in segments if s["name"] == "## stream_invocation"}
                if roots <= handled:
                    break
                try:
                    header, _, body = daemon.recv(65536).partition(b"\n")
                except TimeoutError:
                    continue
                assert json.loads(header)["format"] == "json"
                segments.append(json.loads(body))
    for trace in traces:
        root = trace.split(";")[0].removeprefix("Root=")
        parent = trace.split(";")[1].removeprefix("Parent=")
        mine = [s for s in segments if s["trace_id"] == root]
        assert {"## stream_invocation", "dynamodb"} <= {s["name"] for s in mine}, segments
        assert all(s["parent_id"] == parent for s in mine)
