"""The group member that ``member_kill`` SIGKILLs: ``python -m tools.faults._member URL
TOPIC GROUP WINDOW``. Prints each processed id on a line of its own and ``C <n>`` once
its first ``n`` processed ids are committed (a commit after every ``WINDOW``); runs
until killed. Auto-commit is off, so the uncommitted window is exactly what it printed
after its last ``C`` line."""

from __future__ import annotations

import asyncio
import sys

import bus


def _blocking(url: str, topic: str, group: str, window: int) -> None:
    with (
        bus.connect(url) as b,
        b.consumer(topic, group=group, offset_reset="earliest", auto_commit=False) as consumer,
    ):
        for done, message in enumerate(consumer, start=1):
            print(int(message.value or b"0"), flush=True)
            if done % window == 0:
                consumer.commit()
                print(f"C {done}", flush=True)


async def _asyncio(url: str, topic: str, group: str, window: int) -> None:
    async with (
        bus.connect(url) as b,
        b.async_consumer(
            topic, group=group, offset_reset="earliest", auto_commit=False
        ) as consumer,
    ):
        done = 0
        async for message in consumer:
            print(int(message.value or b"0"), flush=True)
            done += 1
            if done % window == 0:
                await consumer.commit()
                print(f"C {done}", flush=True)


def main(argv: list[str]) -> None:
    url, topic, group, window = argv[0], argv[1], argv[2], int(argv[3])
    if url.startswith("aiokafka://"):
        asyncio.run(_asyncio(url, topic, group, window))
    else:
        _blocking(url, topic, group, window)


if __name__ == "__main__":
    main(sys.argv[1:])
