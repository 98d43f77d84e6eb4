"""The one Logger, Metrics and Tracer of the process.

Logger and Metrics are cheap to create. The Tracer imports the X-Ray SDK, and by default patches
every library it knows (importing botocore and httpx just to patch them: ~300 ms on a cold start
that may never use either). So it is created on first use by `tracer()`, without auto-patching;
storage patches botocore itself when it first builds a client (`trace_botocore()`).
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

SERVICE = "shelfwise"

logger = Logger(service=SERVICE)
# The namespace defaults to the one template.yaml sets, so metrics never fail to flush for want of it.
metrics = Metrics(service=SERVICE, namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Shelfwise"))


@cache
def tracer() -> Tracer:
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE, auto_patch=False)


@cache
def trace_botocore() -> None:
    """Record every AWS SDK call as an X-Ray subsegment (a no-op where tracing is disabled)."""
    tracer().patch(["botocore"])


def count_request(status: int, *, failed: bool = False) -> None:
    """The request metrics both HTTP entry points emit: ApiRequests, ApiClientErrors (4xx),
    ApiServerErrors (5xx, or a stream that broke after its first byte)."""
    metrics.add_metric(name="ApiRequests", unit="Count", value=1)
    if status >= 500 or failed:
        metrics.add_metric(name="ApiServerErrors", unit="Count", value=1)
    elif status >= 400:
        metrics.add_metric(name="ApiClientErrors", unit="Count", value=1)
