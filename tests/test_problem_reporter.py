"""bus.spi.ProblemReporter: on_error hears of each problem once per change."""

from __future__ import annotations

import logging

import pytest

import bus
from bus.spi import ProblemReporter


def test_each_problem_is_told_once_until_it_clears() -> None:
    heard: list[str] = []
    reporter = ProblemReporter(lambda e: heard.append(str(e)), logging.getLogger("t"), "t")
    down, slow = bus.BusError("broker down"), bus.TimeoutError("commit late")
    for _ in range(19):  # one second of librdkafka retries, two problems alternating
        reporter.report(down, "down")
        reporter.report(slow, "slow")
    assert heard == ["broker down", "commit late"]
    reporter.clear()  # messages flow again
    assert reporter.report(down, "down") is True
    assert heard == ["broker down", "commit late", "broker down"]


def test_without_on_error_the_problem_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    reporter = ProblemReporter(None, logging.getLogger("bus.test"), "test consumer")
    with caplog.at_level(logging.WARNING, logger="bus.test"):
        for _ in range(5):
            reporter.report(bus.BusError("broker down"), "down")
    assert [r.getMessage() for r in caplog.records] == ["test consumer: broker down"]
