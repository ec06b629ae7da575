"""librdkafka errors as bus errors. The ``KafkaError`` (or ``KafkaException``) is kept
as ``__cause__`` by the callers (``raise mapped from exc``)."""

from __future__ import annotations

import copy
from typing import Any

from confluent_kafka import KafkaError, KafkaException

import bus

_TIMEOUTS = {
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TIMED_OUT_QUEUE,
}
_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE}
_AUTHORIZATION = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    KafkaError.DELEGATION_TOKEN_AUTHORIZATION_FAILED,
}
# The broker refused the login itself; the SASL mechanism errors are authentication
# failures too, as in the Java client (subclasses of AuthenticationException there).
_AUTHENTICATION = {
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._AUTHENTICATION,
    KafkaError.UNSUPPORTED_SASL_MECHANISM,
    KafkaError.ILLEGAL_SASL_STATE,
}
_UNKNOWN_TOPIC = {
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError.UNKNOWN_TOPIC_ID,
}
_CONFIG = {KafkaError._INVALID_ARG, KafkaError.INVALID_CONFIG}

#: The error raised for a failed delivery, a failed commit, a failed admin call.
DELIVERY, COMMIT, OTHER = "delivery", "commit", "other"


def error_of(exc: BaseException) -> KafkaError | None:
    """The ``KafkaError`` inside a ``KafkaException`` (or the error itself)."""
    if isinstance(exc, KafkaError):
        return exc
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def mapped(error: Any, context: str, what: str = "") -> bus.BusError:
    """The bus error for a ``KafkaError``/``KafkaException``; ``what`` prefixes the text."""
    kerr = error_of(error)
    text = kerr.str() if kerr is not None else str(error)
    message = f"{what}: {text}" if what else text
    code = kerr.code() if kerr is not None else None
    retriable = bool(kerr.retriable()) if kerr is not None else False
    if code in _TIMEOUTS:
        return bus.TimeoutError(message)
    if code in _TOO_LARGE:
        return bus.MessageTooLarge(message, retriable=False)
    if code in _AUTHORIZATION:
        return bus.AuthorizationError(message)
    if code in _AUTHENTICATION:
        return bus.AuthenticationError(message)
    if code in _UNKNOWN_TOPIC:
        return bus.UnknownTopicError(message)
    if code == KafkaError.TOPIC_ALREADY_EXISTS:
        return bus.TopicExistsError(message)
    if code == KafkaError.GROUP_ID_NOT_FOUND:
        return bus.UnknownGroupError(message)
    if code in _CONFIG:
        return bus.ConfigError(message)
    if code in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
        # Purged by a close that ran out of time; an in-flight one may have landed.
        return bus.DeliveryError(
            f"{what}: the producer was closed before the broker acknowledged it",
            retriable=True,
            maybe_written=code == KafkaError._PURGE_INFLIGHT,
        )
    if context == DELIVERY:
        return bus.DeliveryError(message, retriable=retriable)
    if context == COMMIT:
        return bus.CommitError(message)
    return bus.BusError(message)


def with_cause(error: bus.BusError, cause: Any) -> bus.BusError:
    """``error`` with ``cause`` (a KafkaError becomes a KafkaException) as ``__cause__``."""
    error.__cause__ = cause if isinstance(cause, BaseException) else KafkaException(cause)
    return error


#: Errors that waiting does not cure: a login the cluster refuses, an operation the
#: ACLs deny. librdkafka retries them for ever and tells only its ``error_cb``, so a
#: call would wait out its whole timeout; the clients raise them instead.
_MUST_FIX = (
    _AUTHENTICATION
    | _AUTHORIZATION
    | {
        KafkaError.UNSUPPORTED_SASL_MECHANISM,
        KafkaError.ILLEGAL_SASL_STATE,
    }
)


class Standing:
    """The last error from librdkafka's ``error_cb`` that the user must fix (a wrong
    password, a denied topic or group), kept until :meth:`clear` (something worked).
    ``ignore`` holds codes that do not concern this client. Thread-safe enough: one
    reference written, read anywhere."""

    def __init__(self, ignore: frozenset[int] = frozenset()) -> None:
        self._error: bus.BusError | None = None
        self._ignore = ignore

    def note(self, err: KafkaError) -> bool:
        """Keep ``err`` if it is one to raise; whether it was."""
        code = err.code()
        if code not in _MUST_FIX or code in self._ignore:
            return False
        self._error = with_cause(mapped(err, OTHER), err)
        return True

    def current(self) -> bus.BusError | None:
        """A copy of the kept error, or None."""
        error = self._error
        if error is None:
            return None
        fresh = copy.copy(error)
        fresh.__cause__ = error.__cause__
        return fresh

    def check(self) -> None:
        """Raise the kept error, if any."""
        error = self.current()
        if error is not None:
            raise error

    def clear(self) -> None:
        self._error = None
