"""The bus.testing state machine and strategies on the memory backend: the partitioned
log and the consumer groups against a reference model, in orders Hypothesis picks."""

from __future__ import annotations

from hypothesis import given, settings

import bus
from bus.testing import strategies as bst
from bus.testing.helpers import consume
from bus.testing.statemachine import make_test_case, run_state_machine


def test_log_and_groups_match_the_model() -> None:
    run_state_machine(max_examples=200, stateful_step_count=40)


def test_log_and_groups_match_the_model_allowing_overlapping_assignments() -> None:
    # Every check but "live members' assignments never overlap".
    run_state_machine(max_examples=300, stateful_step_count=40, strict_assignments=False)


def test_log_and_groups_match_the_model_with_two_partitions_and_four_members() -> None:
    run_state_machine(
        max_examples=100,
        stateful_step_count=40,
        partitions=2,
        max_members=4,
        strict_assignments=False,
    )


TestStateMachineCase = make_test_case(max_examples=20, stateful_step_count=20)


@settings(max_examples=100, deadline=None)
@given(batch=bst.message_batches("drawn", partitions=3, max_size=10))
def test_drawn_messages_round_trip(batch: list[bus.Message]) -> None:
    with bus.connect("memory://strategies") as connection:
        connection.create_topic("drawn", 3)
        try:
            with connection.producer() as producer:
                deliveries = producer.send_batch(batch)
            with connection.consumer("drawn", offset_reset="earliest") as consumer:
                received = consume(consumer, len(batch))
        finally:
            connection.delete_topic("drawn")
    by_position = {(m.partition, m.offset): m for m in received}
    for sent, delivery in zip(batch, deliveries, strict=True):
        if sent.partition is not None:
            assert delivery.partition == sent.partition
        elif sent.key is not None:
            assert delivery.partition == bus.murmur2_partition(sent.key, 3)
        got = by_position[(delivery.partition, delivery.offset)]
        assert (got.value, got.key, got.headers) == (sent.value, sent.key, sent.headers)
        if sent.timestamp is not None:
            assert got.timestamp == sent.timestamp


@given(name=bst.topic_names())
def test_drawn_topic_names_are_valid(name: str) -> None:
    from bus._checks import check_topic

    assert check_topic(name) == name
