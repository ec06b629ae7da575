"""The group admin values and the core's checks; the behaviour on each backend is the
conformance suite's (TestGroupAdmin)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import pytest

import bus
from backends._kafka_groups import group_state, member_host
from bus._plugins import Registry
from bus.spi import GROUP_STATES, BackendDescriptor, group_description

TP = bus.TopicPartition


def _member(member_id: str, *partitions: TP) -> bus.GroupMember:
    return bus.GroupMember(member_id, None, None, frozenset(partitions))


def test_group_description_lists_committed_and_assigned_partitions_sorted() -> None:
    described = group_description(
        "g",
        "stable",
        [_member("b", TP("t", 2)), _member("a", TP("s", 0), TP("t", 0))],
        {TP("t", 1): 3, TP("t", 0): 5, TP("u", 0): None, TP("u", 1): -1001},
        {TP("s", 0): 7, TP("t", 0): 10, TP("t", 1): 3, TP("t", 2): 4, TP("u", 0): 9},
    )
    assert [m.member_id for m in described.members] == ["a", "b"]
    assert described.partitions == (
        bus.GroupPartition("s", 0, None, 7, None),
        bus.GroupPartition("t", 0, 5, 10, 5),
        bus.GroupPartition("t", 1, 3, 3, 0),
        bus.GroupPartition("t", 2, None, 4, None),
    )  # u: nothing committed (None, negative) and nobody assigned
    assert described.total_lag == 5


def test_lag_never_goes_below_zero_and_a_partition_without_an_end_is_left_out() -> None:
    described = group_description(
        "g", "empty", [], {TP("t", 0): 12, TP("gone", 0): 1}, {TP("t", 0): 10}
    )
    assert described.partitions == (bus.GroupPartition("t", 0, 12, 10, 0),)
    assert described.total_lag == 0


def test_a_group_description_is_a_frozen_value_with_a_known_state() -> None:
    described = group_description("g", "empty", [], {}, {})
    assert described == bus.GroupDescription("g", "empty", (), ())
    assert hash(described) == hash(bus.GroupDescription("g", "empty", (), ()))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        described.state = "stable"  # type: ignore[misc]
    with pytest.raises(ValueError, match="stable, rebalancing, empty, dead"):
        bus.GroupDescription("g", "Stable", (), ())
    assert GROUP_STATES == ("stable", "rebalancing", "empty", "dead")


@pytest.mark.parametrize(
    ("native", "state"),
    [
        ("Stable", "stable"),
        ("PreparingRebalance", "rebalancing"),
        ("CompletingRebalance", "rebalancing"),
        ("PREPARING_REBALANCING", "rebalancing"),
        ("COMPLETING_REBALANCING", "rebalancing"),
        ("Empty", "empty"),
        ("DEAD", "dead"),
        ("Assigning", "rebalancing"),
        ("UNKNOWN", "rebalancing"),
    ],
)
def test_kafka_states_map_to_the_four(native: str, state: str) -> None:
    assert group_state(native) == state


def test_kafka_member_hosts_lose_their_slash() -> None:
    assert member_host("/127.0.0.1") == "127.0.0.1"
    assert member_host("") is None
    assert member_host(None) is None


def test_unknown_group_error_is_a_bus_error() -> None:
    assert issubclass(bus.UnknownGroupError, bus.BusError)
    assert not issubclass(bus.UnknownGroupError, bus.UnknownTopicError)


class _Plugin:
    def __init__(self, *descriptors: Any) -> None:
        self.descriptors = descriptors

    @bus.hookimpl
    def bus_register_backends(self) -> Iterable[Any]:
        return self.descriptors


@pytest.mark.parametrize(
    ("capabilities", "missing"),
    [({"sync", "admin"}, "consumer group"), ({"sync", "consumer_groups"}, "admin")],
)
def test_the_group_calls_need_consumer_groups_and_admin(
    fresh_registry: None, capabilities: set[str], missing: str
) -> None:
    from backends.memory import bus_register_backends as memory_backends

    (memory,) = memory_backends()
    lean = BackendDescriptor("lean", ("lean",), frozenset(capabilities), memory.factory)
    bus._plugins.reset_registry(Registry.load(plugins=[_Plugin(lean)]))
    with bus.connect("lean://lean-groups") as b:
        with pytest.raises(bus.UnsupportedError, match=f"no {missing} API; use .*memory://"):
            b.groups()
        with pytest.raises(bus.UnsupportedError, match=f"no {missing} API"):
            b.describe_group("g")
        with pytest.raises(TypeError, match="non-empty str"):
            b.describe_group("")


def test_a_backend_without_the_group_calls_says_so() -> None:
    backend = bus.spi.Backend()
    with pytest.raises(bus.UnsupportedError):
        backend.groups(None)
    with pytest.raises(bus.UnsupportedError):
        backend.describe_group("g", 1.0)
