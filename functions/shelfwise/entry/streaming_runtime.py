"""A response-streaming Lambda runtime for an ASGI app, spoken straight to the Lambda Runtime API.

Lambda streams natively only on Node.js; no managed Python runtime has a streaming path (awslambdaric
buffers, so does Mangum). ChatStreamFunction therefore runs its own runtime: the managed python3.13
runtime starts `layers/stream/bootstrap` (AWS_LAMBDA_EXEC_WRAPPER), which execs
`python -m shelfwise.entry.stream`, which serves invocations with the pieces below.

This module is the seam: it knows the Runtime API, HTTP/1.1 and ASGI, and nothing of shelfwise. The
day AWS ships native Python streaming, it is deleted and `shelfwise.entry.stream` is rewritten
against the native API; the app does not change.

The protocol (Runtime API 2018-06-01, on loopback at $AWS_LAMBDA_RUNTIME_API):

    GET  /runtime/invocation/next          the event; request id, deadline, ARN, trace id in headers
    POST /runtime/invocation/{id}/response Transfer-Encoding: chunked,
                                           Lambda-Runtime-Function-Response-Mode: streaming,
                                           Content-Type: application/vnd.awslambda.http-integration-response,
                                           Trailer: Lambda-Runtime-Function-Error-Type, ...-Error-Body
                                           body: JSON prelude {statusCode, headers, cookies}, 8 NUL
                                           bytes, then the payload, each piece its own HTTP chunk;
                                           a failure after the first byte goes in the two trailers
                                           (a generic type and message: the details stay in the
                                           function's log); the Runtime API answers once the body
                                           has ended, and that answer is read
    POST /runtime/invocation/{id}/response (not streamed) `null`, the answer to an event that is not
                                           an HTTP request: API Gateway's after-stream completion
                                           call, or an event nobody should have sent
    POST /runtime/invocation/{id}/error    an API Gateway event that is not a request Mangum reads
    POST /runtime/init/error               the app could not be created

`http.client` cannot send trailers, hence the small HTTP/1.1 client on raw sockets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

API_VERSION = "2018-06-01"
DELIMITER = b"\x00" * 8  # between the JSON prelude and the payload
STREAM_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
ERROR_TYPE_TRAILER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
RESPONSE_ACK_TIMEOUT_SECONDS = 10.0
# What the caller is told of an error after the first byte: nothing of the exception (its text may
# hold anything); the function's own log has the details.
STREAM_ERROR_TYPE = "Function.InternalError"
STREAM_ERROR_MESSAGE = "the function failed after its response had started"
_RECV_SIZE = 64 * 1024

# ASGI, typed here so this module depends on no framework.
Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ASGIApp(Protocol):
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]: ...


class RuntimeAPIError(Exception):
    """The Runtime API answered something unexpected, or the connection to it broke."""


class ClientGone(RuntimeAPIError):
    """The response stream broke: the caller (API Gateway, the client behind it) went away."""


class IncompleteResponse(RuntimeError):
    """The app returned without finishing the response it had started (or without starting one)."""


def error_json(exc: BaseException) -> dict[str, str]:
    """The Lambda error shape: what the Runtime API and its callers expect."""
    return {"errorMessage": str(exc) or type(exc).__name__, "errorType": type(exc).__name__}


def completion_status(event: Any) -> str | None:
    """The `invokeCompletionStatus` of an after-stream completion invocation
    (`{"invokeCompletionStatus": "Success", "requestId": ...}`, which API Gateway sends once a
    streamed response is over), or None for any other event."""
    if isinstance(event, dict) and "invokeCompletionStatus" in event and "requestContext" not in event:
        return str(event["invokeCompletionStatus"])
    return None


# ---------------------------------------------------------------------------------------------------
# HTTP/1.1 on raw sockets


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


class _ResponseReader:
    """An HTTP/1.1 response, parsed as its bytes arrive: Content-Length, chunked or until close."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._head: tuple[int, dict[str, str]] | None = None
        self._body_at = 0

    def feed(self, data: bytes) -> HttpResponse | None:
        self._buffer += data
        if self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return None
            lines = self._buffer[:end].decode("latin-1").split("\r\n")
            try:
                status = int(lines[0].split(" ", 2)[1])
            except (IndexError, ValueError):
                raise RuntimeAPIError(f"malformed status line {lines[0]!r}") from None
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self._head = (status, headers)
            self._body_at = end + 4
        return self._complete(eof=False)

    def eof(self) -> HttpResponse:
        response = self._complete(eof=True) if self._head is not None else None
        if response is None:
            raise RuntimeAPIError("the Runtime API closed the connection mid-response")
        return response

    def _complete(self, *, eof: bool) -> HttpResponse | None:
        assert self._head is not None
        status, headers = self._head
        if "content-length" in headers:
            length = int(headers["content-length"])
            if len(self._buffer) - self._body_at < length:
                return None  # no copy until it is all there (events can be megabytes)
            return HttpResponse(status, headers, bytes(self._buffer[self._body_at : self._body_at + length]))
        body = bytes(self._buffer[self._body_at :])
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._dechunk(status, headers, body)
        if status in (204, 304) or 100 <= status < 200:
            return HttpResponse(status, headers, b"")
        return HttpResponse(status, headers, body) if eof else None

    @staticmethod
    def _dechunk(status: int, headers: dict[str, str], data: bytes) -> HttpResponse | None:
        body, at = bytearray(), 0
        while True:
            line_end = data.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(data[at:line_end].split(b";", 1)[0], 16)
            at = line_end + 2
            if size == 0:  # then optional trailers, then an empty line
                trailers_end = at if data[at : at + 2] == b"\r\n" else data.find(b"\r\n\r\n", at)
                return None if trailers_end < 0 else HttpResponse(status, headers, bytes(body))
            if len(data) < at + size + 2:
                return None
            body += data[at : at + size]
            at += size + 2


def _request_head(method: str, path: str, host: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# ---------------------------------------------------------------------------------------------------
# The Runtime API


@dataclass
class LambdaContext:
    """What the managed runtime hands a handler as `context`, built from the invocation's headers and
    the function's environment (Powertools' inject_lambda_context reads these attributes)."""

    aws_request_id: str
    invoked_function_arn: str
    deadline_ms: int
    function_name: str = field(default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_NAME", ""))
    function_version: str = field(
        default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    )
    memory_limit_in_mb: int = field(
        default_factory=lambda: int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "0") or 0)
    )
    log_group_name: str = field(default_factory=lambda: os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", ""))
    log_stream_name: str = field(default_factory=lambda: os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", ""))
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


@dataclass(frozen=True)
class Invocation:
    request_id: str
    event: Any
    context: LambdaContext
    trace_id: str | None


class RuntimeClient:
    """The Runtime API: one short-lived loopback connection per request (the loop is sequential and a
    loopback connect costs microseconds; nothing stale survives a freeze)."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"AWS_LAMBDA_RUNTIME_API must be host:port, not {address!r}")
        self.address = address
        self.endpoint = (host.strip("[]"), int(port))

    @classmethod
    def from_environment(cls) -> RuntimeClient:
        address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
        if not address:
            raise RuntimeAPIError("AWS_LAMBDA_RUNTIME_API is not set: this only runs inside Lambda")
        return cls(address)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.endpoint)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> HttpResponse:
        """One blocking request. No timeout: `next` is a long poll that lasts as long as it lasts."""
        all_headers = dict(headers or {})
        if method != "GET":
            all_headers["Content-Length"] = str(len(body))
        with self._connect() as sock:
            sock.sendall(_request_head(method, path, self.address, all_headers) + body)
            reader = _ResponseReader()
            while True:
                data = sock.recv(_RECV_SIZE)
                if not data:
                    return reader.eof()
                if (response := reader.feed(data)) is not None:
                    return response

    def next_invocation(self) -> Invocation:
        response = self.request("GET", f"/{API_VERSION}/runtime/invocation/next")
        if response.status != 200:
            raise RuntimeAPIError(f"invocation/next answered {response.status}: {response.body[:200]!r}")
        h = response.headers
        request_id = h.get("lambda-runtime-aws-request-id", "")
        context = LambdaContext(
            aws_request_id=request_id,
            invoked_function_arn=h.get("lambda-runtime-invoked-function-arn", ""),
            deadline_ms=int(h.get("lambda-runtime-deadline-ms", "0") or 0),
        )
        event = json.loads(response.body) if response.body else {}
        return Invocation(request_id, event, context, h.get("lambda-runtime-trace-id"))

    def _post_error(self, path: str, exc: BaseException) -> None:
        body = json.dumps(error_json(exc)).encode()
        response = self.request(
            "POST",
            path,
            body,
            {"Content-Type": "application/json", ERROR_TYPE_TRAILER: type(exc).__name__},
        )
        if response.status >= 300:
            raise RuntimeAPIError(f"{path} answered {response.status}: {response.body[:200]!r}")

    def invocation_error(self, request_id: str, exc: BaseException) -> None:
        self._post_error(f"/{API_VERSION}/runtime/invocation/{request_id}/error", exc)

    def init_error(self, exc: BaseException) -> None:
        self._post_error(f"/{API_VERSION}/runtime/init/error", exc)

    def respond(self, request_id: str, body: bytes = b"null") -> None:
        """A whole (not streamed) answer to an invocation: for an event that is not an HTTP request."""
        path = f"/{API_VERSION}/runtime/invocation/{request_id}/response"
        response = self.request("POST", path, body, {"Content-Type": "application/json"})
        if response.status >= 300:
            raise RuntimeAPIError(f"{path} answered {response.status}: {response.body[:200]!r}")

    def response_stream(self, request_id: str) -> ResponseStream:
        return ResponseStream(self, request_id)


class ResponseStream:
    """One streamed HTTP response for API Gateway: `start` sends the prelude, `write` sends each piece
    of the payload as its own HTTP chunk at once (TCP_NODELAY, no buffering), `finish` ends the body,
    with the error trailers if the payload broke off, and waits for the Runtime API's 202.

    While the body is open, a reader watches the connection: the Runtime API says nothing until the
    body ends, so anything before that (EOF, a reset, an early error status) means the stream is gone,
    and `on_broken` is told at once, even when the app has nothing to write for a while."""

    def __init__(self, runtime: RuntimeClient, request_id: str) -> None:
        self._runtime = runtime
        self.request_id = request_id
        self._sock: socket.socket | None = None
        self._reader: asyncio.Task[HttpResponse] | None = None
        self._ending = False
        self.broken = False
        self.on_broken: Callable[[], None] | None = None
        self.started_at: float | None = None  # perf_counter of the prelude
        self.chunks = 0
        self.bytes = 0

    async def start(self, status: int, headers: dict[str, str], cookies: list[str]) -> None:
        loop = asyncio.get_running_loop()
        host, port = self._runtime.endpoint
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (host, port))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        head = _request_head(
            "POST",
            f"/{API_VERSION}/runtime/invocation/{self.request_id}/response",
            self._runtime.address,
            {
                "Lambda-Runtime-Function-Response-Mode": "streaming",
                "Transfer-Encoding": "chunked",
                "Content-Type": STREAM_CONTENT_TYPE,
                "Trailer": f"{ERROR_TYPE_TRAILER}, {ERROR_BODY_TRAILER}",
            },
        )
        prelude = json.dumps(
            {"statusCode": status, "headers": headers, "cookies": cookies}, separators=(",", ":")
        ).encode()
        self.started_at = time.perf_counter()
        await self._send(head + _chunk(prelude + DELIMITER))
        self._reader = loop.create_task(self._read_response(), name=f"runtime-response-{self.request_id}")

    async def write(self, data: bytes) -> None:
        if not data:
            return  # a zero-length chunk would end the body
        await self._send(_chunk(data))
        self.chunks += 1
        self.bytes += len(data)

    async def finish(self, *, failed: bool = False) -> HttpResponse:
        """End the body (if it broke off, with the generic error in the trailers) and wait for the
        Runtime API's answer to the whole response."""
        self._ending = True
        end = b"0\r\n"
        if failed:
            error = {"errorMessage": STREAM_ERROR_MESSAGE, "errorType": STREAM_ERROR_TYPE}
            body = base64.b64encode(json.dumps(error).encode()).decode()
            end += f"{ERROR_TYPE_TRAILER}: {STREAM_ERROR_TYPE}\r\n".encode()
            end += f"{ERROR_BODY_TRAILER}: {body}\r\n".encode()
        await self._send(end + b"\r\n")
        assert self._reader is not None
        try:
            response = await asyncio.wait_for(asyncio.shield(self._reader), RESPONSE_ACK_TIMEOUT_SECONDS)
        except (OSError, RuntimeAPIError, TimeoutError) as exc:
            raise RuntimeAPIError(f"no answer to the streamed response: {exc!r}") from exc
        finally:
            self.close()
        if response.status >= 300:
            raise RuntimeAPIError(f"the streamed response was refused: {response.status} {response.body!r}")
        return response

    def close(self) -> None:
        if self._reader is not None:
            if not self._reader.done():
                self._reader.cancel()
            elif not self._reader.cancelled():
                self._reader.exception()  # seen: a broken stream is reported through `broken`
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _send(self, data: bytes) -> None:
        if self.broken or self._sock is None:
            raise ClientGone("the response stream is closed")
        try:
            await asyncio.get_running_loop().sock_sendall(self._sock, data)
        except OSError as exc:
            self._break()
            raise ClientGone(f"the response stream broke: {exc}") from exc

    async def _read_response(self) -> HttpResponse:
        assert self._sock is not None
        loop, reader, sock = asyncio.get_running_loop(), _ResponseReader(), self._sock
        try:
            while True:
                data = await loop.sock_recv(sock, _RECV_SIZE)
                response = reader.eof() if not data else reader.feed(data)
                if response is not None:
                    if not self._ending:
                        self._break()  # answered (or closed) before the body ended
                    return response
        except (OSError, RuntimeAPIError):
            if not self._ending:
                self._break()
            raise

    def _break(self) -> None:
        if not self.broken:
            self.broken = True
            if self.on_broken is not None:
                self.on_broken()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


# ---------------------------------------------------------------------------------------------------
# ASGI <-> the response stream


@dataclass
class Outcome:
    """How one invocation went, for logs and metrics."""

    status: int | None = None  # the status the client was sent (None: nothing was sent)
    disconnected: bool = False  # the stream broke mid-answer; the app was cancelled
    error: BaseException | None = None  # what the app raised (before or after the first byte)
    error_after_first_byte: bool = False  # the error went out in the trailers
    runtime_error: BaseException | None = None  # the Runtime API refused the response, or never answered
    chunks: int = 0
    bytes: int = 0
    first_byte_ms: float | None = None  # from the start of the invocation to the prelude
    duration_ms: float = 0.0


def _prelude_headers(raw: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], list[str]]:
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name_bytes, value_bytes in raw:
        name, value = name_bytes.decode("latin-1").lower(), value_bytes.decode("latin-1")
        if name == "set-cookie":
            cookies.append(value)
        else:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers, cookies


async def serve_asgi(app: ASGIApp, scope: Scope, body: bytes, stream: ResponseStream) -> Outcome:
    """Run one HTTP request through the app, carrying each `send` to the Runtime API as it comes.

    `receive()` hands over the body once, then blocks until the response has ended (or the client
    left) and only then says `http.disconnect`: returning at once would make Starlette's disconnect
    listener spin and starve the stream. If the stream breaks, the app task is cancelled, so a turn
    stores what was said as interrupted.

    The end of the body and the Runtime API's answer to it run in a task of their own, awaited before
    `receive()` says `http.disconnect`: Starlette cancels a streaming response's send once it hears
    the disconnect, and the answer (a refusal, say) would go unread."""
    began = time.perf_counter()
    loop = asyncio.get_running_loop()
    outcome = Outcome()
    ended = asyncio.Event()  # the response is complete, or the client is gone
    body_sent = False
    finished = False
    finishing: asyncio.Task[HttpResponse] | None = None

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await ended.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal finished, finishing
        if stream.broken or finished:
            return  # the client is gone (the app is being cancelled), or the response is complete
        kind = message["type"]
        if kind == "http.response.start":
            if outcome.status is not None:
                raise RuntimeError("http.response.start sent twice")
            headers, cookies = _prelude_headers(list(message.get("headers", [])))
            await _quietly(stream.start(int(message["status"]), headers, cookies))
            outcome.status = int(message["status"])
            outcome.first_byte_ms = (time.perf_counter() - began) * 1000
        elif kind == "http.response.body":
            if outcome.status is None:
                raise RuntimeError("http.response.body before http.response.start")
            await _quietly(stream.write(bytes(message.get("body", b""))))
            if not message.get("more_body", False) and not stream.broken:
                finished = True
                finishing = loop.create_task(stream.finish(), name=f"finish-{stream.request_id}")
                try:  # the answer is read even if the app is cancelled meanwhile (awaited below)
                    await asyncio.wait([finishing])
                finally:
                    ended.set()

    app_task: asyncio.Task[None] = loop.create_task(app(scope, receive, send))

    def client_gone() -> None:
        ended.set()
        if not app_task.done():
            app_task.cancel()

    stream.on_broken = client_gone
    try:
        await asyncio.wait([app_task])
        if finishing is not None:
            try:
                await finishing
            except RuntimeAPIError as refused:  # the answer is out; the Runtime API refused or ignored it
                outcome.runtime_error = refused
        if stream.broken and not finished:
            outcome.disconnected = True
        elif app_task.cancelled():
            outcome.error = RuntimeError("the app was cancelled")
        elif (exc := app_task.exception()) is not None:
            outcome.error = exc
        elif not finished:
            outcome.error = IncompleteResponse(
                "the app left its response open" if outcome.status else "the app returned without a response"
            )
        if outcome.error is not None and not finished and not outcome.disconnected:
            if outcome.status is None:
                await _answer_internal_error(stream)  # nothing went out yet: an ordinary 500
                outcome.status = 500
                outcome.first_byte_ms = (time.perf_counter() - began) * 1000
            else:
                outcome.error_after_first_byte = True  # the client has a 200: the error goes in trailers
                await stream.finish(failed=True)
    except ClientGone:
        outcome.disconnected = True
    finally:
        ended.set()
        stream.close()
    outcome.chunks, outcome.bytes = stream.chunks, stream.bytes
    outcome.duration_ms = (time.perf_counter() - began) * 1000
    return outcome


async def _quietly(step: Awaitable[None]) -> None:
    """A broken stream is the client leaving, not the app's error: `client_gone` has already
    cancelled the app, so the send just returns."""
    with contextlib.suppress(ClientGone):
        await step


async def _answer_internal_error(stream: ResponseStream) -> None:
    """The app failed before it started a response: an ordinary 500, like the app's own."""
    body = json.dumps(
        {"error": {"code": "internal_error", "message": "something went wrong on our side"}}
    ).encode()
    await stream.start(500, {"content-type": "application/json"}, [])
    await stream.write(body)
    await stream.finish()
