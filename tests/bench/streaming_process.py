"""Streaming through `make run`'s own stack (DynamoDB Local, the offline model, the app under uvicorn),
started in a process of its own exactly as a user starts it (tests.fixtures.local_stack), so the
client, the server and the model do not share one interpreter.

- `streaming.local_process.ttft`: time to first token through the stack vs the same request sent
  straight to the stack's offline model, interleaved, medians. The turn's storage calls (read the
  conversation, store the user's message) are replayed from here against the stack's DynamoDB Local
  to give `storage_ms`; `added_beyond_storage_ms` is what is left once they are taken out.
- `streaming.local_process.gap_p99`: p99 of the gaps between chunks, same streams.
- `streaming.local_process.concurrent_ttft` / `.concurrent_errors`: 100 streamed turns at once on 100
  distinct conversations (created first) from one client: time to first token under that load vs a
  single turn alone, and the errors (a non-200, an `error` event, a stream without `done`).

BENCH_STREAMS (default 20); the stack's offline model paces at SHELFWISE_OFFLINE_DELAY_MS=20. The
stack keeps its data in a temporary folder, never in the user's .local/.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shelfwise.chat.personas import library
from shelfwise.observability import logger
from shelfwise.services import Services
from shelfwise.settings import Settings
from tests.bench.streaming import QUESTION, _direct, gap_result, time_storage, ttft_result
from tests.fixtures.local_stack import LocalStack

CONCURRENT = 100
ALONE = 7  # single turns whose median is the concurrent result's baseline
TARGET_ADDED_MS = 30.0
DELAY_MS = "20"


@dataclass
class Turn:
    """One streamed turn as the client saw it."""

    status: int = 0
    first: float | None = None  # seconds from the request to the first `delta`
    gaps: list[float] = field(default_factory=list)
    done: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.done and not self.errors


def limits_free_client(**kwargs: Any) -> httpx.AsyncClient:
    """One client for many streams at once: no pool limit, generous timeouts (a slow answer under
    load is measured, not cut)."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
        timeout=httpx.Timeout(120.0, connect=30.0, pool=None),
        **kwargs,
    )


async def new_conversation(http: httpx.AsyncClient, stack: LocalStack) -> str:
    created = await http.post(f"{stack.url}/conversations", json={}, headers=stack.headers)
    created.raise_for_status()
    conversation_id: str = created.json()["id"]
    return conversation_id


async def stream_turn(
    http: httpx.AsyncClient, stack: LocalStack, conversation_id: str, content: str = QUESTION
) -> Turn:
    turn = Turn()
    started = time.perf_counter()
    arrivals: list[float] = []
    try:
        async with http.stream(
            "POST",
            f"{stack.url}/conversations/{conversation_id}/messages",
            json={"content": content},
            headers=stack.headers,
        ) as response:
            turn.status = response.status_code
            if response.status_code != 200:
                turn.errors.append(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
                return turn
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    if event == "delta":
                        arrivals.append(time.perf_counter())
                    elif event == "done":
                        turn.done = True
                    elif event == "error":
                        turn.errors.append(line[6:200])
    except httpx.HTTPError as exc:
        turn.errors.append(f"{type(exc).__name__}: {exc}")
    if arrivals:
        turn.first = arrivals[0] - started
        turn.gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    if not turn.done and not turn.errors:
        turn.errors.append("the stream ended without `done`")
    return turn


def _ttft(stack: LocalStack, streams: int) -> tuple[list[float], list[float], list[float], list[float]]:
    class Model:  # what _direct needs of an OfflineModel
        base_url = stack.model_url

    messages = [
        {"role": "system", "content": library().persona(None).system_prompt},
        {"role": "user", "content": QUESTION},
    ]

    async def measure() -> tuple[list[float], list[float], list[float], list[float]]:
        app_first: list[float] = []
        app_gaps: list[float] = []
        direct_first: list[float] = []
        direct_gaps: list[float] = []
        async with limits_free_client() as http:
            for _ in range(2):  # warm both paths (imports, pools, the JIT)
                await stream_turn(http, stack, await new_conversation(http, stack))
                await _direct(Model, messages)  # type: ignore[arg-type]
            for _ in range(streams):
                first, gaps = await _direct(Model, messages)  # type: ignore[arg-type]
                direct_first.append(first)
                direct_gaps += gaps
                turn = await stream_turn(http, stack, await new_conversation(http, stack))
                if not turn.ok or turn.first is None:
                    raise RuntimeError(f"a turn failed: {turn}")
                app_first.append(turn.first)
                app_gaps += turn.gaps
        return app_first, app_gaps, direct_first, direct_gaps

    return asyncio.run(measure())


def _concurrent(stack: LocalStack) -> tuple[list[float], list[Turn], float]:
    async def measure() -> tuple[list[float], list[Turn], float]:
        async with limits_free_client() as http:
            alone: list[float] = []
            for _ in range(ALONE):
                turn = await stream_turn(http, stack, await new_conversation(http, stack))
                if not turn.ok or turn.first is None:
                    raise RuntimeError(f"a single turn failed: {turn}")
                alone.append(turn.first)
            conversations = [await new_conversation(http, stack) for _ in range(CONCURRENT)]
            started = time.perf_counter()
            turns = await asyncio.gather(*(stream_turn(http, stack, c) for c in conversations))
            return alone, list(turns), time.perf_counter() - started

    return asyncio.run(measure())


def run() -> Iterator[dict[str, Any]]:
    logger.setLevel("WARNING")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "local")
    streams = int(os.environ.get("BENCH_STREAMS", "20"))
    with (
        tempfile.TemporaryDirectory(prefix="shelfwise-bench-") as data,
        LocalStack(data_dir=Path(data), SHELFWISE_OFFLINE_DELAY_MS=DELAY_MS) as stack,
    ):
        app_first, app_gaps, direct_first, direct_gaps = _ttft(stack, streams)
        settings = Settings(
            table_name=stack.table,
            dynamodb_endpoint_url=stack.db_url,
            auth_mode="local",
            openai_base_url="http://unused.invalid/v1",
        )
        storage = time_storage(Services(settings).chat, "bench-storage", streams)
        alone, turns, seconds = _concurrent(stack)
        kind = stack.db_kind
    ttft = ttft_result(
        "streaming.local_process.ttft",
        app_first,
        direct_first,
        storage,
        target_added_ms=TARGET_ADDED_MS,
        detail={
            "streams": streams,
            "stack": f"make run ({kind}, offline model at {DELAY_MS} ms/chunk)",
            "target": "ratio for target_added_ms over this run's baseline",
        },
    )
    ttft["target"] = round((ttft["baseline"] + TARGET_ADDED_MS) / ttft["baseline"], 3)
    yield ttft
    yield gap_result("streaming.local_process.gap_p99", app_gaps, direct_gaps, target_added_ms=1)
    loaded = [t.first for t in turns if t.first is not None]
    failed = [t for t in turns if not t.ok]
    ms = 1000.0
    yield {
        "name": "streaming.local_process.concurrent_ttft",
        "value": round(statistics.median(loaded) * ms, 2) if loaded else float("nan"),
        "unit": "ms",
        "baseline": round(statistics.median(alone) * ms, 2),
        "p90_ms": round(sorted(loaded)[int(0.9 * (len(loaded) - 1))] * ms, 2) if loaded else None,
        "seconds": round(seconds, 2),
        "detail": f"median of {CONCURRENT} streamed turns at once (distinct conversations, one client) "
        f"vs the median of {ALONE} single turns",
    }
    yield {
        "name": "streaming.local_process.concurrent_errors",
        "value": len(failed),
        "unit": "errors",
        "baseline": CONCURRENT,
        "target": 0,
        "errors": sorted({e for t in failed for e in t.errors})[:5],
        "detail": "non-200s, `error` events and streams without `done` among the concurrent turns",
    }
