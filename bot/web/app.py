"""The ASGI application: health and metrics here; Slack, alerts and the API from extensions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.errors import RunbookBotError
from bot.service import Service
from bot.web.bodies import EXCEPTION_HANDLERS

log = logging.getLogger("runbook.web")


async def _start(service: Service) -> None:
    try:
        await service.start()
    except RunbookBotError as exc:  # a problem the operator can fix: one line, no traceback
        service.start_error = str(exc)
        log.error("the service failed to start; shutting down: %s", exc)
        os.kill(os.getpid(), signal.SIGTERM)
    except Exception as exc:
        service.start_error = f"{type(exc).__name__}: {exc}"
        log.exception("the service failed to start; shutting down")
        os.kill(os.getpid(), signal.SIGTERM)


def create_app(service: Service, *, manage_lifecycle: bool = True) -> Starlette:
    """The app; with ``manage_lifecycle`` its lifespan starts and stops the service."""

    async def healthz(request: Request) -> Response:
        ok, facts = service.health()
        return JSONResponse({"ok": ok, **facts}, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(
            service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not manage_lifecycle:
            yield
            return
        # Restore in the background so /healthz can answer 503 until ready.
        starting = asyncio.create_task(_start(service), name="service-start")
        try:
            yield
        finally:
            if not starting.done():
                starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
            await service.stop()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *service.routes(),
    ]
    # unknown paths and methods anywhere (not only under /api and /alerts) answer JSON
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
