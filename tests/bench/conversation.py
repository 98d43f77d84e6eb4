"""A scripted 1,000-turn conversation against the offline model, on DynamoDB Local.

Reports, at turns 10, 100 and 1,000: prompt tokens of the turn's model calls (what the offline model
counted on arrival) and DynamoDB items read by the turn. Targets: prompt tokens never above the
budget and flat once the window is full (turn 1,000 vs turn 100); items read per turn independent of
history length once the window is full (turn 1,000 vs turn 100); every message folded into the
summary exactly once.

BENCH_TURNS overrides the number of turns (default 1000).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

from infra.local.dynamodb_local import DynamoDBLocal
from infra.local.offline_model import OfflineModel
from infra.local.table import create_table
from shelfwise.observability import logger
from shelfwise.services import Services
from shelfwise.settings import Settings
from shelfwise.storage.dynamo import Dynamo
from tests.fixtures.catalog import black_tee

BUDGET = 3000
WINDOW = 30
CHECKPOINTS = (10, 100, 1000)
QUESTIONS = [
    "how many medium black tees are in stock?",
    "what is running low right now?",
    "tell me about the chore jacket, how does it fit and what colours does it come in?",
    "what is our inventory worth?",
    "thanks, can you summarise what we talked about so far in a few words for my notes please",
    "do we have the suede chelsea boot in size 42?",
]


class CountingDynamo(Dynamo):
    """Counts the items each DynamoDB call returns (what a turn reads)."""

    items_read = 0

    def call(self, operation: str, /, **kwargs: Any) -> Any:
        out = super().call(operation, **kwargs)
        if operation in ("query", "scan"):
            self.items_read += len(out.get("Items", []))
        elif operation == "get_item":
            self.items_read += 1 if "Item" in out else 0
        elif operation == "batch_get_item":
            self.items_read += sum(len(v) for v in out.get("Responses", {}).values())
        return out


def run() -> Iterator[dict[str, Any]]:
    turns = int(os.environ.get("BENCH_TURNS", "1000"))
    logger.setLevel("WARNING")  # a thousand turns of INFO lines would drown the report
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # EMF on stdout is for Lambda
    checkpoints = [c for c in CHECKPOINTS if c <= turns] or [turns]
    with DynamoDBLocal() as ddb, OfflineModel() as model:
        client = ddb.client()
        create_table(client, "bench-conversation")
        settings = Settings(
            table_name="bench-conversation",
            auth_mode="local",
            openai_base_url=model.base_url,
            main_model="offline-main",
            utility_model="offline-utility",
            prompt_token_budget=BUDGET,
            history_window_messages=WINDOW,
            llm_max_retries=0,
        )
        db = CountingDynamo(client, settings.table_name)
        services = Services(settings, dynamo=db)
        services.inventory.create_product(
            black_tee(),
            actor="bench",
        )
        chat = services.chat
        conversation = chat.create_conversation("bench-user", _new())
        folds: list[tuple[int, int, int]] = []
        original_fold = chat.repo.fold_summary

        def record_fold(*args: Any, **kwargs: Any) -> bool:
            ok = original_fold(*args, **kwargs)
            if ok:
                folds.append((kwargs["previous_through"], kwargs["through_seq"], kwargs["folded"]))
            return ok

        chat.repo.fold_summary = record_fold  # type: ignore[method-assign]

        per_turn: list[dict[str, int]] = []
        started = time.perf_counter()

        async def converse() -> None:
            for turn in range(1, turns + 1):
                model.clear_requests()  # its log is bounded; one turn's worth at a time
                db.items_read = 0
                turn_obj = chat.begin_turn("bench-user", conversation.id, QUESTIONS[turn % len(QUESTIONS)])
                async for _ in chat.start(turn_obj).follow():
                    pass
                items_turn = db.items_read  # read by the turn itself (before the fold)
                await chat.settle()  # the fold, after the answer
                chats = [r for r in model.requests() if r["task"] == "chat"]
                per_turn.append(
                    {
                        "turn": turn,
                        "prompt_tokens": max(r["prompt_tokens"] for r in chats),
                        "items_read": items_turn,
                    }
                )
                if turn % 100 == 0:
                    print(
                        f"bench: conversation turn {turn}/{turns}", flush=True, file=__import__("sys").stderr
                    )

        asyncio.run(converse())
        elapsed = time.perf_counter() - started
        final = chat.get_conversation("bench-user", conversation.id)

    # exactly once: the folds form one contiguous chain from 0 to through_seq, each message once
    chain_ok = all(prev == (folds[i - 1][1] if i else 0) for i, (prev, _, _) in enumerate(folds))
    folded_total = sum(n for _, _, n in folds)
    at = {c: per_turn[c - 1] for c in checkpoints}
    mid, last = at[checkpoints[min(1, len(checkpoints) - 1)]], at[checkpoints[-1]]
    peak = max(t["prompt_tokens"] for t in per_turn)
    detail = {
        "turns": turns,
        "seconds": round(elapsed, 1),
        "budget": BUDGET,
        "window_messages": WINDOW,
        "checkpoints": {str(c): at[c] for c in checkpoints},
        "peak_prompt_tokens": peak,
        "within_budget": peak <= BUDGET,
        "summary_through_seq": final.summary.through_seq,
        "messages_folded": folded_total,
        "folds": len(folds),
        "folded_exactly_once": chain_ok and folded_total == final.summary.through_seq,
        "messages": final.message_count,
    }
    yield {
        "name": "conversation.prompt_tokens",
        "value": last["prompt_tokens"],
        "unit": "tokens",
        "baseline": mid["prompt_tokens"],
        "target": 1.1,
        "detail": detail,
    }
    yield {
        # against turn 100, when the window is full (turn 10 reads fewer: the history is shorter
        # than the window; it is in the detail above)
        "name": "conversation.items_read_per_turn",
        "value": last["items_read"],
        "unit": "items",
        "baseline": mid["items_read"],
        "target": 1.0,
    }
    yield {
        "name": "conversation.messages_folded_once",
        "value": folded_total,
        "unit": "messages",
        "baseline": final.summary.through_seq,
        "target": 1.0,
    }


def _new() -> Any:
    from shelfwise.chat.models import ConversationIn

    return ConversationIn()
