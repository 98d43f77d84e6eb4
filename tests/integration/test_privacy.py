"""Privacy: what users say never reaches a log line or a trace.

A marker goes into the user's messages (and so into the offline model's answers, which quote them,
into the titles generated from them and into the rolling summary), into a title set by PATCH and into
the bearer token of every request. Every payload in events/ then runs through the real handler of
its function, with X-Ray tracing on as on Lambda: ApiFunction, TitleFunction and PurgeFunction in
this process, ChatStreamFunction's loop as a subprocess under the fake Runtime API. Each process
sends its trace documents to a stand-in X-Ray daemon (UDP on loopback), which keeps them as the real
one would forward them. Every log line (Powertools' and any library's), every EMF line and every
trace document is searched for the marker: it must be in what the user reads and nowhere else.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from moto import mock_aws

from infra.local.demo import seed
from infra.local.table import create_table
from shelfwise.entry import api, purge, titles
from shelfwise.observability import logger, metrics, trace_botocore, tracer
from shelfwise.services import Services
from shelfwise.settings import Settings, get_settings
from shelfwise.storage.codec import decode_item, encode_item
from shelfwise.storage.dynamo import Dynamo, dynamodb_client
from shelfwise.storage.items import ConversationItem
from tests.fixtures.conversations import seed_first_exchange
from tests.fixtures.runtime_api import (
    USER_SUB,
    FakeRuntimeAPI,
    StreamProcess,
    loop_environment,
    sse_events,
    stack_settings,
    turn_event,
)

EVENTS = Path(__file__).resolve().parents[2] / "events"
NOT_EVENTS = {"env.local.json", "env.start-api.json"}  # `sam local --env-vars` files
CONVERSATION = "c0ffee0000000000000000000000beef"  # the one events/api/conversation-create.json makes

# Letters only: the offline model's summary drops digits, and the marker must survive into it.
MARKER = "zebra-" + uuid.uuid4().hex[:10].translate(str.maketrans("0123456789abcdef", "ghijklmnopqrstuv"))
QUESTION = f"Please remember {MARKER} for me"  # the offline model answers 'You said: "..."'
FOLLOW_UP = f"And {MARKER} once more"
TITLE = f"Notes about {MARKER}"
TOKEN = f"Bearer eyJ{MARKER}.eyJzdWIiOiJleGFtcGxlIn0.c2lnbmF0dXJl"
API_KEY = f"sk-{MARKER}"


def has_marker(text: str) -> bool:
    return MARKER in text.lower()  # a generated title may capitalise it


def marked(text: str) -> list[str]:
    """The lines of `text` that hold the marker (for the failure message)."""
    return [line[:2000] for line in text.splitlines() if has_marker(line)]


# ---------------------------------------------------------------------------------------------------
# A stand-in X-Ray daemon, and X-Ray on in this process as on Lambda


class XRayDaemon:
    """What the X-Ray SDK sends the daemon: UDP datagrams, each a header line and one segment or
    subsegment document (JSON), kept as they arrived."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self._datagrams: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="xray-daemon", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"{host}:{port}"

    def __enter__(self) -> XRayDaemon:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._datagrams.append(data)

    def raw(self) -> str:
        with self._lock:
            return "\n".join(data.decode("utf-8", "replace") for data in self._datagrams)

    def documents(self) -> list[dict[str, Any]]:
        with self._lock:
            datagrams = list(self._datagrams)
        documents = []
        for data in datagrams:
            header, _, body = data.decode().partition("\n")
            assert json.loads(header) == {"format": "json", "version": 1}, header
            documents.append(json.loads(body))
        return documents

    def entities(self) -> list[dict[str, Any]]:
        """Every document and every subsegment nested in one."""
        found: list[dict[str, Any]] = []
        pending = self.documents()
        while pending:
            entity = pending.pop()
            found.append(entity)
            pending.extend(entity.get("subsegments", []))
        return found

    def wait_for(self, check: Callable[[list[dict[str, Any]]], bool], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not check(self.entities()):
            assert time.monotonic() < deadline, f"not in the traces: {[e['name'] for e in self.entities()]}"
            time.sleep(0.05)


def traced_as(entities: list[dict[str, Any]], trace_root: str) -> set[str]:
    """The names of the entities of one trace."""
    return {e["name"] for e in entities if e.get("trace_id") == trace_root}


def _clear_caches() -> None:
    for cached in (tracer, trace_botocore, get_settings, dynamodb_client, api._handler, titles._services):
        cached.cache_clear()
    purge._services.cache_clear()


@pytest.fixture
def xray(monkeypatch: pytest.MonkeyPatch) -> Iterator[XRayDaemon]:
    """X-Ray on for the handlers run in this process, as Lambda has it: the Tracer enabled (a Lambda
    environment, tracing not disabled), the SDK's Lambda context (the invocation's trace comes from
    `_X_AMZN_TRACE_ID`; subsegments are sent as they end), botocore patched by storage as on Lambda,
    everything sent to the stand-in daemon. All of it is undone afterwards."""
    import botocore.client
    import botocore.endpoint
    from aws_lambda_powertools import Tracer
    from aws_xray_sdk import global_sdk_config  # type: ignore[import-untyped]
    from aws_xray_sdk.core import patcher, xray_recorder  # type: ignore[import-untyped]
    from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter  # type: ignore[import-untyped]
    from aws_xray_sdk.core.lambda_launcher import LambdaContext  # type: ignore[import-untyped]

    with XRayDaemon() as daemon:
        monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
        for name in (
            "POWERTOOLS_TRACE_DISABLED",
            "POWERTOOLS_TRACER_CAPTURE_RESPONSE",
            "POWERTOOLS_TRACER_CAPTURE_ERROR",
            "AWS_SAM_LOCAL",
            "AWS_XRAY_SDK_ENABLED",
        ):
            monkeypatch.delenv(name, raising=False)
        # A Tracer made earlier outside Lambda disabled the SDK and Powertools' shared Tracer config.
        was_enabled = global_sdk_config.sdk_enabled()
        global_sdk_config.set_sdk_enabled(True)
        monkeypatch.setattr(Tracer, "_config", copy.copy(Tracer._default_config))
        monkeypatch.setattr(xray_recorder, "_context", LambdaContext())
        monkeypatch.setattr(xray_recorder, "_emitter", UDPEmitter(daemon.address))
        monkeypatch.setattr(xray_recorder, "streaming_threshold", 0)
        client_class, endpoint_class = botocore.client.BaseClient, botocore.endpoint.Endpoint
        monkeypatch.setattr(client_class, "_make_api_call", vars(client_class)["_make_api_call"])
        monkeypatch.setattr(endpoint_class, "prepare_request", vars(endpoint_class)["prepare_request"])
        monkeypatch.setattr(patcher, "_PATCHED_MODULES", set())
        _clear_caches()
        try:
            yield daemon
        finally:
            _clear_caches()
            if hasattr(botocore.client, "_xray_enabled"):  # the patch's own "done" flag
                delattr(botocore.client, "_xray_enabled")
            global_sdk_config.set_sdk_enabled(was_enabled)


def invocation_trace(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh sampled trace for the next invocation in this process (what Lambda sets); its root."""
    root = f"1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={root};Parent={uuid.uuid4().hex[:16]};Sampled=1")
    return root


@dataclass
class Logs:
    buffer: io.StringIO

    def text(self) -> str:
        return self.buffer.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines() if line.startswith("{")]


@pytest.fixture
def logs() -> Iterator[Logs]:
    """Every log record of this process, formatted as Powertools writes it: a handler on the root
    logger (Powertools' logger propagates to it, as every library's does), with the shelfwise logger
    at DEBUG, the most the template's LogLevel allows. (Powertools' own handler writes to the stdout
    it found at import, which no capture fixture sees.)"""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logger.registered_formatter)
    root, ours = logging.getLogger(), logging.getLogger(logger.name)
    level = ours.level
    root.addHandler(handler)
    ours.setLevel(logging.DEBUG)
    try:
        yield Logs(buffer)
    finally:
        ours.setLevel(level)
        root.removeHandler(handler)


class FakeContext:
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    log_group_name = "/aws/lambda/shelfwise"
    log_stream_name = "2026/11/29/[$LATEST]0123456789abcdef"

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def payload(name: str, **body: Any) -> dict[str, Any]:
    """An events/ payload; a request's bearer token carries the marker, `body` goes into its body."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    if "httpMethod" in event:
        event["requestContext"]["requestId"] = str(uuid.uuid4())
        with_token(event)
    if body:
        event["body"] = json.dumps({**json.loads(event["body"]), **body})
    return event


def encode_key(user_id: str, conversation_id: str) -> dict[str, Any]:
    return encode_item(ConversationItem.key(user_id, conversation_id))


def with_token(event: dict[str, Any]) -> dict[str, Any]:
    """The request with the marker's bearer token (Cognito mode: API Gateway has checked it)."""
    event["headers"]["Authorization"] = TOKEN
    event["multiValueHeaders"]["Authorization"] = [TOKEN]
    return event


# ---------------------------------------------------------------------------------------------------
# The whole product: every payload, turns that succeed and fail, titles made and set, a summary


@contextmanager
def demo_backend(model: Any, table: str) -> Iterator[tuple[dict[str, str], Services]]:
    """The embedded DynamoDB (the subprocess reaches it too) with a template-built table holding the
    demo catalog; the settings that point at it and at the offline model, and services over it."""
    from infra.local.embedded_dynamodb import EmbeddedDynamoDB

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with EmbeddedDynamoDB() as db:
        client = dynamodb_client("us-east-1", db.endpoint_url)
        create_table(client, table)
        settings = Settings(table_name=table, dynamodb_endpoint_url=db.endpoint_url, aws_region="us-east-1")
        services = Services(settings, dynamo=Dynamo(client, table))
        seed(services.inventory)
        metrics.clear_metrics()  # the seed's own metrics are not a handler's
        yield stack_settings(model, table, db.endpoint_url), services


def test_no_log_line_and_no_trace_holds_what_the_user_said(
    model: Any,
    xray: XRayDaemon,
    logs: Logs,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    invocation_trace(monkeypatch)  # the set-up's own AWS calls are traced too
    env = {
        "SHELFWISE_AUTH_MODE": "cognito",
        "SHELFWISE_OPENAI_API_KEY": API_KEY,  # what the model client sends (the offline model takes any)
        # A window of two messages: the second turn folds the first question into the summary.
        "SHELFWISE_HISTORY_WINDOW_MESSAGES": "2",
    }
    traced_loop = {  # ChatStreamFunction traced as on Lambda, to the stand-in daemon
        "LAMBDA_TASK_ROOT": "/var/task",
        "POWERTOOLS_TRACE_DISABLED": "false",
        "AWS_XRAY_DAEMON_ADDRESS": xray.address,
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
    }
    with (
        demo_backend(model, "privacy") as (settings, services),
        FakeRuntimeAPI() as runtime,
        StreamProcess(loop_environment(runtime, **settings, **env, **traced_loop)) as loop,
    ):
        for name, value in {**settings, **env}.items():  # the functions run here read the same
            monkeypatch.setenv(name, value)
        _clear_caches()  # settings from that environment
        run = Run(runtime, loop, xray, model, monkeypatch)
        run.scenario(services)

    # The scenario saw the marker in every answer it checked (so the searches below could find it),
    # and every handler of both processes was traced, AWS calls included.
    assert len(run.shown) == 9, run.shown  # two answers, a question, an answer stored, four titles, a summary
    entities = xray.entities()
    for root in run.stream_traces:
        assert {"## stream_invocation", "dynamodb"} <= traced_as(entities, root)
    names = {e["name"] for e in entities}
    assert {"## mangum", "## body", "dynamodb"} <= names
    assert any("aws" in e and e["aws"].get("operation") == "Query" for e in entities)

    captured = capfd.readouterr()
    emf = [line for line in captured.out.splitlines() if line.startswith('{"_aws"')]
    assert emf, "no EMF line was captured"
    in_process = [r for r in logs.records() if r.get("message") == "answered"]
    assert len(in_process) == run.api_calls, "ApiFunction's log lines were not all captured"
    assert [r.get("message") for r in loop.records()].count("streamed") == len(run.stream_traces)

    assert not marked(logs.text()), marked(logs.text())
    assert not marked(captured.out + captured.err), marked(captured.out + captured.err)
    assert not marked(loop.output()), marked(loop.output())
    assert not marked(xray.raw()), marked(xray.raw())


class Run:
    """The scenario, payload by payload, through the real handlers."""

    def __init__(
        self,
        runtime: FakeRuntimeAPI,
        loop: StreamProcess,
        xray: XRayDaemon,
        model: Any,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self.runtime, self.loop, self.xray, self.model = runtime, loop, xray, model
        self.monkeypatch = monkeypatch
        self.ran: set[str] = set()
        self.shown: list[str] = []  # the answers seen holding the marker
        self.stream_traces: list[str] = []
        self.api_calls = 0

    def api(self, name: str, status: int | None = None, **body: Any) -> dict[str, Any]:
        self.ran.add(name)
        root = invocation_trace(self.monkeypatch)
        self.monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "ApiFunction")
        response = api.lambda_handler(payload(name, **body), FakeContext("ApiFunction"))
        self.api_calls += 1
        assert response["statusCode"] < 500, (name, response)
        if status is not None:
            assert response["statusCode"] == status, (name, response)
        self.xray.wait_for(lambda entities: "## mangum" in traced_as(entities, root))
        out: dict[str, Any] = json.loads(response["body"]) if response.get("body") else {}
        return out

    def batch(self, handler: Any, function: str, event: dict[str, Any]) -> None:
        root = invocation_trace(self.monkeypatch)
        self.monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", function)
        assert handler(event, FakeContext(function)) == {"batchItemFailures": []}
        self.xray.wait_for(lambda entities: "## body" in traced_as(entities, root))

    def stream(self, event: dict[str, Any], name: str | None = None) -> tuple[int, bytes]:
        if name is not None:
            self.ran.add(name)
        request_id = self.runtime.invoke(event)
        response = self.runtime.wait_response(request_id)
        root = self.runtime.traces[request_id].split(";")[0].removeprefix("Root=")
        self.stream_traces.append(root)
        self.loop.wait_for_log(request_id, "streamed")
        self.xray.wait_for(lambda entities: "## stream_invocation" in traced_as(entities, root))
        return int(response.prelude["statusCode"]), response.payload

    def saw(self, what: str, text: str) -> None:
        """What the user is shown holds the marker."""
        assert has_marker(text), f"{what}: {text[:500]}"
        self.shown.append(what)

    def scenario(self, services: Services) -> None:
        self.api("api/conversation-create.json", 201)

        # Turns through ChatStreamFunction: SSE, JSON, an unknown conversation, then two that fail.
        status, sse = self.stream(
            payload("stream/message-post.json", content=QUESTION), "stream/message-post.json"
        )
        assert status == 200
        self.saw("the streamed answer", "".join(d["content"] for n, d in sse_events(sse) if n == "delta"))
        status, body = self.stream(
            payload("stream/message-post-json.json", content=FOLLOW_UP), "stream/message-post-json.json"
        )
        assert status == 200
        self.saw("the JSON answer", json.loads(body)["content"])
        name = "stream/message-post-unknown-conversation.json"
        status, _ = self.stream(payload(name, content=QUESTION), name)
        assert status == 404
        # The model fails before its first token (a 502), then halfway through (an SSE error event).
        self.model.fail("server_error", task="chat")
        status, body = self.stream(with_token(turn_event(CONVERSATION, QUESTION)))
        assert (status, json.loads(body)["error"]["code"]) == (502, "upstream_error")
        self.model.fail("midstream", task="chat")
        status, sse = self.stream(with_token(turn_event(CONVERSATION, QUESTION)))
        assert status == 200
        assert [n for n, _ in sse_events(sse)][-1] == "error", sse

        messages = self.api("api/messages-list.json", 200)["items"]
        self.saw("a question", next(m["content"] for m in messages if m["role"] == "user"))
        self.saw("an answer", next(m["content"] for m in messages if m["role"] == "assistant"))

        # A generated title (TitleFunction, on the record POST .../title leaves), then the user's own.
        self.api("api/conversation-title.json", 202)
        self.ran.add("titles/conversation-title.json")
        self.batch(titles.lambda_handler, "TitleFunction", payload("titles/conversation-title.json"))
        conversation = self.api("api/conversation-get.json", 200)
        assert conversation["title_source"] == "generated"
        self.saw("the generated title", conversation["title"])
        self.saw("the summary", conversation["summary"]["text"])
        self.saw("the title set", self.api("api/conversation-patch.json", 200, title=TITLE)["title"])

        # TitleFunction's batch payload, over conversations whose first question holds the marker.
        event = payload("titles/stream-batch.json")
        self.ran.add("titles/stream-batch.json")
        for record in event["Records"]:
            image = record["dynamodb"]["NewImage"]
            seed_first_exchange(services.dynamo.client, services.settings.table_name, image, QUESTION)
        self.batch(titles.lambda_handler, "TitleFunction", event)
        for record in event["Records"]:
            key = record["dynamodb"]["Keys"]
            client: Any = services.dynamo.client
            stored = client.get_item(TableName=services.settings.table_name, Key=key, ConsistentRead=True)
            self.saw("a batch's generated title", decode_item(stored["Item"])["title"])

        # Every other request payload, the product purge, and the conversation's deletion last.
        rest = sorted(f"api/{p.name}" for p in (EVENTS / "api").glob("*.json"))
        # a stock adjustment's free-text note, alone and in a bulk adjustment (filed from its record)
        self.api("api/adjustment-create.json", 201, note=f"order {MARKER}")
        self.api("api/adjustments-bulk.json", 201, note=f"PO {MARKER}")
        for name in [n for n in rest if n not in self.ran and n != "api/conversation-delete.json"]:
            self.api(name)
        for name in ("purge/product-hidden.json", "purge/batch-recorded.json"):
            self.ran.add(name)
            self.batch(purge.lambda_handler, "PurgeFunction", payload(name))
        self.api("api/conversation-delete.json", 204)
        self.api("api/conversation-get.json", 404)

        every = {str(p.relative_to(EVENTS)) for p in EVENTS.rglob("*.json") if p.name not in NOT_EVENTS}
        assert self.ran == every


# ---------------------------------------------------------------------------------------------------
# In this process only, over moto


@pytest.fixture
def moto_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    """A template-built moto table, and the environment ApiFunction and TitleFunction read on Lambda."""
    table = "shelfwise-privacy"
    for name, value in {
        "SHELFWISE_TABLE_NAME": table,
        "SHELFWISE_AUTH_MODE": "cognito",
        "POWERTOOLS_SERVICE_NAME": "shelfwise",
        "POWERTOOLS_METRICS_NAMESPACE": "Shelfwise",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SHELFWISE_DYNAMODB_ENDPOINT_URL", raising=False)
    invocation_trace(monkeypatch)
    with mock_aws():
        _clear_caches()
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, table)
        yield Services(get_settings(), dynamo=Dynamo(client, table))
        metrics.clear_metrics()


class QuotingModel:
    """A utility model that refuses, quoting what it was asked (the first exchange): an answer
    `clean_title` cannot use."""

    async def complete(
        self, *, model: str, messages: list[dict[str, str]], max_completion_tokens: int
    ) -> tuple[str, None]:
        return f"I'm sorry, I can't title this. {messages[-1]['content']}", None


def test_an_unusable_title_answer_is_not_logged(
    moto_table: Services, xray: XRayDaemon, logs: Logs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shelfwise.chat.titles import TitleService, fallback_title
    from shelfwise.storage.titles import TitleRepository

    services = moto_table
    services.__dict__["titles"] = TitleService(
        services.settings, TitleRepository(services.dynamo), cast(Any, QuotingModel())
    )
    event = payload("titles/stream-batch.json")
    client: Any = services.dynamo.client
    table = services.settings.table_name
    for record in event["Records"]:
        seed_first_exchange(client, table, record["dynamodb"]["NewImage"], QUESTION)
    invocation_trace(monkeypatch)
    handler = titles.make_handler(lambda: services)
    context: Any = FakeContext("TitleFunction")
    assert handler(event, context) == {"batchItemFailures": []}

    for record in event["Records"]:  # the user's own first words: the marker, where the user reads it
        item = client.get_item(TableName=table, Key=record["dynamodb"]["Keys"], ConsistentRead=True)["Item"]
        assert decode_item(item)["title"] == fallback_title(QUESTION)
        assert has_marker(decode_item(item)["title"])
    unusable = [r for r in logs.records() if r["message"] == "title model answered nothing usable"]
    assert len(unusable) == len(event["Records"])
    assert all(r["answer_chars"] > len(QUESTION) for r in unusable)
    fallbacks = [r for r in logs.records() if r["message"] == "title model failed; fallback title written"]
    assert [r["reason"] for r in fallbacks] == ["unusable_answer"] * len(event["Records"])
    assert not marked(logs.text()), marked(logs.text())
    xray.wait_for(lambda entities: "## body" in {e["name"] for e in entities})
    assert not marked(xray.raw()), marked(xray.raw())


@pytest.mark.parametrize(
    ("tracing", "kept"),
    [
        pytest.param(None, False, id="as-shipped"),
        # Powertools' defaults, as ApiFunction had them: capture_response and capture_error on.
        pytest.param(
            lambda handler: tracer().capture_lambda_handler(handler), True, id="powertools-defaults"
        ),
    ],
)
def test_the_stand_in_daemon_sees_what_a_response_kept_in_the_trace_would_hold(
    tracing: Callable[[Any], Any] | None,
    kept: bool,
    moto_table: Services,
    xray: XRayDaemon,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GET .../messages, whose body holds the marker: with ApiFunction's tracing as shipped no trace
    document holds it; with the Tracer's defaults the "## mangum" subsegment does (its metadata)."""
    if tracing is not None:
        monkeypatch.setattr(api, "trace_handler", tracing)
    services = moto_table

    def call(name: str) -> dict[str, Any]:
        context: Any = FakeContext("ApiFunction")
        response: dict[str, Any] = api.lambda_handler(payload(name), context)
        return response

    assert call("api/conversation-create.json")["statusCode"] == 201
    client: Any = services.dynamo.client
    table = services.settings.table_name
    image = client.get_item(TableName=table, Key=encode_key(USER_SUB, CONVERSATION))["Item"]
    seed_first_exchange(client, table, image, QUESTION)
    root = invocation_trace(monkeypatch)
    response = call("api/messages-list.json")
    assert response["statusCode"] == 200
    assert has_marker(json.loads(response["body"])["items"][0]["content"])
    xray.wait_for(lambda entities: "## mangum" in traced_as(entities, root))
    handler = [e for e in xray.entities() if e["name"] == "## mangum" and e["trace_id"] == root]
    assert has_marker(json.dumps(handler)) is kept
    assert has_marker(xray.raw()) is kept
