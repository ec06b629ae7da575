"""The bus.testing state machine, unchanged, against the real broker: the log and the
consumer groups of kafka:// (blocking API) and aiokafka:// (asyncio API) against the
reference model. Few, short examples: every one creates a topic and a group."""

from __future__ import annotations

from bus.testing.statemachine import run_state_machine


def test_kafka_log_and_groups_match_the_model(kafka_broker) -> None:  # type: ignore[no-untyped-def]
    run_state_machine(
        f"kafka://{kafka_broker.bootstrap_servers}",
        max_examples=5,
        stateful_step_count=20,
        settings_options={"database": None},
    )


def test_aiokafka_log_and_groups_match_the_model(kafka_broker) -> None:  # type: ignore[no-untyped-def]
    run_state_machine(
        f"aiokafka://{kafka_broker.bootstrap_servers}",
        api="async",
        max_examples=5,
        stateful_step_count=20,
        settings_options={"database": None},
    )
