"""What both Kafka backends make of a group's description (Kafka's group states as
polybus's four, and the member's host without the broker's leading slash) and of a
partition's metadata."""

from __future__ import annotations

from collections.abc import Iterable

import bus

#: Kafka's group states (the broker's names, or confluent-kafka's ``ConsumerGroupState``
#: names), lower case without ``_``, as polybus's.
_STATES = {
    "stable": "stable",
    "preparingrebalance": "rebalancing",
    "preparingrebalancing": "rebalancing",
    "completingrebalance": "rebalancing",
    "completingrebalancing": "rebalancing",
    "assigning": "rebalancing",  # the consumer protocol (KIP-848)
    "reconciling": "rebalancing",
    "empty": "empty",
    "dead": "dead",
}


def group_state(native: str) -> str:
    """polybus's name for Kafka's group state ``native``; a state it does not know
    (``Unknown``, ``NotReady``) is ``"rebalancing"``: the group is between states."""
    return _STATES.get(native.replace("_", "").lower(), "rebalancing")


def member_host(host: str | None) -> str | None:
    """``/127.0.0.1`` as ``127.0.0.1``; an empty host as ``None``."""
    return host.lstrip("/") or None if host else None


def partition_description(
    partition: int, low: int, high: int, leader: int, replicas: Iterable[int], isr: Iterable[int]
) -> bus.PartitionDescription:
    """A partition as Kafka's metadata has it: a ``leader`` below 0 (none just now) is
    ``None``."""
    return bus.PartitionDescription(
        partition, low, high, leader if leader >= 0 else None, replicas, isr
    )
