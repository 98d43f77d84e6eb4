"""The answers this process is generating. A turn runs in a task of its own, whoever listens: the
POST that started it follows it, and so may any number of resumes; a listener that leaves ends only
its own following. After each invocation the Lambda loop waits for these tasks (`drain`), bounded by
each turn's deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable

from shelfwise.chat.events import TurnEvent, next_id


class LiveTurn:
    """One running answer's events, numbered as they are said (see chat.events on ids)."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.events: list[tuple[int, TurnEvent]] = []
        self.ended = False
        self.stop = asyncio.Event()  # set by POST .../stop in this process
        self.loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def publish(self, event: TurnEvent) -> None:
        last = self.events[-1][0] if self.events else 0
        self.events.append((next_id(last, event), event))
        self._wake()

    def end(self) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def follow(self, *, after: int = 0) -> AsyncGenerator[tuple[int, TurnEvent]]:
        """The events after id `after` as they come, until the answer ends (a delta the listener saw
        part of is cut to the rest)."""
        index = 0
        while True:
            changed = self._changed
            while index < len(self.events):
                event_id, event = self.events[index]
                index += 1
                if event_id <= after:
                    continue
                if event.name == "delta" and event_id - len(event.data["content"]) < after:
                    event = TurnEvent.delta(
                        event.data["content"][len(event.data["content"]) - (event_id - after) :]
                    )
                yield event_id, event
            if self.ended:
                return
            await changed.wait()


# An answer is listed under whose it is (user, conversation, message): a listener names all three,
# so another user's answer is never found here, whatever ids they send.
Owner = tuple[str, str, str]
_running: dict[Owner, LiveTurn] = {}
_tasks: set[asyncio.Task[None]] = set()


def find(owner: Owner) -> LiveTurn | None:
    """The answer if this process's running event loop is generating it (another loop's, like
    another invocation's, is followed through DynamoDB)."""
    live = _running.get(owner)
    return live if live is not None and live.loop is asyncio.get_running_loop() else None


def start(owner: Owner, run: Callable[[LiveTurn], Awaitable[None]]) -> LiveTurn:
    """Run `run(live)` in its own task; the answer is listed here until its events end."""
    live = LiveTurn(owner[2])
    _running[owner] = live

    async def owned() -> None:
        try:
            await run(live)
        finally:
            live.end()
            _running.pop(owner, None)

    task = asyncio.get_running_loop().create_task(owned())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return live


async def drain() -> None:
    """Wait until every turn of this process (and its after-turn work) has ended."""
    loop = asyncio.get_running_loop()
    while pending := [t for t in _tasks if not t.done() and t.get_loop() is loop]:
        await asyncio.wait(pending)
