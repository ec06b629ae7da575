"""The ``kafka://`` backend: Apache Kafka through confluent-kafka (librdkafka), blocking.

``kafka://host:port[,host:port...][?option=value...]``. Keys land where the Java
client puts them (``murmur2_random``), offsets are stored only for processed messages,
rebalances are incremental (cooperative-sticky). Any librdkafka setting passes through
the ``config`` option. Install with ``pip install 'polybus[kafka]'``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from backends.kafka._settings import OPTIONS
from bus import hookimpl
from bus.spi import Backend, BackendConfig, BackendDescriptor

__all__ = ["consumer_config", "producer_config"]


def producer_config(url: str, **options: Any) -> dict[str, Any]:
    """The librdkafka configuration that ``bus.connect(url).producer(**options)`` gives
    ``confluent_kafka.Producer``, computed without connecting: to see what polybus
    sets, or to give a raw client the very same settings (``bench/kafka.py`` does).
    Credentials are in it as given: do not log it."""
    from backends._kafka_options import resolved
    from backends.kafka import _settings

    config, settings = resolved(url, "producer", options)
    return _settings.producer_config(_settings.common_config(config.url, config.options), settings)


def consumer_config(url: str, *, group: str | None = None, **options: Any) -> dict[str, Any]:
    """The librdkafka configuration that ``bus.connect(url).consumer(..., group=group,
    **options)`` gives ``confluent_kafka.Consumer`` (without the consumer's own
    ``error_cb``), computed without connecting; see ``producer_config``."""
    from backends._kafka_options import resolved
    from backends.kafka import _settings

    config, settings = resolved(url, "consumer", options)
    return _settings.consumer_config(
        _settings.common_config(config.url, config.options), group, settings
    )


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
                    "pause",
                    "offsets",
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
