"""ChatStreamFunction under AWS's own Runtime Interface Emulator (the `aws-lambda-rie` binary that ships
inside the aws-sam-cli install from `make tools`), on loopback, no Docker.

RIE plays Lambda: it starts the runtime command (the exec wrapper, handed a decoy runtime command it
must ignore, as the managed runtime hands it its own), serves the Runtime API to it, and answers
POST /2015-03-31/functions/function/invocations. It buffers the streamed response, so it judges the
framing and the request/response cycle, not the timing (the fake Runtime API tests judge that). It
also ignores the error trailers, so those are judged there too. An invocation that is not an HTTP
request (API Gateway's after-stream completion call, a stray event) is answered `null`, not
streamed: RIE hands that back as the body of a 200.
"""

from __future__ import annotations

import json
import platform
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fixtures.runtime_api import (
    DELIMITER,
    ROOT,
    USER_SUB,
    WRAPPER,
    create_conversation,
    local_backend,
    loop_environment,
    sse_events,
    turn_event,
)

pytestmark = pytest.mark.slow  # needs the SAM CLI environment from `make tools`

_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


def _rie() -> str:
    arch = _ARCH.get(platform.machine().lower(), platform.machine())
    found = sorted(
        (ROOT / ".tools" / "sam").glob(f"lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-{arch}")
    )
    if not found:
        pytest.fail(f"aws-lambda-rie-{arch} is missing from .tools/sam: run `make tools`")
    return str(found[-1])


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Emulator:
    url: str
    services: Any
    process: subprocess.Popen[str]
    lines: list[str]  # RIE's own log and the runtime's, interleaved

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines) if line.startswith('{"level"')]

    def logs_of(self, request_id: str) -> list[dict[str, Any]]:
        """The runtime's Powertools log records of one invocation (RIE's request id)."""
        return [r for r in self.records() if r.get("function_request_id") == request_id]

    def metrics(self) -> list[dict[str, Any]]:
        """The EMF lines the runtime wrote (one per invocation that had a metric to flush)."""
        return [json.loads(line) for line in list(self.lines) if line.startswith('{"_aws"')]

    def invoke(self, event: dict[str, Any]) -> bytes:
        request = urllib.request.Request(self.url, data=json.dumps(event).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200
            body: bytes = response.read()
            return body

    def invoke_seen(self, event: dict[str, Any]) -> tuple[bytes, str, list[str]]:
        """Invoke, then wait until RIE has seen the runtime done with the invocation (its END line:
        the runtime asked for the next one, so its logs and metrics are out). Returns the body, the
        request id RIE gave the invocation, and the lines written meanwhile."""
        mark = len(self.lines)
        body = self.invoke(event)
        deadline = time.monotonic() + 10
        while True:
            written = list(self.lines[mark:])
            started = [line.split()[2] for line in written if line.startswith("START RequestId: ")]
            if started and f"END RequestId: {started[0]}" in written:
                return body, started[0], written
            assert time.monotonic() < deadline, "\n".join(written)
            time.sleep(0.05)


@pytest.fixture(scope="module")
def emulator(offline_model: Any) -> Iterator[Emulator]:
    offline_model.reset()
    offline_model.token_delay_ms = 5
    invoke_port, runtime_port = _free_port(), _free_port()
    with local_backend(offline_model, "stream-rie") as (settings, services):
        env = loop_environment(None, **settings)
        command = [
            _rie(),
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{invoke_port}",
            "--runtime-api-address",
            f"127.0.0.1:{runtime_port}",
            str(WRAPPER),
            "/bin/false",  # the decoy runtime command: the wrapper must not run it
        ]
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        lines: list[str] = []

        def drain() -> None:  # a full pipe would stall RIE and the runtime behind it
            assert process.stdout is not None
            lines.extend(line.rstrip("\n") for line in process.stdout)

        threading.Thread(target=drain, daemon=True).start()
        try:
            deadline = time.monotonic() + 20
            while True:  # RIE accepts invocations once it listens; it starts the runtime on the first
                with closing(socket.socket()) as probe:
                    if probe.connect_ex(("127.0.0.1", invoke_port)) == 0:
                        break
                assert process.poll() is None, "RIE exited"
                assert time.monotonic() < deadline, "RIE did not start listening"
                time.sleep(0.05)
            url = f"http://127.0.0.1:{invoke_port}/2015-03-31/functions/function/invocations"
            yield Emulator(url, services, process, lines)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
            offline_model.reset()
            offline_model.token_delay_ms = 0


def _split(body: bytes) -> tuple[dict[str, Any], bytes]:
    prelude, delimiter, payload = body.partition(DELIMITER)
    assert delimiter, f"no 8-NUL delimiter: {body[:300]!r}"
    parsed: dict[str, Any] = json.loads(prelude)
    assert set(parsed) == {"statusCode", "headers", "cookies"}
    return parsed, payload


def test_a_whole_turn_comes_back_well_framed(emulator: Emulator) -> None:
    conversation_id = create_conversation(emulator.services)
    body = emulator.invoke(turn_event(conversation_id, "How many black Essential Tees in M do we have?"))
    prelude, payload = _split(body)
    assert prelude["statusCode"] == 200
    assert prelude["headers"]["content-type"] == "text/event-stream; charset=utf-8"
    assert prelude["headers"]["cache-control"] == "no-cache"
    assert prelude["headers"]["x-accel-buffering"] == "no"
    frames = sse_events(payload)
    names = [name for name, _ in frames]
    assert names[0] == "start"
    assert names[-2:] == ["usage", "done"]
    assert {"tool", "delta"} <= set(names)
    assert payload.endswith(b"\n\n")
    answer = "".join(data["content"] for name, data in frames if name == "delta")
    assert "17 Essential Tee in black, size M" in answer
    stored = emulator.services.chat.list_messages(USER_SUB, conversation_id, limit=10, cursor=None).items
    assert [(m.role, m.status) for m in stored] == [("user", "complete"), ("assistant", "complete")]
    assert stored[1].content == answer
    # The request id RIE assigned reached the loop's logs (Powertools, via the Runtime API headers).
    started = [
        line.split("RequestId: ")[1].split()[0]
        for line in emulator.lines
        if line.startswith("START RequestId")
    ]
    logged = [r for r in emulator.records() if r["message"] == "streamed"]
    assert started
    assert logged[0]["function_request_id"] == started[0]


def test_the_next_invocation_reuses_the_process_and_answers_json(emulator: Emulator) -> None:
    conversation_id = create_conversation(emulator.services)
    body = emulator.invoke(
        turn_event(conversation_id, "What is our inventory worth?", accept="application/json")
    )
    prelude, payload = _split(body)
    assert prelude["statusCode"] == 200
    assert prelude["headers"]["content-type"] == "application/json"
    message = json.loads(payload)
    assert (message["role"], message["status"]) == ("assistant", "complete")
    # Another user's conversation: an ordinary 404 through the same framing.
    other = turn_event(conversation_id, "mine now?")
    other["requestContext"]["authorizer"]["claims"]["sub"] = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
    prelude, payload = _split(emulator.invoke(other))
    assert prelude["statusCode"] == 404
    assert json.loads(payload)["error"]["code"] == "not_found"
    assert emulator.process.poll() is None  # one runtime process served every invocation


# --------------------------------------------------------------------------------------------------
# Invocations that are not HTTP requests: answered `null`, never an invocation error (the same cases
# as the fake Runtime API's tests in test_lambda_streaming.py)


def _runtime_done_well(written: list[str], request_id: str) -> bool:
    """RIE's own word on the invocation: the runtime answered it, with no invocation error."""
    return any(
        "INVOKE RTDONE(status: success" in line
        for line in written[written.index(f"START RequestId: {request_id} Version: $LATEST") :]
    )


def test_a_completion_invocation_is_acknowledged_silently(emulator: Emulator) -> None:
    """What API Gateway sends after each streamed response: answered like any invocation (`null`),
    never an invocation error, nothing above INFO in the log, nothing counted."""
    conversation_id = create_conversation(emulator.services)
    streamed = str(uuid.uuid4())
    body, request_id, written = emulator.invoke_seen(
        {"invokeCompletionStatus": "Success", "requestId": streamed}
    )
    assert body == b"null"
    assert _runtime_done_well(written, request_id), written
    assert "errorType" not in "\n".join(written)
    # A success is not news: no warning, no error, no StreamCompletionNotSuccess.
    levels = {r["level"] for r in emulator.logs_of(request_id)}
    assert levels <= {"DEBUG", "INFO"}, emulator.logs_of(request_id)
    emf = [json.loads(line) for line in written if line.startswith('{"_aws"')]
    assert not [m for m in emf if "StreamCompletionNotSuccess" in m], emf
    # The same process goes on serving: the next real turn is streamed whole.
    prelude, payload = _split(
        emulator.invoke(turn_event(conversation_id, "How many black Essential Tees in M do we have?"))
    )
    assert prelude["statusCode"] == 200
    names = [name for name, _ in sse_events(payload)]
    assert names[0] == "start"
    assert names[-1] == "done"
    assert emulator.process.poll() is None
    # One runtime process for the module: RIE never had to start (init) another.
    assert len([line for line in emulator.lines if "INIT START" in line]) == 1


def test_a_completion_that_did_not_succeed_is_counted(emulator: Emulator) -> None:
    streamed = str(uuid.uuid4())
    body, request_id, written = emulator.invoke_seen(
        {"invokeCompletionStatus": "Failure", "requestId": streamed}
    )
    assert body == b"null"
    assert _runtime_done_well(written, request_id), written
    logs = emulator.logs_of(request_id)
    assert [(r["level"], r["message"]) for r in logs] == [
        ("WARNING", "a streamed response did not complete")
    ], logs
    assert (logs[0]["invoke_completion_status"], logs[0]["stream_request_id"]) == ("Failure", streamed)
    # The EMF line of that invocation: one StreamCompletionNotSuccess, with the status beside it.
    emf = [m for m in emulator.metrics() if m.get("stream_request_id") == streamed]
    assert len(emf) == 1, emulator.metrics()
    assert emf[0]["StreamCompletionNotSuccess"] == [1.0]
    assert emf[0]["invoke_completion_status"] == "Failure"
    names = {m["Name"] for m in emf[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert "StreamCompletionNotSuccess" in names
    assert "ApiRequests" not in names  # not a request
    # ... and the next invocation is served as usual.
    prelude, payload = _split(emulator.invoke(turn_event("0" * 32, "still there?")))
    assert prelude["statusCode"] == 404
    assert json.loads(payload)["error"]["code"] == "not_found"


def test_an_unknown_event_is_warned_about_not_an_error(emulator: Emulator) -> None:
    body, request_id, written = emulator.invoke_seen(
        {"source": "aws.events", "detail": {"secret": "do not log me"}}
    )
    assert body == b"null"
    assert _runtime_done_well(written, request_id), written
    logs = emulator.logs_of(request_id)
    assert [(r["level"], r["message"]) for r in logs] == [
        ("WARNING", "ignored an event that is not an HTTP request")
    ], logs
    assert logs[0]["event_keys"] == ["detail", "source"]
    assert "do not log me" not in "\n".join(emulator.lines)
    prelude, payload = _split(emulator.invoke(turn_event("0" * 32, "still there?")))
    assert prelude["statusCode"] == 404
    assert json.loads(payload)["error"]["code"] == "not_found"
    assert emulator.process.poll() is None
