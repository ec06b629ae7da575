"""Fault scenarios on a real Kafka cluster, for both Kafka backends.

Each scenario drives polybus's public API (the blocking face of ``kafka://``, the
asyncio API of ``aiokafka://`` behind ``bus.testing.apis.AsyncAPI``) through one fault
of the harness's real brokers and counts what a user would: messages sent, outcomes
reported, acknowledged ones found in the log afterwards, duplicates, how long the
clients took to recover. The fault suite (``tests/test_faults.py``) runs every
scenario small and asserts the promises; ``python -m tools.faults`` (``make
reliability``) runs them bigger, several rounds, and writes the counts to
``bench/results/reliability.json``.

Message values are decimal ids (``b"17"``), so the log can be checked message by
message. Waits are on conditions, each with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import bus
from bus.testing.apis import AsyncAPI, BusAPI, SyncAPI
from tools.kafka_harness import KafkaCluster

__all__ = [
    "SCENARIOS",
    "Outcome",
    "Reports",
    "broker_restart",
    "close_during_join",
    "close_under_outage",
    "delivery_timeout_under_outage",
    "leader_kill",
    "member_kill",
]

#: The Kafka backends the scenarios run on.
BACKENDS = ("kafka", "aiokafka")


@dataclass
class Outcome:
    """What one run of a scenario on one backend counted.

    ``lost``: acknowledged, yet not in the log afterwards. ``unreported``: sent but
    given no outcome, or more than one. ``duplicates``: log entries beyond the first
    of an id (for ``member_kill``: messages processed twice). ``bound``: the most
    duplicates the scenario allows (``member_kill``: the uncommitted window).
    ``recovery_s``: from the fault's end (or the kill) to the first success after it.
    """

    scenario: str
    backend: str
    sent: int = 0
    acknowledged: int = 0
    lost: int = 0
    duplicates: int = 0
    bound: int = 0
    unreported: int = 0
    errors_reported: int = 0
    recovery_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Reports:
    """The ``on_delivery`` outcomes of messages ``0..n-1``; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outcomes: dict[int, list[bus.Delivery | BaseException]] = {}
        self.first_report: dict[int, float] = {}

    def callback(self, i: int) -> Callable[[bus.Delivery | None, BaseException | None], None]:
        def on_delivery(delivery: bus.Delivery | None, error: BaseException | None) -> None:
            outcome: Any = delivery if error is None else error
            with self._lock:
                self.outcomes.setdefault(i, []).append(outcome)
                self.first_report.setdefault(i, time.monotonic())

        return on_delivery

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def wait(self, sent: int, timeout: float) -> bool:
        """Wait until every one of ``sent`` messages has an outcome."""
        return _wait_until(lambda: self.count() >= sent, timeout)

    def acknowledged(self) -> set[int]:
        with self._lock:
            return {i for i, o in self.outcomes.items() if isinstance(o[0], bus.Delivery)}

    def failed(self) -> dict[int, BaseException]:
        with self._lock:
            return {i: o[0] for i, o in self.outcomes.items() if isinstance(o[0], BaseException)}

    def maybe_written(self) -> set[int]:
        return {i for i, e in self.failed().items() if getattr(e, "maybe_written", False)}

    def unreported(self, sent: int) -> int:
        with self._lock:
            return sum(1 for i in range(sent) if len(self.outcomes.get(i, ())) != 1)

    def fill(self, outcome: Outcome, sent: int) -> None:
        outcome.sent = sent
        outcome.acknowledged = len(self.acknowledged())
        outcome.unreported = self.unreported(sent)
        outcome.errors_reported = len(self.failed())


def _wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)  # polling a condition, bounded by the deadline
    return True


def _topic(scenario: str) -> str:
    return f"fault-{scenario}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def _api(url: str, scheme: str, **options: Any) -> Iterator[BusAPI]:
    """Clients of ``url`` through the API the backend has: blocking for kafka://,
    asyncio (behind a blocking face on a loop thread) for aiokafka://."""
    with bus.connect(url, **options) as message_bus:
        api: BusAPI = SyncAPI(message_bus) if scheme == "kafka" else AsyncAPI(message_bus)
        try:
            yield api
        finally:
            api.close()


def read_log(
    url: str, scheme: str, topic: str, expect: set[int], timeout: float = 60.0, quiet: float = 2.0
) -> list[int]:
    """Every id in ``topic``, in log order per partition, read from the start by a
    group-less consumer: until every id of ``expect`` is in and nothing new came for
    ``quiet`` seconds, or ``timeout``."""
    seen: list[int] = []
    with _api(url, scheme) as api:
        consumer = api.consumer(topic, offset_reset="earliest")
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll_batch(500, timeout=0.5)
            if batch:
                seen += [int(m.value) for m in batch if m.value is not None]
                last_new = time.monotonic()
            elif expect <= set(seen) and time.monotonic() - last_new >= quiet:
                break
        consumer.close()
    return seen


def _count_log(outcome: Outcome, seen: list[int], acknowledged: set[int]) -> None:
    outcome.lost = len(acknowledged - set(seen))
    outcome.duplicates = len(seen) - len(set(seen))


def url_of(cluster: KafkaCluster, scheme: str) -> str:
    return f"{scheme}://{cluster.bootstrap_servers}"


# -- producer scenarios -------------------------------------------------------------


def leader_kill(cluster: KafkaCluster, scheme: str, messages: int = 3000) -> Outcome:
    """SIGKILL the leader of a replicated partition (RF 3, min ISR 2) while an
    ``acks=all`` idempotent producer enqueues to it; restart it after. Promise: no
    acknowledged message lost, no duplicate, each message reported exactly once."""
    outcome = Outcome("leader_kill", scheme)
    url = url_of(cluster, scheme)
    topic = _topic("leader")
    reports = Reports()
    with _api(url, scheme) as api:
        api.bus.create_topic(topic, partitions=1, replication_factor=3)
        producer = api.producer(acks="all", idempotent=True, linger_ms=5)
        producer.send(topic, b"-1", partition=0, timeout=30)  # connected, leader known
        victim = cluster.leader(topic, 0)
        killed_at = 0.0
        for i in range(messages):
            producer.enqueue(topic, b"%d" % i, partition=0, on_delivery=reports.callback(i))
            if i == messages // 3:
                victim.kill()
                killed_at = time.monotonic()
            if i % 100 == 99:
                time.sleep(0.005)  # a steady stream, not one burst ahead of the kill
        with contextlib.suppress(bus.BusError):
            producer.flush(timeout=90)  # serves the reports (kafka:// serves them in calls)
        with contextlib.suppress(bus.BusError):
            producer.close(timeout=10)
    victim.restart()
    acknowledged = reports.acknowledged()
    reports.fill(outcome, messages)
    # From the kill to the first acknowledgement of a message enqueued after it.
    after = [t for i, t in reports.first_report.items() if i > messages // 3 and i in acknowledged]
    if after:
        outcome.recovery_s = round(max(0.0, min(after) - killed_at), 2)
    seen = [i for i in read_log(url, scheme, topic, acknowledged) if i >= 0]
    _count_log(outcome, seen, acknowledged)
    outcome.details["victim"] = victim.node_id
    return outcome


def close_under_outage(cluster: KafkaCluster, scheme: str, messages: int = 1000) -> Outcome:
    """Stop the only broker, enqueue, then ``close(timeout=2)``. Promise: close returns
    within its timeout (plus the purge's few seconds) raising ``bus.TimeoutError`` with
    the count; each message reported once, undelivered; after the broker is back the
    closed producer writes nothing but messages reported ``maybe_written``."""
    outcome = Outcome("close_under_outage", scheme)
    url = url_of(cluster, scheme)
    topic = _topic("close")
    reports = Reports()
    node = cluster.nodes[0]
    with _api(url, scheme) as api:
        api.bus.create_topic(topic)
        producer = api.producer()
        producer.send(topic, b"-1", partition=0, timeout=30)
        node.stop()
        try:
            for i in range(messages):
                producer.enqueue(topic, b"%d" % i, partition=0, on_delivery=reports.callback(i))
            started = time.monotonic()
            try:
                producer.close(timeout=2.0)
                outcome.details["close_raised"] = None
            except bus.BusError as exc:
                outcome.details["close_raised"] = f"{type(exc).__name__}: {exc}"
            outcome.details["close_s"] = round(time.monotonic() - started, 2)
            outcome.details["reported_by_close"] = reports.count()
        finally:
            node.restart()
    written = _after_outage(outcome, reports, messages, url, scheme, topic)
    outcome.details["written_after_close"] = len(written)
    return outcome


def delivery_timeout_under_outage(
    cluster: KafkaCluster, scheme: str, messages: int = 200, delivery_timeout: float = 3.0
) -> Outcome:
    """Stop the only broker, enqueue with ``delivery_timeout=3``. Promise: each message
    is reported within the timeout (plus slack), as a timeout; after the broker is
    back, nothing reported undelivered is written unless flagged ``maybe_written``."""
    outcome = Outcome("delivery_timeout_under_outage", scheme)
    url = url_of(cluster, scheme)
    topic = _topic("expire")
    reports = Reports()
    node = cluster.nodes[0]
    with _api(url, scheme) as api:
        api.bus.create_topic(topic)
        producer = api.producer(delivery_timeout=delivery_timeout)
        producer.send(topic, b"-1", partition=0, timeout=30)
        node.stop()
        try:
            started = time.monotonic()
            for i in range(messages):
                producer.enqueue(topic, b"%d" % i, partition=0, on_delivery=reports.callback(i))
            with contextlib.suppress(bus.BusError):
                producer.flush(timeout=delivery_timeout + 10)
            reported = max(reports.first_report.values(), default=started)
            outcome.details["last_report_s"] = round(reported - started, 2)
            outcome.details["timeouts"] = sum(
                isinstance(e, bus.TimeoutError) for e in reports.failed().values()
            )
        finally:
            node.restart()
        with contextlib.suppress(bus.BusError):
            producer.close(timeout=10)
    _after_outage(outcome, reports, messages, url, scheme, topic)
    return outcome


def _after_outage(
    outcome: Outcome, reports: Reports, messages: int, url: str, scheme: str, topic: str
) -> set[int]:
    """The end of an outage scenario: every message's report, and what the log holds
    once the broker is back (returned). A message written although reported undelivered
    and not flagged ``maybe_written`` is one lost track of, which "writes nothing after
    close" and "reported once" forbid (``written_unflagged``)."""
    reports.fill(outcome, messages)
    maybe = reports.maybe_written()
    seen = [i for i in read_log(url, scheme, topic, set(), quiet=5.0) if i >= 0]
    outcome.details["written_unflagged"] = len(set(seen) - maybe - reports.acknowledged())
    outcome.details["maybe_written"] = len(maybe)
    _count_log(outcome, seen, reports.acknowledged())
    return set(seen)


def broker_restart(cluster: KafkaCluster, scheme: str, messages: int = 600) -> Outcome:
    """Stop and restart the only broker under a live producer (enqueue, a steady
    stream) and a group consumer. Promise: calls keep their deadlines during the outage,
    ``on_error`` hears of it, both clients carry on, and every acknowledged message is
    consumed."""
    outcome = Outcome("broker_restart", scheme)
    url = url_of(cluster, scheme)
    topic = _topic("restart")
    reports = Reports()
    errors: list[BaseException] = []
    node = cluster.nodes[0]
    consumed: set[int] = set()
    late: list[float] = []
    with _api(url, scheme) as api:
        api.bus.create_topic(topic)
        producer = api.producer(delivery_timeout=60)
        consumer = api.consumer(
            topic,
            group=f"g-{topic}",
            offset_reset="earliest",
            on_error=errors.append,
            auto_commit_interval=0.5,
        )

        def consume(seconds: float) -> None:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                started = time.monotonic()
                batch = consumer.poll_batch(200, timeout=0.5)
                late.append(time.monotonic() - started - 0.5)
                consumed.update(int(m.value) for m in batch if m.value is not None)

        third = messages // 3
        for i in range(third):
            producer.enqueue(topic, b"%d" % i, on_delivery=reports.callback(i))
        producer.flush(timeout=30)
        _wait_consumed(consume, consumed, set(range(third)), 60)
        node.stop()
        outage_started = time.monotonic()
        try:
            for i in range(third, 2 * third):
                producer.enqueue(topic, b"%d" % i, on_delivery=reports.callback(i))
            started = time.monotonic()
            with contextlib.suppress(bus.TimeoutError):
                producer.send(topic, b"-1", timeout=2.0)
            outcome.details["send_during_outage_s"] = round(time.monotonic() - started, 2)
            consume(3.0)
            _wait_until(lambda: bool(errors), 15)
            consume(1.0)
        finally:
            node.restart()
        outcome.details["outage_s"] = round(time.monotonic() - outage_started, 2)
        back = time.monotonic()
        for i in range(2 * third, messages):
            producer.enqueue(topic, b"%d" % i, on_delivery=reports.callback(i))
        with contextlib.suppress(bus.BusError):
            producer.flush(timeout=60)
        first_after = time.monotonic()
        outcome.recovery_s = round(first_after - back, 2)
        _wait_consumed(consume, consumed, reports.acknowledged(), 60)
        consumer.close()
        producer.close(timeout=10)
    reports.fill(outcome, messages)
    outcome.lost = len(reports.acknowledged() - consumed)
    outcome.details["on_error_calls"] = len(errors)
    outcome.details["worst_poll_overrun_s"] = round(max(late, default=0.0), 2)
    return outcome


def _wait_consumed(
    consume: Callable[[float], None], consumed: set[int], expect: set[int], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not expect <= consumed and time.monotonic() < deadline:
        consume(0.5)


# -- consumer scenarios -------------------------------------------------------------

#: What the child member prints: one line per processed id, and ``C <n>`` after its
#: n-th commit (``n`` processed ids are committed).
_MEMBER = "tools.faults._member"


def member_kill(
    cluster: KafkaCluster, scheme: str, messages: int = 2000, window: int = 50
) -> Outcome:
    """A group member in a child process commits after every ``window`` messages; it is
    SIGKILLed half-way, and a new member of the group takes over. Promise: no message
    lost; messages processed twice ≤ what the dead member processed after its last
    commit (``bound``)."""
    outcome = Outcome("member_kill", scheme)
    url = url_of(cluster, scheme)
    topic = _topic("member")
    group = f"g-{topic}"
    with _api(url, scheme) as api:
        api.bus.create_topic(topic, partitions=3, replication_factor=min(3, len(cluster.nodes)))
        producer = api.producer()
        deliveries = producer.send_batch([bus.Message(topic, b"%d" % i) for i in range(messages)])
        producer.close()
    outcome.sent = outcome.acknowledged = len(deliveries)
    child = subprocess.Popen(
        [sys.executable, "-m", _MEMBER, url, topic, group, str(window)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    processed: list[int] = []
    committed = 0

    def account(line: str) -> None:
        nonlocal committed
        if line.startswith("C "):
            committed = int(line.split()[1])
        elif line.strip():
            processed.append(int(line))

    assert child.stdout is not None
    try:
        for line in child.stdout:
            account(line)
            if len(processed) >= messages // 2:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    killed = time.monotonic()
    # The member runs on until the signal lands: what it printed meanwhile (it may
    # have processed and committed another window) is still in the pipe. Leaving it
    # unread would count those messages lost once the survivor starts past them.
    for line in child.stdout.read().split("\n")[:-1]:  # a cut-off last line is dropped
        account(line)
    child.stdout.close()
    outcome.bound = len(processed) - committed
    taken: list[int] = []
    with _api(url, scheme) as api:
        consumer = api.consumer(topic, group=group, offset_reset="earliest")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(set(processed) | set(taken)) < messages:
            batch = consumer.poll_batch(500, timeout=0.5)
            if batch and outcome.recovery_s is None:
                outcome.recovery_s = round(time.monotonic() - killed, 2)
            taken += [int(m.value) for m in batch if m.value is not None]
            if batch:
                consumer.commit()
        consumer.close()
    everything = set(processed) | set(taken)
    outcome.lost = messages - len(everything & set(range(messages)))
    outcome.duplicates = len(processed) + len(taken) - len(everything)
    outcome.details.update(killed_after=len(processed), committed_before_kill=committed)
    return outcome


def close_during_join(cluster: KafkaCluster, scheme: str, session_timeout: float = 6.0) -> Outcome:
    """A member of a group is alone with every partition; a second member subscribes
    and polls, so the group rebalances, and is closed while that rebalance is under way
    (the first member does not poll meanwhile, holding the join open where the client
    waits for the application). Promise: the first member then gets new messages of
    every partition well within the session timeout (``bound``): the closed one left at
    once instead of being waited for. ``recovery_s``: from its close to that."""
    outcome = Outcome("close_during_join", scheme)
    url = url_of(cluster, scheme)
    topic = _topic("join")
    group = f"g-{topic}"
    options = {"offset_reset": "earliest", "session_timeout": session_timeout}
    with _api(url, scheme) as api:
        api.bus.create_topic(topic, partitions=2, replication_factor=min(3, len(cluster.nodes)))
        producer = api.producer()
        producer.send_batch([bus.Message(topic, b"%d" % i, partition=i % 2) for i in range(10)])
        staying = api.consumer(topic, group=group, **options)
        seen: set[int] = set()
        deadline = time.monotonic() + 60
        while len(seen) < 10 and time.monotonic() < deadline:
            seen.update(int(m.value) for m in staying.poll_batch(100, timeout=0.5) if m.value)
        leaving = api.consumer(topic, group=group, **options)
        leaving.poll(timeout=1.0)  # its join makes the group rebalance
        leaving.close()
        closed = time.monotonic()
        producer.send_batch([bus.Message(topic, b"%d" % (10 + p), partition=p) for p in (0, 1)])
        late: set[int] = set()  # re-deliveries of what was read before are allowed
        while not {10, 11} <= late and time.monotonic() - closed < 3 * session_timeout + 30:
            late.update(int(m.value) for m in staying.poll_batch(100, timeout=0.2) if m.value)
        outcome.recovery_s = round(time.monotonic() - closed, 2)
        staying.close()
        producer.close()
    outcome.sent = outcome.acknowledged = 12
    outcome.lost = 12 - len(seen | late)
    outcome.bound = int(session_timeout)
    return outcome


#: Every scenario, the cluster size it needs and its sizes in the fault suite.
SCENARIOS: dict[str, tuple[Callable[..., Outcome], int]] = {
    "leader_kill": (leader_kill, 3),
    "member_kill": (member_kill, 3),
    "close_during_join": (close_during_join, 3),
    "broker_restart": (broker_restart, 1),
    "close_under_outage": (close_under_outage, 1),
    "delivery_timeout_under_outage": (delivery_timeout_under_outage, 1),
}
