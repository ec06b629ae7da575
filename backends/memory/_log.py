"""The in-memory broker: named, process-wide models of a Kafka cluster.

A ``Broker`` holds topics (each a list of partition logs of records, offsets
from 0), consumer groups and committed positions. One lock guards it all; every
operation under it is short and never blocks. Waiters are woken through a
``threading.Condition`` (blocking consumers) or their event loop (asyncio ones),
and only when someone waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Mapping
from typing import Any

from bus import DeliveryError, TopicExistsError, UnknownTopicError
from bus.spi import Headers

#: Kafka's default ``max.message.bytes`` (1 MiB plus the batch overhead).
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
#: What a one-record batch adds to key, value and headers (batch header and record framing).
RECORD_OVERHEAD = 70

#: A record in a partition log: value, key, headers, timestamp. Plain tuples, not
#: ``Message``s: the garbage collector stops tracking them, so a long log costs no
#: collection time; consumers build the ``Message`` they hand out.
Record = tuple[bytes | None, bytes | None, Headers, int]


class Topic:
    """A topic: ``logs[p]`` is partition ``p``'s log; a record's offset is its index."""

    __slots__ = (
        "after_max",
        "before_max",
        "config",
        "log_append_time",
        "logs",
        "max_bytes",
        "max_payload",
        "name",
    )

    def __init__(self, name: str, partitions: int, config: Mapping[str, str]):
        self.name = name
        self.logs: list[list[Record]] = [[] for _ in range(partitions)]
        self.config = dict(config)
        self.max_bytes = int(config.get("max.message.bytes", DEFAULT_MAX_MESSAGE_BYTES))
        #: key + value bytes that surely fit a headerless record; larger ones are measured
        self.max_payload = self.max_bytes - RECORD_OVERHEAD
        self.log_append_time = config.get("message.timestamp.type") == "LogAppendTime"
        #: how far (ms) a producer's timestamp may lie ahead of or behind the broker's
        #: clock: Kafka 4's defaults, one hour ahead and any time back
        self.after_max = int(config.get("message.timestamp.after.max.ms", 3_600_000))
        self.before_max = int(config.get("message.timestamp.before.max.ms", 2**63 - 1))

    def timestamp_error(self, timestamp: int, now: int) -> DeliveryError | None:
        """The broker's refusal of a producer's ``timestamp`` at ``now``, if any."""
        if self.log_append_time or now - self.before_max <= timestamp <= now + self.after_max:
            return None
        which, limit = ("after", self.after_max) if timestamp > now else ("before", self.before_max)
        return DeliveryError(
            f"timestamp {timestamp} is out of range for topic {self.name!r}: more than "
            f"message.timestamp.{which}.max.ms={limit} from the broker's clock",
            retriable=False,
        )


class Broker:
    """One named in-memory cluster. Every attribute is guarded by ``lock``."""

    def __init__(self, name: str):
        self.name = name
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.topics: dict[str, Topic] = {}
        self.groups: dict[str, Any] = {}  # name -> backends.memory._group.Group
        self.sync_waiting = 0
        self.async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    # -- called with the lock held ---------------------------------------------------------

    def notify(self) -> None:
        """Wake every waiter: something changed (a message, the group, a wakeup)."""
        if self.sync_waiting:
            self.changed.notify_all()
        if self.async_waiters:
            waiters, self.async_waiters = self.async_waiters, set()
            for loop, future in waiters:
                # A closed loop raises RuntimeError: nobody waits there any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_resolve, future)

    def create(self, name: str, partitions: int, config: Mapping[str, str]) -> Topic:
        if name in self.topics:
            raise TopicExistsError(f"topic {name!r} already exists")
        other = self.collision(name)
        if other is not None:
            # Kafka's rule: '.' and '_' are one character in metric names
            raise TopicExistsError(f"topic {name!r} collides with existing topic {other!r}")
        topic = self.topics[name] = Topic(name, partitions, config)
        for group in self.groups.values():
            group.topics_changed(self)
        self.notify()
        return topic

    def collision(self, name: str) -> str | None:
        """The existing topic whose name differs from ``name`` only by '.' for '_'."""
        if "." not in name and "_" not in name:
            return None
        spelt = name.replace(".", "_")
        for other in self.topics:
            if other != name and other.replace(".", "_") == spelt:
                return other
        return None

    def delete(self, name: str) -> None:
        if self.topics.pop(name, None) is None:
            raise UnknownTopicError(f"topic {name!r} does not exist")
        for group in self.groups.values():
            group.topics_changed(self)
        self.notify()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_brokers: dict[str, Broker] = {}
_brokers_lock = threading.Lock()


def broker_named(name: str) -> Broker:
    """The process-wide broker called ``name`` (``""`` is ``"default"``), made on first use."""
    name = name or "default"
    with _brokers_lock:
        broker = _brokers.get(name)
        if broker is None:
            broker = _brokers[name] = Broker(name)
        return broker


def drop_broker(name: str) -> None:
    """Forget broker ``name`` and all it holds; the next ``memory://name`` starts empty.
    Clients still connected to it keep the old one."""
    with _brokers_lock:
        _brokers.pop(name or "default", None)
