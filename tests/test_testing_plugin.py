"""The ``bus.testing`` pytest plugin: ``--bus-url``/``BUS_TEST_URL``, the fixtures, and
skipping by capability, checked by running pytest on small test files (``pytester``)."""

from __future__ import annotations

import pytest

from bus.testing.plugin import ENV_VAR

pytest_plugins = ["pytester"]

LIMITED_BACKEND = """
import pytest

import bus
from backends.memory import bus_register_backends as memory_backends
from bus._plugins import Registry, reset_registry
from bus.spi import BackendDescriptor


class Limited:
    '''A blocking-only backend with no admin, groups, seek, headers or partitions:
    the memory backend behind a smaller capability declaration.'''

    @staticmethod
    @bus.hookimpl
    def bus_register_backends():
        [memory] = memory_backends()
        return [
            BackendDescriptor(
                name="limited",
                schemes=("limited",),
                capabilities=frozenset({"sync", "timestamps"}),
                factory=memory.factory,
            )
        ]


def pytest_configure(config):
    reset_registry(Registry.load(plugins=[Limited]))


def pytest_unconfigure(config):
    reset_registry(None)
"""


@pytest.fixture(autouse=True)
def _no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_default_is_a_fresh_memory_broker_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        seen = []

        def test_one(bus_url, message_bus, bus_topic):
            assert bus_url.startswith("memory://test-")
            assert message_bus.backend == "memory"
            assert message_bus.topics() == {bus_topic: 3}
            seen.append(bus_url)

        def test_two(bus_url, message_bus, bus_topic):
            assert message_bus.topics() == {bus_topic: 3}  # nothing left from test_one
            assert bus_url != seen[0]
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_message_bus_is_closed_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import bus
        import pytest

        kept = []

        def test_use(message_bus):
            kept.append(message_bus)

        def test_closed():
            with pytest.raises(bus.ClosedError):
                kept[0].producer()
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_bus_topic_is_a_new_name_each_time(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_names(bus_topic, bus_topic_factory, message_bus):
            other = bus_topic_factory(partitions=1, max_message_bytes=1000)
            assert other != bus_topic
            assert "test-names" in bus_topic
            assert message_bus.topics() == {bus_topic: 3, other: 1}
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_bus_url_option_picks_the_backend(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_url(bus_url):
            assert bus_url == "memory://chosen"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--bus-url", "memory://chosen")
    result.assert_outcomes(passed=1)


def test_environment_variable_picks_the_backend_and_the_option_wins(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        def test_url(bus_url):
            print("URL=" + bus_url)
        """
    )
    monkeypatch.setenv(ENV_VAR, "memory://from-env")
    from_env = pytester.runpytest("-p", "no:cacheprovider", "-s")
    from_env.assert_outcomes(passed=1)
    from_env.stdout.fnmatch_lines(["*URL=memory://from-env*"])
    from_option = pytester.runpytest("-p", "no:cacheprovider", "-s", "--bus-url", "memory://opt")
    from_option.stdout.fnmatch_lines(["*URL=memory://opt*"])


def test_unknown_backend_is_an_error_not_a_skip(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.bus_capability("sync")
        def test_needs_a_bus(message_bus):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--bus-url", "nosuch://x")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*BackendNotFound*nosuch*"])


def test_capability_marker_skips_naming_what_is_missing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.bus_capability("sync", "transactions", "cross_process")
        def test_missing(message_bus):
            raise AssertionError("must not run")

        @pytest.mark.bus_capability("sync", "seek")
        def test_present(message_bus):
            pass

        @pytest.mark.bus_capability("transactions")
        class TestWholeClass:
            def test_method(self):
                raise AssertionError("must not run")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "*backend 'memory' lacks capabilities 'cross_process', 'transactions'*",
            "*backend 'memory' lacks capability 'transactions'*",
        ]
    )


def test_capability_marker_follows_an_overridden_bus_url(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(LIMITED_BACKEND)
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def bus_url():
            return "limited://overridden"

        @pytest.mark.bus_capability("seek")
        def test_seek(message_bus):
            raise AssertionError("must not run")

        @pytest.mark.bus_capability("sync")
        def test_sync(message_bus):
            assert message_bus.backend == "limited"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*backend 'limited' lacks capability 'seek'*"])


def test_unknown_capability_word_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.bus_capability("transaction")
        def test_typo():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown capability 'transaction'*"])


def test_require_capabilities_skips_from_inside_a_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from bus.testing.plugin import require_capabilities

        def test_inside(message_bus):
            require_capabilities(message_bus, "headers")
            require_capabilities(message_bus, "persistence")
            raise AssertionError("must not run")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*lacks capability 'persistence'*"])


def test_conformance_exports_every_test_class() -> None:
    import importlib
    import pkgutil

    import bus.testing
    from bus.testing import conformance

    parts = [
        importlib.import_module(f"bus.testing.{m.name}")
        for m in pkgutil.iter_modules(bus.testing.__path__)
        if m.name.startswith("_conformance_") and m.name != "_conformance_common"
    ]
    assert len(parts) >= 11  # every part, found rather than listed: a new one is not missed
    for part in parts:
        classes = {
            n for n in vars(part) if n.startswith("Test") and isinstance(getattr(part, n), type)
        }
        assert set(part.__all__) == classes, part.__name__
    assert sorted(conformance.__all__) == sorted(n for part in parts for n in part.__all__)


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.bus_capability(*words)*"])


def test_conformance_suite_skips_by_capability_on_a_smaller_backend(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(LIMITED_BACKEND)
    pytester.makepyfile("from bus.testing.conformance import *  # noqa: F403")
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", "--bus-url", "limited://lim")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()
    assert outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes["passed"] >= 40
    assert outcomes["skipped"] >= 60
    result.stdout.fnmatch_lines_random(
        [
            "*backend 'limited' lacks capability 'async'*",
            "*backend 'limited' lacks capabilit* 'consumer_groups'*",
            "*backend 'limited' lacks capabilities 'partitions', 'admin'*",
            "*backend 'limited' lacks capability 'seek'*",
            "*backend 'limited' lacks capability 'headers'*",
        ]
    )
