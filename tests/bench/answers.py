"""Answers the server keeps as they stream: what storing an answer while it streams costs, and how fast
a finished one replays. On `make run`'s stack started in a process of its own (tests.fixtures.local_stack)
and, in this process, on a table of our own in the same DynamoDB Local.

- `answers.writes_per_1000_tokens`: DynamoDB write requests (PutItem, UpdateItem, DeleteItem,
  TransactWriteItems, BatchWriteItem) of one turn whose answer is 1,000 text deltas PACE_MS apart,
  counted at the gateway's seam (`Dynamo.call`) from `begin_turn` to the stored answer: the begin
  transaction, the streaming writes (the `streaming` message, its chunk items), the final transaction.
  Against the budget of 20; what the turn writes once its answer is stored (the summary fold, say) is
  reported apart.
- `answers.write_units_per_answer`: the same writes in write capacity units, estimated from the items'
  sizes (each item written rounds the larger of its sizes before and after up to 1 KB; an item in a
  transaction costs twice that), against the same answer stored with the streaming persistence off
  (`open_answer` and `add_chunk` are no-ops: the begin and final transactions only). DynamoDB Local's
  own ConsumedCapacity is in the detail (with the index writes it adds).
- `answers.resume_first_event_ms`: through the stack, `GET .../messages/{id}/events` with a mid-answer
  `Last-Event-ID` for a finished answer, time to its first replayed SSE event, against
  `GET .../messages/{id}` (the same message as JSON), interleaved, medians.
- `answers.ttft_ratio`, `answers.gap_ratio`: in-process, time to the first delta and mean gap between
  deltas of a streamed turn with the streaming persistence on vs off, interleaved, medians.

The model is a stand-in in this process: text deltas PACE_MS (TURN_PACE_MS for the last two) apart, the
first one too, no HTTP. Its pace is relative (each delta that long after the previous one was taken),
so whatever holds up the event loop shows in the gaps. BENCH_ANSWER_TURNS (default 15) streamed turns
each way; BENCH_RESUMES (default 30) resumes and reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import itertools
import math
import os
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from infra.local.table import create_table, table_properties
from shelfwise.chat.llm import ChatModel, RoundEnd, StreamEvent, TextDelta, Usage
from shelfwise.chat.models import ConversationIn
from shelfwise.chat.service import ChatService
from shelfwise.observability import logger
from shelfwise.services import Services
from shelfwise.settings import Settings
from shelfwise.storage.conversations import ConversationRepository
from shelfwise.storage.dynamo import Dynamo, dynamodb_client
from tests.fixtures.local_stack import LocalStack
from tests.fixtures.sse import sse_blocks

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

TABLE = "bench-answers"
USER = "bench-answers"
QUESTION = "what should I know about the store today?"
PACE_MS = 8  # between two deltas of the stand-in model
LONG_DELTAS = 1000
WRITE_BUDGET = 20  # write requests per 1,000-token answer
TURN_DELTAS = 130  # per turn of the ttft/gap comparison: two chunks in its stream, one at its end
TURN_PACE_MS = 6  # a fast model (~170 tokens/s): the stricter for the gaps
RESUME_TARGET_MS = 50.0
TURN_TIMEOUT_SECONDS = 120  # a turn that never ends fails the benchmark, with where it was
WATCHDOG_SECONDS = 300  # the whole module takes about a minute: past this, every thread's stack to stderr
# The stack's offline model says the question back: a long one makes an answer of a few hundred deltas.
LONG_QUESTION = "tell me a long story about " + " and ".join(f"shelf {n}" for n in range(60))
# What the stand-in model says, a word (a token) a delta.
ANSWER = (
    "The black tee in medium has fourteen units left, and the chore jacket is running low at three;"
    " the suede chelsea boot in size forty-two sold out on Friday, so it may be worth reordering soon."
)
WORDS = tuple(ANSWER.split())
WRITES = frozenset({"put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"})
READS = frozenset({"get_item", "query", "scan", "batch_get_item", "transact_get_items"})
# Which repository calls make which part of an answer's writes.
PHASES = {
    "begin_turn": "begin",
    "open_answer": "streaming",
    "add_chunk": "streaming",
    "finish_turn": "final",
    "release_turn": "final",
    "fold_summary": "fold",
}


# -- the model --------------------------------------------------------------------------------------------
class PacedModel(ChatModel):
    """A stand-in for the main model: `deltas` text deltas `pace` seconds apart, then the end."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.deltas = 0
        self.pace = 0.0
        self.ended = 0.0  # time.perf_counter() when the last answer ended

    async def stream(
        self,
        *,
        model: str,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None,
        max_completion_tokens: int,
        retry: bool = True,
    ) -> AsyncGenerator[StreamEvent]:
        for n in range(self.deltas):
            if self.pace:
                await asyncio.sleep(self.pace)
            yield TextDelta((" " if n else "") + WORDS[n % len(WORDS)])
        self.ended = time.perf_counter()
        yield RoundEnd("stop", usage=Usage(prompt_tokens=500, completion_tokens=self.deltas))

    async def complete(
        self, *, model: str, messages: Sequence[dict[str, Any]], max_completion_tokens: int
    ) -> tuple[str, Usage]:
        return "The user asked about the store.", Usage(200, 8)


# -- counting writes --------------------------------------------------------------------------------------
def _number_size(text: str) -> int:
    """A number's size: a byte per two significant digits, and one."""
    digits = text.lstrip("+-").lower().split("e")[0].replace(".", "").strip("0")
    return math.ceil(max(1, len(digits)) / 2) + 1


def _value_size(value: Mapping[str, Any]) -> int:
    (kind, v), *_ = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return _number_size(v)
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in v)
    if kind == "NS":
        return sum(_number_size(n) for n in v)
    if kind == "BS":
        return sum(len(b) for b in v)
    if kind == "L":
        return 3 + sum(1 + _value_size(e) for e in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(e) for k, e in v.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: Mapping[str, Any] | None) -> int:
    """A (low-level) item's size as DynamoDB counts it: names and values."""
    return sum(len(name.encode()) + _value_size(value) for name, value in (item or {}).items())


@dataclass
class Write:
    operation: str
    phase: str
    units: int  # estimated from the items' sizes
    reported_table: float  # what DynamoDB Local said it consumed, on the table
    reported_total: float  # the same with the index writes
    items: list[tuple[str, int]]  # the key (sk) and size after of each item written
    ok: bool = True
    at: float = 0.0  # time.perf_counter() when it was sent


class CountingDynamo(Dynamo):
    """Counts every write request and read request at the seam, and estimates the writes' capacity units
    from the items' sizes before and after (read with the raw client: not counted, not part of a turn)."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        super().__init__(client, table_name)
        self.writes: list[Write] = []
        self.reads = 0
        self.phase = threading.local()
        self._lock = threading.Lock()
        self._keys = [k["AttributeName"] for k in table_properties()["KeySchema"]]

    def reset(self) -> None:
        with self._lock:
            self.writes, self.reads = [], 0

    def call(self, operation: str, /, **kwargs: Any) -> Any:
        if operation not in WRITES:
            if operation in READS:
                with self._lock:
                    self.reads += 1
            return super().call(operation, **kwargs)
        targets = self._targets(operation, kwargs)  # (key, factor, new item or None for an update)
        before = [self._size_now(key) for key, _, _ in targets]
        write = Write(operation, getattr(self.phase, "name", None) or "other", 0, 0.0, 0.0, [])
        write.at = time.perf_counter()
        try:
            out = super().call(operation, **{**kwargs, "ReturnConsumedCapacity": "INDEXES"})
        except Exception:
            write.ok = False
            out = {}
            raise
        finally:
            for (key, factor, new), size_before in zip(targets, before, strict=True):
                size_after = item_size(new) if new is not None else self._size_now(key)
                if not write.ok:
                    size_after = size_before
                write.units += factor * max(1, math.ceil(max(size_before, size_after) / 1024))
                write.items.append((str(key[self._keys[-1]].get("S", "")), size_after))
            consumed = out.get("ConsumedCapacity") or []
            for entry in consumed if isinstance(consumed, list) else [consumed]:
                write.reported_total += float(entry.get("CapacityUnits", 0))
                write.reported_table += float(entry.get("Table", {}).get("CapacityUnits", 0))
            with self._lock:
                self.writes.append(write)
        return out

    def _targets(
        self, operation: str, kwargs: Mapping[str, Any]
    ) -> list[tuple[dict[str, Any], int, Mapping[str, Any] | None]]:
        """The items a write request writes: (key, 2 in a transaction else 1, the item put or None)."""
        key_of: Callable[[Mapping[str, Any]], dict[str, Any]] = lambda i: {k: i[k] for k in self._keys}  # noqa: E731
        if operation == "put_item":
            return [(key_of(kwargs["Item"]), 1, kwargs["Item"])]
        if operation in ("update_item", "delete_item"):
            return [(dict(kwargs["Key"]), 1, None if operation == "update_item" else {})]
        if operation == "transact_write_items":
            found: list[tuple[dict[str, Any], int, Mapping[str, Any] | None]] = []
            for action in kwargs["TransactItems"]:
                (kind, body), *_ = action.items()
                if kind == "Put":
                    found.append((key_of(body["Item"]), 2, body["Item"]))
                else:  # Update, Delete, ConditionCheck (a check is billed as a write of the item)
                    found.append((dict(body["Key"]), 2, {} if kind == "Delete" else None))
            return found
        requests = [r for rs in kwargs["RequestItems"].values() for r in rs]  # batch_write_item
        return [
            (key_of(r["PutRequest"]["Item"]), 1, r["PutRequest"]["Item"])
            if "PutRequest" in r
            else (dict(r["DeleteRequest"]["Key"]), 1, {})
            for r in requests
        ]

    def _size_now(self, key: Mapping[str, Any]) -> int:
        out = self.client.get_item(TableName=self.table, Key=dict(key), ConsistentRead=True)
        return item_size(out.get("Item"))


def tag_phases(repo: ConversationRepository, db: CountingDynamo) -> None:
    """Have the repository's write methods say which part of an answer their DynamoDB calls are."""
    for method, phase in PHASES.items():
        original = getattr(repo, method)

        def tagged(*args: Any, _original: Any = original, _phase: str = phase, **kwargs: Any) -> Any:
            db.phase.name = _phase
            try:
                return _original(*args, **kwargs)
            finally:
                db.phase.name = None

        setattr(repo, method, tagged)


@contextlib.contextmanager
def streaming_persistence_off(repo: ConversationRepository) -> Iterator[None]:
    """The answer kept only at its end: no `streaming` message, no chunk items."""
    saved = {name: repo.__dict__.get(name) for name in ("open_answer", "add_chunk")}
    for name in saved:
        setattr(repo, name, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                delattr(repo, name)
            else:
                setattr(repo, name, value)


# -- in-process turns -------------------------------------------------------------------------------------
@dataclass
class Streamed:
    first: float  # seconds from start() to the first delta
    gaps: list[float]
    seconds: float  # from start() to the stored answer


async def stream_turn(chat: ChatService, counting: CountingDynamo | None = None) -> Streamed:
    """One turn on a new conversation, followed to its stored answer; `counting` is reset just before
    `begin_turn`, so it then holds what the turn wrote up to its stored answer."""
    conversation = chat.create_conversation(USER, ConversationIn())
    if counting is not None:
        counting.reset()
    turn = chat.begin_turn(USER, conversation.id, QUESTION)
    started = time.perf_counter()
    arrivals: list[float] = []
    async with asyncio.timeout(TURN_TIMEOUT_SECONDS):
        async for _, event in chat.start(turn).follow():
            if event.name == "delta":
                arrivals.append(time.perf_counter())
    seconds = time.perf_counter() - started
    if turn.message is None or turn.message.status != "complete":
        raise RuntimeError(f"the turn did not complete: {turn.error or turn.message}")
    return Streamed(arrivals[0] - started, [b - a for a, b in itertools.pairwise(arrivals)], seconds)


def _kinds(writes: list[Write]) -> dict[str, int]:
    """The items written, by the first part of their sort key (MSG, CHUNK, STATE, ...)."""
    kinds: dict[str, int] = {}
    for w in writes:
        for sk, _ in w.items:
            kinds[sk.split("#")[0]] = kinds.get(sk.split("#")[0], 0) + 1
    return kinds


def _summary(writes: list[Write]) -> dict[str, Any]:
    phases: dict[str, dict[str, Any]] = {}
    for w in writes:
        p = phases.setdefault(w.phase, {"requests": 0, "units": 0, "items": {}})
        p["requests"] += 1
        p["units"] += w.units
    for name, p in phases.items():
        p["items"] = _kinds([w for w in writes if w.phase == name])
    return {
        "requests": len(writes),
        "units": sum(w.units for w in writes),
        "failed": sum(not w.ok for w in writes),
        "dynamodb_local_units": {
            "table": sum(w.reported_table for w in writes),
            "with_indexes": sum(w.reported_total for w in writes),
        },
        "phases": phases,
    }


def _to_answer(writes: list[Write]) -> tuple[list[Write], list[Write]]:
    """A turn's writes up to its stored answer (the final transaction included), and those after it
    (whatever the turn records once its answer is stored, the summary fold)."""
    final = [i for i, w in enumerate(writes) if w.phase == "final"]
    if not final:
        raise RuntimeError(f"no final write among {[(w.operation, w.phase) for w in writes]}")
    return writes[: final[0] + 1], writes[final[0] + 1 :]


async def _writes(chat: ChatService, counting: CountingDynamo, model: PacedModel) -> dict[str, Any]:
    """One answer of LONG_DELTAS deltas with the streaming persistence on, counted from `begin_turn`;
    then the same answer kept at its end only."""
    model.deltas, model.pace = LONG_DELTAS, PACE_MS / 1000
    long = await stream_turn(chat, counting)
    turn_reads, model_ended = counting.reads, model.ended
    await chat.settle()  # the summary fold, if any: after the answer
    on_writes, on_after = _to_answer(list(counting.writes))
    model.pace = 0.0  # without the streaming writes the pace changes nothing that is written
    with streaming_persistence_off(chat.repo):
        await stream_turn(chat, counting)
        await chat.settle()
        off_writes, off_after = _to_answer(list(counting.writes))
    return {
        "long": long,
        "on_writes": on_writes,
        "on_after": on_after,
        "off_writes": off_writes,
        "off_after": off_after,
        "turn_reads": turn_reads,
        "model_ended": model_ended,
    }


async def _timed(chat: ChatService, model: PacedModel, turns: int) -> dict[bool, list[Streamed]]:
    """Streamed turns with the streaming persistence on and off, interleaved (after a round of each that
    warms both paths)."""
    model.deltas, model.pace = TURN_DELTAS, TURN_PACE_MS / 1000
    timed: dict[bool, list[Streamed]] = {True: [], False: []}
    for n in range(turns + 1):
        for on in (True, False) if n % 2 else (False, True):
            with contextlib.nullcontext() if on else streaming_persistence_off(chat.repo):
                result = await stream_turn(chat)
                await chat.settle()
            if n:
                timed[on].append(result)
    return timed


# -- resume through the stack ------------------------------------------------------------------------------
def _resume(stack: LocalStack, count: int) -> dict[str, Any]:
    headers = stack.headers
    with httpx.Client(base_url=stack.url, timeout=60) as http:
        created = http.post("/conversations", json={}, headers=headers)
        created.raise_for_status()
        conversation_id = created.json()["id"]
        with http.stream(
            "POST",
            f"/conversations/{conversation_id}/messages",
            json={"content": LONG_QUESTION},
            headers=headers,
        ) as response:
            response.raise_for_status()
            said = list(sse_blocks(response.iter_lines()))
        start = next(data for _, name, data in said if name == "start")
        message_id = start["assistant_message_id"]
        deltas = [event_id for event_id, name, _ in said if name == "delta"]
        after = deltas[len(deltas) // 2]
        message_url = f"/conversations/{conversation_id}/messages/{message_id}"
        until = time.monotonic() + 30
        while http.get(message_url, headers=headers).json().get("status") != "complete":
            if time.monotonic() > until:
                raise RuntimeError("the answer was never stored")
            time.sleep(0.05)
        # The replay's first event: the rest of the text up to the next event that is not text, joined
        # into one delta with the id of its end (see chat.events on ids).
        rest = list(itertools.takewhile(lambda e: e[1] == "delta", (e for e in said if e[0] > after)))
        expected = (rest[-1][0], "delta", {"content": "".join(e[2]["content"] for e in rest)})

        def resume() -> float:
            started = time.perf_counter()
            with http.stream(
                "GET", f"{message_url}/events", headers={**headers, "Last-Event-ID": str(after)}
            ) as response:
                response.raise_for_status()
                events = sse_blocks(response.iter_lines())
                first = next(events)
                elapsed = time.perf_counter() - started
                for _ in events:  # the rest (a finished answer's stream ends): the connection is reused
                    pass
            if first[:2] != expected[:2] or first[2]["content"] != expected[2]["content"]:
                raise RuntimeError(f"resumed with {first[:2]}, expected {expected[:2]}")
            return elapsed

        def read() -> float:
            started = time.perf_counter()
            response = http.get(message_url, headers=headers)
            body = response.json()
            elapsed = time.perf_counter() - started
            if response.status_code != 200 or body.get("id") != message_id:
                raise RuntimeError(f"GET message: {response.status_code} {body}")
            return elapsed

        for _ in range(3):  # warm both routes
            resume()
            read()
        resumes: list[float] = []
        reads: list[float] = []
        for n in range(count):
            if n % 2:
                resumes.append(resume())
                reads.append(read())
            else:
                reads.append(read())
                resumes.append(resume())
    return {
        "resumes": resumes,
        "reads": reads,
        "events": len(said),
        "deltas": len(deltas),
        "after": after,
        "last_id": said[-1][0],
    }


# -- results ------------------------------------------------------------------------------------------------
def run() -> Iterator[dict[str, Any]]:
    logger.setLevel("WARNING")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # EMF on stdout is for Lambda
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "local")
    resumes = int(os.environ.get("BENCH_RESUMES", "30"))
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, repeat=True)
    try:
        measured = _measure(resumes)
    finally:
        faulthandler.cancel_dump_traceback_later()
    yield from _results(*measured)


def _measure(resumes: int) -> tuple[dict[str, Any], dict[str, Any], dict[bool, list[Streamed]], str]:
    with (
        tempfile.TemporaryDirectory(prefix="shelfwise-bench-") as data,
        LocalStack(data_dir=Path(data), SHELFWISE_OFFLINE_DELAY_MS="1") as stack,
    ):
        resumed = _resume(stack, resumes)
        settings = Settings(
            table_name=TABLE,
            dynamodb_endpoint_url=stack.db_url,
            auth_mode="local",
            openai_base_url="http://unused.invalid/v1",
            main_model="bench-main",
            utility_model="bench-utility",
            llm_max_retries=0,
        )
        client = dynamodb_client(settings.aws_region, stack.db_url)
        create_table(client, TABLE)
        counting = CountingDynamo(client, TABLE)
        counted = Services(settings, dynamo=counting).chat
        tag_phases(counted.repo, counting)
        model = PacedModel(settings)
        counted.model = model
        plain = Services(settings, dynamo=Dynamo(client, TABLE)).chat  # the timed turns: nothing counted
        plain.model = model
        turns = int(os.environ.get("BENCH_ANSWER_TURNS", "15"))

        async def in_process() -> tuple[dict[str, Any], dict[bool, list[Streamed]]]:
            return await _writes(counted, counting, model), await _timed(plain, model, turns)

        m, timed = asyncio.run(in_process())
        return resumed, m, timed, stack.db_kind


def _results(
    resumed: dict[str, Any], m: dict[str, Any], timed: dict[bool, list[Streamed]], kind: str
) -> Iterator[dict[str, Any]]:
    ms = 1000.0
    on, off = _summary(m["on_writes"]), _summary(m["off_writes"])
    long: Streamed = m["long"]
    chunks = [w for w in m["on_writes"] if w.phase == "streaming" and w.items[0][0].startswith("CHUNK#")]
    yield {
        "name": "answers.writes_per_1000_tokens",
        "value": on["requests"],
        "unit": "write requests",
        "baseline": WRITE_BUDGET,
        "target": 1.0,
        "detail": {
            "deltas": LONG_DELTAS,
            "pace_ms": PACE_MS,
            "answer_seconds": round(long.seconds, 2),
            "begin": on["phases"].get("begin", {}).get("requests", 0),
            "streaming": on["phases"].get("streaming", {}).get("requests", 0),
            "final": on["phases"].get("final", {}).get("requests", 0),
            "other": on["phases"].get("other", {}).get("requests", 0),
            "items": _kinds(m["on_writes"]),
            "chunk_items": len(chunks),
            "chunk_items_after_the_model_ended": sum(w.at > m["model_ended"] for w in chunks),
            "failed": on["failed"],
            "read_requests": m["turn_reads"],
            "after_stored_answer": {"requests": len(m["on_after"]), "items": _kinds(m["on_after"])},
            "database": kind,
            "note": "baseline is the budget (20 write requests per 1,000-token answer), not a measurement; "
            "what the turn writes once its answer is stored (usage, the summary fold) is counted apart",
        },
    }
    final = [
        size for w in m["on_writes"] if w.phase == "final" for sk, size in w.items if sk.startswith("MSG#")
    ]
    yield {
        "name": "answers.write_units_per_answer",
        "value": on["units"],
        "unit": "WCU (estimated)",
        "baseline": off["units"],
        "detail": {
            "streaming_persistence_on": {
                "units": on["units"],
                "requests": on["requests"],
                "by_phase": {p: v["units"] for p, v in on["phases"].items()},
                "dynamodb_local_units": on["dynamodb_local_units"],
                "after_stored_answer": sum(w.units for w in m["on_after"]),
            },
            "streaming_persistence_off": {
                "units": off["units"],
                "requests": off["requests"],
                "by_phase": {p: v["units"] for p, v in off["phases"].items()},
                "dynamodb_local_units": off["dynamodb_local_units"],
                "after_stored_answer": sum(w.units for w in m["off_after"]),
            },
            "final_message_bytes": max(final, default=0),
            "rule": "each item written: ceil(max(size before, size after) / 1 KB), twice in a transaction; "
            "index writes not included (they are in dynamodb_local_units.with_indexes)",
        },
    }
    m_res: list[float] = resumed["resumes"]
    res_value, res_base = statistics.median(m_res) * ms, statistics.median(resumed["reads"]) * ms
    yield {
        "name": "answers.resume_first_event_ms",
        "value": round(res_value, 2),
        "unit": "ms",
        "baseline": round(res_base, 2),
        "target": round(RESUME_TARGET_MS / res_base, 3),
        "target_note": "<= 50 ms median locally",
        "detail": {
            "resume_median_ms": round(res_value, 2),
            "resume_p90_ms": round(sorted(m_res)[int(0.9 * (len(m_res) - 1))] * ms, 2),
            "read_median_ms": round(res_base, 2),
            "runs": len(m_res),
            "answer_events": resumed["events"],
            "last_event_id": resumed["last_id"],
            "last_event_id_sent": resumed["after"],
            "stack": f"make run ({kind}) in its own process",
            "target": "ratio for target_ms over this run's baseline (GET of the same message as JSON)",
        },
    }
    first = {on_: statistics.median(t.first for t in timed[on_]) * ms for on_ in (True, False)}
    gap = {on_: statistics.median(statistics.mean(t.gaps) for t in timed[on_]) * ms for on_ in (True, False)}
    p99 = {on_: _p([g for t in timed[on_] for g in t.gaps], 0.99) * ms for on_ in (True, False)}
    common = {"turns": len(timed[True]), "deltas": TURN_DELTAS, "pace_ms": TURN_PACE_MS}
    yield {
        "name": "answers.ttft_ratio",
        "value": round(first[True], 3),
        "unit": "ms",
        "baseline": round(first[False], 3),
        "target": 1.05,
        "added_ms": round(first[True] - first[False], 3),
        "detail": {
            **common,
            "measured": "start() to the first delta, in-process; the model's first delta "
            f"comes {TURN_PACE_MS} ms after it is asked",
        },
    }
    yield {
        "name": "answers.gap_ratio",
        "value": round(gap[True], 3),
        "unit": "ms",
        "baseline": round(gap[False], 3),
        "target": 1.05,
        "added_ms": round(gap[True] - gap[False], 3),
        "detail": {**common, "p99_gap_ms": {"on": round(p99[True], 3), "off": round(p99[False], 3)}},
    }


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
