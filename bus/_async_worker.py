"""``AsyncWorker``: ``Worker``'s asyncio twin, handlers run as tasks of one loop."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
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
    from bus._consumer import AsyncConsumer
    from bus._producer import AsyncProducer

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class AsyncWorker(WorkerCore):
    """``Worker`` for asyncio: ``await handler(message)`` for every message of
    ``topics`` as a member of ``group``; made by ``Bus.async_worker``.

    The same contract as ``Worker`` (at-least-once, order within a partition, only
    the contiguous processed prefix committed, retry, dead letters, the stop), with
    handlers run as up to ``concurrency`` tasks on the loop that awaits ``run()``.
    ``stop()`` may be called from any task or thread. SIGTERM and SIGINT stop it when
    the loop runs in the main thread. Handlers still running after
    ``shutdown_timeout`` are cancelled; their messages are not committed.
    """

    def __init__(self, bus_: Bus, handler: Callable[[Message], Any], **parts: Any):
        super().__init__(bus_, handler, **parts)
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None  # made on the loop, by run()
        self._changed: asyncio.Condition | None = None
        self._consumer: AsyncConsumer | None = None
        self._producer: AsyncProducer | None = None
        self._runners: list[asyncio.Task[None]] = []
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Future[None]] = set()

    # -- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the worker: from any task or thread. Returns at once; ``run()`` drains
        and returns. Idempotent."""
        with self._lock:
            self._stopping = True
            loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake()
        else:
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._consumer is not None:
            self._consumer._wakeup()
        if self._changed is not None:
            task = asyncio.ensure_future(self._notify())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    def _fail(self, raw: Message, error: BaseException) -> None:
        self._note_failure(raw, error)
        self.stop()

    # -- run ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Fetch and handle until stopped; see the class. Raises ``bus.HandlerError``
        when a message could not be counted as processed."""
        with self._lock:
            if self._started:
                raise RuntimeError("a worker runs once; make another with Bus.async_worker")
            self._started = True
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._changed = asyncio.Condition()
            if self._stopping:
                self._stop.set()
        restore = self._catch_signals()
        try:
            await self._run()
        finally:
            restore()
        failure = self._failure_to_raise()
        if failure is not None:
            raise failure

    async def _run(self) -> None:
        consumer = self._bus.async_consumer(
            *self.topics, on_revoke=self._revoked, **self._consumer_options()
        )
        self._consumer = consumer
        try:
            self._processed = consumer._worker_owned()
            self._around = consumer._around_processing()
            if self._dead_letter is not None:
                self._producer = self._bus.async_producer(serializer=None, key_serializer=None)
            if self._stopping:
                return
            self._runners = [asyncio.ensure_future(self._runner()) for _ in range(self.concurrency)]
            try:
                await self._fetch(consumer)
            finally:  # stopped, failed, or the poll raised: the runners stop too
                self._stopping = True
                await self._notify()
                await self._drain()
                await self._commit(consumer)
        finally:
            try:
                if self._producer is not None:
                    await self._producer.close(self._shutdown_timeout)
            finally:
                await consumer.close()

    async def _fetch(self, consumer: AsyncConsumer) -> None:
        lanes, changed = self._lanes, self._changed
        assert changed is not None
        can_pause = self._can_pause
        clock = time.monotonic
        commit_at = clock() + self._commit_interval
        polled = clock()
        while not self._stopping:
            if clock() >= commit_at:
                await self._commit(consumer)
                commit_at = clock() + self._commit_interval
            if not can_pause and lanes.full(self.concurrency):
                async with changed:  # nothing to pause with: wait for the runners...
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(
                            changed.wait_for(
                                lambda: self._stopping or not lanes.full(self.concurrency)
                            ),
                            POLL_WAIT,
                        )
                if lanes.full(self.concurrency) and clock() - polled < self._keep_alive:
                    continue  # ...polling only as often as the membership needs
            batch = await consumer.poll_batch(POLL_BATCH, timeout=POLL_WAIT)
            polled = clock()
            if batch:
                lanes.add(batch)
                async with changed:
                    changed.notify_all()
            if can_pause:
                paused, resumed = lanes.to_pause(), lanes.to_resume()
                if paused:
                    consumer._pause(paused)
                if resumed:
                    consumer._resume(resumed)

    async def _drain(self) -> None:
        if not self._runners:
            return
        _, pending = await asyncio.wait(self._runners, timeout=self._shutdown_timeout)
        if pending:
            self._abandoned(len(pending), "are cancelled")
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)

    async def _commit(self, consumer: AsyncConsumer, lanes: list[Lane] | None = None) -> None:
        for message in self._lanes.to_commit(lanes):
            try:
                await consumer.commit(message)
            except BusError as exc:  # read again after a restart: at-least-once holds
                self._commit_failed(message, exc)
            else:
                self._lanes.committed(message)

    async def _revoked(self, partitions: set[TopicPartition]) -> None:
        """``on_revoke``: as ``Worker``'s; the handlers of the revoked lanes at work get
        ``shutdown_timeout`` to finish, then are left uncommitted."""
        gone = self._lanes.revoke(partitions)
        changed = self._changed
        if gone and changed is not None:
            async with changed:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(
                        changed.wait_for(lambda: not any(lane.busy for lane in gone)),
                        self._shutdown_timeout,
                    )
        if self._consumer is not None and gone:
            await self._commit(self._consumer, gone)
        if self._on_revoke is not None:
            result = self._on_revoke(partitions)
            if inspect.isawaitable(result):
                await result

    # -- runners ------------------------------------------------------------------------------

    async def _runner(self) -> None:
        lanes, changed = self._lanes, self._changed
        assert changed is not None
        while True:
            taken = lanes.take()
            if taken is None:
                async with changed:
                    await changed.wait_for(lambda: self._stopping or lanes.has_ready())
                if self._stopping:
                    return
                continue
            if self._stopping:
                lanes.release(taken[0])
                return
            lane, run = taken
            try:
                for raw in run:
                    if self._stopping or lane.gone or not await self._handle(raw):
                        break
                    lane.done = raw
                    if self._processed is not None:
                        self._processed(raw)
            finally:
                if lanes.release(lane) and self._consumer is not None:
                    self._consumer._wakeup()  # the poll at hand returns: resume it now
                async with changed:
                    changed.notify_all()

    async def _call(self, raw: Message) -> None:
        message = raw if self._decode is None else self._decode(raw)
        result = self._handler(message)
        if inspect.isawaitable(result):
            await result

    async def _handle(self, raw: Message) -> bool:
        """``_handled``, inside the interceptors' ``processing`` if they have one."""
        if self._around is None:
            return await self._handled(raw)
        with self._around(raw):
            return await self._handled(raw)

    async def _handled(self, raw: Message) -> bool:
        try:
            try:
                await self._call(raw)
                return True
            except Exception as first:
                error: Exception | None = first
                if self._policy is not None:
                    error = await self._retried(raw, first)
                    if error is None:
                        return True
        except Interrupted:
            return False
        except asyncio.CancelledError:
            raise
        except BaseException as fatal:
            self._fail(raw, fatal)
            return False
        assert error is not None
        if self._dead_letter is None or self._producer is None:
            self._fail(raw, error)
            return False
        try:
            await self._send_dead_letter(raw, error)
        except BusError as exc:
            self._fail(raw, self._send_failed(raw, exc))
            return False
        return True

    async def _send_dead_letter(self, raw: Message, error: BaseException) -> None:
        assert self._producer is not None
        m = self._dead_letter_of(raw, error)
        await self._producer.send(m.topic, m.value, key=m.key, headers=m.headers)

    async def _retried(self, raw: Message, first: Exception) -> Exception | None:
        assert self._policy is not None

        async def handle() -> None:
            await self._call(raw)

        call = replaying(first, handle)

        async def attempt() -> None:
            await call()

        try:
            await tenacity.AsyncRetrying(sleep=self._wait, **self._policy)(attempt)
        except Interrupted:
            raise
        except Exception as last:
            return last
        return None

    async def _wait(self, seconds: float) -> None:
        assert self._stop is not None
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except asyncio.TimeoutError:
            return
        raise Interrupted

    # -- signals ------------------------------------------------------------------------------

    def _catch_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        loop = asyncio.get_running_loop()
        caught = []
        for s in _SIGNALS:
            try:
                loop.add_signal_handler(s, self._on_signal, s)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # a loop without signal support: stop() alone stops it
            caught.append(s)

        def restore() -> None:
            for s in caught:
                loop.remove_signal_handler(s)

        return restore

    def _on_signal(self, signum: int) -> None:
        LOGGER.info(
            "worker of %s: %s, stopping", ", ".join(self.topics), signal.Signals(signum).name
        )
        loop = asyncio.get_running_loop()
        for s in _SIGNALS:  # a second signal does what it did before
            loop.remove_signal_handler(s)
        self.stop()

    def __repr__(self) -> str:
        return self._describe(self._stopping)
