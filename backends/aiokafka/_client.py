"""Consumers that never create topics, on an aiokafka that has no switch for it.

A Kafka broker creates a missing topic when a metadata request for it allows that
(``auto.create.topics.enable`` on the broker), and aiokafka's client always allows it
(``MetadataRequest.allow_auto_topic_creation`` defaults to True; ``AIOKafkaConsumer``
has no ``allow_auto_create_topics`` argument, unlike the Java client and librdkafka).
A consumer of a misspelt topic would create it. polybus consumers never create topics,
on every backend (the memory backend's rule, librdkafka's default).

aiokafka's client builds its metadata requests from the ``MetadataRequest`` name of
``aiokafka.client``; :func:`install` puts a subclass there that disallows creation when
the context it runs in says so, and :func:`no_auto_create` says so for the tasks a
consumer starts (asyncio tasks copy the context they are created in, so the client's
background metadata task keeps it). Producers and admin clients are unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import aiokafka.client
from aiokafka.protocol.metadata import MetadataRequest

_NO_AUTO_CREATE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "polybus_aiokafka_no_auto_create", default=False
)


class _ConsumerMetadataRequest(MetadataRequest):  # type: ignore[misc]
    def __init__(self, topics: Any = None, allow_auto_topic_creation: bool | None = None):
        if allow_auto_topic_creation is None and _NO_AUTO_CREATE.get():
            allow_auto_topic_creation = False
        super().__init__(topics, allow_auto_topic_creation)


def install() -> None:
    """Let :func:`no_auto_create` work (idempotent)."""
    if getattr(aiokafka.client, "MetadataRequest", None) is MetadataRequest:
        aiokafka.client.MetadataRequest = _ConsumerMetadataRequest


@contextlib.contextmanager
def no_auto_create() -> Iterator[None]:
    """Metadata requests made here, and by tasks created here, never create a topic."""
    install()
    token = _NO_AUTO_CREATE.set(True)
    try:
        yield
    finally:
        _NO_AUTO_CREATE.reset(token)
