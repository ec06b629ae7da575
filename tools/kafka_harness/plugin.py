"""pytest plugin: real Kafka brokers for tests that ask for them.

Enable with ``pytest_plugins = ["tools.kafka_harness.plugin"]`` in ``tests/conftest.py``
(the repository root is on pytest's ``pythonpath``) or ``-p tools.kafka_harness.plugin``.

Fixtures (session scope, started on first use only):

``kafka_jars``
    The folder of the broker jars, once Java 17+ is found and the jars are downloaded;
    starts nothing (for a test that starts brokers of its own).
``kafka_broker``
    A single-node cluster (:class:`tools.kafka_harness.KafkaCluster`, replication factor 1):
    ``.bootstrap_servers`` and ``.nodes[0]`` for ``stop()/kill()/restart()``.  With
    ``$KAFKA_BOOTSTRAP_SERVERS`` set, an :class:`ExternalKafka` pointing at that broker
    instead (``.nodes`` empty: nothing to restart).
``kafka_cluster``
    A 3-node cluster (replication factor 3, ``min.insync.replicas=2``, no unclean leader
    election), always started by the harness.
``kafka_sasl_broker``
    A single node whose listeners take SASL_PLAINTEXT with SASL/PLAIN only, with the
    StandardAuthorizer and no ACL: nothing is allowed but to the super user
    (``.admin``, the brokers' own login).  One more user, ``alice``, password
    ``.sasl_users["alice"]`` (it holds a ``/`` and a ``?``); ``.grant(...)`` adds ACLs.

Marker ``kafka``: tests that need a broker; added automatically to tests using the
fixtures, so ``-m "not kafka"`` deselects them.

Without Java 17+ or Maven (and no cached jars) the fixtures skip with the reason, and a
warning banner is printed at the end of the run.  With ``CI`` set to a true value or
``BUS_REQUIRE_KAFKA=1`` they fail instead (``BUS_REQUIRE_KAFKA=0`` allows skipping in CI).
A broker that fails to start is an error showing the tail of its log.

aiokafka's loggers are quieted for the whole run (:func:`tools.kafka_harness.quiet_repeats`):
WARNING and above, each distinct message once per test; the captured log of a test's call
ends with how many repeats were dropped.  ``bus`` and ``backends`` logs are left as they are.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tools.kafka_harness import (
    KafkaCluster,
    KafkaNode,
    KafkaUnavailable,
    ensure_kafka_libs,
    find_java,
    missing_prerequisites,
    probe_brokers,
    quiet_repeats,
)

_FIXTURES = ("kafka_jars", "kafka_broker", "kafka_cluster", "kafka_sasl_broker")
_TRUE = {"1", "true", "yes", "on"}
_skip_reasons: list[str] = []


@dataclass(frozen=True)
class ExternalKafka:
    """A broker the tests did not start (``$KAFKA_BOOTSTRAP_SERVERS``)."""

    bootstrap_servers: str
    nodes: list[KafkaNode] = field(default_factory=list)
    external: bool = True


def kafka_required() -> bool:
    """Whether a missing Kafka must fail the run rather than skip (CI, BUS_REQUIRE_KAFKA)."""
    explicit = os.environ.get("BUS_REQUIRE_KAFKA", "").strip().lower()
    if explicit:
        return explicit in _TRUE
    return os.environ.get("CI", "").strip().lower() in _TRUE


def _unavailable(reason: str) -> None:
    message = f"Kafka tests need a real broker, which cannot run here: {reason}"
    if kafka_required():
        pytest.fail(
            f"{message}\n(CI or BUS_REQUIRE_KAFKA=1 is set, so this fails instead of skipping)",
            pytrace=False,
        )
    if message not in _skip_reasons:
        _skip_reasons.append(message)
    pytest.skip(message)


def _prepare() -> None:
    """Check Java and Maven and download the jars, or skip/fail."""
    reason = missing_prerequisites()
    if reason is not None:
        _unavailable(reason)
    try:
        find_java()
        ensure_kafka_libs()
    except KafkaUnavailable as exc:
        _unavailable(str(exc))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kafka: needs a real Kafka broker (kafka_broker/kafka_cluster/kafka_sasl_broker "
        "fixtures of kafka_harness.plugin); deselect with -m 'not kafka'",
    )
    quiet_repeats("aiokafka")


def pytest_runtest_setup(item: pytest.Item) -> None:
    quiet_repeats("aiokafka").reset()  # each test shows each message once


@pytest.hookimpl(wrapper=True, trylast=True)  # innermost: inside the call's log capture
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    try:
        return (yield)
    finally:
        dropped = quiet_repeats("aiokafka").reset()
        if dropped:
            logging.getLogger("tools.kafka_harness").warning(
                "%d repeated aiokafka log record(s) dropped while this test ran "
                "(each distinct message is shown once)",
                dropped,
            )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skip_reasons:
        terminalreporter.write_sep("!", "Kafka tests were SKIPPED", yellow=True, bold=True)
        for reason in _skip_reasons:
            terminalreporter.write_line(reason, yellow=True)
        terminalreporter.write_line(
            "Install Java 17+ and Maven (jars are fetched once from Maven Central), or set "
            "KAFKA_BOOTSTRAP_SERVERS; CI=true / BUS_REQUIRE_KAFKA=1 turn this into a failure.",
            yellow=True,
        )


@pytest.fixture(scope="session")
def kafka_jars() -> Path:
    """The broker jars' folder; skips (or fails in CI) if Kafka cannot run here."""
    _prepare()
    return ensure_kafka_libs()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaCluster | ExternalKafka]:
    """A running single-node Kafka for the session (or ``$KAFKA_BOOTSTRAP_SERVERS``)."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        problems = []
        for address in (part.strip() for part in external.split(",") if part.strip()):
            try:
                probe_brokers(address, timeout=10.0)
                break
            except (OSError, ValueError) as exc:
                problems.append(f"{address}: {exc}")
        else:
            pytest.fail(
                f"KAFKA_BOOTSTRAP_SERVERS={external} does not answer a metadata request "
                f"({'; '.join(problems)})",
                pytrace=False,
            )
        yield ExternalKafka(external)
        return
    _prepare()
    cluster = KafkaCluster(1)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[KafkaCluster]:
    """A running 3-node Kafka cluster (RF 3, min ISR 2) for the session."""
    _prepare()
    cluster = KafkaCluster(3)
    try:
        cluster.start()
        yield cluster
    finally:
        # The last controller standing waits 5 s for a quorum that is gone before it
        # exits; its data is deleted anyway, so SIGKILL it sooner.
        cluster.stop(timeout=2.0)


@pytest.fixture(scope="session")
def kafka_sasl_broker() -> Iterator[KafkaCluster]:
    """A running single node with SASL/PLAIN and the StandardAuthorizer (no ACLs)."""
    _prepare()
    cluster = KafkaCluster(1, sasl_users={"alice": f"a/b?{secrets.token_hex(8)}"})
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
