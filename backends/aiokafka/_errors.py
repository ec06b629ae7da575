"""aiokafka errors as bus errors (the native one is kept as ``__cause__`` by callers)."""

from __future__ import annotations

from aiokafka import errors as ak

import bus

_TIMEOUTS = (ak.KafkaTimeoutError, ak.RequestTimedOutError)
_AUTHORIZATION = (
    ak.TopicAuthorizationFailedError,
    ak.GroupAuthorizationFailedError,
    ak.ClusterAuthorizationFailedError,
    ak.TransactionalIdAuthorizationFailed,
    ak.DelegationTokenAuthorizationFailed,
)
# The broker refused the login itself; the SASL mechanism errors are authentication
# failures too, as in the Java client (subclasses of AuthenticationException there).
_AUTHENTICATION = (
    ak.SaslAuthenticationFailed,
    ak.AuthenticationFailedError,
    ak.AuthenticationMethodNotSupported,
    ak.UnsupportedSaslMechanismError,
    ak.IllegalSaslStateError,
)
_REBALANCING = (
    ak.CommitFailedError,
    ak.RebalanceInProgressError,
    ak.IllegalGenerationError,
    ak.UnknownMemberIdError,
)

DELIVERY, COMMIT, OTHER = "delivery", "commit", "other"

#: What a failed commit during a rebalance means for the application.
REBALANCE_NOTE = (
    "the group is rebalancing, so this consumer's partitions may have moved; their "
    "uncommitted messages will be delivered again (at-least-once)"
)


def mapped(exc: BaseException, context: str, what: str = "") -> bus.BusError:
    """The bus error for an aiokafka exception, with ``exc`` as its ``__cause__``."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    message = f"{what}: {text}" if what else text
    retriable = bool(getattr(exc, "retriable", False))
    error: bus.BusError
    if isinstance(exc, _TIMEOUTS):
        error = bus.TimeoutError(message)
    elif isinstance(exc, ak.MessageSizeTooLargeError):
        error = bus.MessageTooLarge(message, retriable=False)
    elif isinstance(exc, _AUTHORIZATION):
        error = bus.AuthorizationError(message)
    elif isinstance(exc, _AUTHENTICATION):
        error = bus.AuthenticationError(message)
    elif isinstance(exc, ak.UnknownTopicOrPartitionError):
        error = bus.UnknownTopicError(message)
    elif isinstance(exc, ak.TopicAlreadyExistsError):
        error = bus.TopicExistsError(message)
    elif isinstance(exc, _REBALANCING):
        error = bus.CommitError(f"{message}: {REBALANCE_NOTE}")
    elif context == DELIVERY:
        error = bus.DeliveryError(message, retriable=retriable)
    elif context == COMMIT:
        error = bus.CommitError(message)
    else:
        error = bus.BusError(message)
    error.__cause__ = exc
    return error
