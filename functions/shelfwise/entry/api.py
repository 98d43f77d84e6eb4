"""ApiFunction: the buffered REST routes, `Mangum(app)` under Powertools.

Logger (correlation id = API Gateway request id), Metrics (EMF, cold start) and Tracer wrap every
invocation. The app and the Tracer are built on the first invocation, not at import.
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from shelfwise.observability import count_request, logger, metrics, trace_handler
from shelfwise.web.app import create_app

Handler = Any


@cache
def _handler() -> Handler:
    asgi = Mangum(create_app(), lifespan="off")

    def mangum(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        response: dict[str, Any] = asgi(event, context)  # type: ignore[arg-type]  # same object, two protocols
        return response

    return trace_handler(mangum)  # not its response: that is what the user reads (GET .../messages)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    started = time.perf_counter()
    response: dict[str, Any] = _handler()(event, context)
    status = int(response.get("statusCode", 500))
    count_request(status)
    logger.info(
        "answered",
        extra={
            "method": event.get("httpMethod"),
            "path": event.get("path"),
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return response
