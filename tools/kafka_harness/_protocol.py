"""The few Kafka requests the harness sends itself, over a plain socket (stdlib only).

Metadata v4 (brokers, topics, partition leaders), SaslHandshake v1 + SaslAuthenticate v1
(SASL/PLAIN), CreateAcls v1 and DescribeAcls v1: every one non-flexible (request header
v1, response header v0), all supported by Kafka 2.x to 4.x.  One :class:`Connection` is
one TCP connection, authenticated first when ``sasl`` credentials are given; it is not
thread-safe.  Failures raise ``OSError`` (the network), :class:`KafkaProtocolError` (an
error code from the broker) or ``ValueError`` (an answer that does not parse).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

_T = TypeVar("_T")

_METADATA, _SASL_HANDSHAKE, _CREATE_ACLS, _DESCRIBE_ACLS, _SASL_AUTHENTICATE = 3, 17, 30, 29, 36
_CLIENT_ID = b"polybus-kafka-harness"

#: Names of the error codes the harness is likely to meet (the rest print as numbers).
ERROR_NAMES = {
    0: "NONE",
    3: "UNKNOWN_TOPIC_OR_PARTITION",
    5: "LEADER_NOT_AVAILABLE",
    6: "NOT_LEADER_OR_FOLLOWER",
    7: "REQUEST_TIMED_OUT",
    29: "TOPIC_AUTHORIZATION_FAILED",
    30: "GROUP_AUTHORIZATION_FAILED",
    31: "CLUSTER_AUTHORIZATION_FAILED",
    33: "UNSUPPORTED_SASL_MECHANISM",
    34: "ILLEGAL_SASL_STATE",
    35: "UNSUPPORTED_VERSION",
    41: "NOT_CONTROLLER",
    42: "INVALID_REQUEST",
    54: "SECURITY_DISABLED",
    58: "SASL_AUTHENTICATION_FAILED",
}

# org.apache.kafka.common.{acl.AclOperation, acl.AclPermissionType,
# resource.ResourceType, resource.PatternType}: each enum's byte code is its ordinal.
OPERATIONS = {
    name: code
    for code, name in enumerate(
        [
            "unknown",
            "any",
            "all",
            "read",
            "write",
            "create",
            "delete",
            "alter",
            "describe",
            "cluster_action",
            "describe_configs",
            "alter_configs",
            "idempotent_write",
            "create_tokens",
            "describe_tokens",
            "two_phase_commit",
        ]
    )
}
PERMISSIONS = {"deny": 2, "allow": 3}
RESOURCE_TYPES = {"topic": 2, "group": 3, "cluster": 4, "transactional_id": 5}
PATTERN_TYPES = {"literal": 3, "prefixed": 4}
_ANY = 1  # the ANY code of every one of those enums (a match-all in a filter)


class KafkaProtocolError(ValueError):
    """The broker answered a request with an error code."""

    def __init__(self, what: str, code: int, message: str | None = None) -> None:
        self.code = code
        name = ERROR_NAMES.get(code, "error")
        detail = f": {message}" if message else ""
        super().__init__(f"{what}: {name} ({code}){detail}")


# --------------------------------------------------------------------------- encoding


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def _nullable_string(text: str | None) -> bytes:
    return struct.pack(">h", -1) if text is None else _string(text)


def _array(items: Sequence[bytes] | None) -> bytes:
    if items is None:
        return struct.pack(">i", -1)
    return struct.pack(">i", len(items)) + b"".join(items)


class _Reader:
    """Reads the big-endian primitives of a response body in order."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def _unpack(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += struct.calcsize(fmt)
        return int(value)

    def int8(self) -> int:
        return self._unpack(">b")

    def int16(self) -> int:
        return self._unpack(">h")

    def int32(self) -> int:
        return self._unpack(">i")

    def int64(self) -> int:
        return self._unpack(">q")

    def string(self) -> str:
        text = self.nullable_string()
        if text is None:
            raise ValueError("null where the protocol wants a string")
        return text

    def nullable_string(self) -> str | None:
        size = self.int16()
        if size < 0:
            return None
        text = self.data[self.offset : self.offset + size].decode()
        self.offset += size
        return text

    def bytes_(self) -> bytes:
        size = self.int32()
        data = self.data[self.offset : self.offset + max(size, 0)]
        self.offset += max(size, 0)
        return data

    def array(self, item: Callable[[_Reader], _T]) -> list[_T]:
        count = self.int32()
        return [item(self) for _ in range(max(count, 0))]


# --------------------------------------------------------------------------- connection


class Connection:
    """One TCP connection to a broker's listener, SASL/PLAIN-authenticated first when
    ``sasl=(user, password)`` is given.  ``timeout`` bounds connecting and each reply."""

    def __init__(
        self, address: str, timeout: float = 3.0, sasl: tuple[str, str] | None = None
    ) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        self._correlation = 0x5041
        self._sock = socket.create_connection((host, int(port)), timeout=timeout)
        try:
            self._sock.settimeout(timeout)
            if sasl is not None:
                self._authenticate(*sasl)
        except BaseException:
            self._sock.close()
            raise

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def request(self, api_key: int, version: int, body: bytes) -> _Reader:
        """Send one request; return a reader positioned after the response header."""
        self._correlation += 1
        header = struct.pack(">hhih", api_key, version, self._correlation, len(_CLIENT_ID))
        payload = header + _CLIENT_ID + body
        self._sock.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", self._recv_exact(4))
        reader = _Reader(self._recv_exact(size))
        got = reader.int32()
        if got != self._correlation:
            raise ValueError(f"unexpected correlation id {got} from {self.address}")
        return reader

    def _recv_exact(self, size: int) -> bytes:
        buf = bytearray()
        while len(buf) < size:
            chunk = self._sock.recv(size - len(buf))
            if not chunk:
                raise ConnectionError(f"connection closed by the broker at {self.address}")
            buf += chunk
        return bytes(buf)

    def _authenticate(self, user: str, password: str) -> None:
        reply = self.request(_SASL_HANDSHAKE, 1, _string("PLAIN"))
        code = reply.int16()
        if code:
            offered = reply.array(_Reader.string)
            raise KafkaProtocolError(f"SASL handshake (broker offers {offered})", code)
        token = b"\0" + user.encode() + b"\0" + password.encode()
        reply = self.request(_SASL_AUTHENTICATE, 1, struct.pack(">i", len(token)) + token)
        code, message = reply.int16(), reply.nullable_string()
        if code:
            raise KafkaProtocolError(f"SASL/PLAIN authentication as {user!r}", code, message)

    # -- metadata

    def metadata(self, topics: Iterable[str] | None = ()) -> ClusterMetadata:
        """Brokers, controller and (for ``topics``; ``None``: every topic) partitions.

        A KRaft broker lists only registered, unfenced brokers.  A topic the broker does
        not know (or the user may not describe) comes back with its error code set.
        """
        names = None if topics is None else [_string(name) for name in topics]
        reply = self.request(_METADATA, 4, _array(names) + b"\0")  # no auto-creation
        reply.int32()  # throttle_time_ms
        brokers = dict(reply.array(_broker))
        reply.nullable_string()  # cluster_id
        controller = reply.int32()
        described = {topic.name: topic for topic in reply.array(_topic)}
        return ClusterMetadata(brokers, controller, described)

    # -- ACLs

    def create_acls(self, acls: Sequence[Acl]) -> None:
        """Create ``acls``; raise the first error the broker reports for any of them."""
        entries = [
            struct.pack(">b", RESOURCE_TYPES[acl.resource_type])
            + _string(acl.resource_name)
            + struct.pack(">b", PATTERN_TYPES[acl.pattern_type])
            + _string(acl.principal)
            + _string(acl.host)
            + struct.pack(">bb", OPERATIONS[acl.operation], PERMISSIONS[acl.permission])
            for acl in acls
        ]
        reply = self.request(_CREATE_ACLS, 1, _array(entries))
        reply.int32()  # throttle_time_ms
        results = reply.array(lambda r: (r.int16(), r.nullable_string()))
        for acl, (code, message) in zip(acls, results, strict=True):
            if code:
                raise KafkaProtocolError(f"creating {acl}", code, message)

    def describe_acls(self) -> set[Acl]:
        """Every ACL this broker's authorizer holds now."""
        body = struct.pack(">b", _ANY) + _nullable_string(None) + struct.pack(">b", _ANY)
        body += _nullable_string(None) + _nullable_string(None) + struct.pack(">bb", _ANY, _ANY)
        reply = self.request(_DESCRIBE_ACLS, 1, body)
        reply.int32()  # throttle_time_ms
        code, message = reply.int16(), reply.nullable_string()
        if code:
            raise KafkaProtocolError("describing ACLs", code, message)
        found: set[Acl] = set()
        for resource_type, name, pattern, entries in reply.array(_acl_resource):
            for principal, host, operation, permission in entries:
                found.add(
                    Acl(
                        principal,
                        _name_of(OPERATIONS, operation),
                        _name_of(RESOURCE_TYPES, resource_type),
                        name,
                        pattern_type=_name_of(PATTERN_TYPES, pattern),
                        host=host,
                        permission=_name_of(PERMISSIONS, permission),
                    )
                )
        return found


def _name_of(table: dict[str, int], code: int) -> str:
    for name, value in table.items():
        if value == code:
            return name
    return f"code {code}"


def _broker(reply: _Reader) -> tuple[int, str]:
    node_id, host, port = reply.int32(), reply.string(), reply.int32()
    reply.nullable_string()  # rack
    return node_id, f"{host}:{port}"


def _partition(reply: _Reader) -> PartitionMetadata:
    error, index, leader = reply.int16(), reply.int32(), reply.int32()
    replicas = tuple(reply.array(_Reader.int32))
    isr = tuple(reply.array(_Reader.int32))
    return PartitionMetadata(index, leader, replicas, isr, error)


def _topic(reply: _Reader) -> TopicMetadata:
    error, name = reply.int16(), reply.string()
    reply.int8()  # is_internal
    partitions = {p.partition: p for p in reply.array(_partition)}
    return TopicMetadata(name, partitions, error)


def _acl_resource(
    reply: _Reader,
) -> tuple[int, str, int, list[tuple[str, str, int, int]]]:
    resource_type, name, pattern = reply.int8(), reply.string(), reply.int8()
    entries = reply.array(lambda r: (r.string(), r.string(), r.int8(), r.int8()))
    return resource_type, name, pattern, entries


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class PartitionMetadata:
    """One partition as a broker's metadata describes it (``leader`` -1: none)."""

    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    error_code: int = 0


@dataclass(frozen=True)
class TopicMetadata:
    """A topic's partitions; ``error_code`` is set (3: unknown) when it has none."""

    name: str
    partitions: dict[int, PartitionMetadata] = field(default_factory=dict)
    error_code: int = 0


@dataclass(frozen=True)
class ClusterMetadata:
    """What a Metadata request returned: ``{node id: "host:port"}``, the active
    controller's id as brokers report it, and the requested topics by name."""

    brokers: dict[int, str]
    controller_id: int
    topics: dict[str, TopicMetadata]


@dataclass(frozen=True)
class Acl:
    """One ACL binding, in the words of ``kafka-acls``: ``principal`` (``"User:alice"``)
    is allowed (or denied) ``operation`` on the resource ``resource_type`` named
    ``resource_name`` (``"kafka-cluster"`` for the cluster), ``literal`` or ``prefixed``.
    Names are lower case: operations ``read write create delete alter describe
    cluster_action describe_configs alter_configs idempotent_write all``; resource types
    ``topic group cluster transactional_id``."""

    principal: str
    operation: str
    resource_type: str
    resource_name: str
    pattern_type: str = "literal"
    host: str = "*"
    permission: str = "allow"

    def __post_init__(self) -> None:
        for value, table, what in (
            (self.operation, OPERATIONS, "operation"),
            (self.resource_type, RESOURCE_TYPES, "resource type"),
            (self.pattern_type, PATTERN_TYPES, "pattern type"),
            (self.permission, PERMISSIONS, "permission"),
        ):
            if value not in table:
                raise ValueError(f"unknown ACL {what} {value!r}; one of {sorted(table)}")
        if ":" not in self.principal:
            raise ValueError(f"an ACL principal looks like 'User:alice', not {self.principal!r}")

    def __str__(self) -> str:
        return (
            f"{self.permission} {self.principal} {self.operation} on {self.resource_type} "
            f"{self.resource_name!r} ({self.pattern_type}) from {self.host}"
        )
