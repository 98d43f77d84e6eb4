"""ChatStreamFunction: the app behind API Gateway's REST response streaming.

Lambda's managed python3.13 runtime starts `layers/stream/bootstrap` (AWS_LAMBDA_EXEC_WRAPPER), which
execs `python -m shelfwise.entry.stream` instead of the buffering runtime. Then:

- init: create the app. A failure here (a missing module, bad settings) goes to /runtime/init/error.
- per invocation: the API Gateway REST event becomes an ASGI scope through Mangum's own translation
  (`aws.event` included: the app reads the Cognito claims from it), and the app's `send` messages go
  to the Runtime API as they come (`shelfwise.entry.streaming_runtime`, the swappable part).
- an event that is not an HTTP request is answered `null`, never an invocation error (that would
  count in the Errors metric): API Gateway's after-stream completion call silently (a
  `StreamCompletionNotSuccess` metric when its status is not Success), anything else with a warning.
  An API Gateway event Mangum cannot read is an invocation error.
- Powertools as in ApiFunction: the Logger carries the request id and the API Gateway request id as
  correlation id, metrics are flushed per invocation, the Tracer is created on first use.
- One event loop for the process: the model client (one per loop) keeps its connections warm.
- A turn runs in a task of its own (`shelfwise.chat.live`): the invocation ends once every turn it
  started has ended, whether or not its client stayed. On AWS a client that leaves is not reported
  to the function anyway; the turn's deadline (remaining time less a margin) bounds the wait.

Everything that can fail to import is imported after the Runtime API client exists, so a broken
bundle or layer is reported as an init error rather than a bare exit.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any, NoReturn

from shelfwise.entry.streaming_runtime import (
    ASGIApp,
    Invocation,
    LambdaContext,
    Outcome,
    ResponseStream,
    RuntimeClient,
    completion_status,
    serve_asgi,
)

DEFAULT_APP = "shelfwise.web.app:create_app"  # module:factory; tests pass their own as argv[1]


class NotAnHttpRequest(Exception):
    """The event looks like API Gateway's but is not a REST request Mangum can read."""


def handler(event: Any, context: Any) -> NoReturn:
    """The Handler the template names because the managed runtime wants one. With the exec wrapper in
    place it never runs; if it does, the wrapper is missing and nothing could stream."""
    raise RuntimeError(
        "ChatStreamFunction streams through its exec wrapper: AWS_LAMBDA_EXEC_WRAPPER must be "
        "/opt/shelfwise-stream/bootstrap, from StreamRuntimeLayer"
    )


class StreamFunction:
    """The app served invocation after invocation on one event loop."""

    def __init__(self, app: ASGIApp, runtime: RuntimeClient) -> None:
        from mangum import Mangum

        self.app = app
        self.runtime = runtime
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)  # before Mangum, which looks for a loop
        self.adapter = Mangum(app, lifespan="off")  # only its event -> scope translation is used
        self._stream: ResponseStream | None = None

    def serve_forever(self) -> NoReturn:
        while True:
            self.serve(self.runtime.next_invocation())

    def serve(self, invocation: Invocation) -> None:
        from shelfwise.observability import logger

        if invocation.trace_id:  # what the X-Ray SDK reads to join the invocation's trace
            os.environ["_X_AMZN_TRACE_ID"] = invocation.trace_id
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        self._stream = None
        try:
            self._handler(invocation.event, invocation.context)
        except Exception as exc:
            if self._stream is not None and self._stream.started_at is not None:
                logger.exception("the runtime loop failed after the response had started")
                return
            logger.exception("invocation failed before any response")
            self.runtime.invocation_error(invocation.request_id, exc)

    @cached_property
    def _handler(self) -> Callable[[Any, LambdaContext], None]:
        """`stream_invocation` under Powertools, decorated as ApiFunction's handler is (built on the
        first invocation: the Tracer costs ~185 ms to create)."""
        from aws_lambda_powertools.logging import correlation_paths

        from shelfwise.observability import logger, metrics, trace_handler

        traced = trace_handler(self.stream_invocation)
        measured = metrics.log_metrics(capture_cold_start_metric=True)(traced)
        logged: Callable[[Any, LambdaContext], None] = logger.inject_lambda_context(
            measured, correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
        )
        return logged

    def stream_invocation(self, event: Any, context: LambdaContext) -> None:
        if (status := completion_status(event)) is not None:
            _acknowledge_completion(status, event.get("requestId"))
            self.runtime.respond(context.aws_request_id)
            return
        if not isinstance(event, dict) or "requestContext" not in event:
            from shelfwise.observability import logger

            # The keys only: an event nobody should have sent may hold anything.
            keys = sorted(map(str, event)) if isinstance(event, dict) else []
            logger.warning(
                "ignored an event that is not an HTTP request",
                extra={"event_type": type(event).__name__, "event_keys": keys},
            )
            self.runtime.respond(context.aws_request_id)
            return
        try:
            http = self.adapter.infer(event, context)
            scope, body = http.scope, http.body
        except Exception as exc:
            raise NotAnHttpRequest(f"not an API Gateway REST request ({exc})") from exc
        self._stream = self.runtime.response_stream(context.aws_request_id)
        outcome = self.loop.run_until_complete(serve_asgi(self.app, scope, body, self._stream))
        _report(outcome)
        # A turn is the server's: one whose client left (or that has after-turn work) runs to its
        # end, bounded by its deadline, before this invocation ends.
        from shelfwise.chat import live

        self.loop.run_until_complete(live.drain())


def _acknowledge_completion(status: str, stream_request_id: Any) -> None:
    """API Gateway's word that a streamed response is over: nothing to do when it went well."""
    from shelfwise.observability import logger, metrics

    if status == "Success":
        logger.debug("stream completion acknowledged", extra={"stream_request_id": stream_request_id})
        return
    details = {"invoke_completion_status": status, "stream_request_id": stream_request_id}
    metrics.add_metric(name="StreamCompletionNotSuccess", unit="Count", value=1)
    for key, value in details.items():
        metrics.add_metadata(key=key, value=value)
    logger.warning("a streamed response did not complete", extra=details)


def _report(outcome: Outcome) -> None:
    """One log line and the request metrics per invocation (the names ApiFunction uses)."""
    from shelfwise.observability import count_request, logger, metrics

    count_request(outcome.status or 0, failed=outcome.error_after_first_byte)
    if outcome.disconnected:
        metrics.add_metric(name="StreamDisconnects", unit="Count", value=1)
    details = {
        "status": outcome.status,
        "chunks": outcome.chunks,
        "bytes": outcome.bytes,
        "first_byte_ms": round(outcome.first_byte_ms, 1) if outcome.first_byte_ms is not None else None,
        "duration_ms": round(outcome.duration_ms, 1),
        "disconnected": outcome.disconnected,
    }
    if outcome.error_after_first_byte:
        logger.error("the answer broke off after its first byte", extra=details, exc_info=outcome.error)
    elif outcome.error is not None:
        logger.error("the request failed", extra=details, exc_info=outcome.error)
    elif outcome.runtime_error is not None:
        logger.warning(
            "the Runtime API did not acknowledge the response",
            extra={**details, "runtime_error": str(outcome.runtime_error)},
        )
    elif outcome.disconnected:
        logger.warning("the client left mid-answer", extra=details)
    else:
        logger.info("streamed", extra=details)


def _create_app(spec: str) -> ASGIApp:
    module_name, _, factory_name = spec.partition(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    app: ASGIApp = factory()
    return app


def _log_init_failure() -> None:
    try:
        from shelfwise.observability import logger

        logger.exception("init failed: the app could not be created")
    except Exception:  # the layer itself may be what is broken
        traceback.print_exc()


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Create the app, then serve invocations until Lambda ends the process. An init failure is
    reported to the Runtime API and ends the process (Lambda starts a fresh one next time)."""
    args = list(sys.argv[1:] if argv is None else argv)
    runtime = RuntimeClient.from_environment()
    try:
        function = StreamFunction(_create_app(args[0] if args else DEFAULT_APP), runtime)
    except Exception as exc:
        _log_init_failure()
        runtime.init_error(exc)
        sys.exit(1)
    function.serve_forever()


if __name__ == "__main__":
    main()
