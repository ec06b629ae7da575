"""The public conformance suite, unchanged, on sqlite:// (a fresh file per test, see
conftest.py; ``--bus-url sqlite:///some.db`` runs it on one file)."""

from bus.testing.conformance import *
