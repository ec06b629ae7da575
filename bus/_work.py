"""What both workers share, no I/O: the retry policy, the dead-letter message, the
per-partition lanes of work and what to commit, pause and resume.

A worker fetches batches and sorts their messages into one *lane* per partition. A
lane is handled by one runner at a time, in offset order, so ``lane.done`` (the last
message handled) is the end of the partition's contiguous processed prefix: the
only position a worker ever commits.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import attrs
import tenacity

from bus._checks import check_topic, deserialize_messages
from bus._codecs import Decoder
from bus._errors import ConfigError, HandlerError, SerializationError
from bus._message import Message, TopicPartition

if TYPE_CHECKING:
    from bus._bus import Bus

LOGGER = logging.getLogger("bus.worker")

#: Messages asked for per poll.
POLL_BATCH = 500
#: Messages a runner takes from a lane before it lets another lane have a turn.
RUN = 100
#: A lane with this many messages waiting is paused (when the backend can). Not less:
#: a pause costs a client its prefetched messages (librdkafka, aiokafka), and a resumed
#: partition waits for the next fetch request (up to fetch.wait.max.ms): pausing at
#: 1,000 held a no-op kafka worker to 80k-140k msg/s, at 5,000 it never pauses.
HIGH_WATER = 10 * POLL_BATCH
#: A paused lane is resumed when it has this many or fewer.
LOW_WATER = 2 * POLL_BATCH
#: Seconds a poll waits when nothing comes: how soon a worker commits, pauses and
#: resumes while it is idle or every lane is full.
POLL_WAIT = 0.1
#: Longest error text put in the ``bus.dlt.error.message`` header, in characters.
ERROR_TEXT_LIMIT = 4000

DLT_HEADERS = (
    "bus.dlt.topic",
    "bus.dlt.partition",
    "bus.dlt.offset",
    "bus.dlt.error.type",
    "bus.dlt.error.message",
)


def _check_count(value: Any, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int of at least 1, not {value!r}")


def _check_seconds(value: Any, name: str) -> None:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")


def _positive_int(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _check_count(value, f"Retry.{attribute.name}")


def _seconds(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _check_seconds(value, f"Retry.{attribute.name}")


@attrs.frozen
class Retry:
    """How a worker retries a message its handler failed on: up to ``attempts`` calls
    in all (the first included), waiting ``backoff`` seconds before the second, twice
    as long before each next one, never more than ``max_backoff``, plus a random
    jitter of up to ``backoff`` (so members that failed together retry apart).

    A worker also gives up early when the next wait would take the message past half
    of the consumer's ``max_poll_interval``: the member keeps its group membership.
    ``Retry(attempts=1)`` means no retry."""

    attempts: int = attrs.field(default=3, validator=_positive_int)
    backoff: float = attrs.field(default=0.2, validator=_seconds)
    max_backoff: float = attrs.field(default=5.0, validator=_seconds)

    def __attrs_post_init__(self) -> None:
        if self.max_backoff < self.backoff:
            raise ValueError(
                f"Retry.max_backoff ({self.max_backoff:g}) must be at least "
                f"backoff ({self.backoff:g})"
            )

    def policy(self, within: float) -> dict[str, Any]:
        """tenacity's arguments for this retry, giving up once a wait would end more
        than ``within`` seconds after the first call."""
        return {
            "stop": tenacity.stop_after_attempt(self.attempts) | tenacity.stop_before_delay(within),
            "wait": tenacity.wait_exponential_jitter(
                multiplier=self.backoff, max=self.max_backoff, exp_base=2, jitter=self.backoff
            ),
            "retry": tenacity.retry_if_not_exception_type(SerializationError),
            "reraise": True,
        }


class Interrupted(Exception):
    """Raised by a worker's backoff wait when the worker stops: the message is left
    unprocessed (it is not committed, and is read again)."""


def replaying(first: BaseException, handle: Callable[[], Any]) -> Callable[[], Any]:
    """A call that raises ``first`` once, then calls ``handle``: the handler's first
    attempt (made outside tenacity, to keep the path of a message that succeeds free of
    it) counted as tenacity's first."""
    pending = [first]

    def attempt() -> Any:
        if pending:
            raise pending.pop()
        return handle()

    return attempt


def check_worker_options(
    handler: Any,
    topics: tuple[str, ...],
    concurrency: Any,
    retry: Any,
    dead_letter: Any,
    shutdown_timeout: Any,
    options: Mapping[str, Any],
) -> None:
    """``TypeError``/``ValueError``/``ConfigError`` for what a worker cannot run with."""
    if not callable(handler):
        raise TypeError(f"a worker's handler must be callable, not {type(handler).__name__}")
    _check_count(concurrency, "concurrency")
    if concurrency > 1024:
        raise ValueError(f"concurrency must be at most 1024, not {concurrency!r}")
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(f"retry must be a bus.Retry or None, not {type(retry).__name__}")
    if dead_letter is not None:
        if not isinstance(dead_letter, str) or not dead_letter:
            raise TypeError(f"dead_letter must be a topic name or None, not {dead_letter!r}")
        for topic in topics:
            name = dead_letter_topic(dead_letter, topic)
            try:
                check_topic(name)
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"dead_letter {dead_letter!r} makes {name!r} for topic {topic!r}: {exc}"
                ) from None
            if name == topic:
                raise ConfigError(
                    f"dead_letter {dead_letter!r} is topic {topic!r} itself: a failed "
                    "message would come back to the handler for ever"
                )
    _check_seconds(shutdown_timeout, "shutdown_timeout")
    if options.get("auto_commit") is not None:
        raise ConfigError(
            "a worker commits what its handler processed itself: it takes no auto_commit"
        )


def dead_letter_topic(template: str, topic: str) -> str:
    """The dead-letter topic of ``topic``: ``template`` with ``{topic}`` replaced."""
    return template.replace("{topic}", topic)


def error_type(error: BaseException) -> str:
    """``module.QualifiedName`` of the error's class (builtins without a module,
    polybus's own under ``bus``)."""
    import bus  # the public name of polybus's errors, not their private module's

    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    if getattr(bus, cls.__name__, None) is cls:
        return f"bus.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def dead_letter_message(template: str, raw: Message, error: BaseException) -> Message:
    """The message sent to the dead letter for ``raw`` (as fetched, undecoded): its
    key, value and headers (earlier ``bus.dlt.*`` ones dropped), then where it came
    from and why it failed."""
    text = str(error)
    if len(text) > ERROR_TEXT_LIMIT:
        text = text[: ERROR_TEXT_LIMIT - 1] + "…"
    headers = [(k, v) for k, v in raw.headers if k not in DLT_HEADERS]
    headers += [
        ("bus.dlt.topic", raw.topic.encode()),
        ("bus.dlt.partition", str(raw.partition).encode()),
        ("bus.dlt.offset", str(raw.offset).encode()),
        ("bus.dlt.error.type", error_type(error).encode()),
        ("bus.dlt.error.message", text.encode("utf-8", "replace")),
    ]
    return Message(
        dead_letter_topic(template, raw.topic), raw.value, key=raw.key, headers=tuple(headers)
    )


def handler_error(raw: Message, error: BaseException, *, dead_letter: str | None) -> HandlerError:
    """The error ``run()`` raises for a message it could not count as processed."""
    where = f"{raw.topic}[{raw.partition}]@{raw.offset}"
    if dead_letter is None:
        text = f"the handler failed on {where}: {error_type(error)}: {error}"
    else:
        target = dead_letter_topic(dead_letter, raw.topic)
        text = f"the message at {where} failed and could not be sent to {target!r}: {error}"
    return HandlerError(text, message=raw)


def decoding(value: Decoder | None, key: Decoder | None) -> Callable[[Message], Message] | None:
    """What turns a fetched message into the handler's (``None``: it is handed as is);
    raises ``bus.SerializationError``."""
    if value is None and key is None:
        return None

    def decode(raw: Message) -> Message:
        return deserialize_messages([raw], value, key)[0]

    return decode


# -- lanes ------------------------------------------------------------------------------------


class Lane:
    """One partition's messages, fetched and not yet handled, in offset order.

    ``busy`` while a runner has some; ``done`` is the last message handled (the
    contiguous processed prefix ends there); ``committed`` the position committed
    (the offset after the last committed message); ``gone`` once the partition was
    revoked (its runner stops, nothing of it is committed any more)."""

    __slots__ = ("busy", "committed", "done", "gone", "paused", "queue", "tp")

    def __init__(self, tp: TopicPartition):
        self.tp = tp
        self.queue: collections.deque[Message] = collections.deque()
        self.busy = False
        self.done: Message | None = None
        self.committed = -1
        self.paused = False
        self.gone = False


class Lanes:
    """The lanes of a worker and which of them wait for a runner. Not thread-safe:
    the blocking worker calls it under its lock, the asyncio one from its loop."""

    def __init__(self) -> None:
        self.lanes: dict[TopicPartition, Lane] = {}
        self._ready: collections.deque[Lane] = collections.deque()
        self.waiting = 0  # messages queued in every lane

    def add(self, batch: Iterable[Message]) -> None:
        """Queue a fetched batch, each message in its partition's lane."""
        lanes = self.lanes
        ready = self._ready
        count = 0
        last: Lane | None = None
        for m in batch:
            count += 1
            if last is None or last.tp.partition != m.partition or last.tp.topic != m.topic:
                tp = TopicPartition(m.topic, m.partition)  # type: ignore[arg-type]
                last = lanes.get(tp)
                if last is None:
                    last = lanes[tp] = Lane(tp)
            if not last.queue and not last.busy:
                ready.append(last)
            last.queue.append(m)
        self.waiting += count

    def has_ready(self) -> bool:
        return bool(self._ready)

    def take(self) -> tuple[Lane, list[Message]] | None:
        """The next lane waiting for a runner, marked busy, and up to ``RUN`` of its
        messages; ``None`` when no lane waits."""
        if not self._ready:
            return None
        lane = self._ready.popleft()
        queue = lane.queue
        n = min(RUN, len(queue))
        run = [queue.popleft() for _ in range(n)]
        self.waiting -= n
        lane.busy = True
        return lane, run

    def release(self, lane: Lane) -> bool:
        """The runner is done with ``lane``: it waits again if it has messages. True
        when the lane is paused and caught up: the fetch loop should resume it now
        rather than after its poll's wait."""
        lane.busy = False
        if lane.queue and not lane.gone:
            self._ready.append(lane)
        return lane.paused and len(lane.queue) <= LOW_WATER

    def revoke(self, partitions: Collection[TopicPartition]) -> list[Lane]:
        """Take the lanes of ``partitions`` away: their queued messages are dropped
        (never handled here), their runners stop after the message at hand."""
        gone = []
        for tp in partitions:
            lane = self.lanes.pop(tp, None)
            if lane is None:
                continue
            lane.gone = True
            self.waiting -= len(lane.queue)
            lane.queue.clear()
            gone.append(lane)
        if gone:
            self._ready = collections.deque(x for x in self._ready if not x.gone)
        return gone

    def to_commit(self, lanes: Iterable[Lane] | None = None) -> list[Message]:
        """The last handled message of each lane (of ``lanes``, else every one) past
        what it committed."""
        out = []
        for lane in self.lanes.values() if lanes is None else lanes:
            done = lane.done
            if done is not None and done.offset >= lane.committed:  # type: ignore[operator]
                out.append(done)
        return out

    def committed(self, message: Message) -> None:
        lane = self.lanes.get(TopicPartition(message.topic, message.partition))  # type: ignore[arg-type]
        if lane is not None:
            lane.committed = max(lane.committed, message.offset + 1)  # type: ignore[operator]

    def to_pause(self) -> set[TopicPartition]:
        """Lanes that ran too far ahead of their runner (marked paused)."""
        out = set()
        for lane in self.lanes.values():
            if not lane.paused and len(lane.queue) >= HIGH_WATER:
                lane.paused = True
                out.add(lane.tp)
        return out

    def to_resume(self) -> set[TopicPartition]:
        """Paused lanes their runner caught up with (marked unpaused)."""
        out = set()
        for lane in self.lanes.values():
            if lane.paused and len(lane.queue) <= LOW_WATER:
                lane.paused = False
                out.add(lane.tp)
        return out

    def full(self, concurrency: int) -> bool:
        """Enough is queued that fetching more can wait (for a backend that cannot
        pause partitions)."""
        return self.waiting >= HIGH_WATER * max(concurrency, len(self.lanes), 1)


# -- what both workers hold ------------------------------------------------------------------


class WorkerCore:
    """The state and the decisions ``Worker`` and ``AsyncWorker`` share; their I/O
    (threads or tasks, blocking or awaited calls) is theirs."""

    def __init__(
        self,
        bus_: Bus,
        handler: Callable[[Message], Any],
        topics: tuple[str, ...],
        group: str,
        *,
        concurrency: int,
        retry: Retry | None,
        dead_letter: str | None,
        shutdown_timeout: float,
        options: dict[str, Any],
        decode_value: Decoder | None,
        decode_key: Decoder | None,
        max_poll_interval: float,
        commit_interval: float,
    ):
        self._bus = bus_
        self._handler = handler
        #: The topics the worker handles.
        self.topics = topics
        #: The consumer group it is a member of, and commits in.
        self.group = group
        #: How many partitions it handles at once.
        self.concurrency = concurrency
        self._dead_letter = dead_letter
        self._shutdown_timeout = shutdown_timeout
        self._on_revoke = options.pop("on_revoke", None)
        self._options = options
        self._decode = decoding(decode_value, decode_key)
        # Retries give up before a wait would pass half of max_poll_interval.
        self._policy = None if retry is None else retry.policy(max_poll_interval / 2)
        self._commit_interval = commit_interval
        # Without pause, a full worker still polls this often, to stay a member.
        self._keep_alive = max_poll_interval / 4
        self._can_pause = "pause" in bus_.capabilities
        self._lanes = Lanes()
        self._started = False
        self._failure: tuple[Message, BaseException] | None = None
        self._processed: Callable[[Message], None] | None = None  # interceptors' hook
        # Entered around each handling (the interceptors' ``processing``), if any.
        self._around: Callable[[Message], AbstractContextManager[None]] | None = None

    def _consumer_options(self) -> dict[str, Any]:
        """What the worker's consumer is made with (``on_revoke`` is the worker's)."""
        return {
            "group": self.group,
            "deserializer": None,  # the worker decodes: a dead letter gets the bytes
            "key_deserializer": None,
            "auto_commit": False,  # the worker commits processed prefixes itself
            **self._options,
        }

    def _note_failure(self, raw: Message, error: BaseException) -> None:
        """The first failure is the one ``run()`` raises."""
        if self._failure is None:
            self._failure = (raw, error)

    def _failure_to_raise(self) -> BaseException | None:
        """What ``run()`` raises once drained: a ``HandlerError`` (the handler's error as
        its cause), or what a handler raised that is not an ``Exception``."""
        if self._failure is None:
            return None
        raw, error = self._failure
        if isinstance(error, HandlerError) or not isinstance(error, Exception):
            return error
        failure = handler_error(raw, error, dead_letter=None)
        failure.__cause__ = error
        return failure

    def _dead_letter_of(self, raw: Message, error: BaseException) -> Message:
        assert self._dead_letter is not None
        return dead_letter_message(self._dead_letter, raw, error)

    def _send_failed(self, raw: Message, error: BaseException) -> HandlerError:
        failure = handler_error(raw, error, dead_letter=self._dead_letter)
        failure.__cause__ = error
        return failure

    def _commit_failed(self, message: Message, error: BaseException) -> None:
        LOGGER.warning(
            "worker of %s: could not commit %s[%d]@%d (it is read again after a restart): %s",
            ", ".join(self.topics),
            message.topic,
            message.partition,
            message.offset,
            error,
        )

    def _abandoned(self, count: int, what: str) -> None:
        LOGGER.warning(
            "worker of %s: %d handler(s) still running after shutdown_timeout (%gs) %s; "
            "their messages are not committed and will be read again",
            ", ".join(self.topics),
            count,
            self._shutdown_timeout,
            what,
        )

    def _describe(self, stopped: bool) -> str:
        state = "stopped" if stopped else ("running" if self._started else "new")
        return (
            f"<{type(self).__name__} topics={list(self.topics)} group={self.group!r} "
            f"concurrency={self.concurrency} {state}>"
        )
