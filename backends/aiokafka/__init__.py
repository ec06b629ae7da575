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
from typing import Any

from backends.aiokafka._settings import OPTIONS
from bus import hookimpl
from bus.spi import Backend, BackendConfig, BackendDescriptor

__all__ = ["consumer_kwargs", "producer_kwargs"]


def producer_kwargs(url: str, **options: Any) -> dict[str, Any]:
    """The keyword arguments that ``bus.connect(url).async_producer(**options)`` gives
    ``aiokafka.AIOKafkaProducer``, computed without connecting: to see what polybus
    sets, or to give a raw client the very same settings (``bench/aiokafka.py`` does).
    Credentials are in them as given: do not log them."""
    from backends._kafka_options import resolved
    from backends.aiokafka import _settings

    config, settings = resolved(url, "producer", options)
    return _settings.producer_kwargs(_settings.common_kwargs(config.url, config.options), settings)


def consumer_kwargs(url: str, *, group: str | None = None, **options: Any) -> dict[str, Any]:
    """The keyword arguments that ``bus.connect(url).async_consumer(..., group=group,
    **options)`` gives ``aiokafka.AIOKafkaConsumer``, computed without connecting; see
    ``producer_kwargs``."""
    from backends._kafka_options import resolved
    from backends.aiokafka import _settings

    config, settings = resolved(url, "consumer", options)
    return _settings.consumer_kwargs(
        _settings.common_kwargs(config.url, config.options), group, settings
    )


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
                    "pause",
                    "offsets",
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
