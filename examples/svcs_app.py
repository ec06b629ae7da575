"""The service of ``fastapi_app.py``, its dependencies managed by svcs.

The Bus and its producer are registered in svcs' registry when the app starts; views
get them from a request-scoped container, ``/health`` runs every ping svcs knows
(the bus one calls ``Bus.aping``), and closing the registry at shutdown closes the
bus and its producer. Run it with ``uvicorn examples.svcs_app:app``; ``$BUS_URL`` and
``$BUS_PING_TIMEOUT`` as in ``fastapi_app.py``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator

import svcs
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

import bus


@svcs.fastapi.lifespan
async def lifespan(
    app: FastAPI, registry: svcs.Registry
) -> AsyncGenerator[dict[str, object], None]:
    b = bus.connect()  # $BUS_URL, else memory://
    ping_timeout = float(os.environ.get("BUS_PING_TIMEOUT", "2.0"))

    async def ping(b: bus.Bus) -> None:
        await b.aping(timeout=ping_timeout)

    # Registered first, so that it closes last: Bus.aclose closes the producer too.
    registry.register_value(bus.Bus, b, ping=ping, on_registry_close=b.aclose)
    registry.register_value(bus.AsyncProducer, b.async_producer(delivery_timeout=10.0))
    yield {}


app = FastAPI(lifespan=lifespan)


@app.post("/orders", status_code=202)
async def create_order(request: Request, services: svcs.fastapi.DepContainer) -> dict[str, int]:
    producer = await services.aget(bus.AsyncProducer)
    try:
        delivery = await producer.send("orders", await request.body())
    except bus.BusError as exc:  # not written: the client may retry
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    return {"partition": delivery.partition, "offset": delivery.offset}


@app.get("/health")
async def health(services: svcs.fastapi.DepContainer) -> JSONResponse:
    ok: list[str] = []
    failing: dict[str, str] = {}
    for svc in services.get_pings():
        try:
            await svc.aping()
            ok.append(svc.name)
        except Exception as exc:  # a failing ping of any service makes the app unhealthy
            failing[svc.name] = repr(exc)
    status = "unavailable" if failing else "ok"
    body = {"status": status, "ok": ok, "failing": failing}
    return JSONResponse(body, status_code=503 if failing else 200)
