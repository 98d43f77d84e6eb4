"""The one Logger, Metrics and Tracer of the process.

Logger and Metrics are cheap to create. The Tracer imports the X-Ray SDK, and by default patches
every library it knows (importing botocore and httpx just to patch them: ~300 ms on a cold start
that may never use either). So it is created on first use by `tracer()`, without auto-patching;
storage patches botocore itself when it first builds a client (`trace_botocore()`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.lambda_context import LambdaContextModel

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

SERVICE = "shelfwise"

logger = Logger(service=SERVICE)
# The namespace defaults to the one template.yaml sets, so metrics never fail to flush for want of it.
metrics = Metrics(service=SERVICE, namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Shelfwise"))


# What `logger.inject_lambda_context` puts on every line of an invocation: the Lambda context's fields
# (function_name, function_request_id, ...), cold_start and the correlation id.
INVOCATION_KEYS = (*vars(LambdaContextModel()), "cold_start", "correlation_id")


@contextmanager
def logged_as(function_name: str, request_id: str) -> Iterator[None]:
    """Lines logged inside (this thread, this asyncio task and the tasks it starts) say they were
    written by `function_name` for `request_id` (as function_request_id and correlation_id), whatever
    another function of the same process appended.

    For a process that hosts several functions (the local server): `inject_lambda_context` appends
    its keys process-wide, which is right on Lambda (one function per process, one invocation at a
    time) and wrong locally, where TitleFunction's handler runs beside the app. These keys are
    Powertools' thread-local ones, which win over the process-wide ones; the keys of another
    invocation that are not ours are blanked (a None key is left out of the line)."""
    before = dict(logger.thread_safe_get_current_keys())
    keys: dict[str, object] = dict.fromkeys(INVOCATION_KEYS)
    keys.update(function_name=function_name, function_request_id=request_id, correlation_id=request_id)
    logger.thread_safe_append_keys(**keys)
    try:
        yield
    finally:
        logger.thread_safe_clear_keys()
        logger.thread_safe_append_keys(**before)


@cache
def tracer() -> Tracer:
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE, auto_patch=False)


def trace_handler[H: Callable[..., Any]](handler: H) -> H:
    """`handler` in an X-Ray subsegment of its own ("## <name>"), keeping neither its response nor
    its exception as metadata (Powertools keeps both by default). A trace stays in X-Ray for 30 days,
    readable by whoever may read traces and untouched by DELETE /conversations/{id}: a response holds
    messages, titles and summaries (and one over the segment limit loses the whole trace), an
    exception what it was raised with. Failures are for the logs. Every traced entry point goes
    through here; nothing of ours writes metadata.

    An exception that escapes still leaves its type and message in the subsegment (the X-Ray SDK's
    own `cause`): none that could quote a user escapes a handler (Mangum answers the app's with a
    500, the streaming loop keeps them in its outcome, the batch processor reports records)."""
    traced = tracer().capture_lambda_handler(handler, capture_response=False, capture_error=False)
    return cast(H, traced)


@cache
def trace_botocore() -> None:
    """Record every AWS SDK call as an X-Ray subsegment (a no-op where tracing is disabled)."""
    tracer().patch(["botocore"])


def emit(name: str, unit: str, value: float, **dimensions: str) -> None:
    """A metric with dimensions of its own, on an EMF line of its own (the invocation's metrics
    share the `service` dimension only). Dimensions must be bounded: a model, a reason, a tool, an
    outcome - never a user or a conversation (each value is a metric CloudWatch bills)."""
    from aws_lambda_powertools.metrics import single_metric

    with single_metric(
        name=name,
        unit=unit,  # type: ignore[arg-type]
        value=value,
        namespace=metrics.namespace,
        default_dimensions={"service": SERVICE},
    ) as metric:
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension)


def count_request(status: int, *, failed: bool = False) -> None:
    """The request metrics both HTTP entry points emit: ApiRequests, ApiClientErrors (4xx),
    ApiServerErrors (5xx, or a stream that broke after its first byte)."""
    metrics.add_metric(name="ApiRequests", unit="Count", value=1)
    if status >= 500 or failed:
        metrics.add_metric(name="ApiServerErrors", unit="Count", value=1)
    elif status >= 400:
        metrics.add_metric(name="ApiClientErrors", unit="Count", value=1)
