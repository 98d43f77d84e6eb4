"""ApiFunction's cold init: a fresh interpreter imports `shelfwise.entry.api` and answers one
`GET /health` (events/api/health.json), against a bare `Mangum(FastAPI())` app with one route.

Each run is a new process with the environment ApiFunction has on Lambda; the time is from just
before the process is spawned to the handler's answer inside it (interpreter startup + imports +
first invoke; interpreter shutdown is not part of a cold start). Both sides get one unmeasured run
first so both are compared byte-compiled, then they alternate, BENCH_RUNS times (default 7), and the
medians are reported.

`cold_init.mcp` is the same cold start answering `POST /mcp` tools/list first
(events/api/mcp-tools-list.json), against the cold start answering `GET /health`: what the MCP
server adds to a function whose first request is an MCP client's (the MCP code is imported on that
first call only, so `cold_init.api` does not carry it).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DRIVER = HERE / "_cold_init_driver.py"
EVENT = ROOT / "events" / "api" / "health.json"
MCP_EVENT = ROOT / "events" / "api" / "mcp-tools-list.json"

APP = "shelfwise.entry.api:lambda_handler"
BASELINE = "_baseline_app:lambda_handler"  # importable: the driver's directory is sys.path[0]
TARGET_RATIO = 1.5
DEFAULT_RUNS = 7
TIMEOUT_S = 120


class BenchError(RuntimeError):
    pass


def lambda_environment() -> dict[str, str]:
    """ApiFunction's environment on Lambda, as far as it changes what the code does at init.

    Built from scratch (only PATH is inherited) so the developer's shell cannot skew the numbers.
    LAMBDA_TASK_ROOT and the trace header make Powertools' Tracer run as it does on Lambda (it
    disables itself elsewhere); fake credentials keep botocore off the instance-metadata lookup.
    """
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(ROOT / "functions"),
        "LAMBDA_TASK_ROOT": str(ROOT / "functions"),
        "SHELFWISE_TABLE_NAME": "bench",
        "SHELFWISE_AUTH_MODE": "cognito",
        "POWERTOOLS_SERVICE_NAME": "shelfwise",
        "POWERTOOLS_METRICS_NAMESPACE": "Shelfwise",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "ApiFunction",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_ACCESS_KEY_ID": "ASIABENCHFAKEKEY0000",
        "AWS_SECRET_ACCESS_KEY": "bench-fake-secret",
        "AWS_SESSION_TOKEN": "bench-fake-token",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "_X_AMZN_TRACE_ID": "Root=1-6749a1b2-3c4d5e6f7a8b9c0d1e2f3a4b;Parent=53995c3f42cd8ad8;Sampled=1",
    }


def measure(handler: str, env: dict[str, str], event: Path = EVENT) -> dict[str, float]:
    """One cold start of `handler` (MODULE:ATTR) in a fresh interpreter, answering `event`."""
    spawned = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    proc = subprocess.run(
        [sys.executable, str(DRIVER), handler, str(event)],
        env={**env, "BENCH_SPAWNED_NS": str(spawned)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    process_ms = (time.clock_gettime_ns(time.CLOCK_MONOTONIC) - spawned) * 1e-6
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not lines:
        raise BenchError(
            f"{handler} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}{proc.stdout[-1000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("BENCH_RESULT "))
    if result["status"] != 200:
        raise BenchError(f"{handler} answered {result['status']}: {result['body']}")
    return {
        "total_ms": result["total_ms"],
        "startup_ms": result["startup_ms"],
        "import_ms": result["import_ms"],
        "invoke_ms": result["invoke_ms"],
        "process_ms": process_ms,
    }


def runs_from_env() -> int:
    raw = os.environ.get("BENCH_RUNS", str(DEFAULT_RUNS))
    try:
        runs = int(raw)
    except ValueError:
        raise BenchError(f"BENCH_RUNS must be a whole number, not {raw!r}") from None
    if runs < 1:
        raise BenchError("BENCH_RUNS must be at least 1")
    return runs


def _summary(samples: list[dict[str, float]]) -> dict[str, Any]:
    totals = [s["total_ms"] for s in samples]
    summary: dict[str, Any] = {
        key: round(statistics.median(s[key] for s in samples), 1) for key in samples[0]
    }
    summary["min_ms"] = round(min(totals), 1)
    summary["max_ms"] = round(max(totals), 1)
    return summary


def run() -> Iterator[dict[str, Any]]:
    for event in (EVENT, MCP_EVENT):
        if not event.is_file():
            raise BenchError(f"missing event file {event.relative_to(ROOT)}")
    runs = runs_from_env()
    env = lambda_environment()
    # Unmeasured: writes the __pycache__ of both sides, so both are compared byte-compiled.
    measure(APP, env)
    measure(APP, env, MCP_EVENT)
    measure(BASELINE, env)
    app: list[dict[str, float]] = []
    mcp: list[dict[str, float]] = []
    baseline: list[dict[str, float]] = []
    for _ in range(runs):  # alternate, so drift on a busy machine hits every side alike
        app.append(measure(APP, env))
        mcp.append(measure(APP, env, MCP_EVENT))
        baseline.append(measure(BASELINE, env))
    yield {
        "name": "cold_init.api",
        "value": round(statistics.median(s["total_ms"] for s in app), 1),
        "unit": "ms",
        "baseline": round(statistics.median(s["total_ms"] for s in baseline), 1),
        "target": TARGET_RATIO,
        "runs": runs,
        "detail": {
            "handler": APP,
            "baseline_handler": "Mangum(FastAPI()) with one /health route",
            "event": str(EVENT.relative_to(ROOT)),
            "app": _summary(app),
            "baseline": _summary(baseline),
        },
    }
    yield {
        "name": "cold_init.mcp",
        "value": round(statistics.median(s["total_ms"] for s in mcp), 1),
        "unit": "ms",
        "baseline": round(statistics.median(s["total_ms"] for s in app), 1),
        "runs": runs,
        "detail": {
            "handler": APP,
            "event": str(MCP_EVENT.relative_to(ROOT)),
            "baseline_event": str(EVENT.relative_to(ROOT)),
            "mcp": _summary(mcp),
            "health": _summary(app),
        },
    }
