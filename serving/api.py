"""``clickstream serve``: the query as an HTTP JSON API (FastAPI), with its OpenAPI schema.

GET /v1/metrics answers what ``clickstream query`` answers. A bad parameter is a 422 whose body
names the parameter and the fix; Elasticsearch unreachable is a 503; never a 5xx for input.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from clickstream import __version__
from clickstream.settings import Settings
from serving.answer import answer_dict
from serving.errors import BackendUnavailableError, QueryError
from serving.params import EXAMPLE_TIME, GROUP_BY_CHOICES, build_query
from serving.service import MetricsService

#: The fix a 422 suggests for each parameter (FastAPI's own checks say only what is wrong).
HINTS = {
    "from": f"give an ISO-8601 time with a UTC offset, e.g. {EXAMPLE_TIME}",
    "to": f"give an ISO-8601 time with a UTC offset after from, e.g. {EXAMPLE_TIME}",
    "url": "give a prefix of the normalised URL, e.g. https://shop.example/products",
    "country": "give an ISO 3166-1 alpha-2 code, e.g. DE",
    "group_by": f"use one of {', '.join(GROUP_BY_CHOICES)}",
    "top": "give a whole number from 1 to serving.max_top",
}


class UniqueUsersOut(BaseModel):
    """Distinct users: exact (bounds equal the value) or an HLL estimate with its bounds."""

    value: int
    exact: bool
    lower_bound: int
    upper_bound: int
    confidence: float
    source: str


class MetricsOut(BaseModel):
    """Merged measures of a group or of the whole selection."""

    clicks: int
    bot_clicks: int
    unique_users: UniqueUsersOut
    time_spent_sum_ms: int
    time_spent_count: int
    clicks_without_time_spent: int
    avg_time_spent_ms: float | None
    documents: int


class GroupOut(MetricsOut):
    """One group: its key (null where not grouped by) and its measures."""

    url: str | None
    country: str | None


class AnswerOut(BaseModel):
    """The answer: range, boundary, freshness, late events, total and groups."""

    range: dict[str, str]
    filters: dict[str, str | None]
    group_by: list[str]
    top: int | None
    boundary: str | None
    speed_until: str | None
    late_events_waiting: int | None
    late_events_in_range: int | None
    total: MetricsOut
    group_count: int
    groups: list[GroupOut]
    notes: list[str]


class ErrorOut(BaseModel):
    """A refused request: which parameter, what is wrong and how to fix it."""

    error: str
    parameter: str | None = None
    message: str


def _error(status: int, kind: str, message: str, parameter: str | None = None) -> JSONResponse:
    body = {"error": kind, "parameter": parameter, "message": message}
    return JSONResponse(status_code=status, content=body)


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    parameter = str(first["loc"][-1]) if first.get("loc") else "query"
    hint = HINTS.get(parameter, "see /openapi.json")
    return _error(422, "bad_parameter", f"{parameter}: {first['msg']}; {hint}", parameter)


def create_app(settings: Settings, service: MetricsService | None = None) -> FastAPI:
    """The API over ``service`` (by default one built from ``settings``, closed on shutdown)."""
    metrics_service = service or MetricsService(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        metrics_service.close()

    app = FastAPI(
        title="clickstream metrics",
        version=__version__,
        description="Clicks, unique users and time spent per URL and country over any time "
        "range: exact batch views before the time boundary merged with fresh speed views "
        "after it.",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc)

    @app.exception_handler(QueryError)
    async def on_query_error(_: Request, exc: QueryError) -> JSONResponse:
        return _error(422, "bad_parameter", str(exc), exc.parameter)

    @app.exception_handler(BackendUnavailableError)
    async def on_unavailable(_: Request, exc: BackendUnavailableError) -> JSONResponse:
        return _error(503, "unavailable", str(exc))

    @app.get(
        "/v1/metrics",
        response_model=AnswerOut,
        responses={422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
        summary="Clicks, unique users and time spent over a time range",
    )
    def get_metrics(
        *,
        since: str = Query(
            alias="from",
            description="Range start, ISO-8601 with a UTC offset (inclusive).",
            examples=[EXAMPLE_TIME],
        ),
        until: str = Query(
            alias="to",
            description="Range end, ISO-8601 with a UTC offset (exclusive).",
            examples=["2026-11-22T11:00:00Z"],
        ),
        url: str | None = Query(None, description="Prefix of the normalised URL."),
        country: str | None = Query(
            None, pattern="^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2 code (ZZ: unknown)."
        ),
        group_by: str | None = Query(
            None,
            description="Group by url, country or url,country (default: only the total).",
            json_schema_extra={"enum": list(GROUP_BY_CHOICES)},
        ),
        top: int | None = Query(
            None,
            ge=1,
            le=settings.serving.max_top,
            description="Keep the N groups with the most clicks.",
        ),
    ) -> dict[str, Any]:
        query = build_query(
            settings.serving,
            since=since,
            until=until,
            url=url,
            country=country,
            group_by=group_by,
            top=top,
        )
        return answer_dict(metrics_service.query(query))

    @app.get("/healthz", summary="Whether the API can reach Elasticsearch")
    def healthz() -> JSONResponse:
        ok = metrics_service.healthy()
        body = {"status": "ok" if ok else "unavailable", "elasticsearch": ok}
        return JSONResponse(status_code=200 if ok else 503, content=body)

    return app


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the API with uvicorn until interrupted."""
    import uvicorn  # noqa: PLC0415 - only the serve command needs the server

    uvicorn.run(
        create_app(settings),
        host=host or settings.serving.host,
        port=port or settings.serving.port,
        log_level="info",
    )
