"""Bus URLs: ``scheme://[user[:password]@]location[/path][?option=value&...]``.

``location`` is a comma-separated host list for network backends
(``kafka://h1:9092,h2:9092``) and a broker name for the memory backend
(``memory://orders``). The password never appears in ``repr``/``str``.
"""

from __future__ import annotations

import itertools
import os
import re
from urllib.parse import parse_qsl, unquote

import attrs

from bus._errors import ConfigError

_SECRET_WORDS = ("password", "secret", "token", "credential", "private.key", "key.pem")


def is_secret_key(key: str) -> bool:
    """Whether an option or backend-native setting name holds a credential
    (``sasl_password``, ``config.sasl.password``, ...)."""
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


DEFAULT_URL = "memory://"
ENV_VAR = "BUS_URL"

_URL = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):(?://(?P<netloc>[^/?#]*))?(?P<path>[^?#]*)"
    r"(?:\?(?P<query>[^#]*))?$"
)


@attrs.frozen(repr=False)
class BusURL:
    """A parsed bus URL. ``str()`` and ``repr()`` mask the password."""

    scheme: str
    location: str = ""
    username: str | None = None
    password: str | None = None
    path: str = ""
    query: tuple[tuple[str, str], ...] = ()

    @property
    def hosts(self) -> tuple[str, ...]:
        """The comma-separated parts of ``location`` (empty when there is none)."""
        return tuple(h.strip() for h in self.location.split(",") if h.strip())

    def redacted(self) -> str:
        """The URL as text with every credential (the password, and query values whose
        names say password, secret, token, ...) replaced by ``***``."""
        auth = ""
        if self.username is not None:
            auth = self.username + (":***" if self.password is not None else "") + "@"
        query = "&".join(f"{k}={'***' if is_secret_key(k) else v}" for k, v in self.query)
        return f"{self.scheme}://{auth}{self.location}{self.path}" + (f"?{query}" if query else "")

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"BusURL({self.redacted()!r})"


def _misplaced_credentials(netloc: str, path: str, query: str) -> bool:
    """Whether ``user:pass@host`` was cut short by a ``/`` or ``?`` in the password: an
    ``@`` follows in the path, or in the query before any ``name=`` (``?client_id=a@b``
    is a value, not a password), or where the location looks like ``user:pa`` (a port
    that is no number)."""
    if "@" in path:
        return True
    if "@" not in query or ("@" not in netloc and ":" not in netloc + path):
        return False
    if "=" not in query.split("@", 1)[0].rsplit("&", 1)[-1]:
        return True
    if "@" in netloc or ":" not in netloc:
        return False
    port = netloc.rsplit(":", 1)[1]
    return bool(port) and not port.isdigit() and not port.endswith("]")  # [::1]: an address


def _split_secret(query: str) -> bool:
    """Whether a secret query value holds an unencoded ``&``: the item after it has no
    ``=`` (``sasl_password=ab&cd``), so its tail would show as an option name."""
    items = query.split("&")
    return any(
        "=" in item and is_secret_key(unquote(item.partition("=")[0])) and "=" not in following
        for item, following in itertools.pairwise(items)
    )


_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:/*|[^:/@]*/+")


def _hide_query(text: str) -> str:
    """``text`` with the value of every ``name=value`` whose name says it holds a
    secret (percent-encoded or not) replaced by ``***``, and all that follows it: in
    text that may not parse, nothing tells where such a value ends."""
    pieces = re.split(r"([?&;#])", text)
    for i, piece in enumerate(pieces):
        name, sep, _ = piece.partition("=")
        if sep and is_secret_key(unquote(name)):
            return "".join(pieces[:i]) + f"{name}=***"
    return text


def shown_url(text: str) -> str:
    """``text``, which may not parse as a URL, fit for an error message: everything
    between the user name and the last ``@`` (the password, whatever it holds) and
    every secret query value replaced by ``***``."""
    head, at, tail = _hide_query(text).rpartition("@")
    if not at:
        return tail  # all of it
    match = _PREFIX.match(head)
    prefix = match.group() if match else ""
    user, colon, _ = head[len(prefix) :].partition(":")
    if not prefix.endswith("/") or not colon or "/" in user or "?" in user:
        user, colon = "", ""  # no telling where the user name ends and a password starts
    return f"{prefix}{user}{colon}***@{tail}"


def resolve_url(url: str | None) -> str:
    """``url`` itself, else ``$BUS_URL``, else ``memory://``."""
    if url is None:
        url = os.environ.get(ENV_VAR) or DEFAULT_URL
    return url


def parse_url(url: str) -> BusURL:
    """Parse ``url``; a bare scheme (``memory``) means ``memory://``.

    Raises ``TypeError`` for a non-string and ``ConfigError`` for text that is not a
    bus URL, with the password masked in the message.
    """
    if not isinstance(url, str):
        raise TypeError(
            f"url must be a str such as 'memory://' or 'kafka://host:9092', not "
            f"{type(url).__name__}"
        )
    text = url.strip()
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ConfigError(
            f"a bus URL must be text that UTF-8 can encode (no lone surrogates), not "
            f"{shown_url(text)!r}"
        ) from None
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", text):
        text += "://"
    match = _URL.match(text)
    if match is None or match["netloc"] is None:
        raise ConfigError(
            f"not a bus URL: {shown_url(text)!r}; expected scheme://location?option=value, "
            "for example 'memory://' or 'kafka://127.0.0.1:9092'"
        )
    netloc = match["netloc"]
    if _misplaced_credentials(netloc, match["path"], match["query"] or ""):
        hidden = _hide_query(text.split("://", 1)[1]).rsplit("@", 1)[-1]
        raise ConfigError(
            f"the password in {match['scheme']}://***@{hidden} holds an unencoded '/', "
            "'?' or '#', which would end it early and show the rest: percent-encode it, "
            "for example with urllib.parse.quote(password, safe='')"
        )
    if _split_secret(match["query"] or ""):
        raise ConfigError(
            f"a secret option in {shown_url(text)} holds an unencoded '&', which would end "
            "it early and show the rest as an option: percent-encode it, for example with "
            "urllib.parse.quote(value, safe='')"
        )
    username = password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        user, sep, secret = auth.partition(":")
        username = unquote(user)
        password = unquote(secret) if sep else None
    query = tuple(parse_qsl(match["query"] or "", keep_blank_values=True))
    return BusURL(
        scheme=match["scheme"].lower(),
        location=netloc,
        username=username,
        password=password,
        path=match["path"],
        query=query,
    )
