"""polybus: one Producer/Consumer API for Python, any transport, chosen by URL.

    import bus
    with bus.connect() as b:                      # $BUS_URL, else memory://
        with b.producer() as producer:
            producer.send("orders", b"hello", key=b"k1")
        with b.consumer("orders", group="billing", offset_reset="earliest") as consumer:
            for message in consumer:
                ...

Importing ``bus`` imports no Kafka client: backends load their client library when
``connect`` picks them.
"""

from bus._async_worker import AsyncWorker
from bus._bus import Bus, connect
from bus._codecs import Codec
from bus._consumer import AsyncConsumer, Consumer
from bus._errors import (
    AuthenticationError,
    AuthorizationError,
    BackendNotFound,
    BusError,
    ClosedError,
    CommitError,
    ConfigError,
    DeliveryError,
    HandlerError,
    MessageTooLarge,
    SerializationError,
    TimeoutError,
    TopicExistsError,
    UnknownGroupError,
    UnknownTopicError,
    UnsupportedError,
)
from bus._groups import GroupDescription, GroupMember, GroupPartition
from bus._interceptors import Interceptor
from bus._message import Delivery, Message, TopicPartition
from bus._partitioner import murmur2, murmur2_partition
from bus._plugins import hookimpl
from bus._producer import AsyncProducer, Producer
from bus._topics import PartitionDescription, TopicDescription
from bus._work import Retry
from bus._worker import Worker

__version__ = "0.1.0"

__all__ = [
    "AsyncConsumer",
    "AsyncProducer",
    "AsyncWorker",
    "AuthenticationError",
    "AuthorizationError",
    "BackendNotFound",
    "Bus",
    "BusError",
    "ClosedError",
    "Codec",
    "CommitError",
    "ConfigError",
    "Consumer",
    "Delivery",
    "DeliveryError",
    "GroupDescription",
    "GroupMember",
    "GroupPartition",
    "HandlerError",
    "Interceptor",
    "Message",
    "MessageTooLarge",
    "PartitionDescription",
    "Producer",
    "Retry",
    "SerializationError",
    "TimeoutError",
    "TopicDescription",
    "TopicExistsError",
    "TopicPartition",
    "UnknownGroupError",
    "UnknownTopicError",
    "UnsupportedError",
    "Worker",
    "connect",
    "hookimpl",
    "murmur2",
    "murmur2_partition",
]
