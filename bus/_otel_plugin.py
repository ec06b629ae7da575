"""Registers the ``otel`` interceptor through the same hook a third-party plugin uses.
Imports nothing of OpenTelemetry until a client asks for it (``polybus[otel]``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bus._interceptors import Interceptor, InterceptorFactory
from bus._plugins import hookimpl


def _otel(options: Mapping[str, Any]) -> Interceptor:
    from bus.otel import OpenTelemetryInterceptor

    return OpenTelemetryInterceptor(options)


@hookimpl
def bus_register_interceptors() -> Mapping[str, InterceptorFactory]:
    return {"otel": _otel}
