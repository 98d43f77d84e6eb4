"""Streaming through the Lambda loop: the real ChatStreamFunction loop (a subprocess started through
its exec wrapper) under a fake Runtime API that timestamps every chunk, against a direct streaming
call to the same offline model with the same request, in the same run.

Time to first token is measured from the moment the fake hands out the invocation (`next`) to the
arrival of the first `delta` frame; gaps between the following `delta` frames. The loop's turn reads
and writes the embedded DynamoDB (moto server) before it calls the model: that time is reported as
`storage_ms` (timed in-process on the same database) and subtracted in `added_by_loop_ms`.
BENCH_STREAMS (default 10), BENCH_DELAY_MS (default 20).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterator
from typing import Any

from infra.local.offline_model import OfflineModel
from shelfwise.chat.tools import TOOLS
from shelfwise.observability import logger
from tests.bench.streaming import QUESTION, _direct, gap_result, time_storage, ttft_result
from tests.fixtures.runtime_api import USER_SUB, create_conversation, sse_events, stream_stack, turn_event


def run() -> Iterator[dict[str, Any]]:
    logger.setLevel("WARNING")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
        os.environ.setdefault(name, value)  # the embedded database takes any credentials
    streams = int(os.environ.get("BENCH_STREAMS", "10"))
    delay = int(os.environ.get("BENCH_DELAY_MS", "20"))
    loop_first: list[float] = []
    loop_gaps: list[float] = []
    direct_first: list[float] = []
    direct_gaps: list[float] = []
    with OfflineModel(token_delay_ms=delay) as model, stream_stack(model, table="bench-lambda") as stack:
        persona = stack.services.chat.prompts.persona(None).system_prompt
        messages = [{"role": "system", "content": persona}, {"role": "user", "content": QUESTION}]
        for i in range(streams + 1):  # the first is the cold start: not measured
            conversation_id = create_conversation(stack.services)
            request_id = stack.api.invoke(turn_event(conversation_id, QUESTION))
            response = stack.api.wait_response(request_id)
            dispatched = stack.api.dispatched_at[request_id]
            arrivals = [
                at for at, data in response.payload_chunks if [n for n, _ in sse_events(data)] == ["delta"]
            ]
            first, gaps = asyncio.run(_direct(model, messages))
            if i == 0:
                continue
            loop_first.append(arrivals[0] - dispatched)
            loop_gaps += [b - a for a, b in itertools.pairwise(arrivals)]
            direct_first.append(first)
            direct_gaps += gaps
        storage = time_storage(stack.services.chat, USER_SUB, streams)
    yield ttft_result(
        "streaming.lambda_loop.ttft",
        loop_first,
        direct_first,
        storage,
        target_added_ms=10,
        detail={"streams": streams, "token_delay_ms": delay, "tools_in_request": len(TOOLS)},
    )
    yield gap_result("streaming.lambda_loop.gap_p99", loop_gaps, direct_gaps, target_added_ms=1)
