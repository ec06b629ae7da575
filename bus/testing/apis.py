"""One conformance test, both APIs: the ``bus_api`` fixture's two faces.

A conformance test is written once, against the blocking API, and takes the
``bus_api`` fixture (from the ``bus.testing.plugin`` pytest plugin). The fixture runs
each such test twice: ``[sync]`` with ``bus_api.producer()``/``bus_api.consumer()``
returning the backend's blocking ``Producer``/``Consumer``, and ``[async]`` with them
returning the backend's ``AsyncProducer``/``AsyncConsumer`` behind a thin blocking
face. A backend without an API mode has that run skipped by capability (``sync``,
``async``), so ``kafka://`` runs the ``[sync]`` half, ``aiokafka://`` the ``[async]``
half and ``memory://`` both, all held to the same rules.

The blocking face runs every call of the asyncio client to completion on an event
loop of its own that runs in a background thread for the whole test, so the client's
background work (heartbeats, rebalances, fetches) goes on between calls as in an
asyncio application. Callbacks (``on_delivery``, ``on_assign``, ...) run on that loop's
thread. Calling the face from several threads is allowed and means what the
asyncio API gives several tasks: ``close()`` from another thread is ``close()`` from
another task, ending an ``async for`` or a waiting ``poll`` on the loop.

The face adds nothing of its own: arguments go to the asyncio client untouched, what
it raises is raised, iteration is ``async for``. A call that does not finish within
``CALL_DEADLINE`` seconds fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal, cast

import bus

__all__ = ["CALL_DEADLINE", "AsyncAPI", "BusAPI", "SyncAPI"]

#: Seconds one call through the blocking face of an asyncio client may take.
CALL_DEADLINE = 120.0

_END = object()  # what an exhausted async iterator hands back through the loop


class BusAPI:
    """Makes clients of ``bus`` through one API. ``name`` is ``"sync"`` or ``"async"``.

    ``producer(**options)`` and ``consumer(*topics, group=None, **options)`` take what
    ``Bus.producer``/``Bus.consumer`` take and return a client with the blocking
    API's methods and contract. ``using(other)`` makes clients of another ``Bus`` the
    same way (a test that connects with options of its own). ``close()`` closes every
    client this object made that the test left open. Not thread-safe to create from.
    """

    name: Literal["sync", "async"]

    def __init__(self, message_bus: bus.Bus):
        self.bus = message_bus

    def producer(self, **options: Any) -> bus.Producer:
        raise NotImplementedError

    def consumer(self, *topics: str, group: str | None = None, **options: Any) -> bus.Consumer:
        raise NotImplementedError

    def worker(
        self, handler: Callable[[bus.Message], Any], *topics: str, group: str, **options: Any
    ) -> bus.Worker:
        """A worker of ``Bus.worker``'s arguments, with the blocking ``Worker``'s ``run()``
        and ``stop()`` (any thread). ``handler`` is a blocking function in both modes:
        the ``[async]`` face awaits it in a thread of the loop's executor, so
        handlers run at once as ``concurrency`` allows, as coroutines that wait on I/O
        would."""
        raise NotImplementedError

    def using(self, other: bus.Bus) -> BusAPI:
        raise NotImplementedError

    def close(self) -> None:
        """Close what the test left open."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} on {self.bus!r}>"


class SyncAPI(BusAPI):
    """The blocking API as it is: ``Bus.producer`` and ``Bus.consumer``. What the test
    leaves open, ``Bus.close()`` closes."""

    name = "sync"

    def producer(self, **options: Any) -> bus.Producer:
        return self.bus.producer(**options)

    def consumer(self, *topics: str, group: str | None = None, **options: Any) -> bus.Consumer:
        return self.bus.consumer(*topics, group=group, **options)

    def worker(
        self, handler: Callable[[bus.Message], Any], *topics: str, group: str, **options: Any
    ) -> bus.Worker:
        return self.bus.worker(handler, *topics, group=group, **options)

    def using(self, other: bus.Bus) -> BusAPI:
        return SyncAPI(other)


class _Loop:
    """An event loop running in a daemon thread until ``close()``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="bus-testing-loop", daemon=True
        )
        self._thread.start()

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` on the loop, awaited if it returns an
        awaitable; its result or its exception, here."""

        async def run() -> Any:
            result = function(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        try:
            return future.result(CALL_DEADLINE)
        except BaseException:
            if future.done():
                raise  # what the call itself raised, bus.TimeoutError included
            future.cancel()
            raise AssertionError(
                f"{getattr(function, '__qualname__', function)} did not return within "
                f"{CALL_DEADLINE:g} s"
            ) from None

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class _BlockingProducer:
    """An ``AsyncProducer`` behind the blocking ``Producer``'s methods."""

    def __init__(self, client: bus.AsyncProducer, loop: _Loop):
        self.client = client
        self._call = loop.call

    def send(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.client.send, *args, **kwargs)

    def send_batch(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.client.send_batch, *args, **kwargs)

    def enqueue(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.client.enqueue, *args, **kwargs)

    def flush(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.client.flush, *args, **kwargs)

    def close(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.client.close, *args, **kwargs)

    def __enter__(self) -> _BlockingProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<blocking face of {self.client!r}>"


class _BlockingConsumer:
    """An ``AsyncConsumer`` behind the blocking ``Consumer``'s methods; iterating it
    is ``async for`` on the loop."""

    def __init__(self, client: bus.AsyncConsumer, loop: _Loop):
        self.client = client
        self._call = loop.call

    def poll(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.client.poll, *args, **kwargs)

    def poll_batch(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.client.poll_batch, *args, **kwargs)

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.client.commit, *args, **kwargs)

    def seek(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.client.seek, *args, **kwargs)

    def assignment(self) -> Any:
        return self._call(self.client.assignment)

    def watermarks(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.client.watermarks, *args, **kwargs)

    def offsets_for_times(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.client.offsets_for_times, *args, **kwargs)

    def committed(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.client.committed, *args, **kwargs)

    def close(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.client.close, *args, **kwargs)

    def __iter__(self) -> Iterator[bus.Message]:
        iterator = self._call(self.client.__aiter__)

        async def step() -> Any:
            try:
                return await cast(Awaitable[Any], iterator.__anext__())
            except StopAsyncIteration:
                return _END

        try:
            while (message := self._call(step)) is not _END:
                yield message
        finally:
            self._call(iterator.aclose)

    def __enter__(self) -> _BlockingConsumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<blocking face of {self.client!r}>"


class _BlockingWorker:
    """An ``AsyncWorker`` behind the blocking ``Worker``'s methods: ``run()`` awaits it
    on the loop (for up to ``CALL_DEADLINE``), ``stop()`` is its own (any thread)."""

    def __init__(self, worker: bus.AsyncWorker, loop: _Loop):
        self.worker = worker
        self._call = loop.call

    def run(self) -> None:
        self._call(self.worker.run)

    def stop(self) -> None:
        self.worker.stop()

    def __repr__(self) -> str:
        return f"<blocking face of {self.worker!r}>"


class AsyncAPI(BusAPI):
    """The asyncio API behind a blocking face: ``Bus.async_producer`` and
    ``Bus.async_consumer``, each made and used on a loop of this object's own."""

    name = "async"

    def __init__(self, message_bus: bus.Bus, loop: _Loop | None = None):
        super().__init__(message_bus)
        self._owner = loop is None
        self._loop = loop or _Loop()
        self._made: list[_BlockingProducer | _BlockingConsumer] = []
        self._others: list[AsyncAPI] = []

    def producer(self, **options: Any) -> bus.Producer:
        client = self._loop.call(self.bus.async_producer, **options)
        face = _BlockingProducer(client, self._loop)
        self._made.append(face)
        return cast(bus.Producer, face)

    def consumer(self, *topics: str, group: str | None = None, **options: Any) -> bus.Consumer:
        client = self._loop.call(self.bus.async_consumer, *topics, group=group, **options)
        face = _BlockingConsumer(client, self._loop)
        self._made.append(face)
        return cast(bus.Consumer, face)

    def worker(
        self, handler: Callable[[bus.Message], Any], *topics: str, group: str, **options: Any
    ) -> bus.Worker:
        async def awaited(message: bus.Message) -> Any:
            return await asyncio.to_thread(handler, message)

        made = self._loop.call(self.bus.async_worker, awaited, *topics, group=group, **options)
        return cast(bus.Worker, _BlockingWorker(made, self._loop))

    def using(self, other: bus.Bus) -> BusAPI:
        api = AsyncAPI(other, self._loop)
        self._others.append(api)
        return api

    def close(self) -> None:
        """Close every client made here (and through ``using``), then the loop; raises
        the first error a close raised."""
        errors: list[BaseException] = []
        for api in self._others:
            try:
                api.close()
            except Exception as exc:
                errors.append(exc)
        for face in self._made:
            try:
                face.close()  # idempotent: nothing happens to a closed one
            except Exception as exc:
                errors.append(exc)
        self._made.clear()
        if self._owner:
            self._loop.close()
        if errors:
            raise errors[0]
