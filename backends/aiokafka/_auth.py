"""Logins on aiokafka: why a client could not start, and no password in its logs.

aiokafka's ``AIOKafkaClient.bootstrap()`` logs the error of each bootstrap connection
(a refused login: ``SaslAuthenticationFailed``) and then raises a bare
``KafkaConnectionError('Unable to bootstrap from ...')``: the reason is lost. :func:`start`
starts a client and, when that is how it failed and a SASL login is configured, opens
one connection with the same settings to learn the reason and raises it instead (the
bare error is its ``__cause__``). Producer, consumer and admin client all start
through it.

aiokafka's connections log every request at DEBUG, the SASL login's
``SaslAuthenticateRequest(sasl_auth_bytes=b'user\\0user\\0PASSWORD')`` too.
:func:`install_log_filter` puts a :class:`SecretFilter` on aiokafka's loggers: it masks
the bytes of SaslAuthenticate requests and responses, and any configured password
(:func:`protect`) in a record's text, without dropping a record.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Mapping
from typing import Any
from urllib.parse import quote

from aiokafka import errors as ak
from aiokafka.conn import collect_hosts, create_conn

#: What a masked secret becomes in a log record.
MASK = "***"
#: Passwords shorter than this are not masked in free text (they would mask ordinary
#: words); the login's bytes are masked whatever their length.
_SHORTEST_MASKED = 4
#: The Kafka API key of SaslAuthenticate requests and responses.
_SASL_AUTHENTICATE = 36
#: The aiokafka client arguments a bootstrap connection takes (``create_conn``'s).
_CONN_ARGUMENTS = (
    "client_id",
    "request_timeout_ms",
    "ssl_context",
    "security_protocol",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "sasl_kerberos_service_name",
    "sasl_kerberos_domain_name",
    "sasl_oauth_token_provider",
)

# --------------------------------------------------------------------------- start


async def start(starting: Awaitable[Any], kwargs: Mapping[str, Any], timeout: float) -> None:
    """Await ``starting`` (a client's ``start()``, made with ``kwargs``) for at most
    ``timeout`` seconds. If it fails because no bootstrap connection could be made and
    a SASL login is configured, raise the reason a fresh connection gives within the
    time left (``SaslAuthenticationFailed``, ...), if it gives one; else what
    ``starting`` raised."""
    deadline = time.monotonic() + timeout
    try:
        await asyncio.wait_for(starting, timeout)
    except ak.KafkaConnectionError as exc:
        reason = await _why_not(kwargs, deadline - time.monotonic())
        if reason is None:
            raise
        raise reason from exc


async def _why_not(kwargs: Mapping[str, Any], timeout: float) -> BaseException | None:
    """The error a login to the first broker that answers fails with; None when none
    fails so (no SASL, no broker answers, or the login works now) or after ``timeout``."""
    if timeout <= 0 or not str(kwargs.get("security_protocol") or "").startswith("SASL"):
        return None
    arguments = {k: kwargs[k] for k in _CONN_ARGUMENTS if k in kwargs}
    servers = kwargs.get("bootstrap_servers", "localhost")
    try:
        return await asyncio.wait_for(_first_refusal(servers, arguments), timeout)
    except asyncio.TimeoutError:
        return None


async def _first_refusal(servers: Any, arguments: Mapping[str, Any]) -> BaseException | None:
    for host, port, _ in collect_hosts(servers):
        try:
            conn = await create_conn(host, port, **arguments)
        except (ak.KafkaConnectionError, OSError, asyncio.TimeoutError):
            continue  # this one is away: ask the next
        except ak.KafkaError as exc:
            refusal: BaseException = exc  # the broker answered and refused: that is why
            return refusal
        conn.close()
        return None  # the login works: the bootstrap failed for another reason
    return None


# --------------------------------------------------------------------------- logs

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def protect(*passwords: str | None) -> None:
    """Mask these passwords (and their URL-encoded forms) in aiokafka's log records."""
    global _secrets
    found = set()
    for password in passwords:
        if password and len(password) >= _SHORTEST_MASKED:
            found |= {password, quote(password, safe="")}
    if found - _secrets:
        with _lock:
            _secrets = _secrets | found


def _masked_struct(thing: Any) -> Any:
    if getattr(thing, "API_KEY", None) == _SASL_AUTHENTICATE and hasattr(thing, "SCHEMA"):
        return f"{type(thing).__name__}(sasl_auth_bytes={MASK})"
    return thing


def _mask(text: str, secrets: frozenset[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class SecretFilter(logging.Filter):
    """Masks SASL login bytes and configured passwords in a record; drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(
            getattr(a, "API_KEY", None) == _SASL_AUTHENTICATE for a in args
        ):
            record.args = tuple(_masked_struct(a) for a in args)
        secrets = _secrets
        if not secrets:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a bad format string: logging reports it downstream
            return True
        if any(secret in text for secret in secrets):
            record.msg, record.args = _mask(text, secrets), ()
        if record.exc_info and record.exc_info[1] is not None:
            shown = logging.Formatter().formatException(record.exc_info)
            if any(secret in shown for secret in secrets):
                record.exc_text, record.exc_info = _mask(shown, secrets), None
        return True


_FILTER = SecretFilter()


def install_log_filter() -> None:
    """Put the :class:`SecretFilter` on every aiokafka logger (idempotent): a logger's
    filters see only the records made on it. aiokafka makes its loggers at import."""
    names = ["aiokafka", "aiokafka.conn"]
    names += [n for n in logging.Logger.manager.loggerDict if n.startswith("aiokafka.")]
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
