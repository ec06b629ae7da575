"""Bus URLs: ``scheme://[user[:password]@]location[/path][?option=value&...]``.

``location`` is a comma-separated host list for network backends
(``kafka://h1:9092,h2:9092``) and a broker name for the memory backend
(``memory://orders``). The password never appears in ``repr``/``str``.
"""

from __future__ import annotations

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
    """Whether ``user:pass@host`` was cut short by a ``/`` or ``?`` in the password:
    the parsed location looks like ``user:pa`` and an ``@`` follows in the path, or in
    the query before any ``name=`` (``?client_id=a@b`` is a value, not a password)."""
    if "@" in netloc or ":" not in netloc:
        return False
    if "@" in path:
        return True
    if "@" not in query:
        return False
    return "=" not in query.split("@", 1)[0].rsplit("&", 1)[-1]


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
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", text):
        text += "://"
    match = _URL.match(text)
    if match is None or match["netloc"] is None:
        # Everything between the user's ':' and the last '@' may be the password.
        shown = re.sub(r"^([^:]*:/*[^:/@]*:).*@", r"\1***@", text)
        raise ConfigError(
            f"not a bus URL: {shown!r}; expected scheme://location?option=value, "
            "for example 'memory://' or 'kafka://127.0.0.1:9092'"
        )
    netloc = match["netloc"]
    if _misplaced_credentials(netloc, match["path"], match["query"] or ""):
        hidden = text.split("://", 1)[1].rsplit("@", 1)[1]
        raise ConfigError(
            f"the password in {match['scheme']}://***@{hidden} holds an unencoded '/', "
            "'?' or '#', which would end it early and show the rest: percent-encode it, "
            "for example with urllib.parse.quote(password, safe='')"
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
