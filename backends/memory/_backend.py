"""``MemoryBackend``: a connection to a named in-process broker."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from backends.memory._async import AsyncMemoryConsumer, AsyncMemoryProducer
from backends.memory._group import ConsumerState, Group
from backends.memory._log import broker_named
from backends.memory._produce import Appender
from backends.memory._sync import MemoryConsumer, MemoryProducer
from bus import (
    ConfigError,
    GroupDescription,
    GroupMember,
    PartitionDescription,
    TopicDescription,
    TopicPartition,
    UnknownGroupError,
    UnknownTopicError,
)
from bus.spi import (
    AsyncConsumerDriver,
    AsyncProducerDriver,
    Backend,
    BackendConfig,
    ConsumerDriver,
    ProducerDriver,
    group_description,
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

    def describe_topic(self, topic: str, timeout: float | None) -> TopicDescription:
        """Nothing is ever deleted from a memory log (low 0) and there are no brokers."""
        with self.broker.lock:
            found = self.broker.topics.get(topic)
            if found is None:
                raise UnknownTopicError(f"topic {topic!r} does not exist")
            return TopicDescription(
                topic, [PartitionDescription(n, 0, len(log)) for n, log in enumerate(found.logs)]
            )

    def _committed(self, group: Group) -> dict[TopicPartition, int]:
        """The group's committed positions in partitions that exist now."""
        topics = self.broker.topics
        return {
            tp: offset
            for tp, offset in group.committed.items()
            if (topic := topics.get(tp.topic)) is not None and tp.partition < len(topic.logs)
        }

    def groups(self, timeout: float | None) -> list[str]:
        with self.broker.lock:
            return sorted(
                name
                for name, group in self.broker.groups.items()
                if group.members or self._committed(group)
            )

    def describe_group(self, group: str, timeout: float | None) -> GroupDescription:
        with self.broker.lock:
            found: Group | None = self.broker.groups.get(group)
            committed = {} if found is None else self._committed(found)
            if found is None or not (found.members or committed):
                raise UnknownGroupError(f"consumer group {group!r} does not exist")
            members = [
                GroupMember(
                    f"{member.client_id or 'consumer'}-{member.id}",
                    member.client_id,
                    None,  # in the process: no host
                    member.assigned,
                )
                for member in found.members.values()
            ]
            topics = self.broker.topics
            ends = {
                TopicPartition(name, p): len(log)
                for name in {tp.topic for tp in committed}.union(
                    *(m.topics for m in found.members.values())
                )
                if (topic := topics.get(name)) is not None
                for p, log in enumerate(topic.logs)
            }
            return group_description(group, found.state(), members, committed, ends)
