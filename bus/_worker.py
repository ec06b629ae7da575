"""``Worker``: a handler run over topics as a member of a consumer group, with retry,
dead letters, concurrency across partitions and a graceful stop (blocking API)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import tenacity

from bus._errors import BusError
from bus._message import Message, TopicPartition
from bus._work import LOGGER, POLL_BATCH, POLL_WAIT, Interrupted, Lane, WorkerCore, replaying

if TYPE_CHECKING:
    from bus._bus import Bus
    from bus._consumer import Consumer
    from bus._producer import Producer

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Worker(WorkerCore):
    """Runs ``handler(message)`` for every message of ``topics`` as a member of
    ``group``; made by ``Bus.worker``.

    At-least-once: a message counts as processed when its handler returned (or, after
    its retries, when it was written to the dead-letter topic); only the contiguous
    processed prefix of each partition is ever committed, so a crash re-delivers what
    was not processed, and nothing is skipped. Order is kept within a partition: one
    message of a partition is handled at a time. Handlers run on ``concurrency``
    threads of the worker's own, one partition on each at a time; the thread that
    calls ``run()`` fetches, commits and rebalances.

    ``run()`` blocks until ``stop()`` (from any thread, a handler included), SIGTERM or
    SIGINT (when run in the main thread), or a failure it cannot count as processed
    (``run()`` then raises ``bus.HandlerError``). Stopping starts no new message, lets
    the handlers at work finish within ``shutdown_timeout`` seconds (a message still
    running then is left uncommitted, to be read again), commits what was processed,
    and leaves the group. A worker runs once.
    """

    def __init__(self, bus_: Bus, handler: Callable[[Message], Any], **parts: Any):
        super().__init__(bus_, handler, **parts)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._runners: list[threading.Thread] = []

    # -- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the worker: from any thread, a handler included. Returns at once; the
        worker drains and ``run()`` returns. Idempotent."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        consumer = self._consumer
        if consumer is not None:
            consumer._wakeup()

    def _fail(self, raw: Message, error: BaseException) -> None:
        with self._cond:
            self._note_failure(raw, error)
        self.stop()

    # -- run ----------------------------------------------------------------------------------

    def run(self) -> None:
        """Fetch and handle until stopped; see the class. Raises ``bus.HandlerError``
        when a message could not be counted as processed."""
        with self._cond:
            if self._started:
                raise RuntimeError("a worker runs once; make another with Bus.worker")
            self._started = True
        restore = self._catch_signals()
        try:
            self._run()
        finally:
            restore()
        failure = self._failure_to_raise()
        if failure is not None:
            raise failure

    def _run(self) -> None:
        consumer = self._bus.consumer(
            *self.topics, on_revoke=self._revoked, **self._consumer_options()
        )
        self._consumer = consumer
        try:
            self._processed = consumer._worker_owned()
            self._around = consumer._around_processing()
            if self._dead_letter is not None:
                self._producer = self._bus.producer(serializer=None, key_serializer=None)
            if self._stop.is_set():  # stopped before it ran
                return
            self._runners = [
                threading.Thread(target=self._runner, name=f"bus-worker-{i}", daemon=True)
                for i in range(self.concurrency)
            ]
            for thread in self._runners:
                thread.start()
            try:
                self._fetch(consumer)
            finally:  # stopped, failed, or the poll raised: the runners stop too
                self._stop.set()
                with self._cond:
                    self._cond.notify_all()
                self._drain()
                self._commit(consumer)
        finally:
            try:
                if self._producer is not None:
                    self._producer.close(self._shutdown_timeout)
            finally:
                consumer.close()

    def _fetch(self, consumer: Consumer) -> None:
        """Poll, queue, pause, resume and commit until stopped."""
        lanes, cond = self._lanes, self._cond
        can_pause = self._can_pause
        clock = time.monotonic
        commit_at = clock() + self._commit_interval
        polled = clock()
        while not self._stop.is_set():
            if clock() >= commit_at:
                self._commit(consumer)
                commit_at = clock() + self._commit_interval
            if not can_pause:
                with cond:  # nothing to pause with: wait for the runners to catch up...
                    full = cond.wait_for(
                        lambda: self._stop.is_set() or not lanes.full(self.concurrency),
                        timeout=POLL_WAIT,
                    )
                if not full and clock() - polled < self._keep_alive:
                    continue  # ...polling only as often as the membership needs
            batch = consumer.poll_batch(POLL_BATCH, timeout=POLL_WAIT)
            polled = clock()
            with cond:
                if batch:
                    lanes.add(batch)
                    cond.notify_all()
                paused = lanes.to_pause() if can_pause else set()
                resumed = lanes.to_resume() if can_pause else set()
            if paused:
                consumer._pause(paused)
            if resumed:
                consumer._resume(resumed)

    def _drain(self) -> None:
        """Wait, within ``shutdown_timeout``, for the runners to put down their messages."""
        deadline = time.monotonic() + self._shutdown_timeout
        for thread in self._runners:
            thread.join(max(0.0, deadline - time.monotonic()))
        still = [t.name for t in self._runners if t.is_alive()]
        if still:
            self._abandoned(len(still), "are left")

    def _commit(self, consumer: Consumer, lanes: list[Lane] | None = None) -> None:
        """Commit each lane's processed prefix (of ``lanes``, else every lane)."""
        with self._cond:
            messages = self._lanes.to_commit(lanes)
        for message in messages:
            try:
                consumer.commit(message)
            except BusError as exc:  # read again after a restart: at-least-once holds
                self._commit_failed(message, exc)
            else:
                with self._cond:
                    self._lanes.committed(message)

    def _revoked(self, partitions: set[TopicPartition]) -> None:
        """``on_revoke`` (inside a poll): the revoked lanes stop; their handlers at work
        finish within ``shutdown_timeout`` (or are abandoned, uncommitted); what was
        processed of them is committed before the partitions go."""
        with self._cond:
            gone = self._lanes.revoke(partitions)
            self._cond.wait_for(
                lambda: not any(lane.busy for lane in gone), timeout=self._shutdown_timeout
            )
        if self._consumer is not None and gone:
            self._commit(self._consumer, gone)
        if self._on_revoke is not None:
            self._on_revoke(partitions)

    # -- runners ------------------------------------------------------------------------------

    def _runner(self) -> None:
        """One of ``concurrency`` threads: handles a lane's messages at a time."""
        lanes, cond, stop = self._lanes, self._cond, self._stop
        while True:
            with cond:
                taken = lanes.take()
                while taken is None and not stop.is_set():
                    cond.wait()
                    taken = lanes.take()
                if taken is None or stop.is_set():
                    if taken is not None:
                        lanes.release(taken[0])
                    return
            lane, run = taken
            try:
                for raw in run:
                    if stop.is_set() or lane.gone or not self._handle(raw):
                        break
                    lane.done = raw
                    if self._processed is not None:
                        self._processed(raw)
            finally:
                with cond:
                    caught_up = lanes.release(lane)
                    cond.notify_all()
                if caught_up and self._consumer is not None:
                    self._consumer._wakeup()  # the poll at hand returns: resume it now

    def _handle(self, raw: Message) -> bool:
        """``_handled``, inside the interceptors' ``processing`` if they have one."""
        if self._around is None:
            return self._handled(raw)
        with self._around(raw):
            return self._handled(raw)

    def _handled(self, raw: Message) -> bool:
        """Handle one message: ``True`` once processed (handled, or dead-lettered);
        ``False`` when it must be left for later (the worker stops)."""
        try:
            try:
                message = raw if self._decode is None else self._decode(raw)
                self._handler(message)
                return True
            except Exception as first:
                error: Exception | None = first
                if self._policy is not None:
                    error = self._retried(raw, first)
                    if error is None:
                        return True
        except Interrupted:
            return False
        except BaseException as fatal:  # SystemExit and such: stop, and re-raise from run()
            self._fail(raw, fatal)
            return False
        assert error is not None
        if self._dead_letter is None or self._producer is None:
            self._fail(raw, error)
            return False
        try:
            self._send_dead_letter(raw, error)
        except BusError as exc:
            self._fail(raw, self._send_failed(raw, exc))
            return False
        return True

    def _send_dead_letter(self, raw: Message, error: BaseException) -> None:
        assert self._producer is not None
        m = self._dead_letter_of(raw, error)
        self._producer.send(m.topic, m.value, key=m.key, headers=m.headers)

    def _retried(self, raw: Message, first: Exception) -> Exception | None:
        """The retries after a first failure: ``None`` once a call succeeded, else the
        last error. Raises ``Interrupted`` when the worker stops during a wait."""

        def handle() -> Any:
            message = raw if self._decode is None else self._decode(raw)
            return self._handler(message)

        assert self._policy is not None
        try:
            tenacity.Retrying(sleep=self._wait, **self._policy)(replaying(first, handle))
        except Interrupted:
            raise
        except Exception as last:
            return last
        return None

    def _wait(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise Interrupted

    # -- signals ------------------------------------------------------------------------------

    def _catch_signals(self) -> Callable[[], None]:
        """In the main thread, SIGTERM and SIGINT stop the worker (a second one does
        what it did before); returns what puts the earlier handlers back."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        before = {s: signal.getsignal(s) for s in _SIGNALS}

        def on_signal(signum: int, frame: Any) -> None:
            LOGGER.info(
                "worker of %s: %s, stopping", ", ".join(self.topics), signal.Signals(signum).name
            )
            for s, handler in before.items():
                signal.signal(s, handler)
            self.stop()

        for s in _SIGNALS:
            signal.signal(s, on_signal)

        def restore() -> None:
            for s, handler in before.items():
                signal.signal(s, handler)

        return restore

    def __repr__(self) -> str:
        return self._describe(self._stop.is_set())
