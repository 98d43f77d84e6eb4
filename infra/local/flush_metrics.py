"""What a Lambda invocation does around each request, for the long-running local server.

- Metrics: on Lambda, `@metrics.log_metrics` flushes once per invocation. Under uvicorn nothing does,
  and Powertools then prints an EMF blob to stdout whenever 100 values pile up (even with
  POWERTOOLS_METRICS_DISABLED set). Flushing per request keeps the local server's behaviour the same
  as Lambda's: silent when metrics are disabled, one EMF line per request when they are not.
- Logs: on Lambda, `@logger.inject_lambda_context` marks every line with the function and its request.
  Locally the app shares the process (and the one Logger) with TitleFunction's handler on the stream
  pump's thread, whose keys are process-wide; so each request's lines are marked here, in that
  request's own context, with the function template.yaml routes it to (ApiFunction, or
  ChatStreamFunction for the streamed turn) and a request id of its own.
"""

from __future__ import annotations

import uuid

from starlette.types import ASGIApp, Receive, Scope, Send

from infra.local.api_routes import ApiRoutes
from shelfwise.observability import logged_as, metrics


class FlushMetrics:
    def __init__(self, app: ASGIApp, routes: ApiRoutes | None = None) -> None:
        self.app = app
        self.routes = routes if routes is not None else ApiRoutes.from_template()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        function = self.routes.function_for(scope["method"], scope["path"])
        try:
            with logged_as(function, str(uuid.uuid4())):
                await self.app(scope, receive, send)
        finally:
            if metrics.metric_set:  # a request that added none prints nothing (nor Powertools' warning)
                metrics.flush_metrics()
