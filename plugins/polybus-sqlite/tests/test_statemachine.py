"""The bus.testing state machine, unchanged, on sqlite://: the log and the consumer
groups against the reference model, in orders Hypothesis picks. Every example makes
a topic and a group of its own in one database file.

Rebalances happen inside ``poll`` and commits are fenced by ownership, exactly as on
memory://, so the machine runs with memory's settings: polls that do not wait, and
commits at any time (during a rebalance too)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bus.testing.helpers import fresh_url
from bus.testing.statemachine import run_state_machine


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_url("sqlite") as url:
        yield url


MEMORY_LIKE = {"poll_timeout": 0.0, "commit_only_when_settled": False, "deadline": 30.0}


def test_log_and_groups_match_the_model(database: str) -> None:
    run_state_machine(
        database,
        max_examples=200,
        stateful_step_count=40,
        settings_options={"database": None},
        **MEMORY_LIKE,
    )


def test_log_and_groups_match_the_model_with_four_members(database: str) -> None:
    run_state_machine(
        database,
        max_examples=100,
        stateful_step_count=40,
        partitions=2,
        max_members=4,
        strict_assignments=False,
        settings_options={"database": None},
        **MEMORY_LIKE,
    )


def test_the_asyncio_clients_match_the_model(database: str) -> None:
    run_state_machine(
        database,
        api="async",
        max_examples=60,
        stateful_step_count=30,
        settings_options={"database": None},
        **MEMORY_LIKE,
    )


def test_log_and_groups_match_the_model_driven_as_a_real_broker(database: str) -> None:
    # The machine's defaults for a backend outside the process: polls that wait 0.2 s,
    # commits only in a settled group.
    run_state_machine(
        database, max_examples=4, stateful_step_count=15, settings_options={"database": None}
    )
