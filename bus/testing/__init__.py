"""polybus's testing kit, installed with the package, for backend authors and users.

- ``bus.testing.plugin``: the pytest plugin (loaded automatically through the
  ``pytest11`` entry point ``bus``): option ``--bus-url`` (env ``BUS_TEST_URL``),
  fixtures ``bus_url``, ``message_bus``, ``bus_api``, ``bus_topic``,
  ``bus_topic_factory``, marker ``bus_capability``.
- ``bus.testing.apis``: what ``bus_api`` hands a test: clients through the blocking
  API, or asyncio clients behind a blocking face, so one test checks both APIs.
- ``bus.testing.conformance``: the suite every backend must pass; collect it with
  ``from bus.testing.conformance import *`` and run ``pytest --bus-url scheme://...``.
- ``bus.testing.helpers``: polling helpers with deadlines (``consume``,
  ``wait_for_assignment``, ``wait_for_group`` and their ``async_`` twins) for tests
  that must run unchanged on a real broker, and ``fresh_url(scheme)``: a new, empty
  instance of a backend for one test.
- ``bus.testing.strategies``: Hypothesis strategies for topics, keys, values,
  headers and messages.
- ``bus.testing.statemachine``: a Hypothesis state machine checking a backend's
  partitioned log and consumer groups against a reference model.

Nothing is imported here, so importing ``bus.testing`` stays cheap (no pytest, no
Hypothesis).
"""
