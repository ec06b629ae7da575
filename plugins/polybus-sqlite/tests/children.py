"""The other processes of the cross-process tests: ``python children.py MODE ARGS...``.

``member URL TOPIC GROUP LOG OPTIONS``: a group member iterating over ``TOPIC``; for
each message it appends ``partition offset`` to ``LOG`` (one ``write``, so a killed
process leaves whole lines) after ``handling`` seconds of work. ``OPTIONS`` is JSON:
consumer options, plus ``handling`` and ``commit_each`` (commit every message
explicitly, appending ``fenced partition offset`` when the commit is refused).

``produce URL TOPIC COUNT LOG``: sends ``COUNT`` messages one at a time (keys
``k<i>``), appending ``partition offset value`` to ``LOG`` once each is acknowledged.

``stamp URL TOPIC COUNT INTERVAL``: sends ``COUNT`` messages ``INTERVAL`` seconds
apart, each holding ``time.time()`` when it was sent (for latency).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import bus


def member(url: str, topic: str, group: str, log: str, options: str) -> None:
    settings: dict[str, Any] = json.loads(options)
    handling = float(settings.pop("handling", 0.0))
    commit_each = bool(settings.pop("commit_each", False))
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with bus.connect(url) as b, b.consumer(topic, group=group, **settings) as consumer:
        os.write(fd, b"joined\n")
        for message in consumer:
            if handling:
                time.sleep(handling)
            os.write(fd, f"{message.partition} {message.offset}\n".encode())
            if commit_each:
                try:
                    consumer.commit(message)
                except bus.CommitError:
                    os.write(fd, f"fenced {message.partition} {message.offset}\n".encode())


def produce(url: str, topic: str, count: str, log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with bus.connect(url) as b, b.producer() as producer:
        for i in range(int(count)):
            value = b"v%d" % i
            delivery = producer.send(topic, value, key=b"k%d" % i)
            os.write(fd, b"%d %d %s\n" % (delivery.partition, delivery.offset, value))


def stamp(url: str, topic: str, count: str, interval: str) -> None:
    with bus.connect(url) as b, b.producer() as producer:
        for _ in range(int(count)):
            producer.send(topic, repr(time.time()).encode(), partition=0)
            time.sleep(float(interval))


if __name__ == "__main__":
    {"member": member, "produce": produce, "stamp": stamp}[sys.argv[1]](*sys.argv[2:])
