"""Bus options to aiokafka keyword arguments: pure functions, no client made here."""

from __future__ import annotations

import difflib
import inspect
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from backends._kafka_options import SHARED_OPTIONS
from bus import ConfigError, UnsupportedError
from bus.spi import BUS, CLIENTS, BusURL, Option, mapping

#: Options of the aiokafka:// backend besides the core ones. Any aiokafka keyword
#: argument goes through ``config`` (``config={"request_timeout_ms": 5000}``, or
#: ``?config.request_timeout_ms=5000`` in a URL); the named ones are the same shortcuts
#: the kafka:// backend has, so one URL serves both.
OPTIONS: tuple[Option, ...] = (
    Option(
        "config",
        BUS_AND_CLIENTS := frozenset({BUS}) | CLIENTS,
        None,
        "aiokafka keyword arguments passed through as they are.",
        mapping,
        mapping=True,
    ),
    *SHARED_OPTIONS,
)

_COMPRESSION_NEEDS = {"snappy": "has_snappy", "lz4": "has_lz4", "zstd": "has_zstd"}


def common_kwargs(url: BusURL, options: Mapping[str, Any]) -> dict[str, Any]:
    """What every client of a connection gets: brokers, security, client id."""
    if not url.hosts:
        raise ConfigError(
            f"{url.scheme}:// needs at least one broker, e.g. {url.scheme}://127.0.0.1:9092"
        )
    kwargs: dict[str, Any] = {"bootstrap_servers": list(url.hosts)}
    username = options.get("sasl_username") or url.username
    password = options.get("sasl_password") or url.password
    if username is not None:
        kwargs["sasl_plain_username"] = username
        kwargs["sasl_mechanism"] = "PLAIN"
        kwargs["security_protocol"] = "SASL_PLAINTEXT"
    if password is not None:
        kwargs["sasl_plain_password"] = password
    if options.get("sasl_mechanism"):
        kwargs["sasl_mechanism"] = options["sasl_mechanism"]
    if options.get("security_protocol"):
        kwargs["security_protocol"] = options["security_protocol"]
    if any(options.get(k) for k in ("ssl_cafile", "ssl_certfile", "ssl_keyfile")):
        try:
            context = ssl.create_default_context(cafile=options.get("ssl_cafile"))
            if options.get("ssl_certfile"):
                context.load_cert_chain(
                    options["ssl_certfile"], options.get("ssl_keyfile"), options.get("ssl_password")
                )
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            # Which file, and what is wrong with it; never the key's password.
            reason = getattr(exc, "strerror", None) or (exc.args[0] if exc.args else "")
            files = ", ".join(
                f"{k}={options[k]!r}"
                for k in ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
                if options.get(k)
            )
            raise ConfigError(
                f"{url.scheme}:// cannot use its TLS files ({files}): "
                f"{type(exc).__name__}: {reason}"
            ) from exc
        kwargs["ssl_context"] = context
    if options.get("client_id"):
        kwargs["client_id"] = options["client_id"]
    return kwargs


def check_kwargs(kind: Callable[..., Any], kwargs: Mapping[str, Any], what: str) -> None:
    """Refuse a keyword ``kind`` does not take, naming the closest one it does."""
    accepted = [n for n in inspect.signature(kind).parameters if n not in ("self", "loop")]
    for name in kwargs:
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"aiokafka:// {what}: {kind.__name__} takes no argument {name!r}{hint}"
            )


def producer_kwargs(common: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """``AIOKafkaProducer`` arguments. Idempotence needs ``acks='all'`` (off otherwise,
    as in the Java client). aiokafka's default partitioner is already murmur2."""
    from aiokafka import codec

    compression = settings["compression"]
    probe = _COMPRESSION_NEEDS.get(compression)
    if probe is not None and not getattr(codec, probe)():
        raise UnsupportedError(
            f"aiokafka:// needs cramjam for {compression} compression: "
            "pip install 'polybus[aiokafka]'"
        )
    acks = settings["acks"]
    kwargs = {
        **common,
        "acks": "all" if acks == "all" else acks,
        "enable_idempotence": bool(settings["idempotent"]) and acks == "all",
        "linger_ms": settings["linger_ms"],
        "max_batch_size": min(settings["batch_size"], 1_048_576),
        "compression_type": None if compression == "none" else compression,
        "request_timeout_ms": int(settings["delivery_timeout"] * 1000),
    }
    if settings.get("client_id"):
        kwargs["client_id"] = settings["client_id"]
    kwargs.update(settings.get("config") or {})
    return kwargs


def consumer_kwargs(
    common: Mapping[str, Any], group: str | None, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """``AIOKafkaConsumer`` arguments. aiokafka's own auto-commit commits positions
    (read, not processed), so it is off: the driver commits processed positions on the
    interval, on revoke and on close."""
    kwargs = {
        **common,
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": settings["offset_reset"],
    }
    if group is not None:
        kwargs["session_timeout_ms"] = int(settings["session_timeout"] * 1000)
        kwargs["heartbeat_interval_ms"] = int(settings["heartbeat_interval"] * 1000)
        kwargs["max_poll_interval_ms"] = int(settings["max_poll_interval"] * 1000)
    if settings.get("client_id"):
        kwargs["client_id"] = settings["client_id"]
    kwargs.update(settings.get("config") or {})
    return kwargs
