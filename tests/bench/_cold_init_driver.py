"""One cold start, as Lambda's init + first invoke: import the handler module, call it once.

Run by tests/bench/cold_init.py in a fresh interpreter:

    python _cold_init_driver.py MODULE:ATTR EVENT.json

BENCH_SPAWNED_NS (CLOCK_MONOTONIC, system-wide on Linux) is the parent's clock just before it
started this process, so `total_ms` covers interpreter startup, imports and the first answer. Prints
one JSON object on stdout.
"""

import time

STARTED_NS = time.clock_gettime_ns(time.CLOCK_MONOTONIC)

import importlib  # noqa: E402 - the clock above must be read before any other import
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402


def _now() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class FakeLambdaContext:
    """What the Lambda runtime passes as `context` (the attributes Powertools and Mangum read)."""

    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "ApiFunction")
    function_version = "$LATEST"
    memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"))
    invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
    aws_request_id = "6f2b1f0e-2f5c-4d7e-9a43-5b8c0b1a2d3e"
    log_group_name = f"/aws/lambda/{function_name}"
    log_stream_name = "2026/11/29/[$LATEST]0123456789abcdef0123456789abcdef"
    identity = None
    client_context = None

    def __init__(self) -> None:
        self._deadline_ms = int(time.time() * 1000) + 30_000

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)


def main() -> None:
    handler_ref, event_path = sys.argv[1], sys.argv[2]
    module_name, _, attr = handler_ref.partition(":")
    with open(event_path, encoding="utf-8") as fh:
        event: dict[str, Any] = json.load(fh)
    context = FakeLambdaContext()

    before_import = _now()
    handler = getattr(importlib.import_module(module_name), attr or "lambda_handler")
    after_import = _now()
    response = handler(event, context)
    answered = _now()

    spawned = int(os.environ.get("BENCH_SPAWNED_NS", STARTED_NS))
    ms = 1e-6
    result = {
        "total_ms": (answered - spawned) * ms,
        "startup_ms": (STARTED_NS - spawned) * ms,
        "import_ms": (after_import - before_import) * ms,
        "invoke_ms": (answered - after_import) * ms,
        "status": response.get("statusCode") if isinstance(response, dict) else None,
        "body": response.get("body") if isinstance(response, dict) else repr(response),
    }
    # stdout may also carry the app's own logs (Powertools logs JSON to stdout): mark our line.
    sys.stdout.write("BENCH_RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
