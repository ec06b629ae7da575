"""A FastAPI service that writes orders to a polybus topic and reports its health.

Run it with ``uvicorn examples.fastapi_app:app``. The transport comes from ``$BUS_URL``
(default ``memory://``): ``BUS_URL=aiokafka://127.0.0.1:9092`` in production, since a
FastAPI app needs a backend with the asyncio API. ``$BUS_PING_TIMEOUT`` (seconds,
default 2.0) bounds the health check; keep it below your probe's own timeout.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

import bus


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    b = bus.connect()  # $BUS_URL, else memory://
    try:
        app.state.bus = b
        app.state.producer = b.async_producer(delivery_timeout=10.0)
        app.state.ping_timeout = float(os.environ.get("BUS_PING_TIMEOUT", "2.0"))
        yield
    finally:
        await b.aclose()  # closes the producer too (flushing what is still on its way)


app = FastAPI(lifespan=lifespan)


def get_bus(request: Request) -> bus.Bus:
    b: bus.Bus = request.app.state.bus
    return b


def get_producer(request: Request) -> bus.AsyncProducer:
    producer: bus.AsyncProducer = request.app.state.producer
    return producer


BusDep = Annotated[bus.Bus, Depends(get_bus)]
ProducerDep = Annotated[bus.AsyncProducer, Depends(get_producer)]


@app.post("/orders", status_code=202)
async def create_order(request: Request, producer: ProducerDep) -> dict[str, int]:
    try:
        delivery = await producer.send("orders", await request.body())
    except bus.BusError as exc:  # not written: the client may retry
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    return {"partition": delivery.partition, "offset": delivery.offset}


@app.get("/health")
async def health(request: Request, b: BusDep) -> JSONResponse:
    try:
        await b.aping(timeout=request.app.state.ping_timeout)
    except bus.BusError as exc:
        return JSONResponse({"status": "unavailable", "error": str(exc)}, status_code=503)
    return JSONResponse({"status": "ok"})
