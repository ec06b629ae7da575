"""The blocking consumer on confluent-kafka's ``Consumer``.

At-least-once: the offsets of a returned batch are stored (``store_offsets``) when
the application polls again; librdkafka's auto-commit commits only stored offsets
(``enable.auto.offset.store=false``), and so do rebalances and ``close()``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, KafkaException
from confluent_kafka import Consumer as RawConsumer
from confluent_kafka import TopicPartition as RawTP

import bus
from backends._kafka_options import METADATA_EVERY, METADATA_WHILE_EMPTY
from backends.kafka._errors import COMMIT, OTHER, Standing, error_of, mapped, with_cause
from bus.spi import (
    ConsumerDriver,
    GivenBack,
    Headers,
    ProblemReporter,
    RecordMessage,
    record_wrapper,
)

LOGGER = logging.getLogger("bus.kafka")

#: Longest a blocking wait lasts before looking at ``wakeup()`` and deadlines again.
_SLICE = 0.1

Key = tuple[str, int]

_T = TypeVar("_T")

#: What librdkafka says when a lookup reached no broker within its timeout.
_UNREACHED = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN})
#: Retriable in Kafka's protocol, but a lookup's answer: the topic or partition is not there.
_UNKNOWN = frozenset(
    {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}
)


class _Record(RecordMessage):
    """A consumed message over librdkafka's record (confluent-kafka's ``Message``,
    which holds every field already): building one per record costs a third of
    copying the seven fields out, and a loop that reads only ``value`` pays for that
    one. The record is never changed after ``consume`` returns it."""

    __slots__ = ()

    @property
    def topic(self) -> str:  # type: ignore[override]
        return self._record.topic()  # type: ignore[no-any-return]

    @property
    def value(self) -> Any:
        return self._record.value()

    @property
    def key(self) -> Any:
        return self._record.key()

    @property
    def headers(self) -> Headers:  # type: ignore[override]
        found = self._record.headers()
        return tuple(found) if found else ()

    @property
    def partition(self) -> int:  # type: ignore[override]
        return self._record.partition()  # type: ignore[no-any-return]

    @property
    def offset(self) -> int:  # type: ignore[override]
        return self._record.offset()  # type: ignore[no-any-return]

    @property
    def timestamp(self) -> int | None:  # type: ignore[override]
        kind, stamp = self._record.timestamp()
        return stamp if kind else None


_new_record, _put_record = record_wrapper(_Record)


def _tps(keys: Any) -> set[bus.TopicPartition]:
    return {bus.TopicPartition(t, p) for t, p in keys}


def _left(deadline: float) -> float:
    """Seconds to ``deadline``, at least a millisecond (librdkafka's 0 means "now")."""
    return max(0.001, deadline - time.monotonic())


def _offsets(found: list[Any]) -> dict[bus.TopicPartition, int | None]:
    """librdkafka's answer per partition: an offset, ``None`` for a negative one (no
    such message, nothing committed); a partition's error raised."""
    out: dict[bus.TopicPartition, int | None] = {}
    for tp in found:
        if tp.error is not None:
            raise KafkaException(tp.error)
        out[bus.TopicPartition(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else None
    return out


class KafkaConsumer(ConsumerDriver):
    def __init__(
        self,
        conf: Mapping[str, Any],
        topics: tuple[str, ...],
        group: str | None,
        settings: Mapping[str, Any],
    ):
        self._on_assign: Callable[[set[bus.TopicPartition]], Any] | None = settings["on_assign"]
        self._on_revoke: Callable[[set[bus.TopicPartition]], Any] | None = settings["on_revoke"]
        self._problems = ProblemReporter(settings["on_error"], LOGGER, "kafka consumer")
        self._group = group
        self._topics = topics
        self._auto_commit = bool(settings["auto_commit"]) and group is not None
        self._latest = settings["offset_reset"] == "latest"
        self._assigned: set[Key] = set()
        self._returned: dict[Key, int] = {}  # next offsets after the batch last returned
        self._processed: dict[Key, int] = {}
        # What this member knows it committed of its partitions: a commit of its own
        # (a rebalance's, librdkafka's) that moves none of them is not one.
        self._committed: dict[Key, int] = {}
        self._given = GivenBack()
        # Paused partitions, and what give_back kept of them: returned once resumed.
        self._paused: set[Key] = set()
        self._woken = threading.Event()
        self._next_metadata = 0.0  # no group: the first poll looks for the partitions
        # A wrong password, a denied topic or group: poll raises it (librdkafka would
        # retry it for ever). Without a group, the placeholder group.id librdkafka
        # needs is nobody's business.
        self._standing = Standing(
            frozenset() if group is not None else frozenset({KafkaError.GROUP_AUTHORIZATION_FAILED})
        )
        config = dict(conf)
        config["error_cb"] = self._error
        config["on_commit"] = self._committed_cb  # librdkafka's own commits, for on_commit
        try:
            self._raw = RawConsumer(config)
        except KafkaException as exc:
            raise mapped(exc, "config", "kafka:// consumer") from exc
        if group is not None:
            self._raw.subscribe(
                list(topics),
                on_assign=self._assigned_cb,
                on_revoke=self._revoked_cb,
                on_lost=self._lost_cb,
            )
        given: frozenset[bus.TopicPartition] | None = settings.get("partitions")
        if given is not None:  # partitions=: just these, from the start, never refreshed
            self._next_metadata = math.inf
            self._assigned = {(tp.topic, tp.partition) for tp in given}
            start = OFFSET_END if self._latest else OFFSET_BEGINNING
            assign = [RawTP(t, p, start) for t, p in sorted(self._assigned)]
            try:
                self._raw.incremental_assign(assign)
            except KafkaException as exc:
                self._raw.close()
                raise mapped(exc, OTHER, "kafka:// consumer of partitions") from exc

    # -- errors librdkafka retries by itself ------------------------------------------------------

    def _error(self, err: KafkaError) -> None:
        """librdkafka's error_cb, called on every retry (about 19 a second with a broker
        down): ``on_error`` hears of each error code once until messages flow again;
        one the user must fix is raised by the next poll as well."""
        if self._group is None and err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
            return  # the placeholder group of a consumer without one
        self._standing.note(err)
        self._problems.report(with_cause(mapped(err, OTHER), err), err.code())

    def _committed_cb(self, err: KafkaError | None, partitions: list[Any]) -> None:
        """librdkafka's offset_commit_cb, served inside ``consume``/``poll``/``close``:
        its auto-commits and the commit of ``close`` (not the synchronous commits this
        driver makes, which it reports itself). Nothing to commit (``_NO_OFFSET``), or a
        partition that failed, is not a commit."""
        if err is not None and err.code() == KafkaError._NO_OFFSET:
            return
        moved = {
            (tp.topic, tp.partition): tp.offset
            for tp in partitions
            if tp.error is None
            and tp.offset >= 0
            and self._committed.get((tp.topic, tp.partition)) != tp.offset
        }
        self._committed.update(moved)  # known with or without a listener
        if moved and self.on_committed is not None:
            self.on_committed({bus.TopicPartition(t, p): o for (t, p), o in moved.items()})

    # -- assignment ---------------------------------------------------------------------------

    def _refresh_standalone(self, deadline: float | None) -> None:
        """No group: assign every partition of the topics that exists (new ones too),
        asking within the poll's ``deadline``. A topic the ACLs deny raises
        ``AuthorizationError``; no answer is tried again on the next round."""
        self._next_metadata = time.monotonic() + (
            METADATA_EVERY if self._assigned else METADATA_WHILE_EMPTY
        )
        left = 10.0 if deadline is None else max(0.05, min(10.0, deadline - time.monotonic()))
        try:
            meta = self._raw.list_topics(timeout=left)
        except KafkaException as exc:
            self._raw.poll(0)  # serves error_cb: a refused login says why
            self._standing.check()
            if exc.args and isinstance(exc.args[0], KafkaError):
                self._error(exc.args[0])
            return
        found = {}
        for t in self._topics:
            tm = meta.topics.get(t)
            if tm is None:
                # Left out of a listing of every topic: missing, or not this user's to
                # see. Asked for by name, the cluster says which.
                try:
                    tm = self._raw.list_topics(t, timeout=left).topics.get(t)
                except KafkaException:
                    continue
            if tm is None:
                continue
            if tm.error is None:
                found[t] = tm
            elif tm.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                raise with_cause(mapped(tm.error, OTHER, f"topic {t!r}"), tm.error)
        wanted = {(t, p) for t, tm in found.items() for p in tm.partitions}
        new = wanted - self._assigned
        if new:
            start = OFFSET_END if self._latest else OFFSET_BEGINNING
            self._raw.incremental_assign([RawTP(t, p, start) for t, p in sorted(new)])
            self._assigned |= new

    def _assigned_cb(self, raw: Any, partitions: list[Any]) -> None:
        gained = {(tp.topic, tp.partition) for tp in partitions}
        self._assigned |= gained
        for key in gained:  # another member may have committed it since
            self._committed.pop(key, None)
        if gained and self._on_assign is not None:
            self._on_assign(_tps(gained))

    def _revoked_cb(self, raw: Any, partitions: list[Any]) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        if lost and self.before_revoke is not None:
            self.before_revoke(_tps(lost))  # served inside poll: nothing is held then
        if self._auto_commit:
            done = self._commit_positions(
                {
                    k: v
                    for k, v in self._processed.items()
                    if k in lost and self._committed.get(k) != v
                },
                quiet=True,
            )
            if done and self.on_committed is not None:
                self.on_committed(done)
        self._forget(lost)
        if lost and self._on_revoke is not None:
            self._on_revoke(_tps(lost))

    def _lost_cb(self, raw: Any, partitions: list[Any]) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        if lost and self.before_revoke is not None:
            self.before_revoke(_tps(lost))
        self._forget(lost)  # another member owns them already: nothing may be committed
        if lost and self._on_revoke is not None:
            self._on_revoke(_tps(lost))

    def _forget(self, keys: set[Key]) -> None:
        self._assigned -= keys
        for key in keys:
            self._returned.pop(key, None)
            self._processed.pop(key, None)
        self._given.forget(keys)  # what it kept or parked of them
        paused, self._paused = keys & self._paused, self._paused - keys
        if paused:
            # librdkafka keeps a partition's pause through its unassign and its next
            # assign: resumed while it is still assigned (from the rebalance callback,
            # before the unassign), it comes back unpaused, as the contract wants.
            try:
                self._raw.resume([RawTP(t, p) for t, p in sorted(paused)])
            except KafkaException as exc:
                LOGGER.debug("resume of revoked partitions: %s", exc)

    # -- processed positions -------------------------------------------------------------------

    def _mark_processed(self) -> None:
        returned = {k: v for k, v in self._returned.items() if k in self._assigned}
        self._returned = {}
        if not returned:
            return
        self._processed.update(returned)
        if self._auto_commit:
            self._store(returned)

    def _store(self, positions: Mapping[Key, int]) -> None:
        """Hand processed positions to librdkafka's offset store, which auto-commit,
        rebalances and close commit."""
        try:
            self._raw.store_offsets(offsets=[RawTP(t, p, o) for (t, p), o in positions.items()])
        except KafkaException as exc:  # a partition went away meanwhile
            LOGGER.debug("store_offsets: %s", exc)

    def _commit_positions(
        self, positions: Mapping[Key, int], *, quiet: bool = False
    ) -> dict[bus.TopicPartition, int]:
        """Commit ``positions`` and wait for the answer; returns what was committed. A
        ``quiet`` commit (a rebalance's) logs a failure instead of raising it."""
        if not positions:
            return {}
        offsets = [RawTP(t, p, o) for (t, p), o in positions.items()]
        try:
            result = self._raw.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            if quiet:
                LOGGER.warning("commit during rebalance failed: %s", exc)
                return {}
            raise mapped(exc, COMMIT, "commit failed") from exc
        failed = [tp for tp in result or () if tp.error is not None]
        if failed and not quiet:
            err = failed[0].error
            raise with_cause(
                mapped(err, COMMIT, f"commit of {failed[0].topic}[{failed[0].partition}] failed"),
                err,
            )
        done = {(tp.topic, tp.partition): tp.offset for tp in result or () if tp.error is None}
        self._committed.update(done)
        return {bus.TopicPartition(t, p): o for (t, p), o in done.items()}

    # -- the driver ------------------------------------------------------------------------------

    def give_back(self, positions: Mapping[bus.TopicPartition, int]) -> None:
        raised = self._given.take_back(positions, self._returned, self._processed)
        if raised and self._auto_commit:
            self._store(raised)
        self._given.park(self._paused)

    # -- pausing -------------------------------------------------------------------------------
    #
    # librdkafka drops what it fetched of a partition it pauses (records in its queues
    # are of an outdated version: consume never returns them) and, once resumed,
    # fetches from the application's position: after the last record consume returned.
    # The records consume returned that went back through give_back are the driver's
    # own to hold: while their partition is paused they wait in GivenBack.parked, and resume
    # puts them first again, before anything librdkafka fetches after them. A rebalance
    # keeps the pause of the partitions it leaves here (as librdkafka does) and forgets
    # that of those it takes away (which librdkafka would not: see _forget).

    def pause(self, partitions: Collection[bus.TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions} & self._assigned
        keys -= self._paused
        if not keys:
            return
        try:
            self._raw.pause([RawTP(t, p) for t, p in sorted(keys)])
        except KafkaException as exc:
            raise mapped(exc, OTHER, "pause") from exc
        self._paused |= keys
        self._given.park(self._paused)

    def resume(self, partitions: Collection[bus.TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions} & self._paused
        if not keys:
            return
        try:
            self._raw.resume([RawTP(t, p) for t, p in sorted(keys)])
        except KafkaException as exc:
            raise mapped(exc, OTHER, "resume") from exc
        self._paused -= keys
        self._given.unpark(keys)

    def poll_batch(self, max_messages: int, timeout: float | None) -> list[bus.Message]:
        self._given.last = out = self._poll_batch(max_messages, timeout)
        return out

    def _redeliver(self, max_messages: int) -> list[bus.Message]:
        """What ``give_back`` took back, first; then what is ready, if there is room
        (a consume also tells librdkafka the application is alive: max.poll.interval)."""
        out = self._given.take(max_messages, self._returned)
        if not self._given.kept and len(out) < max_messages:
            out += self._convert(self._raw.consume(max_messages - len(out), 0))
        return out

    def _poll_batch(self, max_messages: int, timeout: float | None) -> list[bus.Message]:
        self._mark_processed()
        if self._given.kept:
            return self._redeliver(max_messages)
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._group is None and time.monotonic() >= self._next_metadata:
            self._refresh_standalone(deadline)
        raw = self._raw
        while True:
            self._standing.check()
            if self._woken.is_set():
                self._woken.clear()
                return []
            wait = (
                _SLICE if deadline is None else max(0.0, min(_SLICE, deadline - time.monotonic()))
            )
            first = raw.poll(wait)
            if first is not None:
                batch = [first]
                if max_messages > 1:
                    batch += raw.consume(max_messages - 1, 0)
                out = self._convert(batch)
                if out:
                    return out
            if deadline is not None and time.monotonic() >= deadline:
                return []
            if self._group is None and time.monotonic() >= self._next_metadata:
                self._refresh_standalone(deadline)

    def _convert(self, batch: list[Any]) -> list[bus.Message]:
        """librdkafka records as bus Messages; errors go to ``on_error``. The hot loop
        of every consumer: one small ``_Record`` per record, and the positions noted
        once per run of one partition's records, not once per record."""
        out: list[bus.Message] = []
        add = out.append
        new, put, cls = _new_record, _put_record, _Record
        returned = self._returned
        one_topic = len(self._topics) == 1
        run: Any = None  # the partition (with several topics: topic, partition) of ...
        last: Any = None  # ... the run of records that ``last`` ends so far
        for m in batch:
            if m.error() is not None:
                if m.error().code() != KafkaError._PARTITION_EOF:
                    self._error(m.error())
                continue
            x = new(cls)
            put(x, m)
            add(x)
            where = m.partition() if one_topic else (m.topic(), m.partition())
            if where != run:
                if last is not None:  # a later run of one partition overwrites an earlier
                    returned[(last.topic(), last.partition())] = last.offset() + 1
                run = where
            last = m
        if last is not None:
            returned[(last.topic(), last.partition())] = last.offset() + 1
            self._problems.clear()  # messages flow: the next error is news
            self._standing.clear()
        return out

    def commit(self, message: bus.Message | None) -> None:
        if self._group is None:
            raise bus.CommitError(
                "this consumer has no group, so there is nothing to commit "
                "to; pass group=... to consumer()"
            )
        if message is None:
            self._mark_processed()
            self._commit_positions(
                {k: v for k, v in self._processed.items() if k in self._assigned}
            )
            return
        key: Key = (message.topic, message.partition)  # type: ignore[assignment]
        if key not in self._assigned:
            raise bus.CommitError(
                f"cannot commit {key[0]}[{key[1]}]: the partition is not "
                "assigned to this consumer (a rebalance may have moved it)"
            )
        end = message.offset + 1  # type: ignore[operator]
        self._commit_positions({key: end})
        if self._processed.get(key, -1) < end:
            self._processed[key] = end
            if self._auto_commit:  # or close() would commit the older stored offset
                self._store({key: end})

    def seek(self, topic: str, partition: int, offset: int) -> None:
        if (topic, partition) not in self._assigned:
            raise ValueError(f"cannot seek {topic}[{partition}]: not assigned to this consumer")
        self._returned.pop((topic, partition), None)
        self._given.forget({(topic, partition)})
        try:
            self._raw.seek(RawTP(topic, partition, offset))
        except KafkaException as exc:
            # Not fetching yet: start the partition there instead.
            try:
                self._raw.incremental_assign([RawTP(topic, partition, offset)])
            except KafkaException:
                raise mapped(exc, OTHER, f"seek {topic}[{partition}]") from exc

    # -- positions ---------------------------------------------------------------------------
    #
    # librdkafka answers for any partition, assigned or not, but for one of a topic it
    # does not know it answers "unknown partition" only at times (or waits): each
    # lookup first asks the cluster's metadata for the topics. A retriable error (no
    # broker connected yet, a leader moving) is tried again until the core's bound.

    def _retried(self, call: Callable[[float], _T], deadline: float, what: str) -> _T:
        """``call(seconds left)``, again on a retriable ``KafkaException`` until
        ``deadline``; what it raises last as a bus error."""
        while True:
            try:
                return call(_left(deadline))
            except KafkaException as exc:
                error = error_of(exc)
                again = (
                    error is not None
                    and error.code() not in _UNKNOWN
                    and (error.retriable() or error.code() in _UNREACHED)
                )
                if not again or time.monotonic() >= deadline:
                    raise self._lookup_error(exc, what) from exc
            time.sleep(max(0.0, min(_SLICE, deadline - time.monotonic())))

    def _lookup_error(self, exc: KafkaException, what: str) -> bus.BusError:
        """A lookup's failure: a refused login as such; no broker reached in time (not
        connected yet, or away) as ``bus.TimeoutError``, as librdkafka's own timeout is."""
        self._standing.check()
        error = error_of(exc)
        if error is not None and error.code() in _UNREACHED:
            return bus.TimeoutError(f"{what}: no answer from the cluster in time ({error.str()})")
        return mapped(exc, OTHER, what)

    def _check_known(self, keys: Collection[Key], deadline: float, what: str) -> None:
        """Raise ``bus.UnknownTopicError`` unless every partition exists."""
        for topic in sorted({t for t, _ in keys}):

            def ask(left: float, topic: str = topic) -> Any:
                meta = self._raw.list_topics(topic, timeout=left).topics.get(topic)
                if meta is not None and meta.error is not None:
                    raise KafkaException(meta.error)
                return meta

            meta = self._retried(ask, deadline, f"{what}: topic {topic!r}")
            if meta is None:
                raise bus.UnknownTopicError(f"{what}: topic {topic!r} does not exist")
            for t, p in keys:
                if t == topic and p not in meta.partitions:
                    raise bus.UnknownTopicError(f"{what}: {t}[{p}] does not exist")

    def watermarks(self, topic: str, partition: int, timeout: float) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        what = f"watermarks of {topic}[{partition}]"
        self._check_known({(topic, partition)}, deadline, what)

        def ask(left: float) -> tuple[int, int]:
            found = self._raw.get_watermark_offsets(RawTP(topic, partition), left, False)
            if found is None:  # librdkafka's timeout
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
            low, high = found
            return low, high

        return self._retried(ask, deadline, what)

    def offsets_for_times(
        self, times: Mapping[bus.TopicPartition, int], timeout: float
    ) -> dict[bus.TopicPartition, int | None]:
        deadline = time.monotonic() + timeout
        what = "offsets_for_times"
        self._check_known({(tp.topic, tp.partition) for tp in times}, deadline, what)
        asked = [RawTP(tp.topic, tp.partition, ms) for tp, ms in times.items()]
        # The broker answers -1 (OFFSET_END) where no message is that late.
        return self._retried(
            lambda left: _offsets(self._raw.offsets_for_times(asked, timeout=left)), deadline, what
        )

    def committed(
        self, partitions: frozenset[bus.TopicPartition], timeout: float
    ) -> dict[bus.TopicPartition, int | None]:
        deadline = time.monotonic() + timeout
        what = "committed positions"
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self._check_known(keys, deadline, what)
        asked = [RawTP(t, p) for t, p in sorted(keys)]
        # Nothing committed: OFFSET_INVALID (-1001).
        return self._retried(
            lambda left: _offsets(self._raw.committed(asked, timeout=left)), deadline, what
        )

    def assignment(self) -> frozenset[bus.TopicPartition]:
        return frozenset(_tps(self._assigned))

    def wakeup(self) -> None:
        self._woken.set()

    def close(self, timeout: float | None) -> None:
        try:
            self._raw.close()  # commits stored offsets when auto-committing, leaves the group
        except KafkaException as exc:
            raise mapped(exc, COMMIT, "close") from exc
