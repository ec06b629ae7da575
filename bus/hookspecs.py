"""The hooks a polybus plugin may implement (pluggy project ``bus``).

Hooks return descriptors, never live connections: pluggy calls them synchronously
when the registry loads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pluggy

from bus._codecs import Codec
from bus._interceptors import InterceptorFactory
from bus.spi import BackendDescriptor

hookspec = pluggy.HookspecMarker("bus")


@hookspec
def bus_register_backends() -> Iterable[BackendDescriptor]:
    """Return the backends this plugin provides."""
    raise NotImplementedError


@hookspec
def bus_register_codecs() -> Iterable[Codec]:
    """Return the codecs this plugin provides, usable by name as (de)serializers."""
    raise NotImplementedError


@hookspec
def bus_register_interceptors() -> Mapping[str, InterceptorFactory]:
    """Return the interceptors this plugin provides, by name: each a factory that makes
    one ``bus.Interceptor`` for a client, given the client's options. A name is what
    ``interceptors=["name"]`` (or ``?interceptors=name`` in a URL) asks for."""
    raise NotImplementedError
