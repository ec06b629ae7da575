"""What ``Bus.describe_topic`` returns: a topic's partitions, where each one lives and
the offsets it holds."""

from __future__ import annotations

from collections.abc import Iterable

import attrs


def _brokers(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(value)


def _by_number(found: Iterable[PartitionDescription]) -> tuple[PartitionDescription, ...]:
    return tuple(sorted(found, key=lambda p: p.partition))


@attrs.frozen
class PartitionDescription:
    """One partition of a topic as the backend sees it now.

    ``low`` is the low watermark (the offset of the oldest message still kept) and
    ``high`` the high watermark (the offset the next message written gets), so the
    partition holds ``high - low`` messages. ``leader`` is the id of the broker that
    leads the partition, ``replicas`` the ids of the brokers that hold a copy and
    ``in_sync`` those of them caught up with the leader, on a backend that has brokers;
    elsewhere ``leader`` is ``None`` and both tuples are empty. A partition without a
    leader just now (an election under way) has ``leader`` ``None`` too."""

    partition: int
    low: int
    high: int
    leader: int | None = None
    replicas: tuple[int, ...] = attrs.field(default=(), converter=_brokers)
    in_sync: tuple[int, ...] = attrs.field(default=(), converter=_brokers)

    @property
    def messages(self) -> int:
        """The messages the partition holds: ``high - low``."""
        return self.high - self.low


@attrs.frozen
class TopicDescription:
    """A topic as the backend sees it now: its name and every one of its partitions,
    sorted by partition number."""

    topic: str
    partitions: tuple[PartitionDescription, ...] = attrs.field(converter=_by_number)

    @property
    def messages(self) -> int:
        """The messages the topic holds, over every partition."""
        return sum(p.messages for p in self.partitions)
