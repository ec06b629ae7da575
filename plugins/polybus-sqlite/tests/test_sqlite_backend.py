"""What sqlite:// adds to the conformance suite: its URLs and options, how it is found,
what it does while another connection holds the file's write lock, and durability
across connections."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import bus
import pytest
from bus.testing.helpers import consume


def test_bus_backends_lists_it_with_its_distribution() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bus", "backends", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    found = [b for b in json.loads(done.stdout)["backends"] if b["name"] == "sqlite"]
    assert found, done.stdout
    assert found[0]["distribution"].startswith("polybus-sqlite")
    assert "cross_process" in found[0]["capabilities"]


def test_relative_and_absolute_urls_name_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with bus.connect("sqlite:///here.db") as b:
        b.create_topic("t", 2)
    assert (tmp_path / "here.db").exists()
    with bus.connect(f"sqlite:///{tmp_path / 'here.db'}") as b:  # sqlite:////abs/here.db
        assert b.topics() == {"t": 2}


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "sqlite://host/x.db", "sqlite://u:p@/x.db"]
)
def test_urls_that_name_no_shared_file_are_config_errors(url: str) -> None:
    with pytest.raises(bus.ConfigError):
        bus.connect(url)


def test_bad_options_are_config_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(bus.ConfigError, match="synchronous"):
        bus.connect(url, synchronous="sometimes")
    with pytest.raises(bus.ConfigError, match="lock_timeout"):
        bus.connect(f"{url}?lock_timeout=-1")
    with pytest.raises(bus.ConfigError, match="replication_factor"), bus.connect(url) as b:
        b.create_topic("t", 1, replication_factor=3)


def test_what_is_acknowledged_outlives_the_connection(bus_url: str) -> None:
    with bus.connect(bus_url) as b, b.producer() as producer:
        producer.send("kept", b"v", headers=[("h", b"1"), ("h", None)], timestamp=1_600_000_000_000)
    with bus.connect(bus_url) as b, b.consumer("kept", offset_reset="earliest") as consumer:
        [message] = consume(consumer, 1)
    assert message == bus.Message(
        "kept", b"v", None, (("h", b"1"), ("h", None)), 0, 0, 1_600_000_000_000
    )


@pytest.fixture
def locked(bus_url: str) -> object:
    """The database's write lock, held by another connection for the test."""
    path = bus_url[len("sqlite:///") :]
    with bus.connect(bus_url) as b:
        b.create_topic("busy", 1)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    yield other
    other.execute("ROLLBACK")
    other.close()


def test_a_locked_file_is_a_timeout_error_within_the_timeout(bus_url: str, locked: object) -> None:
    with bus.connect(bus_url, lock_timeout=0.5) as b, b.producer() as producer:
        started = time.monotonic()
        with pytest.raises(bus.TimeoutError, match="locked") as caught:
            producer.send("busy", b"v", timeout=0.3)
        assert 0.25 <= time.monotonic() - started < 2.0
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        outcomes = None
        with pytest.raises(bus.DeliveryError) as failed:
            producer.send_batch([bus.Message("busy", b"v")] * 3, timeout=0.2)
        outcomes = failed.value.outcomes
        assert all(isinstance(o, bus.DeliveryError) and o.retriable for o in outcomes)
        with pytest.raises(bus.TimeoutError):
            b.create_topic("other", 1)


def test_a_group_member_polls_within_its_timeout_while_the_file_is_locked(
    bus_url: str, locked: object
) -> None:
    errors: list[bus.BusError] = []
    with bus.connect(bus_url, lock_timeout=0.3) as b:
        with pytest.raises(bus.TimeoutError):  # joining writes: it waits lock_timeout
            b.consumer("busy", group="g")
        consumer = b.consumer("busy", offset_reset="earliest", on_error=errors.append)
        started = time.monotonic()
        assert consumer.poll(timeout=0.3) is None  # reading never waits for writers
        assert time.monotonic() - started < 1.5
        consumer.close()


def test_pause_and_resume(bus_url: str) -> None:
    """The driver's pause/resume (capability ``pause``), which the worker uses."""
    from bus.spi import client_settings

    from polybus_sqlite._backend import SqliteBackend

    config, settings = client_settings(bus_url, "consumer", {"offset_reset": "earliest"})
    backend = SqliteBackend(config)
    backend.create_topic("p", 2, 1, {})
    with bus.connect(bus_url) as b, b.producer() as producer:
        for p in (0, 1, 0):
            producer.send("p", b"%d" % p, partition=p)
    zero = bus.TopicPartition("p", 0)
    driver = backend.consumer(("p",), None, settings)
    try:
        driver.pause({zero})
        assert [m.partition for m in driver.poll_batch(10, 0.2)] == [1]
        assert driver.poll_batch(10, 0.2) == []
        driver.resume({zero})
        assert [(m.partition, m.offset) for m in driver.poll_batch(10, 1.0)] == [(0, 0), (0, 1)]
    finally:
        driver.close(None)
        backend.close()
