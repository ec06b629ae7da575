"""What ``Bus.describe_group`` returns: a consumer group's state, members and lag."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from bus._message import TopicPartition

#: The states a group can be in, whatever the backend calls them.
GROUP_STATES = ("stable", "rebalancing", "empty", "dead")


def _check_state(instance: Any, attribute: Any, value: str) -> None:
    if value not in GROUP_STATES:
        raise ValueError(f"a group's state is one of {', '.join(GROUP_STATES)}, not {value!r}")


@attrs.frozen
class GroupMember:
    """One member of a group: its id, the client id and host it connected with (when
    the backend knows them) and the partitions the group assigned it."""

    member_id: str
    client_id: str | None
    host: str | None
    assignment: frozenset[TopicPartition]


@attrs.frozen
class GroupPartition:
    """Where a group stands in one partition: ``committed`` is the group's committed
    position (the next offset it reads; ``None`` when nothing is committed), ``end`` the
    log end offset (the high watermark: the offset the next message written gets) and
    ``lag`` the messages between them (``None`` when nothing is committed)."""

    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int | None


@attrs.frozen
class GroupDescription:
    """A consumer group as the backend sees it now.

    ``state`` is ``"stable"`` (every member has its assignment), ``"rebalancing"``
    (members are joining, leaving or taking over partitions), ``"empty"`` (no member;
    committed positions are kept) or ``"dead"`` (the group is being removed).
    ``members`` are sorted by ``member_id``; ``partitions`` hold every partition the
    group has a committed position in or a member is assigned, sorted by topic, then
    partition. ``total_lag`` adds up their lags."""

    group: str
    state: str = attrs.field(validator=_check_state)
    members: tuple[GroupMember, ...]
    partitions: tuple[GroupPartition, ...]

    @property
    def total_lag(self) -> int:
        """The messages the group has yet to read, over every partition with a committed
        position (partitions with none are not counted)."""
        return sum(p.lag for p in self.partitions if p.lag is not None)


def group_description(
    group: str,
    state: str,
    members: Iterable[GroupMember],
    committed: Mapping[TopicPartition, int | None],
    ends: Mapping[TopicPartition, int],
) -> GroupDescription:
    """A ``GroupDescription`` from what a backend found out: ``committed`` maps partitions
    to the group's committed position (``None`` or a negative number: nothing
    committed), ``ends`` maps each partition of ``committed`` and of the members'
    assignments to its log end offset. Partitions missing from ``ends`` (a topic
    deleted meanwhile) are left out. ``lag`` is ``end - committed``, never below 0."""
    found = tuple(sorted(members, key=lambda m: m.member_id))
    positions = {tp: o for tp, o in committed.items() if o is not None and o >= 0}
    wanted = set(positions).union(*(m.assignment for m in found))
    partitions = []
    for tp in sorted(wanted):
        end = ends.get(tp)
        if end is None:
            continue
        position = positions.get(tp)
        lag = None if position is None else max(end - position, 0)
        partitions.append(GroupPartition(tp.topic, tp.partition, position, end, lag))
    return GroupDescription(group, state, found, tuple(partitions))
