"""Every test gets a database file of its own, unless ``--bus-url``/``$BUS_TEST_URL``
names one (then every test shares it, each on topics and groups of its own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bus.testing.helpers import fresh_url
from bus.testing.plugin import configured_url


@pytest.fixture
def bus_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """--bus-url or $BUS_TEST_URL if given, else a fresh sqlite:// file per test."""
    given = configured_url(request.config)
    if given is not None:
        yield given
        return
    with fresh_url("sqlite") as url:
        yield url
