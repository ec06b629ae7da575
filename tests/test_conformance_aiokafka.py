"""The conformance suite, unchanged, on the aiokafka:// backend against a real broker."""

from __future__ import annotations

import pytest

from bus.testing.conformance import *  # noqa: F403


@pytest.fixture
def bus_url(kafka_broker) -> str:  # type: ignore[no-untyped-def]
    return f"aiokafka://{kafka_broker.bootstrap_servers}"
