"""Codecs: how values and keys become bytes and back.

A codec is chosen by the ``serializer``/``deserializer`` (and ``key_*``) options: a
registered name (``bytes``, ``str``, ``json`` and whatever plugins add through the
``bus_register_codecs`` hook), a ``Codec``, or any callable (``obj -> bytes`` to
serialize, ``bytes -> obj`` to deserialize). ``None`` stays ``None`` both ways, as a
Kafka tombstone does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs

Encoder = Callable[[Any], bytes]
Decoder = Callable[[bytes], Any]


@attrs.frozen
class Codec:
    """A named pair of functions: ``encode(obj) -> bytes`` and ``decode(bytes) -> obj``."""

    name: str
    encode: Encoder
    decode: Decoder


def _encode_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(
        f"expected bytes, got {type(value).__name__}; pass serializer='str' or 'json' "
        "(or any callable) to send other objects"
    )


def _encode_str(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"the 'str' codec encodes str, got {type(value).__name__}")
    return value.encode()


def _decode_str(data: bytes) -> str:
    return data.decode()


def _encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _decode_json(data: bytes) -> Any:
    return json.loads(data)


def _identity(data: bytes) -> bytes:
    return data


BUILTIN_CODECS = (
    Codec("bytes", _encode_bytes, _identity),
    Codec("str", _encode_str, _decode_str),
    Codec("json", _encode_json, _decode_json),
)
