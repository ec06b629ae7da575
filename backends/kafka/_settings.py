"""Bus options to librdkafka configuration: pure functions, no client made here."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from backends._kafka_options import SHARED_OPTIONS
from bus import ConfigError
from bus.spi import BUS, BusURL, Option, mapping

LOGGER = logging.getLogger("bus.kafka")

#: Options of the kafka:// backend besides the core ones. Any librdkafka setting goes
#: through ``config`` (``config={"socket.timeout.ms": 5000}`` or, in a URL,
#: ``?config.socket.timeout.ms=5000``); the named ones are shortcuts shared with
#: aiokafka:// so one URL works on both.
OPTIONS: tuple[Option, ...] = (
    Option(
        "config",
        frozenset({BUS, "producer", "consumer"}),
        None,
        "librdkafka settings passed through as they are (dotted names).",
        mapping,
        mapping=True,
    ),
    *SHARED_OPTIONS,
)

_SHORTCUTS = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanisms",
    "sasl_username": "sasl.username",
    "sasl_password": "sasl.password",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
}


def common_config(url: BusURL, options: Mapping[str, Any]) -> dict[str, Any]:
    """What every client of a connection gets: brokers, security, client id, pass-through."""
    if not url.hosts:
        raise ConfigError(
            f"{url.scheme}:// needs at least one broker, e.g. {url.scheme}://127.0.0.1:9092"
        )
    conf: dict[str, Any] = {"bootstrap.servers": ",".join(url.hosts), "logger": LOGGER}
    if url.username is not None:
        conf["sasl.username"] = url.username
        conf["sasl.mechanisms"] = "PLAIN"
        conf["security.protocol"] = "SASL_PLAINTEXT"
    if url.password is not None:
        conf["sasl.password"] = url.password
    for option, key in _SHORTCUTS.items():
        if options.get(option) is not None:
            conf[key] = options[option]
    if options.get("client_id"):
        conf["client.id"] = options["client_id"]
    return conf


def _passthrough(conf: dict[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    extra = settings.get("config")
    if extra:
        conf.update(extra)
    return conf


def producer_config(common: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """librdkafka producer settings. Idempotence needs ``acks=all``: with acks 0 or 1 it
    is off, as the Java client does."""
    acks = settings["acks"]
    conf = {
        **common,
        "acks": -1 if acks == "all" else acks,
        "enable.idempotence": bool(settings["idempotent"]) and acks == "all",
        "linger.ms": settings["linger_ms"],
        "batch.size": settings["batch_size"],
        "compression.type": settings["compression"],
        "message.timeout.ms": int(settings["delivery_timeout"] * 1000),
        # murmur2 for keys like the Java client, random without a key (librdkafka's
        # default, consistent_random, hashes keys with CRC32 and would disagree).
        "partitioner": "random" if settings["partitioner"] == "random" else "murmur2_random",
    }
    if settings.get("client_id"):
        conf["client.id"] = settings["client_id"]
    return _passthrough(conf, settings)


def consumer_config(
    common: Mapping[str, Any], group: str | None, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """librdkafka consumer settings. Offsets are stored only for processed messages
    (``enable.auto.offset.store=false``, librdkafka #1122) and auto-commit commits
    what is stored; rebalances are incremental (cooperative-sticky)."""
    auto_commit = bool(settings["auto_commit"]) and group is not None
    conf = {
        **common,
        "enable.auto.commit": auto_commit,
        "enable.auto.offset.store": False,
        "auto.commit.interval.ms": int(settings["auto_commit_interval"] * 1000),
        "auto.offset.reset": settings["offset_reset"],
        "enable.partition.eof": False,
        # librdkafka stops fetching for this long once its queue holds
        # queued.min.messages; the 1000 ms default stalls a consumer that keeps up
        # (librdkafka #2879): 130k -> 900k msg/s in bench/kafka.py.
        "fetch.queue.backoff.ms": 10,
    }
    if group is not None:
        conf["group.id"] = group
        conf["partition.assignment.strategy"] = "cooperative-sticky"
        # librdkafka's defaults are Java's 45 s and 3 s; one default on every backend.
        conf["session.timeout.ms"] = int(settings["session_timeout"] * 1000)
        conf["heartbeat.interval.ms"] = int(settings["heartbeat_interval"] * 1000)
        conf["max.poll.interval.ms"] = int(settings["max_poll_interval"] * 1000)
    else:
        conf["group.id"] = "polybus-no-group"  # librdkafka wants one; nothing is committed
    if settings.get("client_id"):
        conf["client.id"] = settings["client_id"]
    return _passthrough(conf, settings)
