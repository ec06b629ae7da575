"""What both Kafka backends make of a group's description: Kafka's group states as
polybus's four, and the member's host without the broker's leading slash."""

from __future__ import annotations

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
