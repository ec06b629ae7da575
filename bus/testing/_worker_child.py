"""A worker in a process of its own, for the conformance test that kills one.

``python -m bus.testing._worker_child URL TOPIC GROUP LOG`` runs a worker over
``TOPIC`` in ``GROUP`` whose handler appends ``partition offset`` lines to ``LOG`` (one
``write`` each, so a killed process leaves whole lines) and takes a few milliseconds a
message; through the blocking API when the backend has one, else asyncio.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import bus

#: Seconds each message takes: the process is killed with work in flight.
HANDLING = 0.005
#: What the killed member's group waits before it takes its partitions back.
OPTIONS: dict[str, Any] = {
    "offset_reset": "earliest",
    "session_timeout": 3.0,
    "heartbeat_interval": 0.5,
    "auto_commit_interval": 0.1,
}


def main(url: str, topic: str, group: str, log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def note(message: bus.Message) -> None:
        time.sleep(HANDLING)
        os.write(fd, f"{message.partition} {message.offset}\n".encode())

    async def anote(message: bus.Message) -> None:
        await asyncio.sleep(HANDLING)
        os.write(fd, f"{message.partition} {message.offset}\n".encode())

    with bus.connect(url) as b:
        if "sync" in b.capabilities:
            b.worker(note, topic, group=group, concurrency=2, **OPTIONS).run()
        else:
            asyncio.run(b.async_worker(anote, topic, group=group, concurrency=2, **OPTIONS).run())


if __name__ == "__main__":
    main(*sys.argv[1:5])
