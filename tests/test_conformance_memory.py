"""The public conformance suite, run on the memory backend (a fresh broker per test).

``pytest --bus-url kafka://127.0.0.1:9092 tests/test_conformance_memory.py`` runs the
very same tests on another backend.
"""

from bus.testing.conformance import *  # noqa: F403
