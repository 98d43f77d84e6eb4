"""Streaming through the local server: time to first token and gaps between chunks, as a client
sees them, against a direct streaming call to the same offline model in the same run; the same
route through plain Mangum (which buffers the whole answer); and 100 concurrent streams.

The app runs under uvicorn on loopback over DynamoDB Local; the offline model paces its chunks
(BENCH_DELAY_MS, default 20 ms). BENCH_STREAMS sets the number of measured streams (default 30).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any, cast

import httpx
import uvicorn
from pydantic import SecretStr

from infra.local.dynamodb_local import DynamoDBLocal
from infra.local.flush_metrics import FlushMetrics
from infra.local.offline_model import OfflineModel
from infra.local.table import create_table
from shelfwise.chat.tools import TOOLS
from shelfwise.identity import issue_dev_token
from shelfwise.observability import logger
from shelfwise.services import Services
from shelfwise.settings import Settings
from shelfwise.storage.dynamo import Dynamo
from shelfwise.web.app import create_app

QUESTION = "tell me something nice about our store and the people who shop here"
CONCURRENT = 100


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_storage(chat: Any, user: str, count: int) -> list[float]:
    """What a turn must do before the model is called (read the conversation, store the user's
    message in a transaction), timed on its own: the floor under any time to first token."""
    from shelfwise.chat.models import ConversationIn

    times = []
    for _ in range(count):
        conversation = chat.create_conversation(user, ConversationIn())
        started = time.perf_counter()
        chat.begin_turn(user, conversation.id, QUESTION)
        times.append(time.perf_counter() - started)
    return times


def ttft_result(
    name: str, first: list[float], direct_first: list[float], storage: list[float], **extra: Any
) -> dict[str, Any]:
    """Median time to first token vs the model direct; `added_beyond_storage_ms` leaves out the
    turn's own storage calls."""
    ms = 1000.0
    value, baseline = statistics.median(first) * ms, statistics.median(direct_first) * ms
    storage_ms = statistics.median(storage) * ms
    return {
        "name": name,
        "value": round(value, 2),
        "unit": "ms",
        "baseline": round(baseline, 2),
        "added_ms": round(value - baseline, 2),
        "storage_ms": round(storage_ms, 2),
        "added_beyond_storage_ms": round(value - baseline - storage_ms, 2),
        **extra,
    }


def gap_result(name: str, gaps: list[float], direct_gaps: list[float], **extra: Any) -> dict[str, Any]:
    """p99 of the gaps between chunks vs the model direct."""
    value, baseline = _p(gaps, 0.99) * 1000, _p(direct_gaps, 0.99) * 1000
    return {
        "name": name,
        "value": round(value, 2),
        "unit": "ms",
        "baseline": round(baseline, 2),
        "added_ms": round(value - baseline, 2),
        **extra,
    }


async def _direct(model: OfflineModel, messages: list[dict[str, Any]]) -> tuple[float, list[float]]:
    """Time to first content chunk and the gaps after it, straight from the model."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=model.base_url, api_key="offline", max_retries=0)
    started = time.perf_counter()
    stream: Any = await client.chat.completions.create(  # the request the app makes
        model="offline-main",
        messages=cast(Any, messages),
        tools=cast(Any, TOOLS),
        stream=True,
        stream_options={"include_usage": True},
        max_completion_tokens=1024,
    )
    arrivals = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
    await client.close()
    return arrivals[0] - started, [b - a for a, b in itertools.pairwise(arrivals)]


async def _through_app(
    client: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> tuple[float, list[float], bool]:
    created = await client.post(f"{url}/conversations", json={}, headers=headers)
    conversation_id = created.json()["id"]
    started = time.perf_counter()
    arrivals: list[float] = []
    ok = False
    async with client.stream(
        "POST", f"{url}/conversations/{conversation_id}/messages", json={"content": QUESTION}, headers=headers
    ) as response:
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "delta":
                arrivals.append(time.perf_counter())
            elif line.startswith("data: ") and event == "done":
                ok = True
    first = arrivals[0] - started if arrivals else float("nan")
    return first, [b - a for a, b in itertools.pairwise(arrivals)], ok


def run() -> Iterator[dict[str, Any]]:
    logger.setLevel("WARNING")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # EMF on stdout is for Lambda, not a report
    delay = int(os.environ.get("BENCH_DELAY_MS", "20"))
    streams = int(os.environ.get("BENCH_STREAMS", "30"))
    with DynamoDBLocal() as ddb, OfflineModel(token_delay_ms=delay) as model:
        client = ddb.client()
        create_table(client, "bench-streaming")
        settings = Settings(
            table_name="bench-streaming",
            auth_mode="local",
            local_signing_key=SecretStr("bench-signing-key-" + "x" * 32),
            openai_base_url=model.base_url,
            main_model="offline-main",
            utility_model="offline-utility",
            llm_max_retries=0,
        )
        services = Services(settings, dynamo=Dynamo(client, settings.table_name))
        app = FlushMetrics(create_app(services=services))
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {issue_dev_token(settings, 'bench')}"}
        persona = services.chat.prompts.persona(None).system_prompt

        async def measure() -> dict[str, Any]:
            direct_first, direct_gaps, app_first, app_gaps = [], [], [], []
            async with httpx.AsyncClient(timeout=60) as http:
                await _through_app(http, url, headers)  # warm up both paths
                await _direct(
                    model, [{"role": "system", "content": persona}, {"role": "user", "content": QUESTION}]
                )
                for _ in range(streams):
                    first, gaps = await _direct(
                        model, [{"role": "system", "content": persona}, {"role": "user", "content": QUESTION}]
                    )
                    direct_first.append(first)
                    direct_gaps += gaps
                    first, gaps, _ = await _through_app(http, url, headers)
                    app_first.append(first)
                    app_gaps += gaps
                buffered = await _buffered_mangum(services, headers)
                started = time.perf_counter()
                results = await asyncio.gather(
                    *(_through_app(http, url, headers) for _ in range(CONCURRENT)), return_exceptions=True
                )
                concurrent_s = time.perf_counter() - started
            failures = [r for r in results if isinstance(r, BaseException) or not r[2]]
            return {
                "direct_first": direct_first,
                "direct_gaps": direct_gaps,
                "app_first": app_first,
                "app_gaps": app_gaps,
                "buffered_first": buffered,
                "concurrent_failures": len(failures),
                "concurrent_seconds": concurrent_s,
            }

        m = asyncio.run(measure())
        server.should_exit = True
        thread.join(timeout=10)
        # What the contract makes a turn do before the model is called (read the conversation, store
        # the user's message in a transaction), timed in-process on the same DynamoDB Local; and the
        # turn machinery alone: first delta of Turn.events() vs of the bare model stream.
        storage: list[float] = []
        bare_first: list[float] = []
        turn_first: list[float] = []

        async def in_process() -> None:
            chat = services.chat
            for _ in range(streams):
                conversation = chat.create_conversation("bench-storage", _new())
                started = time.perf_counter()
                turn = chat.begin_turn("bench-storage", conversation.id, QUESTION)
                storage.append(time.perf_counter() - started)
                started = time.perf_counter()
                async for _event in chat.model.stream(
                    model="offline-main",
                    messages=turn.prompt.messages(),
                    tools=TOOLS,
                    max_completion_tokens=1024,
                ):
                    bare_first.append(time.perf_counter() - started)
                    break
                started = time.perf_counter()
                async for _, event in chat.start(turn).follow():
                    if event.name == "delta":
                        turn_first.append(time.perf_counter() - started)
                        break
                await chat.settle()

        asyncio.run(in_process())

    ms = 1000.0
    yield ttft_result(
        "streaming.local.ttft",
        m["app_first"],
        m["direct_first"],
        storage,
        target_added_ms=5,
        detail={
            "streams": streams,
            "token_delay_ms": delay,
            "note": "one process holds the client, the server and the model (they share the GIL); "
            "streaming.local_process measures the same with the server in its own process",
        },
    )
    yield {
        "name": "streaming.turn_machinery.ttft",
        "value": round(statistics.median(turn_first) * ms, 2),
        "unit": "ms",
        "baseline": round(statistics.median(bare_first) * ms, 2),
        "added_ms": round((statistics.median(turn_first) - statistics.median(bare_first)) * ms, 2),
        "detail": "in-process: the turn (prompt, tools, events) vs the bare model stream, same request",
    }
    yield gap_result("streaming.local.gap_p99", m["app_gaps"], m["direct_gaps"], target_added_ms=1)
    yield {
        "name": "streaming.mangum_buffered.ttft",
        "value": round(m["buffered_first"] * ms, 2),
        "unit": "ms",
        "baseline": round(statistics.median(m["direct_first"]) * ms, 2),
        "detail": "the same route through plain Mangum: the first token arrives with the last",
    }
    yield {
        "name": "streaming.local.concurrent_streams",
        "value": CONCURRENT - m["concurrent_failures"],
        "unit": "streams completed",
        "baseline": CONCURRENT,
        "target": 1.0,
        "seconds": round(m["concurrent_seconds"], 2),
    }


async def _buffered_mangum(services: Services, headers: dict[str, str]) -> float:
    """The streaming route through plain Mangum, as ApiFunction would serve it: the client gets
    nothing until the whole answer is done."""
    from mangum import Mangum

    conversation = services.chat.create_conversation("bench", _new())
    handler = Mangum(create_app(services=services), lifespan="off")
    event = json.loads(
        (
            __import__("pathlib").Path(__file__).resolve().parents[2] / "events" / "api" / "health.json"
        ).read_text()
    )
    event.update(
        path=f"/conversations/{conversation.id}/messages",
        httpMethod="POST",
        body=json.dumps({"content": QUESTION}),
        headers={**event["headers"], **headers, "Content-Type": "application/json"},
        multiValueHeaders={},
    )

    def invoke() -> dict[str, Any]:
        asyncio.set_event_loop(asyncio.new_event_loop())  # Mangum wants a loop of its own thread
        result: dict[str, Any] = handler(event, cast(Any, _Context()))
        return result

    started = time.perf_counter()
    response = await asyncio.to_thread(invoke)
    assert response["statusCode"] == 200, response
    return time.perf_counter() - started


class _Context:
    function_name = "bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def _new() -> Any:
    from shelfwise.chat.models import ConversationIn

    return ConversationIn()
