"""The asyncio consumer on ``AIOKafkaConsumer``, started on first use.

aiokafka's own auto-commit commits positions (what was fetched), so it is off: this
driver commits processed positions itself on the interval, when partitions are
revoked (the rebalance listener runs before they move) and on close. aiokafka's
group protocol is eager: ``on_revoke`` gets every partition, then ``on_assign`` the
new set, so replaying the callbacks gives the assignment, as on the other backends.

A poll raises what only the user can fix (a refused login, a topic or group the user
may not use: ``bus.AuthenticationError``, ``bus.AuthorizationError``), and tells
``on_error`` what aiokafka retries by itself (a broker away).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka import TopicPartition as RawTP
from aiokafka.errors import (
    IllegalStateError,
    KafkaError,
    TopicAuthorizationFailedError,
    for_code,
)
from aiokafka.protocol.metadata import MetadataRequest

import bus
from backends._kafka_options import METADATA_EVERY, METADATA_WHILE_EMPTY
from backends.aiokafka import _auth
from backends.aiokafka._client import no_auto_create
from backends.aiokafka._errors import COMMIT, OTHER, REBALANCE_NOTE, mapped
from bus.spi import AsyncConsumerDriver, GivenBack, ProblemReporter, consumed_message

LOGGER = logging.getLogger("bus.aiokafka")

#: Longest one wait lasts before looking at ``wakeup()`` and deadlines again.
_SLICE = 0.2
#: Seconds the first connection may take before ``poll`` reports it to ``on_error``.
_START_TIMEOUT = 30.0
#: aiokafka retries a lost broker silently; while polls come back empty, the driver
#: asks for cluster metadata this often and tells ``on_error`` when nobody answers.
_HEALTH_EVERY = 2.0

#: What a poll raises rather than tells ``on_error``: nothing comes of retrying until
#: the user fixes the credentials or the ACLs. The rest (a broker away, a rebalance)
#: goes to ``on_error`` while aiokafka retries.
_MUST_FIX = (bus.AuthenticationError, bus.AuthorizationError)

Key = tuple[str, int]


async def _call(callback: Callable[..., Any] | None, argument: Any) -> None:
    if callback is not None:
        result = callback(argument)
        if inspect.isawaitable(result):
            await result


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, driver: AioKafkaConsumer):
        self._driver = driver

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._driver.partitions_revoked({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._driver.partitions_assigned({(tp.topic, tp.partition) for tp in assigned})


class AioKafkaConsumer(AsyncConsumerDriver):
    def __init__(
        self,
        kwargs: Mapping[str, Any],
        topics: tuple[str, ...],
        group: str | None,
        settings: Mapping[str, Any],
    ):
        self._kwargs = dict(kwargs)
        self._topics = topics
        self._group = group
        self._on_assign = settings["on_assign"]
        self._on_revoke = settings["on_revoke"]
        self._problems = ProblemReporter(settings["on_error"], LOGGER, "aiokafka consumer")
        self._auto_commit = bool(settings["auto_commit"]) and group is not None
        self._interval: float = settings["auto_commit_interval"]
        self._next_commit = time.monotonic() + self._interval
        self._auto_task: asyncio.Task[None] | None = None
        self._commit_lock = asyncio.Lock()
        self._raw: AIOKafkaConsumer | None = None
        self._assigned: set[Key] = set()
        self._returned: dict[Key, int] = {}
        self._processed: dict[Key, int] = {}
        self._given = GivenBack()
        # Paused partitions, and what give_back kept of them: returned once resumed.
        self._paused: set[Key] = set()
        self._committed: dict[Key, int] = {}
        self._woken = False
        self._next_metadata = 0.0
        self._next_health = time.monotonic() + _HEALTH_EVERY
        self._health: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._unstarted: AIOKafkaConsumer | None = None  # the client being started
        # Topics of a consumer without a group that the cluster says it may not read.
        self._denied: set[str] = set()
        # partitions=: just these (aiokafka is told once started), never refreshed.
        self._fixed: frozenset[bus.TopicPartition] | None = settings.get("partitions")
        if self._fixed is not None:
            self._next_metadata = math.inf
            self._assigned = {(tp.topic, tp.partition) for tp in self._fixed}

    # -- life cycle --------------------------------------------------------------------------

    async def _consumer(self, deadline: float | None) -> AIOKafkaConsumer | None:
        """The started client, or None if it is not started by ``deadline`` (or a
        ``wakeup()`` came first). The start runs as a task of its own, so a poll keeps
        its timeout while the cluster is away, and the next poll waits on the same
        start; a start that failed raises here and the next poll tries again."""
        if self._raw is not None:
            return self._raw
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._start())
        while not self._starting.done():
            left = None if deadline is None else deadline - time.monotonic()
            if self._woken or (left is not None and left <= 0):
                return None
            wait = _SLICE if left is None else min(left, _SLICE)
            await asyncio.wait({self._starting}, timeout=wait)
        starting, self._starting = self._starting, None
        if starting.cancelled():  # by close()
            return None
        starting.result()  # the start's bus error, if it failed
        return self._raw

    async def _start(self) -> None:
        raw = self._unstarted = AIOKafkaConsumer(**self._kwargs)
        if self._group is not None:
            # Subscribed before start, so start() returns once the group has given this
            # member its first assignment (the start runs in a task of its own: polls
            # keep their timeouts meanwhile, and close cancels it).
            raw.subscribe(topics=list(self._topics), listener=_Listener(self))
        try:
            with no_auto_create():  # the client's tasks, started here, keep it
                await _auth.start(raw.start(), self._kwargs, _START_TIMEOUT)
        except (KafkaError, asyncio.TimeoutError, OSError) as exc:
            self._unstarted = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(raw.stop(), _START_TIMEOUT)
            raise mapped(exc, OTHER, "aiokafka:// consumer could not start") from exc
        # Cancelled (by close), the half-started client stays in _unstarted: close stops
        # it, or it would stay a member of the group that never reads.
        self._unstarted = None
        self._raw = raw
        if self._fixed is not None:
            raw.assign([RawTP(tp.topic, tp.partition) for tp in sorted(self._fixed)])
        elif self._group is None:
            await self._refresh_standalone()

    async def _refresh_standalone(self) -> None:
        """No group: read every partition of the topics that exists (new ones too)."""
        assert self._raw is not None
        every = METADATA_EVERY if self._assigned else METADATA_WHILE_EMPTY
        self._next_metadata = time.monotonic() + every
        try:
            # aiokafka waits for the answer without limit (the consumer's tasks make
            # the request, so it creates no topic: see _client.py).
            await asyncio.wait_for(self._raw._client.force_metadata_update(), _HEALTH_EVERY)
        except asyncio.TimeoutError:
            self._report(bus.TimeoutError("no cluster metadata (retrying)"))
            return
        unknown = [t for t in self._topics if self._raw.partitions_for_topic(t) is None]
        self._denied = await self._look_for(unknown) if unknown else set()
        wanted = {(t, p) for t in self._topics for p in (self._raw.partitions_for_topic(t) or ())}
        if wanted - self._assigned:
            self._raw.assign([RawTP(t, p) for t, p in sorted(wanted | self._assigned)])
            self._assigned |= wanted
            if self._paused:  # a new assignment starts every partition unpaused
                self._raw.pause(*(RawTP(t, p) for t, p in sorted(self._paused)))

    async def _look_for(self, topics: list[str]) -> set[str]:
        """Ask the cluster about ``topics``, which its metadata does not show; return
        those this consumer may not read. aiokafka asks for every topic (until it has
        an assignment), and the broker leaves out of that answer both the topics that
        do not exist and those the user may not describe. One that exists after all
        is added to what aiokafka follows, so the next refresh sees its partitions."""
        assert self._raw is not None
        client = self._raw._client
        node = client.get_random_node()
        if node is None:
            return self._denied
        request = MetadataRequest(topics, allow_auto_topic_creation=False)
        try:
            response = await asyncio.wait_for(client.send(node, request), _HEALTH_EVERY)
        except (KafkaError, asyncio.TimeoutError, OSError):
            return self._denied  # the health probe tells on_error if nobody answers
        denied = set()
        for entry in response.topics:
            code, topic = entry[0], entry[1]
            if for_code(code) is TopicAuthorizationFailedError:
                denied.add(topic)
            elif code == 0:
                client.add_topic(topic)
        return denied

    def _check_allowed(self, raw: AIOKafkaConsumer) -> None:
        """Raise ``bus.AuthorizationError`` for the topics this consumer may not read
        (with a group, aiokafka notes them in its metadata and waits without a word)."""
        denied = (raw._client.cluster.unauthorized_topics | self._denied).intersection(self._topics)
        if denied:
            names = ", ".join(sorted(denied))
            raise mapped(
                TopicAuthorizationFailedError(names), OTHER, f"not allowed to read {names}"
            )

    # -- rebalance listener -------------------------------------------------------------------

    async def partitions_revoked(self, lost: set[Key]) -> None:
        if lost and self.before_revoke is not None:
            # Runs between two turns of an `async for`: what the loop holds of these
            # partitions goes back first, so the commit below covers what it processed.
            self.before_revoke({bus.TopicPartition(t, p) for t, p in lost})
        if self._auto_commit:
            await self._commit_positions(
                {k: v for k, v in self._processed.items() if k in lost}, quiet=True
            )
        self._assigned -= lost
        for key in lost:
            self._returned.pop(key, None)
            self._processed.pop(key, None)
        self._given.forget(lost)  # what it kept or parked of them
        # aiokafka's next assignment starts every partition unpaused, as the contract
        # wants of those assigned again (its rebalances are eager: all are revoked).
        self._paused -= lost
        if lost:
            await _call(self._on_revoke, {bus.TopicPartition(t, p) for t, p in lost})

    async def partitions_assigned(self, gained: set[Key]) -> None:
        self._assigned |= gained
        if gained:
            await _call(self._on_assign, {bus.TopicPartition(t, p) for t, p in gained})

    # -- processed positions ------------------------------------------------------------------

    def _mark_processed(self) -> None:
        if self._returned:
            self._processed.update({k: v for k, v in self._returned.items() if k in self._assigned})
            self._returned = {}

    async def _commit_positions(
        self, positions: Mapping[Key, int], *, quiet: bool, timeout: float | None = None
    ) -> None:
        """Commit ``positions``; a ``quiet`` commit (one of its own: the interval's, a
        rebalance's, close's) tells ``on_error`` instead of raising, and ``on_committed``
        when it succeeded.
        aiokafka's commit waits for the coordinator without limit: ``timeout`` bounds it
        (the positions stay processed and go with the next commit)."""
        async with self._commit_lock:
            todo = {k: v for k, v in positions.items() if self._committed.get(k) != v}
            if not todo or self._raw is None:
                return
            try:
                await asyncio.wait_for(
                    self._raw.commit({RawTP(t, p): o for (t, p), o in todo.items()}), timeout
                )
            except asyncio.TimeoutError:
                late = bus.TimeoutError(
                    f"commit not acknowledged within {timeout:g}s; it is retried with the next one"
                )
                if not quiet:
                    raise late from None
                self._report(late)
                return
            except KafkaError as exc:
                error = mapped(exc, COMMIT, "commit failed")
                if not quiet:
                    raise error from exc
                self._report(error)
                return
            self._committed.update(todo)
        if quiet and self.on_committed is not None:  # one of its own: on_commit hears
            self.on_committed({bus.TopicPartition(t, p): o for (t, p), o in todo.items()})

    def _report(self, error: bus.BusError) -> None:
        """Tell ``on_error`` of a problem once until messages flow again."""
        cause = error.__cause__
        self._problems.report(error, (type(error), type(cause), str(error).split(":")[0]))

    async def _maybe_auto_commit(self) -> None:
        """Start the interval's commit in the background: aiokafka's commit waits for
        the group coordinator without limit, and a poll must return on time even while
        the coordinator is away. One commit runs at a time (``_commit_positions`` holds
        a lock), so an older position never lands after a newer one."""
        if not self._auto_commit or time.monotonic() < self._next_commit:
            return
        if self._auto_task is not None and not self._auto_task.done():
            return  # the last one is still waiting: its positions are not lost
        self._next_commit = time.monotonic() + self._interval
        positions = {k: v for k, v in self._processed.items() if k in self._assigned}
        self._auto_task = asyncio.get_running_loop().create_task(
            self._commit_positions(positions, quiet=True, timeout=max(self._interval, 1.0))
        )

    # -- the driver ------------------------------------------------------------------------------

    def give_back(self, positions: Mapping[bus.TopicPartition, int]) -> None:
        self._given.take_back(positions, self._returned, self._processed)
        self._given.park(self._paused)

    # -- pausing -------------------------------------------------------------------------------
    #
    # aiokafka fetches nothing for a paused partition and drops what it fetched of it
    # before (a buffered fetch result of a paused partition is discarded unreturned);
    # once resumed it fetches from the partition's position: after the last record
    # getmany returned. The records getmany returned that went back through give_back
    # are the driver's own to hold: while their partition is paused they wait in
    # GivenBack.parked, and resume puts them first again, before what aiokafka fetches next.

    def _client(self) -> AIOKafkaConsumer | None:
        # The listener assigns partitions while the client starts: it is _unstarted then.
        return self._raw if self._raw is not None else self._unstarted

    def pause(self, partitions: Collection[bus.TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions} & self._assigned
        keys -= self._paused
        raw = self._client()
        if not keys or raw is None:
            return
        for key in sorted(keys):
            try:
                raw.pause(RawTP(*key))
            except IllegalStateError:  # not in aiokafka's assignment (any more)
                keys.discard(key)
        self._paused |= keys
        self._given.park(self._paused)

    def resume(self, partitions: Collection[bus.TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions} & self._paused
        if not keys:
            return
        raw = self._client()
        for key in sorted(keys):
            if raw is not None:
                with contextlib.suppress(IllegalStateError):
                    raw.resume(RawTP(*key))
        self._paused -= keys
        self._given.unpark(keys)

    async def poll_batch(self, max_messages: int, timeout: float | None) -> list[bus.Message]:
        self._given.last = out = await self._poll_batch(max_messages, timeout)
        return out

    async def _redeliver(self, raw: AIOKafkaConsumer, max_messages: int) -> list[bus.Message]:
        """What ``give_back`` took back, first; then what is ready, if there is room
        (a fetch also tells aiokafka the consumer is alive: max_poll_interval)."""
        out = self._given.take(max_messages, self._returned)
        if not self._given.kept and len(out) < max_messages:
            try:
                records = await raw.getmany(timeout_ms=0, max_records=max_messages - len(out))
            except KafkaError as exc:
                self._report(mapped(exc, OTHER, "fetch failed"))
            else:
                out += self._convert(records)
        return out

    async def _poll_batch(self, max_messages: int, timeout: float | None) -> list[bus.Message]:
        self._mark_processed()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            raw = await self._consumer(deadline)
        except _MUST_FIX:
            raise
        except bus.BusError as error:
            self._report(error)
            if deadline is not None:
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            return []
        if raw is None:  # not started yet
            self._woken = False
            return []
        if self._given.kept:
            return await self._redeliver(raw, max_messages)
        while True:
            await self._maybe_auto_commit()
            if self._woken:
                self._woken = False
                return []
            if self._group is None and time.monotonic() >= self._next_metadata:
                await self._refresh_standalone()
            self._check_allowed(raw)
            wait = (
                _SLICE if deadline is None else max(0.0, min(_SLICE, deadline - time.monotonic()))
            )
            if not self._assigned and self._group is None:
                # Nothing to read yet (its topics do not exist): aiokafka's getmany
                # would wait for an assignment without limit.
                await asyncio.sleep(wait)
                records = {}
            else:
                try:
                    records = await raw.getmany(
                        timeout_ms=int(wait * 1000), max_records=max_messages
                    )
                except KafkaError as exc:
                    failed = mapped(exc, OTHER, "fetch failed")
                    if isinstance(failed, _MUST_FIX):
                        raise failed from exc
                    self._report(failed)
                    records = {}
            if records:
                self._problems.clear()
                self._next_health = time.monotonic() + _HEALTH_EVERY
                return self._convert(records)
            self._check_health(raw)
            if deadline is not None and time.monotonic() >= deadline:
                return []

    def _check_health(self, raw: AIOKafkaConsumer) -> None:
        """While idle, check in the background that the cluster still answers."""
        now = time.monotonic()
        if now < self._next_health or (self._health is not None and not self._health.done()):
            return
        self._next_health = now + _HEALTH_EVERY
        self._health = asyncio.get_running_loop().create_task(self._probe(raw))

    async def _probe(self, raw: AIOKafkaConsumer) -> None:
        try:
            # aiokafka's client is private, but it is the only way to learn that the
            # brokers are gone: the consumer itself retries without a word.
            await asyncio.wait_for(raw._client.fetch_all_metadata(), _HEALTH_EVERY)
        except (KafkaError, asyncio.TimeoutError, OSError) as exc:
            self._report(mapped(exc, OTHER, "the cluster does not answer (retrying)"))
        else:
            self._problems.clear()

    def _convert(self, records: Mapping[Any, list[Any]]) -> list[bus.Message]:
        """aiokafka records as bus Messages, built through their slots; each record is
        dropped once converted, so the two never pile up for the garbage collector."""
        out: list[bus.Message] = []
        add = out.append
        returned = self._returned
        for tp, batch in records.items():
            topic, partition = tp.topic, tp.partition
            if batch:
                returned[(topic, partition)] = batch[-1].offset + 1
            for i, r in enumerate(batch):
                headers = r.headers
                add(
                    consumed_message(
                        topic,
                        r.value,
                        r.key,
                        tuple(headers) if headers else (),
                        partition,
                        r.offset,
                        r.timestamp,
                    )
                )
                batch[i] = None
        return out

    async def commit(self, message: bus.Message | None) -> None:
        if self._group is None:
            raise bus.CommitError(
                "this consumer has no group, so there is nothing to commit "
                "to; pass group=... to async_consumer()"
            )
        if message is None:
            self._mark_processed()
            await self._commit_positions(
                {k: v for k, v in self._processed.items() if k in self._assigned}, quiet=False
            )
            return
        key: Key = (message.topic, message.partition)  # type: ignore[assignment]
        if key not in self._assigned:
            raise bus.CommitError(
                f"cannot commit {key[0]}[{key[1]}]: the partition is not "
                f"assigned to this consumer ({REBALANCE_NOTE})"
            )
        end = message.offset + 1  # type: ignore[operator]
        await self._commit_positions({key: end}, quiet=False)
        if self._processed.get(key, -1) < end:
            self._processed[key] = end

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        if (topic, partition) not in self._assigned:
            raise ValueError(f"cannot seek {topic}[{partition}]: not assigned to this consumer")
        raw = self._raw
        if raw is None:  # partitions= are assigned before the client starts
            raw = await self._started(time.monotonic() + _START_TIMEOUT, "seek")
        self._returned.pop((topic, partition), None)
        self._given.forget({(topic, partition)})
        raw.seek(RawTP(topic, partition), offset)

    # -- positions ---------------------------------------------------------------------------
    #
    # aiokafka answers for any partition, assigned or not, but waits for one it has no
    # leader for until its request_timeout_ms, so each lookup first checks the
    # partitions in the cluster's metadata (what the client knows, else a fresh
    # answer); the whole call keeps the core's bound. A ListOffsets request shares the
    # broker connection with the fetcher's long poll, so while nothing is flowing it
    # waits for that fetch to end (fetch_max_wait_ms, 500 ms by default) first.

    async def _started(self, deadline: float, what: str) -> AIOKafkaConsumer:
        """The started client, waiting for its start until ``deadline``."""
        if self._raw is not None:
            return self._raw
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._start())
        starting = self._starting
        await asyncio.wait({starting}, timeout=max(0.0, deadline - time.monotonic()))
        if not starting.done():
            raise bus.TimeoutError(f"{what}: the consumer did not connect in time")
        if self._starting is starting:
            self._starting = None
        if starting.cancelled():  # by close()
            raise bus.ClosedError("AsyncConsumer is closed")
        starting.result()  # the start's bus error, if it failed
        assert self._raw is not None
        return self._raw

    @staticmethod
    async def _bounded(work: Any, deadline: float, what: str) -> Any:
        try:
            return await asyncio.wait_for(work, max(0.0, deadline - time.monotonic()))
        except KafkaError as exc:
            raise mapped(exc, OTHER, what) from exc
        except asyncio.TimeoutError:
            raise bus.TimeoutError(f"{what}: no answer from the cluster in time") from None

    async def _known(self, keys: Collection[Key], deadline: float, what: str) -> AIOKafkaConsumer:
        """The started client, once the cluster's metadata shows every partition;
        ``bus.UnknownTopicError`` if one is missing."""
        raw = await self._started(deadline, what)
        cluster = raw._client.cluster
        if any(p not in (cluster.partitions_for_topic(t) or ()) for t, p in keys):
            cluster = await self._bounded(raw._client.fetch_all_metadata(), deadline, what)
        for topic, partition in sorted(keys):
            found = cluster.partitions_for_topic(topic)
            if found is None:
                raise bus.UnknownTopicError(f"{what}: topic {topic!r} does not exist")
            if partition not in found:
                raise bus.UnknownTopicError(f"{what}: {topic}[{partition}] does not exist")
        return raw

    async def watermarks(self, topic: str, partition: int, timeout: float) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        what = f"watermarks of {topic}[{partition}]"
        raw = await self._known({(topic, partition)}, deadline, what)
        tp = RawTP(topic, partition)
        low, high = await self._bounded(
            asyncio.gather(raw.beginning_offsets([tp]), raw.end_offsets([tp])), deadline, what
        )
        return low[tp], high[tp]

    async def offsets_for_times(
        self, times: Mapping[bus.TopicPartition, int], timeout: float
    ) -> dict[bus.TopicPartition, int | None]:
        deadline = time.monotonic() + timeout
        what = "offsets_for_times"
        raw = await self._known({(tp.topic, tp.partition) for tp in times}, deadline, what)
        asked = {RawTP(tp.topic, tp.partition): ms for tp, ms in times.items()}
        found = await self._bounded(raw.offsets_for_times(asked), deadline, what)
        # OffsetAndTimestamp, or None where no message is that late.
        return {
            bus.TopicPartition(tp.topic, tp.partition): None if hit is None else hit.offset
            for tp, hit in found.items()
        }

    async def committed(
        self, partitions: frozenset[bus.TopicPartition], timeout: float
    ) -> dict[bus.TopicPartition, int | None]:
        deadline = time.monotonic() + timeout
        what = "committed positions"
        ordered = sorted(partitions)
        raw = await self._known({(tp.topic, tp.partition) for tp in ordered}, deadline, what)
        # One OffsetFetch per partition (aiokafka's public call takes one); None: nothing
        # committed.
        found = await self._bounded(
            asyncio.gather(*(raw.committed(RawTP(tp.topic, tp.partition)) for tp in ordered)),
            deadline,
            what,
        )
        return dict(zip(ordered, found, strict=True))

    def assignment(self) -> frozenset[bus.TopicPartition]:
        return frozenset(bus.TopicPartition(t, p) for t, p in self._assigned)

    def wakeup(self) -> None:
        self._woken = True

    async def close(self, timeout: float | None) -> None:
        """Commit processed positions (when auto-committing) and leave the group, both
        within ``timeout``: what the cluster does not answer in time is told to
        ``on_error`` (the positions are then redelivered: at-least-once)."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        if self._health is not None:
            self._health.cancel()
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            await asyncio.wait({self._starting}, timeout=left())
            unstarted, self._unstarted = self._unstarted, None
            if unstarted is not None:
                stop_within = _START_TIMEOUT if deadline is None else max(0.1, left() or 0.0)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(unstarted.stop(), stop_within)
        if self._raw is None:
            return
        try:
            if self._auto_commit:
                await self._commit_positions(
                    {k: v for k, v in self._processed.items() if k in self._assigned},
                    quiet=True,
                    timeout=left(),
                )
        finally:
            if self._auto_task is not None:
                self._auto_task.cancel()
            try:
                await asyncio.wait_for(self._raw.stop(), left())
            except asyncio.TimeoutError:
                self._report(bus.TimeoutError(f"leaving the group took longer than {timeout:g}s"))
