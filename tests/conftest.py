"""Shared fixtures of the project's own tests. The public fixtures (``bus_url``,
``message_bus``, ``bus_topic``) come from the ``bus.testing`` pytest plugin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bus._plugins import reset_registry
from tools.kafka_harness import KafkaCluster

pytest_plugins = ["tools.kafka_harness.plugin"]


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    """Reload the plugin registry before and after a test that replaces it."""
    reset_registry()
    yield
    reset_registry()


@pytest.fixture(scope="module")
def own_kafka_broker(kafka_broker: object) -> Iterator[KafkaCluster]:
    """A single-node broker of the test module's own, to stop and restart without
    disturbing the session's (``kafka_broker`` first checks that Kafka can run here)."""
    cluster = KafkaCluster(1)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
