"""The ``kafka://`` backend: Apache Kafka through confluent-kafka (librdkafka), blocking.

``kafka://host:port[,host:port...][?option=value...]``. Keys land where the Java
client puts them (``murmur2_random``), offsets are stored only for processed messages,
rebalances are incremental (cooperative-sticky). Any librdkafka setting passes through
the ``config`` option. Install with ``pip install 'polybus[kafka]'``.
"""

from __future__ import annotations

from collections.abc import Iterable

from backends.kafka._settings import OPTIONS
from bus import hookimpl
from bus.spi import Backend, BackendConfig, BackendDescriptor


def _connect(config: BackendConfig) -> Backend:
    from backends.kafka._backend import KafkaBackend

    return KafkaBackend(config)


@hookimpl
def bus_register_backends() -> Iterable[BackendDescriptor]:
    return [
        BackendDescriptor(
            name="kafka",
            schemes=("kafka",),
            capabilities=frozenset(
                {
                    "sync",
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
            description="Apache Kafka through confluent-kafka (librdkafka); blocking API.",
            requires=("confluent_kafka",),
            extra="polybus[kafka]",
            hints={"async": "use aiokafka:// for asyncio (pip install 'polybus[aiokafka]')"},
        )
    ]
