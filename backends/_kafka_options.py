"""Options both Kafka backends take, with the same names and meanings, so one URL
serves ``kafka://`` and ``aiokafka://``: the admin timeout and the security shortcuts.
Each backend maps them onto its client library's own settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bus.spi import BUS, BackendConfig, Option, client_settings, seconds, text

#: How often a consumer without a group looks for new partitions of its topics (and,
#: while it has none, for its topics to appear), on both Kafka backends.
METADATA_EVERY = 5.0
METADATA_WHILE_EMPTY = 1.0

SHARED_OPTIONS: tuple[Option, ...] = (
    Option(
        "admin_timeout",
        frozenset({BUS}),
        30.0,
        "Seconds an admin call (create_topic, topics, ...) may take.",
        seconds,
    ),
    Option(
        "security_protocol",
        frozenset({BUS}),
        None,
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
        text,
    ),
    Option(
        "sasl_mechanism", frozenset({BUS}), None, "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, ...", text
    ),
    Option("sasl_username", frozenset({BUS}), None, "SASL user (also from the URL).", text),
    Option(
        "sasl_password",
        frozenset({BUS}),
        None,
        "SASL password (also from the URL).",
        text,
        secret=True,
    ),
    Option("ssl_cafile", frozenset({BUS}), None, "CA certificate file (PEM).", text),
    Option("ssl_certfile", frozenset({BUS}), None, "Client certificate file (PEM).", text),
    Option("ssl_keyfile", frozenset({BUS}), None, "Client private key file (PEM).", text),
    Option(
        "ssl_password", frozenset({BUS}), None, "Password of the private key.", text, secret=True
    ),
)


def merged(bus_options: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """A client's settings with its ``config`` laid over the connection's."""
    result = dict(settings)
    result["config"] = {**(bus_options.get("config") or {}), **(settings.get("config") or {})}
    return result


def resolved(
    url: str, scope: str, options: Mapping[str, Any]
) -> tuple[BackendConfig, dict[str, Any]]:
    """What ``connect(url)`` gives the backend and a client's complete settings, its
    ``config`` laid over the connection's: what the public ``*_config``/``*_kwargs``
    functions of both Kafka backends start from, without connecting."""
    config, settings = client_settings(url, scope, options)
    return config, merged(config.options, settings)
