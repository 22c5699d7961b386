"""Driving a consumer's faust agent in a test, without a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import faust


def feed_agent(agent: faust.types.AgentT, messages: list[bytes], done: Callable[[], bool], *, polls: int = 100) -> None:
    """Puts `messages` to `agent` in faust's test context and waits until `done()` (polling every
    20 ms, `polls` times at the most: the assertions that follow say whether it got there)."""

    async def run() -> None:
        async with agent.test_context() as running:
            for raw in messages:
                await running.put(raw)
            for _ in range(polls):
                if done():
                    break
                await asyncio.sleep(0.02)

    asyncio.run(run())
