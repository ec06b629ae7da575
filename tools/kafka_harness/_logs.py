"""Keep a chatty client library's logs readable while brokers come and go.

During a broker outage aiokafka logs the same lines ("Unable connect to node with id 1",
"Unable to update metadata from [1]", ...) on every retry of every client: thousands
per test, drowning the report and, in a child process with no handler, stderr.
:func:`quiet_repeats` puts one :class:`RepeatFilter` on every logger of such a tree:
WARNING and above only (unless someone lowers the level), each distinct message once
until :meth:`RepeatFilter.reset`.  Other loggers (``bus``, ``backends``...) are not
touched.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from collections.abc import Iterator

__all__ = ["RepeatFilter", "quiet_repeats"]

#: Distinct texts kept per message template (``record.msg``); the rest count as repeats,
#: so a message that embeds a changing number cannot flood either.
TEXTS_PER_TEMPLATE = 10

_INSTALLED: dict[str, RepeatFilter] = {}
_GUARD = threading.Lock()


class RepeatFilter(logging.Filter):
    """Lets each distinct record through once; drops (and counts) the repeats.

    One instance sits on every logger of a tree (a logger's filters only see the
    records made on that very logger), so the tree shares what was seen. Thread-safe.
    """

    def __init__(self) -> None:
        super().__init__()
        self._texts: dict[tuple[str, int, str], set[str]] = {}
        self._guard = threading.Lock()
        self._paused = 0
        self.dropped = 0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Let every record through meanwhile (a test that must see them all)."""
        with self._guard:
            self._paused += 1
        try:
            yield
        finally:
            with self._guard:
                self._paused -= 1

    def reset(self) -> int:
        """Forget what was seen (each message passes once more); return how many
        records were dropped since the last reset."""
        with self._guard:
            dropped, self.dropped = self.dropped, 0
            self._texts.clear()
        return dropped

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string: let logging report it downstream
            return True
        with self._guard:
            if self._paused:
                return True
            texts = self._texts.setdefault((record.name, record.levelno, str(record.msg)), set())
            if text in texts or len(texts) >= TEXTS_PER_TEMPLATE:
                self.dropped += 1
                return False
            texts.add(text)
        return True


def quiet_repeats(name: str = "aiokafka", level: int = logging.WARNING) -> RepeatFilter:
    """Quiet the ``name`` logger tree: its level becomes ``level`` and every logger in it
    gets the tree's :class:`RepeatFilter`, which is returned.

    The first call imports the package ``name`` if it is installed, so that the loggers
    its modules make at import exist.  A logger made later (a module imported lazily) is
    covered from the next call on: call it again at points that suit (the pytest plugin
    does before every test).  Idempotent; thread-safe.
    """
    with _GUARD:
        repeat_filter = _INSTALLED.get(name)
        if repeat_filter is None:
            repeat_filter = _INSTALLED[name] = RepeatFilter()
            logging.getLogger(name).setLevel(level)
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        prefix = name + "."
        for logger_name, logger in list(logging.Logger.manager.loggerDict.items()):
            if (
                (logger_name == name or logger_name.startswith(prefix))
                and isinstance(logger, logging.Logger)
                and repeat_filter not in logger.filters
            ):
                logger.addFilter(repeat_filter)
    return repeat_filter
