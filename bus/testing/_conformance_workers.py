"""Conformance: workers (``Bus.worker`` / ``Bus.async_worker``), through either API
(``bus_api``). A handler's return makes its message processed; a failure is retried
as ``bus.Retry`` says, then goes to the dead-letter topic with ``bus.dlt.*`` headers,
or stops the worker with ``bus.HandlerError`` after it committed what was processed;
order holds within a partition under ``concurrency``; stopping drains what is in
flight and commits it; a member killed outright loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import bus
from bus.testing._conformance_common import NEVER, PARTITIONS, needs, send_all, values
from bus.testing.apis import BusAPI
from bus.testing.helpers import DEADLINE, consume

__all__ = ["TestWorkers"]

OPTIONS = {"offset_reset": "earliest"}


class _Running:
    """A worker's ``run()`` in a thread of its own, and what it raised."""

    def __init__(self, worker: bus.Worker):
        self.worker = worker
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="worker-under-test", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:
            self.error = exc

    def stop(self, timeout: float = DEADLINE) -> None:
        """Stop the worker and wait for ``run()`` to return; re-raise what it raised."""
        self.worker.stop()
        self.join(timeout)
        if self.error is not None:
            raise self.error

    def until(self, condition: Callable[[], bool], what: str) -> None:
        """Wait for ``condition``; fail at once if ``run()`` ended meanwhile."""

        def met() -> bool:
            if self.error is not None:
                raise AssertionError(f"run() raised while waiting for: {what}") from self.error
            return condition()

        _until(met, what)

    def join(self, timeout: float = DEADLINE) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"run() did not return within {timeout:g} s"


def _until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.005)


class _Handled:
    """What a handler saw, from any thread: ``(partition, offset, value)`` in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[int, int, Any]] = []

    def __call__(self, message: bus.Message) -> None:
        with self.lock:
            self.seen.append((message.partition or 0, message.offset or 0, message.value))

    def count(self) -> int:
        with self.lock:
            return len(self.seen)

    def values(self) -> list[Any]:
        with self.lock:
            return [v for _, _, v in self.seen]


def _next_offsets(bus_api: BusAPI, topic: str, group: str, count: int) -> list[tuple[int, int]]:
    """Where ``group`` goes on: the first ``count`` messages a new member reads."""
    with bus_api.consumer(topic, group=group, auto_commit=False, **OPTIONS) as consumer:
        return [(m.partition or 0, m.offset or 0) for m in consume(consumer, count)]


@needs("consumer_groups")
class TestWorkers:
    """``Bus.worker`` and ``Bus.async_worker``: every message handled and committed,
    retries, dead letters, a failure without one stopping the worker, order under
    concurrency, stopping, rebalances and a worker killed outright."""

    def test_handles_every_message_and_commits_it(self, bus_api: BusAPI, bus_topic: str) -> None:
        group = f"{bus_topic}-g"
        sent = values("w", 30)
        with bus_api.producer() as producer:
            for i, value in enumerate(sent):
                producer.send(bus_topic, value, key=str(i % 7).encode())
            producer.send(bus_topic, b"after", partition=0)
        handled = _Handled()
        running = _Running(bus_api.worker(handled, bus_topic, group=group, **OPTIONS))
        running.until(lambda: handled.count() >= len(sent) + 1, "every message handled")
        running.stop()
        assert sorted(handled.values()) == sorted([*sent, b"after"])
        with bus_api.producer() as producer:
            producer.send(bus_topic, b"new", partition=0)
        with bus_api.consumer(bus_topic, group=group, **OPTIONS) as consumer:
            assert [m.value for m in consume(consumer, 1)] == [b"new"]  # nothing read twice

    def test_a_failure_is_retried_until_the_handler_succeeds(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        group = f"{bus_topic}-g"
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("r", 5))
        calls: list[bytes] = []
        handled = _Handled()

        def flaky(message: bus.Message) -> None:
            calls.append(message.value)
            if message.value == b"r-2" and calls.count(b"r-2") < 3:
                raise ConnectionError("the database blinked")
            handled(message)

        retry = bus.Retry(attempts=3, backoff=0.01, max_backoff=0.05)
        running = _Running(
            bus_api.worker(
                flaky, bus_topic, group=group, retry=retry, dead_letter="{topic}.dlt", **OPTIONS
            )
        )
        running.until(lambda: handled.count() >= 5, "every message handled")
        running.stop()
        assert handled.values() == values("r", 5)
        assert calls.count(b"r-2") == 3
        with bus_api.consumer(f"{bus_topic}.dlt", **OPTIONS) as consumer:
            assert consumer.poll_batch(10, timeout=0.5) == []

    @needs("headers")
    def test_exhausted_retries_send_the_message_to_the_dead_letter(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        group = f"{bus_topic}-g"
        with bus_api.producer() as producer:
            producer.send(bus_topic, b"fine-1", key=b"k", partition=0)
            producer.send(
                bus_topic,
                b"poison",
                key=b"pk",
                headers=[("trace", b"t1"), ("trace", b"t2")],
                partition=0,
            )
            producer.send(bus_topic, b"fine-2", key=b"k", partition=0)
        attempts: list[bytes] = []
        handled = _Handled()

        def strict(message: bus.Message) -> None:
            if message.value == b"poison":
                attempts.append(message.value)
                raise ValueError(f"cannot bill {message.value!r}")
            handled(message)

        retry = bus.Retry(attempts=2, backoff=0.01, max_backoff=0.01)
        running = _Running(
            bus_api.worker(
                strict, bus_topic, group=group, retry=retry, dead_letter="{topic}.dlt", **OPTIONS
            )
        )
        running.until(lambda: handled.count() >= 2, "the good messages handled")
        running.stop()
        assert handled.values() == [b"fine-1", b"fine-2"]
        assert len(attempts) == 2
        with bus_api.consumer(f"{bus_topic}.dlt", **OPTIONS) as consumer:
            (dead,) = consume(consumer, 1)
        assert (dead.key, dead.value) == (b"pk", b"poison")
        assert dead.headers[:2] == (("trace", b"t1"), ("trace", b"t2"))
        assert dict(dead.headers[2:]) == {
            "bus.dlt.topic": bus_topic.encode(),
            "bus.dlt.partition": b"0",
            "bus.dlt.offset": b"1",
            "bus.dlt.error.type": b"ValueError",
            "bus.dlt.error.message": b"cannot bill b'poison'",
        }
        with bus_api.producer() as producer:
            producer.send(bus_topic, b"new", partition=0)
        # the dead-lettered message counts as processed: the group goes on after it
        assert _next_offsets(bus_api, bus_topic, group, 1) == [(0, 3)]

    @needs("headers")
    def test_a_message_that_cannot_be_decoded_goes_to_the_dead_letter_as_it_came(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        group = f"{bus_topic}-g"
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, [b'{"n": 1}', b"{not json", b'{"n": 3}'])
        handled = _Handled()
        running = _Running(
            bus_api.worker(
                handled, bus_topic, group=group, deserializer="json", dead_letter="{topic}.dlt",
                retry=bus.Retry(attempts=3, backoff=0.01), **OPTIONS,
            )
        )  # fmt: skip
        running.until(lambda: handled.count() >= 2, "the good messages handled")
        running.stop()
        assert handled.values() == [{"n": 1}, {"n": 3}]
        with bus_api.consumer(f"{bus_topic}.dlt", **OPTIONS) as consumer:
            (dead,) = consume(consumer, 1)
        assert dead.value == b"{not json"
        assert dict(dead.headers)["bus.dlt.error.type"] == b"bus.SerializationError"

    def test_a_failure_without_dead_letter_stops_after_committing_what_was_processed(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        group = f"{bus_topic}-g"
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("s", 8))
        handled = _Handled()

        def fails_at_five(message: bus.Message) -> None:
            if message.offset == 5:
                raise LookupError("no such customer")
            handled(message)

        worker = bus_api.worker(
            fails_at_five,
            bus_topic,
            group=group,
            retry=bus.Retry(attempts=2, backoff=0.01),
            **OPTIONS,
        )
        with pytest.raises(bus.HandlerError) as caught:
            worker.run()
        assert isinstance(caught.value.__cause__, LookupError)
        assert caught.value.message is not None
        assert (caught.value.message.partition, caught.value.message.offset) == (0, 5)
        assert f"{bus_topic}[0]@5" in str(caught.value)
        assert handled.values() == values("s", 5)
        assert _next_offsets(bus_api, bus_topic, group, 3) == [(0, 5), (0, 6), (0, 7)]

    @needs("partitions", "admin")
    def test_order_is_kept_within_each_partition_under_concurrency(
        self, bus_api: BusAPI, bus_topic_factory: Callable[..., str]
    ) -> None:
        topic = bus_topic_factory(partitions=8)
        group = f"{topic}-g"
        per_partition = 25
        with bus_api.producer() as producer:
            for p in range(8):
                send_all(producer, topic, values(f"p{p}", per_partition), partition=p)
        lock = threading.Lock()
        at_work: dict[int, int] = {}
        most = [0]
        overlaps: list[int] = []
        handled = _Handled()

        def slow(message: bus.Message) -> None:
            p = message.partition or 0
            with lock:
                if at_work.get(p):
                    overlaps.append(p)
                at_work[p] = 1
                most[0] = max(most[0], sum(at_work.values()))
            time.sleep(0.003)  # I/O-bound work
            with lock:
                at_work[p] = 0
            handled(message)

        running = _Running(bus_api.worker(slow, topic, group=group, concurrency=4, **OPTIONS))
        running.until(lambda: handled.count() >= 8 * per_partition, "every message handled")
        running.stop()
        assert overlaps == []  # never two messages of one partition at once
        assert 2 <= most[0] <= 4
        by_partition: dict[int, list[int]] = {}
        for p, offset, _ in handled.seen:
            by_partition.setdefault(p, []).append(offset)
        assert by_partition == {p: list(range(per_partition)) for p in range(8)}

    def test_stop_lets_the_handler_at_work_finish_starts_nothing_new_and_commits(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        group = f"{bus_topic}-g"
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("d", 8))
        inside, release = threading.Event(), threading.Event()
        handled = _Handled()

        def blocks_at_three(message: bus.Message) -> None:
            if message.offset == 3:
                inside.set()
                assert release.wait(DEADLINE)
            handled(message)

        worker = bus_api.worker(
            blocks_at_three, bus_topic, group=group, auto_commit_interval=NEVER, **OPTIONS
        )
        running = _Running(worker)
        assert inside.wait(DEADLINE)
        worker.stop()
        release.set()
        running.join()
        assert running.error is None
        assert handled.values() == values("d", 4)
        assert _next_offsets(bus_api, bus_topic, group, 4) == [(0, 4), (0, 5), (0, 6), (0, 7)]

    def test_a_handler_still_at_work_after_shutdown_timeout_is_left_uncommitted(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        group = f"{bus_topic}-g"
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("t", 5))
        inside, release = threading.Event(), threading.Event()

        def stuck_at_two(message: bus.Message) -> None:
            if message.offset == 2:
                inside.set()
                release.wait(DEADLINE)

        worker = bus_api.worker(
            stuck_at_two, bus_topic, group=group, shutdown_timeout=0.2,
            auto_commit_interval=NEVER, **OPTIONS,
        )  # fmt: skip
        running = _Running(worker)
        try:
            assert inside.wait(DEADLINE)
            worker.stop()
            running.join()
            assert running.error is None
        finally:
            release.set()
        assert _next_offsets(bus_api, bus_topic, group, 3) == [(0, 2), (0, 3), (0, 4)]

    def test_stop_from_inside_a_handler(self, bus_api: BusAPI, bus_topic: str) -> None:
        group = f"{bus_topic}-g"
        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("h", 6))
        handled = _Handled()
        made: list[bus.Worker] = []

        def stops_at_two(message: bus.Message) -> None:
            handled(message)
            if message.offset == 2:
                made[0].stop()

        made.append(bus_api.worker(stops_at_two, bus_topic, group=group, **OPTIONS))
        made[0].run()  # returns: the handler stopped it
        assert handled.values() == values("h", 3)
        assert _next_offsets(bus_api, bus_topic, group, 1) == [(0, 3)]

    def test_interceptors_hear_of_each_message_when_its_handler_is_done(
        self, bus_api: BusAPI, bus_topic: str
    ) -> None:
        group = f"{bus_topic}-g"
        events: list[tuple[str, Any]] = []
        lock = threading.Lock()

        class Watch(bus.Interceptor):
            def on_processed(self, message: bus.Message) -> None:
                with lock:
                    events.append(("processed", message.value))

        def handle(message: bus.Message) -> None:
            with lock:
                events.append(("handled", message.value))

        with bus_api.producer() as producer:
            send_all(producer, bus_topic, values("i", 4))
        running = _Running(
            bus_api.worker(handle, bus_topic, group=group, interceptors=[Watch()], **OPTIONS)
        )
        running.until(lambda: len(events) >= 8, "each message handled and processed")
        running.stop()
        expected = []
        for value in values("i", 4):
            expected += [("handled", value), ("processed", value)]
        assert events == expected

    @needs("partitions", "admin")
    def test_a_member_joining_takes_over_from_what_the_other_committed(
        self, bus_api: BusAPI, bus_topic_factory: Callable[..., str]
    ) -> None:
        topic = bus_topic_factory(partitions=PARTITIONS + 1)
        group = f"{topic}-g"
        per_partition = 150
        with bus_api.producer() as producer:
            for p in range(PARTITIONS + 1):
                send_all(producer, topic, values(f"p{p}", per_partition), partition=p)
        lock = threading.Lock()
        seen: dict[str, list[tuple[int, int]]] = {"first": [], "second": []}

        def handler(name: str) -> Callable[[bus.Message], None]:
            def handle(message: bus.Message) -> None:
                time.sleep(0.002)
                with lock:
                    seen[name].append((message.partition or 0, message.offset or 0))

            return handle

        def count() -> int:
            with lock:
                return len(set(seen["first"]) | set(seen["second"]))

        first = _Running(
            bus_api.worker(handler("first"), topic, group=group, concurrency=2, **OPTIONS)
        )
        second = None
        try:
            first.until(lambda: count() >= 40, "the first member at work")
            second = _Running(
                bus_api.worker(handler("second"), topic, group=group, concurrency=2, **OPTIONS)
            )
            second.until(
                lambda: count() >= (PARTITIONS + 1) * per_partition, "every message handled"
            )
        finally:
            if second is not None:
                second.stop()
            first.stop()
        every = {(p, o) for p in range(PARTITIONS + 1) for o in range(per_partition)}
        assert set(seen["first"]) | set(seen["second"]) == every
        for name, handled in seen.items():  # each member kept each partition's order
            last: dict[int, int] = {}
            for p, o in handled:
                assert o > last.get(p, -1), f"{name} handled {p}@{o} after {p}@{last[p]}"
                last[p] = o

    @needs("cross_process")
    def test_a_worker_killed_outright_loses_nothing(
        self, bus_api: BusAPI, bus_topic: str, bus_url: str, tmp_path: Path
    ) -> None:
        group = f"{bus_topic}-g"
        total = 400
        with bus_api.producer() as producer:
            for i, value in enumerate(values("k", total)):
                producer.send(bus_topic, value, key=str(i).encode())
        log = tmp_path / "handled.log"
        log.touch()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bus.testing._worker_child",
                bus_url,
                bus_topic,
                group,
                str(log),
            ],
            env=env,
        )
        try:
            _until(lambda: len(log.read_text().splitlines()) >= 150, "the child at work")
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(DEADLINE)
        before = {tuple(map(int, line.split())) for line in log.read_text().splitlines()}
        assert len(before) < total, "the child finished before it was killed"
        handled = _Handled()
        with bus_api.consumer(bus_topic, **OPTIONS) as reader:
            every = {(m.partition or 0, m.offset or 0) for m in consume(reader, total)}
        running = _Running(
            bus_api.worker(
                handled,
                bus_topic,
                group=group,
                session_timeout=3.0,
                heartbeat_interval=0.5,
                **OPTIONS,
            )
        )

        def covered() -> bool:
            with handled.lock:
                after = {(p, o) for p, o, _ in handled.seen}
            return before | after >= every

        running.until(covered, "every message handled by one member or the other")
        running.stop()
        with handled.lock:
            again = len(handled.seen)
        assert again < total, "the killed member committed nothing"
