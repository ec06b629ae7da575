"""The ``bus_recorder`` fixture: what an application produced and consumed through
``message_bus``, checked with ``assert_produced`` without reading it back."""

from __future__ import annotations

import pytest

import bus
from bus.testing.helpers import consume
from bus.testing.recorder import ANY, Recorder


def test_it_records_what_goes_through_message_bus(
    message_bus: bus.Bus, bus_recorder: Recorder
) -> None:
    message_bus.create_topic("orders")
    with message_bus.producer(serializer="json") as producer:
        producer.send("orders", {"id": 1}, key=b"c-1")
        producer.enqueue("orders", {"id": 2})
    found = bus_recorder.assert_produced("orders", value={"id": 1}, key=b"c-1")
    assert (found.partition, found.offset) == (0, 0)
    bus_recorder.assert_produced("orders", value={"id": 2})
    with message_bus.consumer("orders", offset_reset="earliest", deserializer="json") as c:
        consume(c, 2)
    assert [m.value for m in bus_recorder.consumed] == [{"id": 1}, {"id": 2}]
    assert len(bus_recorder.produced) == 2 and bus_recorder.failed == []


def test_assert_produced_says_what_was_produced_instead(
    message_bus: bus.Bus, bus_recorder: Recorder
) -> None:
    message_bus.create_topic("orders")
    with message_bus.producer() as producer:
        producer.send("orders", b"shipped")
    with pytest.raises(AssertionError, match=r"with value=b'paid'; produced there:\n.*shipped"):
        bus_recorder.assert_produced("orders", value=b"paid")
    with pytest.raises(AssertionError, match="nothing"):
        bus_recorder.assert_produced("refunds")
    assert bus_recorder.assert_produced("orders", key=ANY).value == b"shipped"


def test_failures_are_recorded_apart(message_bus: bus.Bus, bus_recorder: Recorder) -> None:
    message_bus.create_topic("orders")
    with message_bus.producer() as producer, pytest.raises(bus.BusError):
        producer.send("orders", b"v", partition=5)
    assert bus_recorder.produced == []
    ((message, error),) = bus_recorder.failed
    assert message.value == b"v" and isinstance(error, bus.BusError)


def test_without_the_fixture_message_bus_has_no_interceptors(message_bus: bus.Bus) -> None:
    message_bus.create_topic("t")
    with message_bus.producer() as producer:
        assert producer._chain is None  # the hot paths stay bare
