"""The ``memory://`` backend: a faithful in-process model of a partitioned log.

``memory://`` and ``memory://default`` are one process-wide broker; ``memory://name``
is another. Topics have partitions and offsets, keyed messages land where the Java
client puts them (murmur2), consumer groups share partitions with rebalances and
committed positions, delivery is at-least-once exactly as the ``bus`` contract says.

Like a Kafka broker with its defaults, producing to a missing topic creates it with
``partitions`` partitions (option, default 1, Kafka's ``num.partitions``) unless
``auto_create_topics=false``; consumers never create topics; ``create_topic`` of an
existing topic raises ``bus.TopicExistsError``. Nothing outlives the process.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator

from backends.memory._log import drop_broker
from bus import hookimpl
from bus.spi import BUS, Backend, BackendConfig, BackendDescriptor, Option, boolean, integer

__all__ = ["drop_broker", "fresh_broker"]

OPTIONS = (
    Option(
        "partitions",
        frozenset({BUS}),
        1,
        "Partitions of a topic created by producing to it (Kafka's num.partitions).",
        integer(1, 100_000),
    ),
    Option(
        "auto_create_topics",
        frozenset({BUS}),
        True,
        "Create a missing topic when a producer writes to it (Kafka's auto.create.topics.enable).",
        boolean,
    ),
)


@contextlib.contextmanager
def fresh_broker() -> Iterator[str]:
    """Yield the URL of a new, empty broker (``memory://test-<uuid>``) and drop it on
    exit: the backend's ``fresh_url``, which the pytest plugin uses for each test."""
    name = f"test-{uuid.uuid4().hex}"
    try:
        yield f"memory://{name}"
    finally:
        drop_broker(name)


def _connect(config: BackendConfig) -> Backend:
    from backends.memory._backend import MemoryBackend

    return MemoryBackend(config)


@hookimpl
def bus_register_backends() -> Iterable[BackendDescriptor]:
    return [
        BackendDescriptor(
            name="memory",
            schemes=("memory",),
            capabilities=frozenset(
                {
                    "sync",
                    "async",
                    "partitions",
                    "consumer_groups",
                    "headers",
                    "timestamps",
                    "seek",
                    "admin",
                    "idempotence",
                    "pause",
                    "offsets",
                }
            ),
            factory=_connect,
            options=OPTIONS,
            description="In-process model of a partitioned log with consumer groups.",
            fresh_url=fresh_broker,
        )
    ]
