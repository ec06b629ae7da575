"""The conformance suite every polybus backend must pass, public and driven by capabilities.

A backend author collects it by writing, in a test file::

    from bus.testing.conformance import *

and runs ``pytest --bus-url mybackend://...`` (or sets ``$BUS_TEST_URL``). The tests use
the fixtures of the ``bus.testing.plugin`` pytest plugin (installed with polybus) and are
marked with the capabilities they need, so a backend without, say, ``seek`` sees the
seek tests skipped, each naming the missing capability; nothing is skipped by hand.

The suite covers DESIGN.md's Messages, Producing and Consuming rules for the blocking
API (``Test*`` classes) and the asyncio API (``TestAsync*`` classes). Every test waits
by polling with generous deadlines and returns as soon as its condition holds, so it
runs unchanged, and fast, on the memory backend and on a real Kafka cluster.
"""

from __future__ import annotations

from bus.testing._conformance_api import *
from bus.testing._conformance_async_consuming import *
from bus.testing._conformance_async_groups import *
from bus.testing._conformance_async_producing import *
from bus.testing._conformance_consuming import *
from bus.testing._conformance_groups import *
from bus.testing._conformance_producing import *

__all__ = [
    "TestArguments",
    "TestAsyncArguments",
    "TestAsyncAtLeastOnce",
    "TestAsyncCodecs",
    "TestAsyncCommit",
    "TestAsyncConsumerClose",
    "TestAsyncEnqueue",
    "TestAsyncGroups",
    "TestAsyncIteration",
    "TestAsyncMessageFields",
    "TestAsyncOffsetReset",
    "TestAsyncPartitioning",
    "TestAsyncPoll",
    "TestAsyncProducerClose",
    "TestAsyncSeek",
    "TestAsyncSend",
    "TestAsyncSendBatch",
    "TestAtLeastOnce",
    "TestBus",
    "TestCodecs",
    "TestCommit",
    "TestConsumerClose",
    "TestEnqueue",
    "TestGroups",
    "TestIteration",
    "TestMessageFields",
    "TestMessageTooLarge",
    "TestOffsetReset",
    "TestPartitioning",
    "TestPoll",
    "TestProducerClose",
    "TestSeek",
    "TestSend",
    "TestSendBatch",
]
