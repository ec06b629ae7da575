"""The lines ``bus produce``, ``bus consume`` and ``bus demo`` print for a delivery
report and for a message (docs/cli.md shows both)."""

from __future__ import annotations

from typing import Any

from bus._message import Delivery, Message


def text(data: Any) -> str:
    """Bytes as UTF-8 text (undecodable bytes become U+FFFD), ``None`` as ``""``."""
    if data is None:
        return ""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data).decode("utf-8", errors="replace")
    return str(data)


def format_message(message: Message) -> str:
    """``Partition:%d, Offset:%d, key:%s, value:%s``, the Go/sarama consumer's line."""
    return (
        f"Partition:{message.partition}, Offset:{message.offset}, "
        f"key:{text(message.key)}, value:{text(message.value)}"
    )


def format_delivery(delivery: Delivery) -> str:
    """``Partition:%d, Offset:%d``: where a produced message was written."""
    return f"Partition:{delivery.partition}, Offset:{delivery.offset}"
