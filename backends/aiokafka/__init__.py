"""The ``aiokafka://`` backend: Apache Kafka for asyncio through aiokafka.

``aiokafka://host:port[,host:port...][?option=value...]``. Only the asyncio API
(``async_producer``, ``async_consumer``); the blocking one is on ``kafka://``. Keys
land where the Java client puts them (aiokafka's default partitioner is murmur2),
processed positions are committed by the driver, never fetched ones. Any aiokafka
keyword argument passes through the ``config`` option. Install with
``pip install 'polybus[aiokafka]'``.
"""

from __future__ import annotations

from collections.abc import Iterable

from backends.aiokafka._settings import OPTIONS
from bus import hookimpl
from bus.spi import Backend, BackendConfig, BackendDescriptor


def _connect(config: BackendConfig) -> Backend:
    from backends.aiokafka._backend import AioKafkaBackend

    return AioKafkaBackend(config)


@hookimpl
def bus_register_backends() -> Iterable[BackendDescriptor]:
    return [
        BackendDescriptor(
            name="aiokafka",
            schemes=("aiokafka",),
            capabilities=frozenset(
                {
                    "async",
                    "partitions",
                    "consumer_groups",
                    "headers",
                    "timestamps",
                    "seek",
                    "admin",
                    "persistence",
                    "cross_process",
                    "idempotence",
                }
            ),
            factory=_connect,
            options=OPTIONS,
            description="Apache Kafka through aiokafka; asyncio API.",
            requires=("aiokafka",),
            extra="polybus[aiokafka]",
            hints={"sync": "use kafka:// for the blocking API (pip install 'polybus[kafka]')"},
        )
    ]
