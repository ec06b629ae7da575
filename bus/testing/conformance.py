"""The conformance suite every polybus backend must pass, public and driven by capabilities.

A backend author collects it by writing, in a test file::

    from bus.testing.conformance import *

and runs ``pytest --bus-url mybackend://...`` (or sets ``$BUS_TEST_URL``). The tests use
the fixtures of the ``bus.testing.plugin`` pytest plugin (installed with polybus) and are
marked with the capabilities they need, so a backend without, say, ``seek`` sees the
seek tests skipped, each naming the missing capability; nothing is skipped by hand.

The suite covers the rules of messages, producing, consuming and consumer groups that
docs/concepts.md states. Each rule is written once and, through the ``bus_api`` fixture,
runs through the blocking API (``[sync]``) on a backend with ``sync`` and through
asyncio (``[async]``) on a backend with ``async``: memory:// runs both. Only what just
one API has is written for it alone: ``TestAsyncTasks``/``TestAsyncFor`` (tasks,
cancellation, ``async for``) and ``TestBus``'s ``Bus.close``/``Bus.aclose`` tests.
Every test waits by polling with generous deadlines and returns as soon as its
condition holds, so it runs unchanged, and fast, on the memory backend and on a real
Kafka cluster.
"""

from __future__ import annotations

from bus.testing._conformance_api import *
from bus.testing._conformance_asyncio import *
from bus.testing._conformance_consuming import *
from bus.testing._conformance_group_admin import *
from bus.testing._conformance_groups import *
from bus.testing._conformance_hostile import *
from bus.testing._conformance_interceptors import *
from bus.testing._conformance_iteration import *
from bus.testing._conformance_positions import *
from bus.testing._conformance_producing import *
from bus.testing._conformance_topic_admin import *
from bus.testing._conformance_workers import *

__all__ = [
    "TestArguments",
    "TestAsyncFor",
    "TestAsyncTasks",
    "TestAtLeastOnce",
    "TestBus",
    "TestCodecs",
    "TestCommit",
    "TestConsumerClose",
    "TestConsumerInterceptors",
    "TestDescribeTopic",
    "TestEnqueue",
    "TestGivenPartitions",
    "TestGroupAdmin",
    "TestGroups",
    "TestHostileAdmin",
    "TestHostileConsuming",
    "TestHostileProducing",
    "TestIteration",
    "TestIterationKeepsPlaces",
    "TestMessageFields",
    "TestMessageTooLarge",
    "TestMissingTopic",
    "TestOffsetReset",
    "TestPartitioning",
    "TestPoll",
    "TestPositions",
    "TestProducerClose",
    "TestProducerInterceptors",
    "TestRefusedByTheBroker",
    "TestSeek",
    "TestSend",
    "TestSendBatch",
    "TestWorkers",
]
