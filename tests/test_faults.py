"""The fault suite, bounded: every scenario of ``tools.faults`` on both Kafka backends,
against real brokers of the harness, small enough for ``make test``. ``make
reliability`` runs the same scenarios bigger and writes the counts."""

from __future__ import annotations

import pytest

import bus
from tools import faults
from tools.kafka_harness import KafkaCluster

backends = pytest.mark.parametrize("scheme", faults.BACKENDS)


@backends
def test_a_killed_leader_loses_no_acknowledged_message_and_duplicates_none(
    kafka_cluster: KafkaCluster, scheme: str
) -> None:
    outcome = faults.leader_kill(kafka_cluster, scheme, messages=1500)
    assert outcome.unreported == 0, outcome
    assert outcome.acknowledged == outcome.sent, outcome  # RF 3 and min ISR 2 carry on
    assert outcome.lost == 0, outcome
    assert outcome.duplicates == 0, outcome


@backends
def test_a_killed_member_loses_nothing_and_repeats_at_most_its_uncommitted_window(
    kafka_cluster: KafkaCluster, scheme: str
) -> None:
    outcome = faults.member_kill(kafka_cluster, scheme, messages=1000, window=40)
    assert outcome.lost == 0, outcome
    assert outcome.duplicates <= outcome.bound, outcome
    assert outcome.details["committed_before_kill"] > 0, outcome  # the window was exercised


@backends
def test_a_member_closed_while_joining_holds_the_group_up_no_longer_than_its_session(
    kafka_cluster: KafkaCluster, scheme: str
) -> None:
    outcome = faults.close_during_join(kafka_cluster, scheme, session_timeout=6.0)
    assert outcome.lost == 0, outcome
    assert outcome.recovery_s is not None and outcome.recovery_s < 6.0 + 6.0, outcome


@backends
def test_a_restarted_broker_keeps_every_deadline_and_loses_no_acknowledged_message(
    own_kafka_broker: KafkaCluster, scheme: str
) -> None:
    outcome = faults.broker_restart(own_kafka_broker, scheme, messages=300)
    assert outcome.unreported == 0, outcome
    assert outcome.lost == 0, outcome
    assert outcome.details["send_during_outage_s"] < 2.0 + 2.0, outcome
    assert outcome.details["worst_poll_overrun_s"] < 1.5, outcome
    assert 1 <= outcome.details["on_error_calls"] <= 4, outcome
    assert outcome.acknowledged >= outcome.sent * 2 // 3, outcome  # after the restart


@backends
def test_close_under_an_outage_reports_every_message_once_and_writes_nothing_after(
    own_kafka_broker: KafkaCluster, scheme: str
) -> None:
    outcome = faults.close_under_outage(own_kafka_broker, scheme, messages=1000)
    assert outcome.details["close_raised"] is not None, outcome
    assert outcome.details["close_raised"].startswith("TimeoutError: 1000 message"), outcome
    assert outcome.details["close_s"] < 2.0 + 6.0, outcome
    assert outcome.details["reported_by_close"] == 1000, outcome  # before close returned
    assert outcome.unreported == 0, outcome
    assert outcome.acknowledged == 0, outcome
    assert outcome.details["written_unflagged"] == 0, outcome


@backends
def test_delivery_timeout_reports_each_message_on_time_during_an_outage(
    own_kafka_broker: KafkaCluster, scheme: str
) -> None:
    outcome = faults.delivery_timeout_under_outage(
        own_kafka_broker, scheme, messages=200, delivery_timeout=3.0
    )
    assert outcome.unreported == 0, outcome
    assert outcome.details["last_report_s"] < 3.0 + 3.0, outcome
    assert outcome.details["timeouts"] == 200, outcome
    assert outcome.details["written_unflagged"] == 0, outcome


def test_the_outcome_counts_what_it_is_told() -> None:
    """The scenarios' bookkeeping: one outcome per message, the first one counts."""
    reports = faults.Reports()
    reports.callback(0)(bus.Delivery("t", 0, 0, None), None)
    reports.callback(1)(None, bus.DeliveryError("x", maybe_written=True))
    reports.callback(2)(None, bus.TimeoutError("y"))
    reports.callback(2)(None, bus.TimeoutError("again"))
    assert reports.acknowledged() == {0}
    assert reports.maybe_written() == {1}
    assert reports.unreported(4) == 2  # 2 twice, 3 never
