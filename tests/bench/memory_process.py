"""Resident memory of `make run`'s process tree (the Python process, which also runs the offline
model and the stream pump, plus its DynamoDB Local java child) after 500 streamed turns vs after 10,
in the same run; `memory.local_process.python_rss` is the Python process alone.

The stack is started as a user starts it (tests.fixtures.local_stack) with its data in a temporary
folder. Turns run 10 at a time, two turns per conversation (the second reads the first's history),
with the offline model at 5 ms a chunk. VmRSS is read from /proc (Linux). BENCH_MEMORY_TURNS sets
the long run (default 500).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shelfwise.observability import logger
from tests.bench.streaming_process import limits_free_client, new_conversation, stream_turn
from tests.fixtures.local_stack import LocalStack

SHORT = 10
CONCURRENCY = 10
TURNS_PER_CONVERSATION = 2
TARGET = 1.25


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc/*/stat."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def rss_kib(pid: int) -> int:
    """VmRSS of one process, in KiB (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree_rss_kib(pid: int) -> dict[int, int]:
    """VmRSS of `pid` and of all its descendants."""
    sizes, todo = {}, [pid]
    while todo:
        current = todo.pop()
        sizes[current] = rss_kib(current)
        todo += children(current)
    return sizes


async def _turns(stack: LocalStack, count: int) -> int:
    """`count` streamed turns, CONCURRENCY at a time; the number that failed."""
    failed = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async with limits_free_client() as http:

        async def worker() -> None:
            nonlocal failed
            conversation = ""
            while not queue.empty():
                i = queue.get_nowait()
                if not conversation or i % TURNS_PER_CONVERSATION == 0:
                    conversation = await new_conversation(http, stack)
                turn = await stream_turn(http, stack, conversation)
                failed += not turn.ok

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return failed


def run() -> Iterator[dict[str, Any]]:
    logger.setLevel("WARNING")
    long = int(os.environ.get("BENCH_MEMORY_TURNS", "500"))
    with (
        tempfile.TemporaryDirectory(prefix="shelfwise-bench-") as data,
        LocalStack(data_dir=Path(data), SHELFWISE_OFFLINE_DELAY_MS="5") as stack,
    ):
        assert stack.process is not None
        pid = stack.process.pid
        failed = asyncio.run(_turns(stack, SHORT))
        short = tree_rss_kib(pid)
        failed += asyncio.run(_turns(stack, long - SHORT))
        after = tree_rss_kib(pid)
        kind = stack.db_kind
    if failed:
        raise RuntimeError(f"{failed} of {long} turns failed")
    mib = 1024.0
    others = sorted((set(short) | set(after)) - {pid})
    yield {
        "name": "memory.local_process.tree_rss",
        "value": round(sum(after.values()) / mib, 1),
        "unit": "MiB",
        "baseline": round(sum(short.values()) / mib, 1),
        "target": TARGET,
        "children_mib": {
            "after_short": round(sum(short.get(p, 0) for p in others) / mib, 1),
            "after_long": round(sum(after.get(p, 0) for p in others) / mib, 1),
        },
        "detail": f"VmRSS of make run's process and its children ({kind}) after {long} turns vs "
        f"after {SHORT} ({CONCURRENCY} at a time, {TURNS_PER_CONVERSATION} per conversation)",
    }
    yield {
        "name": "memory.local_process.python_rss",
        "value": round(after[pid] / mib, 1),
        "unit": "MiB",
        "baseline": round(short[pid] / mib, 1),
        "target": TARGET,
        "detail": "the Python process alone (app, offline model, stream pump)",
    }
