"""The error hierarchy. Every error a backend raises is one of these; the native
exception of the client library, where there is one, is kept as ``__cause__``."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bus._message import Delivery, Message


class BusError(Exception):
    """Root of every error polybus raises on purpose."""


class ConfigError(BusError, ValueError):
    """A URL, option or option value is not valid. The message names it and what is allowed."""


class BackendNotFound(ConfigError):
    """No installed backend serves the URL's scheme."""


class UnsupportedError(BusError):
    """The backend cannot do what was asked (an API mode, an option value, a capability)."""


class DeliveryError(BusError):
    """A message was not acknowledged by the broker.

    ``retriable`` says whether sending the same message again may succeed.
    ``maybe_written`` is True when the message was already on its way to the broker
    as the producer gave up on it (a ``close`` that ran out of time): it may have been
    written, so re-sending it may write it twice. From ``send_batch``, ``outcomes``
    holds one entry per input message, in input order: the ``Delivery`` of each
    message that was written, the error of each one that was not.
    """

    def __init__(
        self,
        message: str,
        *,
        retriable: bool = False,
        outcomes: Sequence[Delivery | BaseException] = (),
        maybe_written: bool = False,
    ) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.maybe_written = maybe_written
        self.outcomes: tuple[Delivery | BaseException, ...] = tuple(outcomes)


class MessageTooLarge(DeliveryError):
    """The message is larger than the topic or the client accepts."""


class CommitError(BusError):
    """Offsets could not be committed (not assigned, rebalance in progress, no group)."""


class ClosedError(BusError):
    """The producer, consumer or bus was used after ``close()``."""


class SerializationError(BusError):
    """A serializer or deserializer failed; the codec's exception is the ``__cause__``.

    Raised by a consumer, it hands over what it could not decode: ``messages`` is the
    whole batch that poll fetched, undecoded (bytes), and ``index`` the position of the
    message that failed. Those messages count as received, so an application that
    logs or parks them (a dead-letter topic) loses none of them.
    """

    def __init__(
        self, message: str, *, messages: Sequence[Message] = (), index: int | None = None
    ) -> None:
        super().__init__(message)
        self.messages: tuple[Message, ...] = tuple(messages)
        self.index = index


class AuthenticationError(BusError):
    """The broker refused the credentials."""


class AuthorizationError(BusError):
    """The credentials are valid but not allowed to do this."""


class TopicExistsError(BusError):
    """``create_topic`` was asked for a topic that already exists."""


class UnknownTopicError(BusError):
    """The topic does not exist (and the backend does not create it on demand)."""


class UnknownGroupError(BusError):
    """The consumer group does not exist: it has no member and no committed position."""


class TimeoutError(BusError, builtins.TimeoutError):
    """An operation did not finish within its timeout. Also a builtin ``TimeoutError``.

    Trying again may succeed: ``retriable`` is true, as on ``DeliveryError``. For a
    message that was not acknowledged within ``delivery_timeout``, ``maybe_written`` is
    True when it had already been sent to the broker as the producer gave up on it: it
    may still have been written, so re-sending it may write it twice.
    """

    retriable = True

    def __init__(self, *args: object, maybe_written: bool = False) -> None:
        super().__init__(*args)
        self.maybe_written = maybe_written


class HandlerError(BusError):
    """A worker's handler failed on ``message`` and the worker could not count it as
    processed: there was no dead-letter topic, or sending it there failed. The worker
    stopped after committing what was processed before; the handler's exception (or
    the dead-letter send's) is ``__cause__``. ``message`` is the message as fetched."""

    def __init__(self, text: str, *, message: Message | None = None) -> None:
        super().__init__(text)
        self.message = message
