"""Interceptors: hooks between the application and the transport, the shape of Kafka's
``ProducerInterceptor``/``ConsumerInterceptor``. Pure: the wrappers call a chain at
the right moments; nothing here does I/O.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from bus._errors import BusError, ConfigError
from bus._message import Delivery, Message, TopicPartition

LOGGER = logging.getLogger("bus")

#: ``bus_register_interceptors()`` values: make one interceptor for a client, given the
#: client's options.
InterceptorFactory = Callable[[Mapping[str, Any]], "Interceptor"]


class Interceptor:
    """Override any of these methods; the base ones do nothing.

    They are plain functions called on the client's own thread (or event loop), so
    they must not block. One that raises is logged on the ``bus`` logger with its
    traceback and skipped for that call: the message goes on as it was, never lost,
    never reordered. Several interceptors run in the order given; acknowledgements in
    reverse order. ``close()`` is called when each client the interceptor serves
    closes.

    Producers call ``on_send`` and ``on_acknowledgement``; consumers ``on_consume``,
    ``on_processed`` and ``on_commit``; workers ``processing`` around each handling.
    """

    def on_send(self, message: Message) -> Message:
        """Every produced message (``send``, ``send_batch``, ``enqueue``), before
        serialization: return it, or a changed copy (``message.replace(...)``, to add
        trace headers)."""
        return message

    def on_acknowledgement(
        self, message: Message, delivery: Delivery | None, error: BusError | None
    ) -> None:
        """Once per produced message (as ``on_send`` returned it), when its outcome is
        known: a ``delivery``, or the ``error`` it failed with."""

    def on_consume(self, messages: list[Message]) -> list[Message]:
        """Every batch a poll fetched, after deserialization, before the application
        sees it: return the same messages, changed or not, in the same order (a
        result that would drop, add or move one is logged and skipped)."""
        return messages

    def on_processed(self, message: Message) -> None:
        """When a consumed message counts as processed: the application asked for the
        next one, or committed it. A message of a partition taken away (or seeked)
        before that never is."""

    def on_commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """After each commit succeeded: the positions committed (the offset after the
        last message processed, per partition). Every explicit ``commit()``, and every
        commit the consumer makes by itself that moved a position: the
        ``auto_commit_interval``'s, a rebalance's (for the partitions taken away),
        ``close``'s. Those come from inside a poll or ``close`` (on aiokafka://, from the
        task that commits or rebalances, on the same event loop)."""

    def processing(self, message: Message) -> contextlib.AbstractContextManager[None]:
        """A context manager around the application's work on ``message``: a worker
        enters it in the thread (or task) that runs the handler, around the handling
        with its retries and dead letter; in a loop of your own, enter it yourself
        (``with interceptor.processing(message): ...``). The OpenTelemetry interceptor
        makes the message's ``process`` span current in it, so spans the handler starts
        are its children. One that raises entering or leaving is logged and skipped."""
        return contextlib.nullcontext()

    def close(self) -> None:
        """The client this interceptor serves closes."""


class Chain:
    """The interceptors of one client, in order. Thread-safe as far as they are."""

    __slots__ = ("_all", "_around", "_reversed")

    def __init__(self, interceptors: Sequence[Interceptor]):
        self._all = tuple(interceptors)
        self._reversed = self._all[::-1]
        # Only those that override ``processing``: the others' would do nothing.
        self._around = tuple(
            i for i in self._all if type(i).processing is not Interceptor.processing
        )

    @property
    def wraps_processing(self) -> bool:
        """Whether ``processing`` does anything (a worker skips it otherwise)."""
        return bool(self._around)

    @contextlib.contextmanager
    def processing(self, message: Message) -> Iterator[None]:
        """Every interceptor's ``processing(message)``, nested in order."""
        with contextlib.ExitStack() as stack:
            for interceptor in self._around:
                stack.enter_context(_guarded(interceptor, message))
            yield

    @staticmethod
    def _notify(interceptors: tuple[Interceptor, ...], hook: str, *args: Any) -> None:
        """Call ``hook`` of each interceptor in turn; one that raises is logged and
        skipped."""
        for interceptor in interceptors:
            try:
                getattr(interceptor, hook)(*args)
            except Exception:
                LOGGER.exception("interceptor %r raised in %s; skipped", interceptor, hook)

    def send(self, message: Message) -> Message:
        for interceptor in self._all:
            try:
                changed = interceptor.on_send(message)
            except Exception:
                LOGGER.exception("interceptor %r raised in on_send; skipped", interceptor)
                continue
            if isinstance(changed, Message):
                message = changed
            else:
                LOGGER.error(
                    "interceptor %r: on_send returned %s, not a bus.Message; skipped",
                    interceptor,
                    type(changed).__name__,
                )
        return message

    def acknowledged(
        self, message: Message, delivery: Delivery | None, error: BusError | None
    ) -> None:
        self._notify(self._reversed, "on_acknowledgement", message, delivery, error)

    def consume(self, messages: list[Message]) -> list[Message]:
        """``on_consume`` in order. A result that would lose, add or move a message
        (another length, or a message of another place) is logged and skipped."""
        for interceptor in self._all:
            try:
                changed = interceptor.on_consume(messages)
            except Exception:
                LOGGER.exception("interceptor %r raised in on_consume; skipped", interceptor)
                continue
            if _same_places(messages, changed):
                messages = list(changed)
            else:
                LOGGER.error(
                    "interceptor %r: on_consume must return the messages it was given (changed "
                    "or not), each a bus.Message, in order; skipped",
                    interceptor,
                )
        return messages

    def processed(self, message: Message) -> None:
        self._notify(self._all, "on_processed", message)

    def committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._notify(self._all, "on_commit", offsets)

    def close(self) -> None:
        self._notify(self._all, "close")


@contextlib.contextmanager
def _guarded(interceptor: Interceptor, message: Message) -> Iterator[None]:
    """``interceptor.processing(message)``, logged and skipped where it raises."""
    try:
        around = interceptor.processing(message)
        around.__enter__()
    except Exception:
        LOGGER.exception("interceptor %r raised in processing; skipped", interceptor)
        yield
        return
    try:
        yield
    finally:
        try:
            around.__exit__(None, None, None)
        except Exception:
            LOGGER.exception("interceptor %r raised leaving processing; skipped", interceptor)


def _same_places(given: list[Message], changed: Any) -> bool:
    if not isinstance(changed, list) or len(changed) != len(given):
        return False
    return all(
        isinstance(b, Message)
        and (a.topic, a.partition, a.offset) == (b.topic, b.partition, b.offset)
        for a, b in zip(given, changed, strict=True)
    )


class Unprocessed:
    """What a consumer with interceptors handed out and the application has not
    processed yet, and the positions processed since: when to call ``on_processed``
    and what ``on_commit`` reports. Used from the consumer's thread (or task)."""

    __slots__ = ("chain", "external", "pending", "positions")

    def __init__(self, chain: Chain):
        self.chain = chain
        self.pending: list[Message] = []
        self.positions: dict[TopicPartition, int] = {}  # processed: the offset after
        # Set by a worker, which polls ahead of its handlers: it says itself, through
        # ``processed_one``, when a message is processed; asking for more says nothing.
        self.external = False

    def _done(self, messages: list[Message]) -> None:
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)  # type: ignore[arg-type]
            self.positions[tp] = m.offset + 1  # type: ignore[operator]
            self.chain.processed(m)

    def asked_for_more(self) -> None:
        """The application asked for the next message: what it has is processed."""
        pending, self.pending = self.pending, []
        self._done(pending)

    def handed_out(self, messages: list[Message]) -> None:
        if not self.external:
            self.pending.extend(messages)

    def processed_one(self, message: Message) -> None:
        """A worker's handler is done with ``message`` (from the worker's threads)."""
        self._done([message])

    def committed_all(self, assigned: frozenset[TopicPartition]) -> None:
        """``commit()`` succeeded: everything handed out is processed, and so committed."""
        self.asked_for_more()
        self.chain.committed({tp: o for tp, o in self.positions.items() if tp in assigned})

    def committed_through(self, message: Message) -> None:
        """``commit(message)`` succeeded: its partition is processed through it."""
        where, through = (message.topic, message.partition), message.offset
        done: list[Message] = []
        kept: list[Message] = []
        for m in self.pending:
            through_it = (m.topic, m.partition) == where and m.offset <= through  # type: ignore[operator]
            (done if through_it else kept).append(m)
        self.pending = kept
        self._done(done)
        tp = TopicPartition(message.topic, message.partition)  # type: ignore[arg-type]
        end = message.offset + 1  # type: ignore[operator]
        self.positions[tp] = max(self.positions.get(tp, 0), end)
        self.chain.committed({tp: end})

    def drop_pending(self, keys: Collection[tuple[str, int | None]]) -> None:
        """A seek: what was handed out of these partitions is read again, not processed."""
        self.pending = [m for m in self.pending if (m.topic, m.partition) not in keys]

    def forget(self, keys: Collection[tuple[str, int | None]]) -> None:
        """Partitions taken away (or seeked): what was handed out of them is never
        processed here."""
        self.pending = [m for m in self.pending if (m.topic, m.partition) not in keys]
        for tp in [tp for tp in self.positions if (tp.topic, tp.partition) in keys]:
            del self.positions[tp]


def interceptor_list(value: Any) -> tuple[str | Interceptor, ...]:
    """The ``interceptors`` option: ``bus.Interceptor`` instances and names registered
    by plugins, in a list or tuple, or names comma-separated in a string (a URL)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(name.strip() for name in value.split(",") if name.strip())
    if isinstance(value, Interceptor):
        return (value,)
    if isinstance(value, (list, tuple)):
        for item in value:
            if not isinstance(item, (str, Interceptor)):
                raise TypeError(
                    "must hold bus.Interceptor instances or interceptor names, not "
                    f"{type(item).__name__}"
                )
        return tuple(value)
    raise TypeError(
        "must be a list of bus.Interceptor instances or names (or one comma-separated "
        f"string of names), not {type(value).__name__}"
    )


def check_names(
    given: Sequence[str | Interceptor], known: Mapping[str, InterceptorFactory]
) -> None:
    """``ConfigError`` for a name no plugin registered, suggesting the closest."""
    for item in given:
        if isinstance(item, str) and item not in known:
            close = difflib.get_close_matches(item, list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            names = ", ".join(sorted(known)) or "none"
            raise ConfigError(f"unknown interceptor {item!r} (installed: {names}){hint}")


def make_chain(
    given: Sequence[str | Interceptor],
    known: Mapping[str, InterceptorFactory],
    options: Mapping[str, Any],
) -> Chain | None:
    """The chain of one client (``None`` without interceptors): instances as given,
    names made by their plugin's factory from the client's ``options``."""
    if not given:
        return None
    check_names(given, known)
    made = []
    for item in given:
        if isinstance(item, Interceptor):
            made.append(item)
            continue
        try:
            interceptor = known[item](options)
        except Exception as exc:
            raise ConfigError(
                f"interceptor {item!r} could not be made: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(interceptor, Interceptor):
            raise ConfigError(
                f"the factory of interceptor {item!r} made {type(interceptor).__name__}, "
                "not a bus.Interceptor"
            )
        made.append(interceptor)
    return Chain(made)
