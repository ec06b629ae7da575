"""How large a record batch a topic takes, asked of the cluster once per topic.

A broker refuses a whole record batch larger than the topic's ``max.message.bytes``.
For an idempotent aiokafka producer that refusal is fatal: the refused batch had taken
its sequence numbers, every later batch to that partition is out of sequence, and
aiokafka cannot recover (the Java client splits such batches or bumps the epoch).
So the producer learns each topic's limit before its first write (a DescribeConfigs
request on its own connection) and never builds a batch over it: a message that is
too large on its own fails alone with ``MessageTooLarge``, as on the other backends.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import DescribeConfigsRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

#: The DescribeConfigs resource type of a topic.
_TOPIC = 2
_KEY = "max.message.bytes"


async def topic_limit(client: Any, topic: str, timeout: float) -> int | None:
    """The topic's ``max.message.bytes`` (its override or the broker's default); None
    if the cluster does not say (the topic does not exist yet, describing it is not
    allowed, or no answer within ``timeout``)."""
    node = client.get_random_node()
    if node is None:
        return None
    try:
        response = await asyncio.wait_for(
            client.send(node, DescribeConfigsRequest([(_TOPIC, topic, [_KEY])])), timeout
        )
    except (KafkaError, asyncio.TimeoutError, OSError):
        return None
    for resource in response.resources:
        error_code, entries = resource[0], resource[4]
        if error_code:
            return None
        for entry in entries:
            if entry[0] == _KEY and entry[1] is not None:
                return int(entry[1])
    return None


def batch_size_of(key: bytes | None, value: bytes | None, headers: Any) -> int:
    """The most bytes a record batch holding only this record takes, uncompressed."""
    # aiokafka's C builder takes a list only; bus headers are a tuple of pairs.
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers or ())))


def fits(limit: int, key: bytes | None, value: bytes | None, headers: Any) -> bool:
    """Whether a batch of this one record fits ``limit`` bytes (the arithmetic only
    when the record is anywhere near it)."""
    if not headers and len(key or b"") + len(value or b"") + 128 <= limit:
        return True
    return batch_size_of(key, value, headers) <= limit
