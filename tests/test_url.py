"""Bus URLs: parsing, defaults and the password that never shows."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus import ConfigError
from bus._url import parse_url, resolve_url
from bus.testing import strategies as bst


def test_a_kafka_url_has_hosts_and_options() -> None:
    url = parse_url("kafka://h1:9092,h2:9092?acks=all&compression=zstd")
    assert url.scheme == "kafka"
    assert url.hosts == ("h1:9092", "h2:9092")
    assert url.query == (("acks", "all"), ("compression", "zstd"))


def test_a_memory_url_names_its_broker() -> None:
    assert parse_url("memory://orders").location == "orders"
    assert parse_url("memory://").location == ""
    assert parse_url("memory").scheme == "memory"
    assert parse_url("MEMORY://x").scheme == "memory"


def test_the_url_comes_from_the_environment_then_defaults_to_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BUS_URL", raising=False)
    assert resolve_url(None) == "memory://"
    monkeypatch.setenv("BUS_URL", "kafka://broker:9092")
    assert resolve_url(None) == "kafka://broker:9092"
    assert resolve_url("memory://x") == "memory://x"


def test_credentials_are_parsed_and_masked() -> None:
    url = parse_url("kafka://alice:s3cr%40t@h1:9092?acks=1")
    assert (url.username, url.password) == ("alice", "s3cr@t")
    for shown in (str(url), repr(url), url.redacted()):
        assert "s3cr" not in shown
        assert "alice:***@h1:9092" in shown


@given(st.text(alphabet="abcdefghijklmnop0123456789!$%^&()", min_size=1, max_size=20))
def test_a_password_never_appears_in_an_error(password: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_url(f"kafka:/user:{password}@host")
    assert "user:***@host" in str(info.value)
    assert f":{password}@" not in str(info.value)


@pytest.mark.parametrize("bad", ["", "://x", "kafka:/x", "9kafka://x"])
def test_text_that_is_not_a_url_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="not a bus URL"):
        parse_url(bad)


def test_a_url_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="url must be a str"):
        parse_url(9092)  # type: ignore[arg-type]


def test_secret_query_values_are_masked() -> None:
    url = parse_url("kafka://h:9092?sasl_password=hunter2&config.sasl.password=hunter3&acks=1")
    for shown in (str(url), repr(url)):
        assert "hunter" not in shown
        assert "sasl_password=***" in shown and "acks=1" in shown


@given(
    st.text(alphabet="abcdefghijk0123456789", min_size=1, max_size=8),
    st.sampled_from(["/", "?", "/x?"]),
    st.text(alphabet="abcdefghijk0123456789", min_size=1, max_size=8),
)
def test_a_password_cut_short_by_a_delimiter_is_refused_unshown(
    head: str, delimiter: str, tail: str
) -> None:
    password = head + delimiter + tail
    with pytest.raises(ConfigError, match="percent-encode") as info:
        parse_url(f"kafka://user:{password}@h1:9092")
    shown = str(info.value)
    assert f"user:{head}" not in shown
    assert f"{tail}@" not in shown
    assert f"{delimiter}{tail}" not in shown
    assert "kafka://***@h1:9092" in shown


def test_an_at_sign_in_a_query_value_is_no_password() -> None:
    url = parse_url("kafka://h:9092?client_id=team@example")
    assert url.password is None
    assert url.query == (("client_id", "team@example"),)


# -- hostile URLs ---------------------------------------------------------------------------


def _leaks(text: str) -> bool:
    """Whether ``text`` shows any piece of a password drawn by ``bst.secrets()``."""
    return any(marker in text for marker in bst.SECRET_MARKERS)


@settings(max_examples=1000)
@given(bst.hostile_urls())
def test_any_text_is_a_url_or_a_config_error_that_hides_the_password(
    drawn: tuple[str, str | None],
) -> None:
    text, _ = drawn
    try:
        url = parse_url(text)
    except ConfigError as error:
        assert not _leaks(str(error)), str(error)
        assert not _leaks(repr(error)), repr(error)
        return
    for shown in (str(url), repr(url), url.redacted()):
        assert not _leaks(shown), shown


@given(st.none() | st.integers() | st.binary() | st.lists(st.text()))
def test_a_url_of_another_type_is_a_type_error(url: object) -> None:
    with pytest.raises(TypeError, match="url must be a str"):
        parse_url(url)  # type: ignore[arg-type]


def test_an_ampersand_in_a_secret_query_value_is_refused_unshown() -> None:
    with pytest.raises(ConfigError, match="percent-encode") as info:
        parse_url("kafka://h:9092?sasl_password=hunter&two&acks=1")
    assert "hunter" not in str(info.value)
    assert "two" not in str(info.value)


def test_text_that_utf8_cannot_encode_is_no_url() -> None:
    with pytest.raises(ConfigError, match="UTF-8") as info:
        parse_url("kafka://user:pass\ud800word@h:9092")
    assert "pass" not in str(info.value)
