"""``MemoryBackend``: a connection to a named in-process broker."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from backends.memory._async import AsyncMemoryConsumer, AsyncMemoryProducer
from backends.memory._group import ConsumerState
from backends.memory._log import broker_named
from backends.memory._produce import Appender
from backends.memory._sync import MemoryConsumer, MemoryProducer
from bus import ConfigError, UnknownTopicError
from bus.spi import (
    AsyncConsumerDriver,
    AsyncProducerDriver,
    Backend,
    BackendConfig,
    ConsumerDriver,
    ProducerDriver,
)

_NAME = re.compile(r"[A-Za-z0-9._\-]*")


class MemoryBackend(Backend):
    """Every ``memory://name`` connection of a process shares broker ``name``."""

    def __init__(self, config: BackendConfig):
        url = config.url
        if not _NAME.fullmatch(url.location) or url.path not in ("", "/"):
            raise ConfigError(
                f"memory:// takes one broker name of letters, digits, '.', '_' and '-' "
                f"(memory://orders), not {url.location + url.path!r}"
            )
        self.broker = broker_named(url.location)
        self._auto_create: bool = config.options.get("auto_create_topics", True)
        self._partitions: int = config.options.get("partitions", 1)

    def _appender(self, settings: Mapping[str, Any]) -> Appender:
        return Appender(self.broker, settings, self._auto_create, self._partitions)

    def producer(self, settings: Mapping[str, Any]) -> ProducerDriver:
        return MemoryProducer(self._appender(settings))

    def async_producer(self, settings: Mapping[str, Any]) -> AsyncProducerDriver:
        return AsyncMemoryProducer(self._appender(settings))

    def _state(
        self, topics: tuple[str, ...], group: str | None, settings: Mapping[str, Any]
    ) -> ConsumerState:
        with self.broker.lock:
            return ConsumerState(self.broker, topics, group, settings)

    def consumer(
        self, topics: tuple[str, ...], group: str | None, settings: Mapping[str, Any]
    ) -> ConsumerDriver:
        return MemoryConsumer(self._state(topics, group, settings), settings)

    def async_consumer(
        self, topics: tuple[str, ...], group: str | None, settings: Mapping[str, Any]
    ) -> AsyncConsumerDriver:
        return AsyncMemoryConsumer(self._state(topics, group, settings), settings)

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, config: Mapping[str, str]
    ) -> None:
        with self.broker.lock:
            self.broker.create(name, partitions, config)

    def delete_topic(self, name: str) -> None:
        with self.broker.lock:
            self.broker.delete(name)

    def topics(self) -> dict[str, int]:
        with self.broker.lock:
            return {name: len(t.logs) for name, t in sorted(self.broker.topics.items())}

    def partitions(self, topic: str) -> list[int]:
        with self.broker.lock:
            found = self.broker.topics.get(topic)
            if found is None:
                raise UnknownTopicError(f"topic {topic!r} does not exist")
            return list(range(len(found.logs)))
