"""Streaming through `make run`'s own stack in a separate process, so the client, the server and
the model do not share one interpreter: time to first token and chunk gaps as a client sees them,
against the same request sent straight to the stack's offline model, in the same run.

The turn's storage calls (read the conversation, store the user's message) are replayed from here
against the stack's embedded DynamoDB to give `storage_ms`, which `added_by_transport_ms` leaves out.
BENCH_STREAMS (default 20); the stack's offline model paces at SHELFWISE_OFFLINE_DELAY_MS=20.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

from shelfwise.chat.personas import library
from shelfwise.observability import logger
from shelfwise.services import Services
from shelfwise.settings import Settings
from tests.bench.streaming import QUESTION, _through_app, gap_result, time_storage, ttft_result

ROOT = Path(__file__).resolve().parents[2]


class _Model:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_stack(port: int) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {
        **os.environ,
        "PORT": str(port),
        "SHELFWISE_OFFLINE_DELAY_MS": "20",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    env.pop("OPENAI_API_KEY", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local.run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    found: dict[str, str] = {}
    deadline = time.monotonic() + 120
    assert process.stdout is not None
    for line in process.stdout:
        if m := re.search(r"OFFLINE model on (http://\S+)", line):
            found["model"] = m.group(1)
        elif m := re.search(r"database: .+? on (http://\S+), table (\S+)", line):
            found["db"], found["table"] = m.group(1), m.group(2)
        elif line.startswith("eyJ"):
            found["token"] = line.strip()
        elif "Ctrl-C stops everything" in line:
            break
        if time.monotonic() > deadline:
            break
    if not {"model", "db", "table", "token"} <= set(found):
        process.kill()
        raise RuntimeError(f"make run's stack did not come up: {found}")
    return process, found


def run() -> Iterator[dict[str, Any]]:
    logger.setLevel("WARNING")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "local")
    streams = int(os.environ.get("BENCH_STREAMS", "20"))
    port = _free_port()
    process, stack = _start_stack(port)
    url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {stack['token']}"}
    messages = [
        {"role": "system", "content": library().persona(None).system_prompt},
        {"role": "user", "content": QUESTION},
    ]
    try:

        async def measure() -> tuple[list[float], list[float], list[float], list[float]]:
            from tests.bench.streaming import _direct

            app_first: list[float] = []
            app_gaps: list[float] = []
            direct_first: list[float] = []
            direct_gaps: list[float] = []
            model = _Model(stack["model"])
            async with httpx.AsyncClient(timeout=60) as http:
                await _through_app(http, url, headers)
                await _direct(model, messages)  # type: ignore[arg-type]
                for _ in range(streams):
                    first, gaps = await _direct(model, messages)  # type: ignore[arg-type]
                    direct_first.append(first)
                    direct_gaps += gaps
                    first, gaps, _ok = await _through_app(http, url, headers)
                    app_first.append(first)
                    app_gaps += gaps
            return app_first, app_gaps, direct_first, direct_gaps

        app_first, app_gaps, direct_first, direct_gaps = asyncio.run(measure())
        settings = Settings(
            table_name=stack["table"],
            dynamodb_endpoint_url=stack["db"],
            auth_mode="local",
            openai_base_url="x",
        )
        storage = time_storage(Services(settings).chat, "bench-storage", streams)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    yield ttft_result(
        "streaming.local_process.ttft",
        app_first,
        direct_first,
        storage,
        target_added_ms=5,
        detail={"streams": streams, "stack": "make run (embedded DynamoDB, offline model at 20 ms/chunk)"},
    )
    yield gap_result("streaming.local_process.gap_p99", app_gaps, direct_gaps, target_added_ms=1)
