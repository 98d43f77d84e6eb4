"""Flush Powertools metrics after every request of a long-running local server.

On Lambda, `@metrics.log_metrics` flushes once per invocation. Under uvicorn nothing does, and
Powertools then prints an EMF blob to stdout whenever 100 values pile up (even with
POWERTOOLS_METRICS_DISABLED set). Flushing per request keeps the local server's behaviour the same as
Lambda's: silent when metrics are disabled, one EMF line per request when they are not.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from shelfwise.observability import metrics


class FlushMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                metrics.flush_metrics()
